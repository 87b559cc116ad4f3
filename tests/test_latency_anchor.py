"""The anchor: op times stored relative to a fixed network timed with every batch, and a
validation's error both absolute and relative to it. A runner whose machine changes speed
between batches stands in for the VM (no timing, so nothing here depends on this machine)."""
import random

import numpy as np
import pytest

from latency_tables import LatencyTable
from latency_tables.anchor import ANCHOR_NAME, Anchored, anchor_onnx, new_anchor
from latency_tables.build import build_table
from latency_tables.measure import OnnxRuntimeRunner
from latency_tables.targets import local_cpu, local_cpu_path
from latency_tables.table import new_metadata
from latency_tables.validate import validate_table
from search_spaces.space import get_space

SPACE = get_space("nasbench_macro")


class DriftingRunner(OnnxRuntimeRunner):
    """A model takes 0.01 ms per graph node times the machine's speed of the moment, which moves
    to the next of `speeds` with every batch timed."""

    def __init__(self, speeds, *args, **kwargs):
        super().__init__(1, *args, **kwargs)
        self.speeds, self.batches = list(speeds), 0

    def measure(self, models):
        speed = self.speeds[min(self.batches, len(self.speeds) - 1)]
        self.batches += 1
        return [[0.01 * len(m.graph.node) * speed] * 3 for m in models]


def nodes_ms(model) -> float:
    return 0.01 * len(model.graph.node)


def test_each_batch_is_brought_to_the_level_of_the_first_anchor_timing():
    meta = {"anchor": new_anchor()}
    runner = Anchored(DriftingRunner([1.0, 1.3, 0.8]), meta)
    models = [_op_model(k) for k in (3, 5)]
    first, second, third = (runner.measure(models) for _ in range(3))
    assert meta["anchor"]["level_ms"] == pytest.approx(nodes_ms(anchor_onnx()))
    assert meta["anchor"]["latest_ms"] == pytest.approx(0.8 * nodes_ms(anchor_onnx()))
    for batch in (second, third):   # 30% slower, then 20% faster: the same times at the table's level
        assert np.allclose(batch, first)
    assert first[0][0] == pytest.approx(nodes_ms(models[0]))


def _op_model(kernel):
    from latency_tables.ops import Op, op_onnx
    from search_spaces.ir import Block
    return op_onnx(Op(Block("ir", 16, 16, 32, kernel, 1, "relu"), 8, 16))


def test_validation_reports_absolute_and_anchor_relative_error(tmp_path):
    """Built at speed 1, validated while the machine runs 25% slower: the absolute error is the
    slowdown, the error relative to the anchor timed among the validation's networks is none."""
    build = DriftingRunner([1.0])
    table = build_table(SPACE, "local_cpu", tmp_path / "t.csv", build, calibrate=8, chunk=10, progress=False)
    assert table.metadata["anchor"]["network"] == ANCHOR_NAME
    stats, df = validate_table(table, SPACE, DriftingRunner([1.25]), samples=6)
    assert stats["mean_rel_err_pct"] == pytest.approx(100 * (1 / 1.25 - 1), abs=2)
    assert stats["within_10pct"] == 0
    assert stats["anchor_ms"] == pytest.approx(1.25 * stats["anchor_level_ms"])
    assert df["anchor_rel_err"].abs().max() < abs(df["rel_err"]).min()
    assert np.allclose(df["measured_at_table_level_ms"], df["measured_ms"] / 1.25)


def test_a_table_built_while_the_machine_drifts_predicts_at_one_level(tmp_path):
    """Op chunks timed at different speeds end up at the first chunk's level: the same table as
    one built at a steady speed."""
    steady = build_table(SPACE, "local_cpu", tmp_path / "a.csv", DriftingRunner([1.0]), calibrate=0, chunk=5,
                         progress=False)
    speeds = [1.0] + [random.Random(0).uniform(0.8, 1.2) for _ in range(40)]
    drifting = build_table(SPACE, "local_cpu", tmp_path / "b.csv", DriftingRunner(speeds), calibrate=0, chunk=5,
                           progress=False)
    keys = steady.df["key"]
    assert np.allclose([drifting.query_op(k) for k in keys], [steady.query_op(k) for k in keys])


def test_merging_a_table_started_at_another_level_rescales_its_rows(tmp_path):
    a = build_table(SPACE, "local_cpu", tmp_path / "a.csv", DriftingRunner([1.0]), calibrate=0, chunk=50,
                    progress=False)
    b_path = tmp_path / "b.csv"  # another process's, started on a machine running at half the speed
    b = build_table(SPACE, "local_cpu", b_path, DriftingRunner([2.0]), calibrate=0, chunk=50, progress=False)
    key = b.df["key"].iloc[0]
    assert b.query_op(key) == pytest.approx(2 * a.query_op(key))  # b's level is twice a's
    fresh = LatencyTable(None, new_metadata("local_cpu", "nasbench_macro", 32, 1, anchor=dict(a.metadata["anchor"])))
    fresh.merge_from(b_path)
    assert fresh.query_op(key) == pytest.approx(a.query_op(key))


def test_a_cached_local_table_from_before_the_anchor_is_started_afresh(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = local_cpu_path()
    path.parent.mkdir(parents=True)
    old = new_metadata("local_cpu", "mnv3", 224, 1, runner="onnxruntime", precision="fp32")
    LatencyTable(None, old).save(path)
    assert "anchor" not in LatencyTable.load(path).metadata
    assert local_cpu().metadata["anchor"] == new_anchor()
    assert LatencyTable.load(path).metadata["anchor"] == new_anchor()
