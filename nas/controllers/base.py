"""The controller interface: propose decision vectors, learn from their results, save and restore.

A controller works on a space's decisions only (lists of choice indices), never on models.
`ask(key)` proposes a candidate for the trial named `key`; `tell(key, vector, values)` reports
its objective values (a tuple, all maximized; None for a failed trial). `tell` also accepts
keys it never proposed, so a resumed search can replay finished trials into a controller.
`reject(key, vector, excess)` says that a proposal lies outside the latency window and will not
be trained; the session then asks again for the same key.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod

from search_spaces.space import Space


class Controller(ABC):

    def __init__(self, space: Space, seed: int = 0, n_objectives: int = 1):
        self.space = space
        self.sizes = [len(d.choices) for d in space.decisions()]
        self.seed = seed
        self.n_objectives = n_objectives
        self.rng = random.Random(seed)

    @abstractmethod
    def ask(self, key: str) -> list[int]:
        """A decision vector for trial `key`."""

    @abstractmethod
    def tell(self, key: str, vector: list[int], values: tuple[float, ...] | None) -> None:
        """Result of trial `key` (maximized objective values), or None if it failed."""

    def reject(self, key: str, vector: list[int], excess: float) -> None:
        """Proposal for `key` lies `excess` (> 0, log scale) outside the latency window; by default
        the next `ask(key)` simply proposes anew (a fresh sample, or a fresh mutation)."""

    def state_dict(self) -> dict:
        """Everything needed to continue; tensors and plain Python values only (loads with weights_only)."""
        version, internal, gauss = self.rng.getstate()
        return {"rng": [version, list(internal), gauss]}

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
