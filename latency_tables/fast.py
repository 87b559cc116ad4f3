"""Vectorized prediction over decision vectors of a search space.

In a factorized space every stage's latency depends only on its own decisions and the
width of the stage before it. `SpacePredictor` tabulates each stage once (for every
input width and every stage choice), so predicting N architectures is a few numpy
gathers and sums: millions per second instead of thousands.
"""
from __future__ import annotations

import itertools

import numpy as np

from latency_tables.ops import Op, stage_blocks, stage_inputs
from search_spaces.counting import conv_out


class SpacePredictor:
    """Per-stage latency arrays of one table for one space (at the table's resolution)."""

    _cache: dict = {}

    def __init__(self, table, space):
        r = table.metadata.get("resolution") or space.resolution
        self.space, self.table = space, table
        sizes = stage_inputs(space, r)
        decisions = [space.stage_decisions(s) for s in range(len(space.stages))]
        self.offsets = np.cumsum([0] + [len(ds) for ds in decisions])[:-1]
        self.stage_ms, cins = [], [space.stem.out]
        need = {}  # collect every op first so missing ones are measured/modelled in one batch
        plan = []
        for s, ds in enumerate(decisions):
            shape = (len(cins),) + tuple(len(d.choices) for d in ds)
            entries = []
            for ci, cin in enumerate(cins):
                for idx in itertools.product(*(range(len(d.choices)) for d in ds)):
                    hw, stage_ops = sizes[s], []
                    for b in stage_blocks(space, s, cin, tuple(d.choices[i] for d, i in zip(ds, idx))):
                        op = Op(b, hw, b.in_)
                        need[op.key] = op
                        stage_ops.append(op)
                        hw = conv_out(hw, b.kernel, b.stride)
                    entries.append(stage_ops)
            plan.append((shape, entries))
            cins = list(ds[5].choices)
        heads = [Op(space.head, sizes[-1], c, space.num_classes) for c in cins]
        stem = Op(space.stem, r, 3)
        for op in heads + [stem]:
            need[op.key] = op
        table.add_missing(list(need.values()))
        ms = table.in_network  # per-op share of the end-to-end term included
        for shape, entries in plan:
            self.stage_ms.append(np.array([sum(ms(op) for op in ops) for ops in entries]).reshape(shape))
        self.head_ms = np.array([ms(op) for op in heads])
        self.stem_ms = ms(stem)
        self.offset_ms = table.network_term["offset_ms"]
        self.width_pos = [int(self.offsets[s] + 5) for s in range(len(decisions))]

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
            from search_spaces.errors import UserError
            raise UserError(f"expected an (N, {len(self.space.decisions())}) array of decision vectors "
                            f"of space {self.space.name}, got shape {v.shape}")
        total = np.full(len(v), self.stem_ms)
        prev = np.zeros(len(v), dtype=np.intp)
        for s, arr in enumerate(self.stage_ms):
            o = self.offsets[s]
            total += arr[(prev,) + tuple(v[:, o + j] for j in range(arr.ndim - 1))]
            prev = v[:, self.width_pos[s]]
        return total + self.head_ms[prev] + self.offset_ms
