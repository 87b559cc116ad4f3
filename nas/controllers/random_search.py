"""Random search: uniform over every decision; the baseline every NAS claim must beat."""
from __future__ import annotations

from nas.controllers.base import Controller


class RandomController(Controller):

    def ask(self, key: str) -> list[int]:
        return self.space.sample(self.rng)

    def tell(self, key, vector, values) -> None:
        pass
