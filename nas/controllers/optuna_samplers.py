"""Optuna's TPE and NSGA-II samplers over a space's decisions, through Optuna's ask/tell API.

Each decision is a categorical over its choice indices. The state is the list of finished
trials; restoring replays them into a fresh study whose sampler is reseeded past them.
"""
from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution
from optuna.trial import TrialState, create_trial

from nas.controllers.base import Controller

optuna.logging.set_verbosity(optuna.logging.WARNING)


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
        # infeasible: the sampler draws again; not kept in the state (only trained trials are)
        self.study.tell(self.pending.pop(key), state=TrialState.FAIL)

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
