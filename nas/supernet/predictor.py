"""An accuracy predictor over a space's decisions, fitted on supernet scores (Once-for-All's).

Scoring one candidate with a supernet costs seconds on a CPU (BatchNorm recalibration, then a
validation pass), and the score is noisy: a few hundred validation images resolve accuracy to a
fraction of a point, about the spread between networks of one latency. A ridge regression on the
candidates' one-hot choices, fitted on a few hundred supernet-scored networks, averages that noise
out over every network sharing a choice and ranks any number of candidates at millions per second.
`experiments/supernet_macro_fidelity.py` measures it against NAS-Bench-Macro's ground truth next
to the supernet's own scores.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: ridge penalties tried; the one with the least leave-one-out error is kept
ALPHAS = tuple(np.logspace(-3, 3, 13))


def one_hot(vectors, choices: tuple[int, ...]) -> np.ndarray:
    """(n, sum(choices)) indicators: one column per option of each decision."""
    v = np.asarray(vectors, dtype=np.int64).reshape(-1, len(choices))
    if (v < 0).any() or (v >= np.asarray(choices)).any():
        raise ValueError(f"a decision vector is out of its choices {choices}")
    offsets = np.concatenate([[0], np.cumsum(choices)[:-1]])
    X = np.zeros((len(v), int(sum(choices))))
    np.put_along_axis(X, v + offsets, 1.0, axis=1)
    return X


@dataclass(frozen=True)
class AccuracyPredictor:
    """score ~ intercept + coef . one_hot(vector), ridge-fitted."""

    choices: tuple[int, ...]   # options per decision of the space
    coef: np.ndarray
    intercept: float
    alpha: float

    @classmethod
    def for_space(cls, space, vectors, scores) -> AccuracyPredictor:
        return cls.fit(tuple(len(d.choices) for d in space.decisions()), vectors, scores)

    @classmethod
    def fit(cls, choices: tuple[int, ...], vectors, scores, alphas=ALPHAS) -> AccuracyPredictor:
        """Ridge regression on centred one-hot features; the penalty chosen by exact leave-one-out
        error (from the SVD, no refits)."""
        X, y = one_hot(vectors, choices), np.asarray(scores, dtype=float)
        if len(y) != len(X) or len(y) < 3:
            raise ValueError(f"need at least 3 scored vectors, one score each (got {len(X)} and {len(y)})")
        mx, my = X.mean(0), y.mean()
        U, s, Vt = np.linalg.svd(X - mx, full_matrices=False)
        uty = U.T @ (y - my)
        best = None
        for alpha in alphas:
            shrink = s ** 2 / (s ** 2 + alpha)
            hat = (U ** 2) @ shrink + 1 / len(y)  # leverage, the intercept's included
            resid = (y - my) - U @ (shrink * uty)
            loo = float(np.mean((resid / (1 - hat)) ** 2))
            if best is None or loo < best[0]:
                best = (loo, alpha, Vt.T @ (s / (s ** 2 + alpha) * uty))
        _, alpha, coef = best
        return cls(tuple(choices), coef, float(my - mx @ coef), float(alpha))

    def predict(self, vectors) -> np.ndarray:
        return one_hot(vectors, self.choices) @ self.coef + self.intercept
