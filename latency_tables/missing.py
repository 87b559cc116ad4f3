"""What a table does with an op it lacks: measure it here, predict it with a model, or refuse
(no policy). Whoever opens a table knows where it came from and hands one in (`targets`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from latency_tables.build import measure_ops
from latency_tables.measure import OnnxRuntimeRunner
from latency_tables.model import OpModel
from latency_tables.ops import Op
from latency_tables.table import LatencyTable, op_row


@dataclass
class Measure:
    """Time missing ops with onnxruntime on this machine; with `autosave`, write them back to
    the table's file (merging what another process cached meanwhile)."""

    threads: int = 1
    autosave: bool = False
    precision: str = "fp32"
    runner: OnnxRuntimeRunner | None = field(default=None, repr=False)

    def __call__(self, table: LatencyTable, ops: list[Op]) -> None:
        if self.runner is None:
            self.runner = OnnxRuntimeRunner(self.threads, precision=self.precision)
        table.add_rows(measure_ops(ops, self.runner))
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
    if table.is_local:
        return Measure(int(table.metadata.get("threads", 1)), precision=table.precision)
    if table.metadata.get("op_model"):
        return Predict(OpModel.from_dict(table.metadata["op_model"]))
    return None
