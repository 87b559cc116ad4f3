"""Vectorized prediction over decision vectors of a search space.

In a factorized space every stage's latency depends only on its own decisions and the
width of the stage before it. `SpacePredictor` tabulates each stage once (for every
input width and every stage choice), so predicting N architectures is a few numpy
gathers and sums: millions per second instead of thousands.
"""
from __future__ import annotations

import itertools

import numpy as np

from latency_tables.ops import Op, stage_inputs
from search_spaces.anatomy import conv_out
from search_spaces.space import STAGE_DECISIONS


class SpacePredictor:
    """Per-stage latency arrays of one table for one space (at the table's resolution)."""

    _cache: dict = {}

    def __init__(self, table, space):
        r = table.metadata.get("resolution") or space.resolution
        self.space, self.table = space, table
        sizes = stage_inputs(space, r)
        n_stages = len(space.stages)
        # the vector columns of each stage's decisions, in the order its latency array is indexed
        self.columns = [[space.position(s, name) for name in STAGE_DECISIONS] for s in range(n_stages)]
        self.stage_ms, cins = [], [space.stem.out]
        need = {}  # collect every op first so missing ones are measured/modelled in one batch
        plan = []
        for s in range(n_stages):
            options = space.stage_options(s)
            shape = (len(cins),) + tuple(len(c) for c in options.values())
            entries = []
            for cin in cins:
                for idx in itertools.product(*(range(len(c)) for c in options.values())):
                    hw, stage_ops = sizes[s], []
                    for b in space.stage_blocks(s, cin, space.stage_choice(s, idx)):
                        op = Op(b, hw, b.in_)
                        need[op.key] = op
                        stage_ops.append(op)
                        hw = conv_out(hw, b.kernel, b.stride)
                    entries.append(stage_ops)
            plan.append((shape, entries))
            cins = list(options["width"])
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
            total += arr[(prev,) + tuple(v[:, c] for c in self.columns[s])]
            prev = v[:, self.space.position(s, "width")]
        return total + self.head_ms[prev] + self.offset_ms
