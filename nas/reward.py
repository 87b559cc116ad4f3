"""MnasNet's multi-objective reward and the accuracy/latency Pareto front.

soft: ACC x (LAT/T)^w with w = alpha if LAT <= T else beta, alpha = beta = -0.07;
hard: alpha = 0, beta = -1 (a near-constraint); `w` overrides both exponents.
pareto: no scalarization; a controller sees (accuracy, -latency). The soft value is still
recorded so trials can be ranked for reports and final training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from search_spaces.errors import UserError

EXPONENTS = {"soft": (-0.07, -0.07), "hard": (0.0, -1.0), "pareto": (-0.07, -0.07)}


@dataclass(frozen=True)
class Reward:
    kind: str
    target_ms: float
    w: float | None = None

    def __post_init__(self):
        if self.kind not in EXPONENTS:
            raise UserError(f"unknown reward {self.kind!r} (known: {', '.join(EXPONENTS)})")
        if not self.target_ms > 0:
            raise UserError(f"latency target must be positive, got {self.target_ms}")

    @property
    def n_objectives(self) -> int:
        return 2 if self.kind == "pareto" else 1

    def exponents(self) -> tuple[float, float]:
        return (self.w, self.w) if self.w is not None else EXPONENTS[self.kind]

    def scalar(self, accuracy: float, latency_ms: float) -> float:
        # a negative "accuracy" would turn the latency penalty into a bonus: an evaluator whose
        # score is not a fraction maps it into [0, 1] first (nas.evaluators.ZeroCost)
        if accuracy < 0 or accuracy > 1:
            raise ValueError(f"accuracy {accuracy} is not a fraction in [0, 1]")
        alpha, beta = self.exponents()
        return accuracy * (latency_ms / self.target_ms) ** (alpha if latency_ms <= self.target_ms else beta)

    def objectives(self, accuracy: float, latency_ms: float) -> tuple[float, ...]:
        """What the controller maximizes."""
        if self.kind == "pareto":
            return accuracy, -latency_ms
        return (self.scalar(accuracy, latency_ms),)


def pareto_mask(accuracy, latency) -> np.ndarray:
    """True where no other point has accuracy >= and latency <= with one strictly better."""
    acc, lat = np.asarray(accuracy, float), np.asarray(latency, float)
    better_eq = (acc[None, :] >= acc[:, None]) & (lat[None, :] <= lat[:, None])
    strictly = (acc[None, :] > acc[:, None]) | (lat[None, :] < lat[:, None])
    return ~(better_eq & strictly).any(axis=1)


def pareto_front(trials: pd.DataFrame) -> pd.DataFrame:
    """Finished trials on the accuracy/latency front, fastest first."""
    ok = trials[trials["status"] == "ok"]
    return ok[pareto_mask(ok["accuracy"], ok["latency_ms"])].sort_values("latency_ms")
