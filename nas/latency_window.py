"""The latency budget as a constraint: only candidates whose latency lies in [LO*T, HI*T] are trained.

A soft reward barely separates a network 2x over T from one at T (2^-0.07 = 0.95, less than the
noise of a short proxy), so without a constraint a search spends its trials on networks the user
cannot ship. The latency table answers in microseconds, so a proposal outside the window costs no
training: `Screen.propose` asks the controller again, telling it of each rejection through
`Controller.reject` (RL learns from a penalty; the others simply propose anew).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace

import numpy as np

from search_spaces.errors import UserError

#: per reward, as fractions of T: the hard reward wants networks just under T; soft trades a
#: little latency for accuracy on either side of it, within 10% so its winner ships at about T;
#: pareto wants a front, so a wider range below T
DEFAULT_WINDOWS = {"hard": (0.85, 1.0), "soft": (0.9, 1.1), "pareto": (0.5, 1.1)}
#: proposals a controller may make for one trial before the search stops with a clear message
MAX_PROPOSALS = 2000
#: random networks drawn to check that the window holds any network of the space at all
REACH_SAMPLES = 20000


@dataclass(frozen=True)
class LatencyWindow:
    lo: float         # fractions of the target T
    hi: float
    target_ms: float

    def __post_init__(self):
        if not (0 <= self.lo < self.hi):
            raise UserError(f"--latency-window needs 0 <= LO < HI, got {self.lo},{self.hi}")

    @classmethod
    def parse(cls, text: str | None, reward_kind: str, target_ms: float) -> "LatencyWindow":
        """`LO,HI` (fractions of T, `inf` allowed), or the reward's default when None."""
        if text is None:
            return cls(*DEFAULT_WINDOWS[reward_kind], target_ms)
        try:
            lo, hi = (float(part) for part in text.split(","))
        except ValueError:
            raise UserError(f"--latency-window expects LO,HI (fractions of T, e.g. 0.85,1.0), got {text!r}") from None
        return cls(lo, hi, target_ms)

    @property
    def bounds_ms(self) -> tuple[float, float]:
        return self.lo * self.target_ms, self.hi * self.target_ms

    def excess(self, latency_ms: float) -> float:
        """0 inside the window, else how far outside it is on a log scale (|ln(latency / bound)|)."""
        low, high = self.bounds_ms
        if latency_ms < low:
            return math.log(low / latency_ms)
        if latency_ms > high:
            return math.log(latency_ms / high)
        return 0.0

    def describe(self) -> str:
        low, high = self.bounds_ms
        return f"[{self.lo:g}, {self.hi:g}] x T = [{low:.2f}, {high:.2f}] ms"

    def reachable_share(self, space, table, num_classes: int, resolution: int, seed: int = 0) -> float:
        """Share of random networks of `space` (as deployed) inside the window; UserError when none is.

        Random samples plus the space's smallest and largest network (every decision at its first,
        resp. last, choice), predicted in one vectorized call."""
        deployed = replace(space, num_classes=num_classes, resolution=resolution)
        rng = random.Random(seed)
        sizes = [len(d.choices) for d in space.decisions()]
        vectors = [[0] * len(sizes), [n - 1 for n in sizes]] + [space.sample(rng) for _ in range(REACH_SAMPLES)]
        ms = table.predict_many(np.array(vectors), space=deployed)
        low, high = self.bounds_ms
        inside = (ms >= low) & (ms <= high)
        if not inside.any():
            raise UserError(f"latency window {self.describe()} holds no network of space {space.name} "
                            f"({REACH_SAMPLES} sampled span {ms.min():.1f}-{ms.max():.1f} ms); "
                            f"widen --latency-window or change --latency-target")
        return float(inside.mean())


class Screen:
    """Asks a controller until it proposes a candidate inside the window; counts the rejections."""

    def __init__(self, window: LatencyWindow, latency_ms, max_proposals: int = MAX_PROPOSALS):
        self.window, self.latency_ms, self.max_proposals = window, latency_ms, max_proposals

    def propose(self, controller, key: str) -> tuple[list[int] | None, int]:
        """(vector inside the window, proposals rejected before it); (None, n) when the controller
        made `max_proposals` proposals in a row outside the window."""
        for rejected in range(self.max_proposals):
            vector = controller.ask(key)
            excess = self.window.excess(self.latency_ms(vector))
            if excess == 0:
                return vector, rejected
            controller.reject(key, vector, excess)
        return None, self.max_proposals
