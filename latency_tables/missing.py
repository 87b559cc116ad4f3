"""What a table does with an op it lacks: measure it here, predict it with a model, or refuse
(no policy). Whoever opens a table knows where it came from and hands one in (`targets`).

A table that measures its missing ops also fits its own end-to-end term before its first
network-level answer (`Measure.calibrate`): summed standalone ops are several percent off a
whole network, so an uncalibrated table would mislead every search and validation silently.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field

from latency_tables.build import CALIBRATION_NETWORKS, calibrate_table, check_term, measure_ops, op_chunks
from latency_tables.measure import OnnxRuntimeRunner
from latency_tables.model import OpModel
from latency_tables.ops import Op
from latency_tables.table import LatencyTable, op_row
from search_spaces.errors import UserError
from search_spaces.space import get_space


@dataclass
class Measure:
    """Time missing ops with onnxruntime on this machine; with `autosave`, write them back to
    the table's file (merging what another process cached meanwhile)."""

    threads: int = 1
    autosave: bool = False
    precision: str = "fp32"
    networks: int = CALIBRATION_NETWORKS   # timed whole to fit the end-to-end term on first use
    runner: OnnxRuntimeRunner | None = field(default=None, repr=False)

    def __call__(self, table: LatencyTable, ops: list[Op]) -> None:
        for batch in op_chunks(ops):
            table.add_rows(measure_ops(batch, self._runner()))
        resolutions = [table.metadata.get("resolution")] + [int(r) for r in table.metadata.get("network_terms") or {}]
        for r in resolutions:
            term = table.stored_term(r)
            try:
                if term is not None:
                    check_term(table, term, "new ops", r)
            except UserError:
                # the term was fitted before these ops existed and gives one of them a latency of
                # zero or less inside a network (a negative per-input term, a small op with a large
                # input): saved as is, the table could not be loaded again
                self.calibrate(table, refit=True, resolution=r)
        self._save(table)

    def calibrate(self, table: LatencyTable, refit: bool = False, resolution: int | None = None,
                  space=None) -> None:
        """Fit the end-to-end term of a table for networks at `resolution` (default the table's)
        when it has none there (once: it is saved with the table), or again (`refit`) when ops added
        since make the old one invalid, on random networks of `space` (default the table's);
        UserError naming the build command without one."""
        r = resolution or table.metadata.get("resolution")
        if self.autosave and table.path is not None and not refit:
            table.merge_from(table.path)  # another process may have calibrated it meanwhile
            if table.stored_term(r) is not None:
                return
        where = table.path or f"of device {table.metadata.get('device')!r}"
        device = table.metadata.get("device")
        if space is None:
            try:
                space = get_space(table.metadata.get("space"))
            except UserError:
                raise UserError(f"latency table {where} has no calibrated end-to-end term and no known search "
                                f"space ({table.metadata.get('space')!r}) to calibrate it on: run "
                                f"`nas latency build --device {device} --space SPACE`") from None
        why = "does not fit the ops measured since" if refit else "not calibrated"
        print(f"latency table {where}: end-to-end term at {r} px {why}; timing {self.networks} random {space.name} "
              f"networks once to fit it (`nas latency build --device {device} --space {space.name}` does it "
              f"ahead of time)", file=sys.stderr, flush=True)
        calibrate_table(table, space, self._runner(), self.networks, resolution=r)
        self._save(table)

    def _runner(self) -> OnnxRuntimeRunner:
        if self.runner is None:
            self.runner = OnnxRuntimeRunner(self.threads, precision=self.precision)
        return self.runner

    def _save(self, table: LatencyTable) -> None:
        if self.autosave and table.path is not None:
            table.merge_from(table.path)
            table.save(table.path)


@dataclass
class Predict:
    """Fill missing ops from a per-op latency model (rows marked `model`)."""

    model: OpModel

    def __call__(self, table: LatencyTable, ops: list[Op]) -> None:
        table.add_rows([op_row(op, self.model.stats(op), "model") for op in ops])


def for_table(table: LatencyTable) -> Measure | Predict | None:
    """The policy a table's own metadata allows: measure when it was measured on this machine,
    predict when it carries an op model, else none (a missing op is an error)."""
    if table.is_local:  # what it measures (ops, its end-to-end term) is written back to its file
        return Measure(int(table.metadata.get("threads", 1)), autosave=True, precision=table.precision)
    if table.metadata.get("op_model"):
        return Predict(OpModel.from_dict(table.metadata["op_model"]))
    return None
