"""The anchor: a fixed network timed among a table's calibration networks and among a
validation's, and the validation's error both absolute and relative to it. A runner whose
machine changes speed between batches stands in for the VM (no timing: nothing here depends on
this machine's speed)."""

import numpy as np
import pytest

from latency_tables import LatencyTable
from latency_tables.anchor import ANCHOR_NAME, anchor_onnx, at_level, level_of
from latency_tables.build import build_table
from latency_tables.measure import OnnxRuntimeRunner
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


def test_the_end_to_end_term_records_the_anchor_timed_among_its_networks(tmp_path):
    table = build_table(SPACE, "local_cpu", tmp_path / "t.csv", DriftingRunner([1.0, 1.5]), calibrate=8,
                        chunk=100, progress=False)
    term = table.term_at(32)
    assert term["anchor_network"] == ANCHOR_NAME
    # the first batch of ops ran at speed 1, the rest and the calibration networks with the anchor at 1.5
    assert level_of(term) == pytest.approx(1.5 * nodes_ms(anchor_onnx()))
    assert level_of(LatencyTable.load(tmp_path / "t.csv").term_at(32)) == level_of(term)


def test_validation_reports_absolute_and_anchor_relative_error(tmp_path):
    """Calibrated at speed 1, validated while the machine runs 25% slower: the absolute error is
    the slowdown, the error at the table's level (the anchor timed among the validation's
    networks divided out) is that of the table alone."""
    table = build_table(SPACE, "local_cpu", tmp_path / "t.csv", DriftingRunner([1.0]), calibrate=8, chunk=100,
                        progress=False)
    steady, _ = validate_table(table, SPACE, DriftingRunner([1.0]), samples=6)
    stats, df = validate_table(table, SPACE, DriftingRunner([1.25]), samples=6)
    assert stats["mean_rel_err_pct"] == pytest.approx(100 * (1 + steady["mean_rel_err_pct"] / 100) / 1.25 - 100)
    assert stats["anchor_ms"] == pytest.approx(1.25 * stats["anchor_level_ms"])
    assert np.allclose(df["measured_at_table_level_ms"], df["measured_ms"] / 1.25)
    assert stats["anchor_rmspe_pct"] == pytest.approx(steady["rmspe_pct"])
    assert stats["anchor_within_10pct"] == steady["within_10pct"] > stats["within_10pct"]


def test_a_term_fitted_before_the_anchor_is_validated_absolute_only(tmp_path):
    table = build_table(SPACE, "local_cpu", tmp_path / "t.csv", DriftingRunner([1.0]), calibrate=8, chunk=100,
                        progress=False)
    term = {k: v for k, v in table.term_at(32).items() if not k.startswith("anchor")}
    table.set_term(32, term)
    stats, df = validate_table(table, SPACE, DriftingRunner([1.0]), samples=4)
    assert level_of(term) is None and "anchor_ms" not in stats and "anchor_rel_err" not in df


def test_at_level_divides_out_the_speed_of_the_moment():
    assert at_level([2.0, 4.0], anchor_ms=0.5, level_ms=0.4) == pytest.approx([1.6, 3.2])
