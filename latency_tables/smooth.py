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
memory traffic, anchored on a measured level. Measured ops keep their values, so the
table's totals are unchanged; an op whose family was never measured goes to the table's own
missing-op policy. Measured in `experiments/latency_savings_fidelity.py`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from latency_tables.model import FEATURES, OpModel, feature_matrix, fit_coefficients, modelled_stats
from latency_tables.ops import Op, parse_key
from latency_tables.table import LatencyTable, op_row
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


def channels(op: Op) -> np.ndarray:
    L = op.layer
    if isinstance(L, Block):
        return np.array([L.in_, L.out, L.mid, L.se.squeeze if L.se else 1], dtype=float)
    if isinstance(L, Stem):
        return np.array([L.out], dtype=float)
    return np.array([op.cin, L.conv, L.hidden or 1], dtype=float)


@dataclass
class Anchored:
    """Missing-op policy: an op is predicted from the measured op of its family with the
    nearest channel counts, scaled by the model: ms(anchor) x model(op) / model(anchor)."""

    model: OpModel
    anchors: dict[tuple, tuple[np.ndarray, list[Op], np.ndarray]]   # family -> log channels, ops, ms
    fallback: object

    @classmethod
    def fit(cls, table: LatencyTable) -> "Anchored":
        df = table.df[table.df["source"] == "measured"]
        ops, ms = [parse_key(k) for k in df["key"]], df[table.statistic].to_numpy(float)
        model = OpModel(dict(zip(FEATURES, fit_coefficients(feature_matrix(ops), ms, list(range(len(FEATURES)))))))
        groups: dict[tuple, list[int]] = {}
        for i, op in enumerate(ops):
            groups.setdefault(family(op), []).append(i)
        anchors = {f: (np.log([channels(ops[i]) for i in idx]), [ops[i] for i in idx], ms[idx]) for f, idx in groups.items()}
        return cls(model, anchors, table.missing)

    def __call__(self, table: LatencyTable, ops: list[Op]) -> None:
        rows, unknown = [], []
        for op in ops:
            if family(op) not in self.anchors:
                unknown.append(op)
                continue
            logc, members, ms = self.anchors[family(op)]
            i = int(np.abs(logc - np.log(channels(op))).sum(1).argmin())
            ratio = self.model.predict([op, members[i]])
            rows.append(op_row(op, modelled_stats(float(ms[i] * ratio[0] / ratio[1])), "model"))
        table.add_rows(rows)
        if unknown:
            table.missing = self.fallback
            try:
                table.add_missing(unknown)
            finally:
                table.missing = self


def anchored(table: LatencyTable) -> LatencyTable:
    """A copy of `table` that predicts the ops it lacks with `Anchored`; the table itself when
    it has no measured op to anchor on."""
    if not (table.df["source"] == "measured").any():
        return table
    copy = LatencyTable(table.df.copy(), dict(table.metadata), missing=None)
    copy.missing = Anchored.fit(table)
    return copy
