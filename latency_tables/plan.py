"""Which networks to time whole so that a fitted table (`latency_tables.fit`) is well posed.

A fit learns what each choice of each decision adds to a network's latency; networks drawn at
random repeat some choices and leave others rare. The plan picks them greedily D-optimal over the
one-hot encoding of the decisions (plus a constant): each next network is the candidate that most
increases det(X^T X), i.e. the one whose choices the networks picked so far pin down least
(`x^T M^-1 x` largest, `M` updated by Sherman-Morrison). Distinct networks only: in a layer-wise
space several vectors decode to one network.
"""
from __future__ import annotations

import random

import numpy as np

from search_spaces.errors import UserError

#: random candidates the plan chooses from when no pool is given
CANDIDATES = 2000
#: ridge on the information matrix before the first pick (makes it invertible)
RIDGE = 1e-3


def one_hot(space, vectors) -> np.ndarray:
    """(networks, 1 + choices of all decisions): a constant, then each decision's choice one-hot."""
    sizes = [len(d.choices) for d in space.decisions()]
    v = np.asarray(vectors, dtype=np.intp).reshape(-1, len(sizes))
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    X = np.zeros((len(v), 1 + sum(sizes)))
    X[:, 0] = 1
    X[np.arange(len(v))[:, None], 1 + starts + v] = 1
    return X


def candidates(space, count: int, seed: int) -> list[list[int]]:
    """Up to `count` random vectors of `space` that decode to distinct networks."""
    rng, seen, out = random.Random(seed), set(), []
    for _ in range(count * 3):
        v = space.sample(rng)
        arch = space.decode(v).to_string()
        if arch not in seen:
            seen.add(arch)
            out.append(v)
            if len(out) == count:
                break
    return out


def plan_networks(space, n: int, seed: int = 0, pool=None) -> list[list[int]]:
    """`n` decision vectors of `space` to time whole, chosen greedily D-optimal from `pool`
    (vectors; default `CANDIDATES` random distinct networks of the space). Ties go to the pool's
    order, shuffled by `seed`. UserError when the pool has fewer than `n` networks."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    pool = [list(v) for v in pool] if pool is not None else candidates(space, max(CANDIDATES, n), seed)
    if len(pool) < n:
        raise UserError(f"space {space.name}: only {len(pool)} candidate networks for a plan of {n}")
    order = np.random.default_rng(seed).permutation(len(pool))
    X = one_hot(space, [pool[i] for i in order])
    inv = np.eye(X.shape[1]) / RIDGE
    gain = (X ** 2).sum(1) / RIDGE  # x^T M^-1 x of every candidate, kept up to date with M
    picked = []
    for _ in range(n):
        i = int(np.argmax(gain))
        picked.append(pool[order[i]])
        w = inv @ X[i]
        denominator = 1 + X[i] @ w
        gain -= (X @ w) ** 2 / denominator
        inv -= np.outer(w, w) / denominator
        gain[i] = -np.inf
    return picked
