"""Regularized (aging) evolution (Real et al., 2019): tournament selection, one-decision
mutation, and the oldest member (not the worst) dies.

Every proposal is a network not proposed before (unless the space holds no other): with a
deterministic score (a supernet, a zero-cost score, a benchmark lookup) a repeat costs a full
evaluation and teaches nothing, and tournaments won by one strong member kept mutating it back
and forth: 1,000 candidates were 21 distinct networks. Networks are compared decoded, so the
many vectors of one network (identity layers, unused layers of a shallow stage) count as one.
"""
from __future__ import annotations

from collections import deque

from nas.controllers.base import Controller

#: fresh mutations (each of a fresh tournament's winner), then fresh samples, tried for an unseen network
ATTEMPTS = 200


class EvolutionController(Controller):
    def __init__(self, space, seed: int = 0, n_objectives: int = 1, population: int = 16, sample: int = 4):
        super().__init__(space, seed, n_objectives)
        self.population_size, self.sample_size = population, sample
        self.population: deque = deque()  # (vector, reward), oldest first
        self.proposed: list[list[int]] = []  # every vector proposed or told, in order (the state keeps it)
        self.seen: set = set()  # their decoded networks

    def ask(self, key: str) -> list[int]:
        vector = None
        for _ in range(ATTEMPTS):
            vector = self._child() if len(self.population) >= self.population_size else self.space.sample(self.rng)
            if self.space.decode(vector) not in self.seen:
                break
        else:  # the neighbourhood is used up: anywhere unseen, else a repeat
            for _ in range(ATTEMPTS):
                vector = self.space.sample(self.rng)
                if self.space.decode(vector) not in self.seen:
                    break
        self._remember(vector)
        return vector

    def _child(self) -> list[int]:
        tournament = self.rng.sample(list(self.population), min(self.sample_size, len(self.population)))
        parent = max(tournament, key=lambda member: member[1])[0]
        return self.space.mutate(parent, self.rng)

    def _remember(self, vector) -> None:
        network = self.space.decode(vector)
        if network not in self.seen:
            self.seen.add(network)
            self.proposed.append(list(vector))

    def tell(self, key, vector, values) -> None:
        self._remember(vector)  # a replayed trial the controller never proposed
        if values is None:  # a failed candidate never becomes a parent
            return
        self.population.append((list(vector), float(values[0])))
        if len(self.population) > self.population_size:
            self.population.popleft()

    def state_dict(self) -> dict:
        return {**super().state_dict(), "population": [[v, r] for v, r in self.population],
                "proposed": [list(v) for v in self.proposed]}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.population = deque((list(v), float(r)) for v, r in state["population"])
        self.proposed, self.seen = [], set()
        # states saved before proposals were remembered know their population only
        for vector in state.get("proposed", [v for v, _ in self.population]):
            self._remember(vector)
