"""Optuna's TPE and NSGA-II samplers over a space's decisions, through Optuna's ask/tell API.

Each decision is a categorical over its choice indices. The state is the list of finished
trials; restoring replays them into a fresh study whose sampler is reseeded past them. A
proposal outside the latency window is told as an infeasible trial (Optuna's constraint API),
so both samplers rank it below every feasible one and learn where the window lies.
"""
from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from nas.controllers.base import Controller

optuna.logging.set_verbosity(optuna.logging.WARNING)
EXCESS = "latency_window_excess"  # the constraint a rejected proposal violates (> 0: outside)


class OptunaController(Controller):

    def __init__(self, space, seed: int = 0, n_objectives: int = 1, sampler: str = "tpe", population: int = 10):
        super().__init__(space, seed, n_objectives)
        self.sampler_name, self.population_size = sampler, population
        self.distributions = {d.name: CategoricalDistribution(tuple(range(len(d.choices))))
                              for d in space.decisions()}
        self.finished: list[list] = []   # [vector, values or None]
        self.pending: dict = {}
        self.study = self._study(seed)

    def _study(self, seed: int) -> optuna.Study:
        if self.sampler_name == "tpe":
            sampler = optuna.samplers.TPESampler(seed=seed)
        else:
            sampler = optuna.samplers.NSGAIISampler(seed=seed, population_size=self.population_size)
        return optuna.create_study(sampler=sampler, directions=["maximize"] * self.n_objectives)

    def ask(self, key: str) -> list[int]:
        trial = self.study.ask(self.distributions)
        self.pending[key] = trial
        return [trial.params[name] for name in self.distributions]

    def tell(self, key, vector, values) -> None:
        trial = self.pending.pop(key, None)
        self.finished.append([list(vector), None if values is None else [float(v) for v in values]])
        if trial is None:  # replayed after a resume
            self.study.add_trial(self._frozen(vector, values))
        elif values is None:
            self.study.tell(trial, state=TrialState.FAIL)
        else:
            self.study.tell(trial, list(values))

    def reject(self, key, vector, excess) -> None:
        # A failed trial teaches the samplers nothing, so TPE kept proposing out-of-window networks
        # (hundreds of draws per candidate at tight budgets). Infeasible with its excess as the
        # violation, it falls below every feasible trial, the further out the lower; its value is
        # never compared. Not kept in the state: only trained trials are.
        trial = self.pending.pop(key)
        trial.set_constraint(EXCESS, float(excess))
        self.study.tell(trial, [0.0] * self.n_objectives)

    def _frozen(self, vector, values):
        params = dict(zip(self.distributions, vector))
        if values is None:
            return create_trial(params=params, distributions=self.distributions, state=TrialState.FAIL)
        return create_trial(params=params, distributions=self.distributions, values=list(values))

    def state_dict(self) -> dict:
        return {**super().state_dict(), "finished": self.finished}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.finished = [[list(v), vals] for v, vals in state["finished"]]
        self.study = self._study(self.seed + len(self.finished))  # fresh draws, not a replay of old ones
        self.study.add_trials([self._frozen(v, vals) for v, vals in self.finished])
        self.pending = {}
