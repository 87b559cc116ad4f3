"""Ops a measured table lacks, predicted from their nearest measured op: what NetAdapt's savings need.

NetAdapt compares a network with the same network minus 8 channels somewhere; the ops that
change differ from their parents by a few percent, less than the noise of one op's
measurement (5-30% on a shared machine). Timing each cut op anew and subtracting two
independently measured entries then gives mostly noise: cutting 8 of 960 mid channels
"saved" 0.27 ms (measured: about 0). Totals do not suffer (independent errors average out
over a network); differences do.

`Anchored` predicts an op the table lacks from the measured op of its *family* (same layer
type, kernel, stride, activation, SE gate, residual, expansion and input size: everything
but the channel counts) with the nearest channel counts, scaled by the per-op linear model
of `latency_tables.model` fitted on the table's own measurements:
`ms(anchor) x model(op) / model(anchor)`. A cut's saving then follows its change in work and
memory traffic, anchored on a measured level. Both the model and the nearest anchor see
channel counts as this machine's onnxruntime computes them, rounded up to its channel block
(`channel_block`): on an AVX-512 CPU a cut from 128 to 120 channels saves almost nothing and
one from 120 to 112 a whole block, which a model linear in channels misses by as much as the
saving itself. Measured ops keep their values, so the table's totals are unchanged; an op
whose family was never measured goes to the table's own missing-op policy. Measured in
`experiments/latency_savings_fidelity.py`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from latency_tables.model import FEATURES, OpModel, feature_matrix, fit_coefficients, modelled_stats, round_up
from latency_tables.ops import Op, parse_key
from latency_tables.table import LatencyTable, cpuinfo, op_row
from search_spaces.anatomy import has_expand
from search_spaces.ir import Block, Stem


def family(op: Op) -> tuple:
    """Everything about an op except its channel counts."""
    L = op.layer
    if isinstance(op.layer, Block):
        return ("block", L.op, L.kernel, L.stride, L.act, L.se.gate if L.se else None, L.residual, has_expand(L), op.hw)
    if isinstance(op.layer, Stem):
        return ("stem", L.kernel, L.stride, L.act, op.hw, op.cin)
    return ("head", L.type, L.act, L.hidden is not None, op.hw, op.num_classes)


def channels(op: Op, block: int = 1) -> np.ndarray:
    """The op's channel counts, rounded up to `block`."""
    L = op.layer
    if isinstance(L, Block):
        c = [L.in_, L.out, L.mid, L.se.squeeze if L.se else 1]
    elif isinstance(L, Stem):
        c = [L.out]
    else:
        c = [op.cin, L.conv, L.hidden or 1]
    return np.array([round_up(x, block) for x in c], dtype=float)


@functools.lru_cache(maxsize=1)
def channel_block() -> int:
    """Channels this machine's onnxruntime convolutions compute together: the NCHWc block of its
    MLAS kernels, 16 on a CPU with AVX-512F, 8 with AVX2, else 1 (no blocked layout). Block 16
    took the Kendall tau of predicted vs measured savings from 0.66 to 0.74 on an AMD EPYC and
    from 0.60 to 0.68 on an Intel Xeon (`experiments/latency_savings_fidelity.py`); 32 made it worse."""
    flags = set((cpuinfo("flags") or "").split())
    return 16 if "avx512f" in flags else 8 if "avx2" in flags else 1


@dataclass
class Anchored:
    """Missing-op policy: an op is predicted from the measured op of its family with the
    nearest channel counts, scaled by the model: ms(anchor) x model(op) / model(anchor), all
    with channel counts rounded up to `block`."""

    model: OpModel
    anchors: dict[tuple, tuple[np.ndarray, list[Op], np.ndarray]]   # family -> log channels, ops, ms
    fallback: object
    block: int = 1

    @classmethod
    def fit(cls, table: LatencyTable, block: int = 1) -> "Anchored":
        df = table.df[table.df["source"] == "measured"]
        ops, ms = [parse_key(k) for k in df["key"]], df[table.statistic].to_numpy(float)
        X = feature_matrix(ops, block)
        model = OpModel(dict(zip(FEATURES, fit_coefficients(X, ms, list(range(len(FEATURES)))))))
        groups: dict[tuple, list[int]] = {}
        for i, op in enumerate(ops):
            groups.setdefault(family(op), []).append(i)
        anchors = {f: (np.log([channels(ops[i], block) for i in idx]), [ops[i] for i in idx], ms[idx])
                   for f, idx in groups.items()}
        return cls(model, anchors, table.missing, block)

    def __call__(self, table: LatencyTable, ops: list[Op]) -> None:
        rows, unknown = [], []
        for op in ops:
            if family(op) not in self.anchors:
                unknown.append(op)
                continue
            logc, members, ms = self.anchors[family(op)]
            i = int(np.abs(logc - np.log(channels(op, self.block))).sum(1).argmin())
            ratio = self.model.predict([op, members[i]], self.block)
            rows.append(op_row(op, modelled_stats(float(ms[i] * ratio[0] / ratio[1])), "model"))
        table.add_rows(rows)
        if unknown:
            table.missing = self.fallback
            try:
                table.add_missing(unknown)
            finally:
                table.missing = self


def anchored(table: LatencyTable, block: int | None = None) -> LatencyTable:
    """A copy of `table` that predicts the ops it lacks with `Anchored` at channel block `block`
    (default: this machine's, `channel_block`: the table is one of this machine); the table
    itself when it has no measured op to anchor on."""
    if not (table.df["source"] == "measured").any():
        return table
    copy = LatencyTable(table.df.copy(), dict(table.metadata), missing=None)
    copy.missing = Anchored.fit(table, channel_block() if block is None else block)
    return copy
