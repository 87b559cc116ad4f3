"""The anchor: reference networks timed at a table's calibration and again among a
validation's networks, and the validation's error both absolute and relative to them. A runner whose
machine changes speed between batches stands in for the VM (no timing: nothing here depends on
this machine's speed)."""

import numpy as np
import pytest

from latency_tables import LatencyTable
from latency_tables.anchor import REFERENCE_NETWORKS, at_level, reference_of, speed
from latency_tables.build import build_table
from latency_tables.measure import OnnxRuntimeRunner
from latency_tables.validate import validate_table
from search_spaces.ir import Arch
from search_spaces.onnx_export import export_onnx
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


def test_the_end_to_end_term_keeps_its_first_calibration_networks_as_the_reference(tmp_path):
    table = build_table(SPACE, "local_cpu", tmp_path / "t.csv", DriftingRunner([1.0, 1.5]), calibrate=10,
                        chunk=100, progress=False)
    archs, ms = reference_of(table.term_at(32))
    assert len(archs) == len(ms) == REFERENCE_NETWORKS
    # the first batch of ops ran at speed 1, the calibration networks at 1.5: their times are the level
    models = [export_onnx(Arch.from_string(a)) for a in archs]
    assert ms == pytest.approx([1.5 * nodes_ms(m) for m in models])
    assert reference_of(LatencyTable.load(tmp_path / "t.csv").term_at(32)) == (archs, ms)


def test_validation_reports_absolute_and_reference_relative_error(tmp_path):
    """Calibrated at speed 1, validated while the machine runs 25% slower: the absolute error is
    the slowdown, the error with the reference networks' speed divided out is the table's alone."""
    table = build_table(SPACE, "local_cpu", tmp_path / "t.csv", DriftingRunner([1.0]), calibrate=8, chunk=100,
                        progress=False)
    steady, _ = validate_table(table, SPACE, DriftingRunner([1.0]), samples=6)
    stats, df = validate_table(table, SPACE, DriftingRunner([1.25]), samples=6)
    assert stats["mean_rel_err_pct"] == pytest.approx(100 * (1 + steady["mean_rel_err_pct"] / 100) / 1.25 - 100)
    assert stats["anchor_speed"] == pytest.approx(1.25) and stats["anchor_networks"] == REFERENCE_NETWORKS
    assert np.allclose(df["measured_at_table_level_ms"], df["measured_ms"] / 1.25)
    assert stats["anchor_rmspe_pct"] == pytest.approx(steady["rmspe_pct"])
    assert stats["anchor_within_10pct"] == steady["within_10pct"] > stats["within_10pct"]


def test_a_term_fitted_before_the_reference_is_validated_absolute_only(tmp_path):
    table = build_table(SPACE, "local_cpu", tmp_path / "t.csv", DriftingRunner([1.0]), calibrate=8, chunk=100,
                        progress=False)
    term = {k: v for k, v in table.term_at(32).items() if not k.startswith("anchor")}
    table.set_term(32, term)
    stats, df = validate_table(table, SPACE, DriftingRunner([1.0]), samples=4)
    assert reference_of(term) is None and "anchor_speed" not in stats and "anchor_rel_err" not in df


def test_the_speed_is_the_median_ratio_and_divides_out():
    # one reference network disturbed (3x) does not move the median of five
    assert speed([1.1, 2.2, 3.3, 13.2, 5.5], [1.0, 2.0, 3.0, 4.0, 5.0]) == pytest.approx(1.1)
    assert at_level([2.2, 4.4], 1.1) == pytest.approx([2.0, 4.0])


class BatchRecorder(DriftingRunner):
    def __init__(self):
        super().__init__([1.0])
        self.sizes = []

    def measure(self, models):
        self.sizes.append(len(models))
        return super().measure(models)


def test_a_fresh_tables_validation_times_its_missing_ops_in_build_sized_batches():
    """The term is fitted on ops timed 40 at a time (calibration); the validation's own missing ops
    are timed the same way before any prediction, not a few per queried network."""
    from latency_tables.build import OP_CHUNK
    from latency_tables.missing import Measure
    from latency_tables.table import new_metadata

    space, runner = get_space("mnv3"), BatchRecorder()
    table = LatencyTable(None, new_metadata("local_cpu", "mnv3", 32, 1), missing=Measure(networks=8, runner=runner))
    validate_table(table, space, DriftingRunner([1.0]), samples=12)
    networks = runner.sizes.index(8)  # the calibration's networks, timed whole
    calibration, validation = runner.sizes[:networks], runner.sizes[networks + 1:]
    for batches in (calibration, validation):
        assert len(batches) >= 2 and all(n == OP_CHUNK for n in batches[:-1]) and 0 < batches[-1] <= OP_CHUNK
