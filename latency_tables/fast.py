"""Vectorized prediction over decision vectors of a search space.

A space groups its layers by the decisions they depend on (`Space.layer_groups`: a stage of a
factorized space on its own decisions and the previous stage's width, a layer of a layer-wise
space on its own op). `SpacePredictor` tabulates each group once, so predicting N architectures
is a few numpy gathers and sums: millions per second instead of thousands.
"""
from __future__ import annotations

import numpy as np

from latency_tables.ops import op_grid
from search_spaces.errors import UserError


class SpacePredictor:
    """Latency arrays of one table for one space (at the table's resolution), one per layer group."""

    _cache: dict = {}

    def __init__(self, table, space):
        r = space.resolution
        table.check_resolution(r)
        self.space = space
        grid = op_grid(space, r)
        table.add_missing(grid.ops())  # every op first, so missing ones are measured/modelled in one batch
        table.calibrate_if_able(r, space)
        term = table.term_at(r)

        def ms(op):  # per-op share of the end-to-end term included
            return table.in_network(op, term)

        sizes = [len(d.choices) for d in space.decisions()]

        def array(columns, by_idx, cost):
            arr = np.zeros(tuple(sizes[c] for c in columns))
            for idx, ops in by_idx.items():
                arr[idx] = cost(ops)
            return columns, arr

        self.groups = [array(cols, by_idx, lambda ops: sum(ms(op) for op in ops)) for cols, by_idx in grid.groups]
        self.groups.append(array(*grid.head, ms))
        self.stem_ms = ms(grid.stem)
        self.offset_ms = term["offset_ms"]

    @classmethod
    def for_table(cls, table, space) -> "SpacePredictor":
        # the space itself, not its name: its classes and resolution change the head's and stem's ops
        key = (id(table), len(table), space, str(table.network_term), str(table.metadata.get("network_terms")))
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
        total = np.full(len(v), self.stem_ms + self.offset_ms)
        for columns, arr in self.groups:
            total += arr[tuple(v[:, c] for c in columns)]
        return total
