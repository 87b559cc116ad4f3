"""Vectorized prediction over decision vectors of a search space.

In a factorized space every stage's latency depends only on its own decisions and the
width of the stage before it. `SpacePredictor` tabulates each stage once (for every
input width and every stage choice), so predicting N architectures is a few numpy
gathers and sums: millions per second instead of thousands.
"""
from __future__ import annotations

import numpy as np

from latency_tables.ops import op_grid
from search_spaces.errors import UserError
from search_spaces.space import STAGE_DECISIONS


class SpacePredictor:
    """Per-stage latency arrays of one table for one space (at the table's resolution)."""

    _cache: dict = {}

    def __init__(self, table, space):
        r = table.metadata.get("resolution") or space.resolution
        self.space = space
        # the vector columns of each stage's decisions, in the order its latency array is indexed
        self.columns = [[space.position(s, name) for name in STAGE_DECISIONS] for s in range(len(space.stages))]
        stem, stages, heads = op_grid(space, r)
        # every op first, so missing ones are measured/modelled in one batch
        table.add_missing([op for stage in stages for by_choice in stage for ops in by_choice.values()
                           for op in ops] + heads + [stem])
        ms = table.in_network  # per-op share of the end-to-end term included
        self.stage_ms = [np.array([[sum(ms(op) for op in ops) for ops in by_choice.values()] for by_choice in stage])
                         .reshape((len(stage),) + tuple(len(c) for c in space.stage_options(s).values()))
                         for s, stage in enumerate(stages)]
        self.head_ms = np.array([ms(op) for op in heads])
        self.stem_ms = ms(stem)
        self.offset_ms = table.network_term["offset_ms"]

    @classmethod
    def for_table(cls, table, space) -> "SpacePredictor":
        # the space itself, not its name: its classes and resolution change the head's and stem's ops
        key = (id(table), len(table), space, str(table.network_term))
        if key not in cls._cache:
            cls._cache.clear()
            cls._cache[key] = cls(table, space)
        return cls._cache[key]

    def predict(self, vectors) -> np.ndarray:
        """Latency (ms) of each row of an (N, decisions) integer array."""
        v = np.asarray(vectors, dtype=np.intp)
        if v.ndim != 2 or v.shape[1] != len(self.space.decisions()):
            raise UserError(f"expected an (N, {len(self.space.decisions())}) array of decision vectors "
                            f"of space {self.space.name}, got shape {v.shape}")
        total = np.full(len(v), self.stem_ms)
        prev = np.zeros(len(v), dtype=np.intp)
        for s, arr in enumerate(self.stage_ms):
            total += arr[(prev,) + tuple(v[:, c] for c in self.columns[s])]
            prev = v[:, self.space.position(s, "width")]
        return total + self.head_ms[prev] + self.offset_ms
