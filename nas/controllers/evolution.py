"""Regularized (aging) evolution (Real et al., 2019): tournament selection, one-decision
mutation, and the oldest member (not the worst) dies."""
from __future__ import annotations

from collections import deque

from nas.controllers.base import Controller


class EvolutionController(Controller):
    def __init__(self, space, seed: int = 0, n_objectives: int = 1, population: int = 16, sample: int = 4):
        super().__init__(space, seed, n_objectives)
        self.population_size, self.sample_size = population, sample
        self.population: deque = deque()  # (vector, reward), oldest first

    def ask(self, key: str) -> list[int]:
        if len(self.population) < self.population_size:
            return self.space.sample(self.rng)
        tournament = self.rng.sample(list(self.population), min(self.sample_size, len(self.population)))
        parent = max(tournament, key=lambda member: member[1])[0]
        return self.space.mutate(parent, self.rng)

    def tell(self, key, vector, values) -> None:
        if values is None:  # a failed candidate never becomes a parent
            return
        self.population.append((list(vector), float(values[0])))
        if len(self.population) > self.population_size:
            self.population.popleft()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "population": [[v, r] for v, r in self.population]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.population = deque((list(v), float(r)) for v, r in state["population"])
