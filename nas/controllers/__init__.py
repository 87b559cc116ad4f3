"""Search controllers by name: `make_controller("rl" | "evolution" | "random" | "tpe" | "nsga2", space, ...)`."""
from __future__ import annotations

from functools import partial

from nas.controllers.base import Controller
from nas.controllers.evolution import EvolutionController
from nas.controllers.optuna_samplers import OptunaController
from nas.controllers.random_search import RandomController
from nas.controllers.rl import RLController
from search_spaces.errors import UserError

CONTROLLERS = {
    "rl": RLController,
    "evolution": EvolutionController,
    "random": RandomController,
    "tpe": partial(OptunaController, sampler="tpe"),
    "nsga2": partial(OptunaController, sampler="nsga2"),
}
MULTI_OBJECTIVE = ("random", "tpe", "nsga2")


def make_controller(name: str, space, seed: int = 0, n_objectives: int = 1, **options) -> Controller:
    if name not in CONTROLLERS:
        raise UserError(f"unknown controller {name!r} (known: {', '.join(CONTROLLERS)})")
    if n_objectives > 1 and name not in MULTI_OBJECTIVE:
        raise UserError(f"controller {name!r} optimizes a scalar reward; with --reward pareto use "
                        f"one of {', '.join(MULTI_OBJECTIVE)}")
    return CONTROLLERS[name](space, seed=seed, n_objectives=n_objectives, **options)


__all__ = ["CONTROLLERS", "MULTI_OBJECTIVE", "Controller", "make_controller"]
