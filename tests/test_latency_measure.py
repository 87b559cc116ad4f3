"""Latency tables with real timing: onnxruntime and command runners, resumable builds, local_cpu.

Everything runs at 32-64 pixels on the ops of two or three architectures (never the full table).
"""
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from latency_tables import LatencyTable, arch_ops, load_target
from latency_tables.build import build_table, measure_ops
from latency_tables.measure import Budget, CommandRunner, OnnxRuntimeRunner
from latency_tables.missing import Measure
from latency_tables.ops import Op, op_onnx
from latency_tables.table import new_metadata
from search_spaces.errors import UserError
from search_spaces.ir import Block
from search_spaces.space import get_space

FAST = Budget(warmup=1, min_rounds=3, max_rounds=6, max_seconds=0.02)
SPACE = get_space("mnv3")


def archs(n=2, resolution=32, seed=3):
    rng = random.Random(seed)
    return [SPACE.decode(SPACE.sample(rng)).replace(resolution=resolution) for _ in range(n)]


def ops_of(arch_list):
    return list(dict.fromkeys(op for a in arch_list for _, op in arch_ops(a)))


def test_measure_real_ops_with_onnxruntime():
    small = Op(Block("ir", 16, 16, 16, 3, 1, "relu"), 8, 16)
    large = Op(Block("ir", 32, 32, 192, 7, 1, "hswish"), 64, 32)
    before = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    rows = measure_ops([small, large], OnnxRuntimeRunner(1, FAST))
    if before is not None:  # pinned to one CPU while timing only
        assert os.sched_getaffinity(0) == before
    for r in rows:
        assert r["source"] == "measured" and r["count"] >= FAST.min_rounds
        assert 0 < r["p10_ms"] <= r["median_ms"] <= r["p90_ms"]
    assert rows[1]["median_ms"] > rows[0]["median_ms"]  # ~100x the work


def test_the_runner_creates_a_spare_session_after_the_timed_ones():
    """The session created last ran faster than its twins; a spare one takes that place, untimed."""
    made = []

    class Counted:
        def __init__(self, sess):
            self.sess, self.runs = sess, 0

        def get_inputs(self):
            return self.sess.get_inputs()

        def run(self, *args):
            self.runs += 1
            return self.sess.run(*args)

    class Spy(OnnxRuntimeRunner):
        def session(self, model):
            made.append(Counted(super().session(model)))
            return made[-1]

    ops = [Op(Block("ir", 16, 16, 16, 3, 1, "relu"), 8, 16), Op(Block("ir", 16, 16, 32, 5, 1, "relu"), 8, 16)]
    samples = Spy(1, FAST).measure([op_onnx(op) for op in ops])
    assert len(samples) == 2 and len(made) == 3
    assert [m.runs for m in made] == [FAST.warmup + len(x) for x in samples] + [FAST.warmup]


class CountingRunner(OnnxRuntimeRunner):
    """Counts the models it times, to check that a resumed build skips finished ops."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.timed = 0

    def measure(self, models):
        self.timed += len(models)
        return super().measure(models)


BUILD_SCRIPT = textwrap.dedent("""
    import random, sys
    from latency_tables.build import build_table
    from latency_tables.measure import Budget, OnnxRuntimeRunner
    from latency_tables.ops import arch_ops
    from search_spaces.space import get_space
    space = get_space("mnv3")
    rng = random.Random(3)
    archs = [space.decode(space.sample(rng)).replace(resolution=32) for _ in range(2)]
    ops = list(dict.fromkeys(op for a in archs for _, op in arch_ops(a)))
    runner = OnnxRuntimeRunner(1, Budget(warmup=1, min_rounds=40, max_rounds=40, max_seconds=9))
    build_table(space, "local_cpu", sys.argv[1], runner, resolution=32, ops=ops, chunk=3, calibrate=0,
                progress=False)
""")


def test_killed_build_resumes_without_remeasuring(tmp_path):
    out = tmp_path / "table.csv"
    script = tmp_path / "build.py"
    script.write_text(BUILD_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(out)])
    deadline = time.time() + 120
    try:
        while time.time() < deadline:  # kill as soon as a few chunks are on disk
            if out.exists() and len(LatencyTable.load(out)) >= 6:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    before = LatencyTable.load(out)
    ops = ops_of(archs())
    assert 6 <= len(before) < len(ops), "the build was not killed mid-way"
    runner = CountingRunner(1, FAST)
    after = build_table(SPACE, "local_cpu", out, runner, resolution=32, ops=ops, chunk=3, calibrate=0,
                        progress=False)
    assert runner.timed == len(ops) - len(before)
    assert len(after) == len(ops)
    old = before.df.set_index("key")["median_ms"]
    assert after.df.set_index("key").loc[old.index, "median_ms"].tolist() == pytest.approx(old.tolist())
    # different arguments on the same file are refused, not mixed
    with pytest.raises(UserError, match="other arguments"):
        build_table(SPACE, "other_device", out, runner, resolution=32, ops=ops, calibrate=0, progress=False)


def test_command_runner_with_a_local_command(tmp_path):
    script = tmp_path / "time_onnx.py"
    script.write_text(textwrap.dedent("""
        import sys, time
        import numpy as np, onnxruntime as ort
        sess = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        x = {inp.name: np.zeros(inp.shape, np.float32)}
        sess.run(None, x)
        t = []
        for _ in range(5):
            t0 = time.perf_counter(); sess.run(None, x); t.append(time.perf_counter() - t0)
        print(f"runs 5, median latency: {np.median(t) * 1e3:.4f} ms")
    """))
    runner = CommandRunner(f"{sys.executable} {script} {{model}}", repeats=2)
    ops = ops_of(archs(1))[:4]
    table = build_table(SPACE, "board", tmp_path / "board.csv", runner, resolution=32, ops=ops, calibrate=0,
                        progress=False)
    assert len(table) == 4 and set(table.df["source"]) == {"measured"} and (table.df["count"] == 2).all()
    assert (table.df["median_ms"] > 0).all()
    assert table.metadata["runtime"] == "command" and not table.is_local
    with pytest.raises(UserError, match="must contain"):
        CommandRunner("echo 1")
    with pytest.raises(UserError, match="latency command failed"):
        CommandRunner(f"{sys.executable} -c 'import sys; sys.exit(3)' {{model}}").measure([op_onnx(ops[0])])


def test_local_table_measures_missing_ops_on_the_spot(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    table = load_target("local_cpu")
    assert table.is_local and len(table) == 0
    assert table.path.is_relative_to(tmp_path)
    table.missing.runner, table.missing.networks = OnnxRuntimeRunner(1, FAST), 2  # tiny calibration
    arch = archs(1, resolution=224)[0]  # the cache's resolution, at which its end-to-end term is fitted
    ms = table.query_total(arch)
    assert ms > 0 and {op.key for _, op in arch_ops(arch)} <= set(table.df["key"])
    assert set(table.df["source"]) == {"measured"}
    # cached on disk, with the end-to-end term fitted on first use: a second load measures nothing
    again = load_target("local_cpu")
    assert len(again) == len(table) and again.network_term == table.network_term
    assert again.network_term["calibrated"] and again.network_term["networks"] == 2
    again.missing.runner = CountingRunner(1, FAST)
    assert again.query_total(arch) == pytest.approx(ms, rel=1e-5)  # the file keeps 6 significant digits per op
    assert again.missing.runner.timed == 0


def lazy_table(path, space="mnv3", networks=8, runner=None):
    """An empty local table at 32x32 that fills itself (ops and end-to-end term) into `path`."""
    table = LatencyTable(None, new_metadata("local_cpu", space, 32, 1),
                         missing=Measure(autosave=True, networks=networks, runner=runner or OnnxRuntimeRunner(1, FAST)))
    table.save(path)
    return table


def test_a_lazily_filled_table_ends_calibrated(tmp_path, capsys):
    path = tmp_path / "t.csv"
    table = lazy_table(path, runner=NodeCountRunner(1, per_model_ms=0.05))
    assert not table.network_term["calibrated"]
    arch = archs(1)[0]
    ms = table.query_total(arch)
    err = capsys.readouterr().err
    assert "end-to-end term at 32 px not calibrated; timing 8 random mnv3 networks once" in err
    assert "nas latency build --device local_cpu --space mnv3" in err
    term = table.network_term
    assert term["calibrated"] and term["networks"] == 8 and np.isfinite(term["fit_rmspe_pct"])
    ops = [op for _, op in arch_ops(arch)]
    assert ms == pytest.approx(sum(table.in_network(op) for op in ops) + term["offset_ms"])
    # the same fit as a build's: scale, per-input and offset from least squares on 8 networks
    assert (term["scale"], term["per_input_melem_ms"], term["per_mmac_ms"]) != (1.0, 0.0, 0.0)
    saved = LatencyTable.load(path)
    assert saved.network_term == term and len(saved) == len(table)
    # another process holding the old, uncalibrated table takes the saved term instead of refitting
    stale = LatencyTable(table.df.copy(), new_metadata("local_cpu", "mnv3", 32, 1), path=path,
                         missing=Measure(autosave=True, networks=8, runner=CountingRunner(1, FAST)))
    assert stale.query_total(arch) == pytest.approx(ms)
    assert stale.missing.runner.timed == 0 and stale.network_term == term


def test_a_table_that_cannot_calibrate_itself_says_which_command_to_run(tmp_path, capsys):
    from latency_tables.table import op_row
    from nas.cli import main

    arch = archs(1)[0]
    path = tmp_path / "t.csv"
    table = lazy_table(path, space="no_such_space")
    table.add_rows([op_row(op, {"mean_ms": 1.0, "median_ms": 1.0, "p10_ms": 1.0, "p90_ms": 1.0, "std_ms": 0.0,
                                "count": 1}, "measured") for op in ops_of([arch])])
    table.save(path)
    with pytest.raises(UserError, match=r"no calibrated end-to-end term .* run `nas latency build --device local_cpu"):
        table.query_total(arch)
    assert main(["latency", "predict", "--target", str(path), arch.to_string()]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nas latency build --device local_cpu --space SPACE" in err


def test_validate_reports_errors_and_writes_files(tmp_path):
    from latency_tables.validate import validate_table

    table = LatencyTable(None, new_metadata("local_cpu", "mnv3", 32, 1),
                         missing=Measure(networks=8, runner=OnnxRuntimeRunner(1, FAST)))
    stats, df = validate_table(table, SPACE, OnnxRuntimeRunner(1, FAST), samples=3, seed=1, out=tmp_path)
    assert stats["n"] == 3 and 0 <= stats["within_10pct"] <= 1 and stats["rmse_ms"] >= 0
    assert (df["measured_ms"] > 0).all() and (df["predicted_ms"] > 0).all()
    assert (tmp_path / "latency_validation.csv").exists() and (tmp_path / "latency_validation.png").exists()
    assert table.network_term["calibrated"]  # calibrated before its first prediction


class NodeCountRunner(OnnxRuntimeRunner):
    """Times nothing: a model takes 0.01 ms per graph node plus `per_model_ms`, so a fit on its
    numbers does not depend on how fast this machine is (real networks at 32 px can leave a term
    the table rightly refuses: standalone ops' fixed costs outweigh a tiny network). With a cost
    per model, summed ops overestimate a network, as real ones do, and the full term is fitted."""

    def __init__(self, *args, per_model_ms: float = 0.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_model_ms = per_model_ms

    def measure(self, models):
        return [[0.01 * len(m.graph.node) + self.per_model_ms] * 3 for m in models]


def test_network_term_is_fitted_and_used(tmp_path):
    runner = NodeCountRunner(1)
    a = archs(3, seed=7)
    table = build_table(SPACE, "local_cpu", tmp_path / "t.csv", runner, resolution=32, ops=ops_of(a[:1]),
                        calibrate=3, progress=False)  # ops of the calibration networks are measured too
    term = table.metadata["network_term"]
    assert term["calibrated"] and term["networks"] == 3 and term["scale"] == 1.0
    summed = sum(table.query_op(op) for _, op in arch_ops(a[0]))
    assert table.query_total(a[0]) == pytest.approx(summed + term["offset_ms"])
    saved = json.loads(LatencyTable.load(tmp_path / "t.csv").path.read_text().split("\n")[0].split(" ", 2)[2])
    assert saved["complete"] is True
    assert np.isfinite(term["fit_rmspe_pct"])


def test_fit_term_recovers_a_known_end_to_end_term():
    from latency_tables.build import fit_term

    rng = np.random.default_rng(0)
    sums, inputs, mmacs = rng.uniform(5, 40, 12), rng.uniform(1, 8, 12), rng.uniform(50, 400, 12)
    measured = 0.7 * sums - 0.5 * inputs + 0.004 * mmacs + 1.2
    term = fit_term(sums, inputs, mmacs, measured)
    assert [term[k] for k in ("scale", "per_input_melem_ms", "per_mmac_ms", "offset_ms")] == pytest.approx(
        [0.7, -0.5, 0.004, 1.2])
    assert term["calibrated"] and term["networks"] == 12 and term["fit_rmspe_pct"] == pytest.approx(0, abs=1e-9)
    # too few networks for four coefficients: only the offset (the median gap)
    few = fit_term(sums[:5], inputs[:5], mmacs[:5], sums[:5] + 2.0)
    assert (few["scale"], few["per_input_melem_ms"], few["per_mmac_ms"], few["offset_ms"]) == (1.0, 0.0, 0.0, 2.0)


def test_a_fit_the_table_would_refuse_falls_back_to_a_simpler_form(tmp_path, monkeypatch):
    """Noisy timings can make least squares give an op a negative in-network latency: the term
    saved is then the fullest form the table accepts, and the table still loads."""
    from latency_tables import build
    from latency_tables.table import op_row

    nets = archs(10)
    table = LatencyTable(None, new_metadata("local_cpu", "mnv3", 32, 1))
    table.add_rows([op_row(op, {"mean_ms": 1.0, "median_ms": 1.0, "p10_ms": 1.0, "p90_ms": 1.0, "std_ms": 0.0,
                                "count": 1}, "measured") for op in ops_of(nets)])
    sums, inputs, mmacs = build.network_features(table, nets)
    # a large negative per-MAC coefficient: the full form fits it exactly, and the ops with the most
    # MACs per millisecond then cost less than nothing inside a network
    measured = 0.8 * sums - 2.0 * mmacs + 0.05 * (mmacs ** 2) + 40.0
    monkeypatch.setattr(build, "measure_networks", lambda archs, runner: measured)
    with pytest.raises(UserError, match="latency of"):
        full = build.fit_term(sums, inputs, mmacs, measured)
        build.validate_network_term(full, [1.0] * len(table), *zip(*[(op.input_melems, op.macs() / 1e6)
                                                                      for op in ops_of(nets)]), "full")
    term = build.fit_network_term(table, nets, runner=None)
    assert term["form"] != "scale+per_input_melem_ms+per_mmac_ms+offset" and term["per_mmac_ms"] == 0.0
    table.metadata["network_term"] = term
    assert LatencyTable.load(table.save(tmp_path / "t.csv")).network_term == term


def test_ops_measured_after_calibration_that_the_term_does_not_fit_refit_it(tmp_path, monkeypatch, capsys):
    """A term fitted before an op existed can give it a negative latency inside a network (a
    negative per-input term, a small op with a large input): the table fits its term again rather
    than save a file it could not load."""
    from latency_tables import missing
    from latency_tables.table import NO_TERM, op_row

    def rows(ops, ms):
        return [op_row(op, {"mean_ms": ms, "median_ms": ms, "p10_ms": ms, "p90_ms": ms, "std_ms": 0.0,
                            "count": 1}, "measured") for op in ops]

    old, new = ops_of(archs(1, seed=3)), [op for op in ops_of(archs(1, seed=4)) if op not in ops_of(archs(1, seed=3))]
    refits = []
    monkeypatch.setattr(missing, "calibrate_table", lambda table, *a, **k: refits.append(len(table)) or
                        table.metadata.update(network_term={**NO_TERM, "calibrated": True}))
    table = LatencyTable(None, new_metadata("local_cpu", "mnv3", 32, 1), path=tmp_path / "t.csv",
                         missing=Measure(autosave=True, networks=8))
    table.add_rows(rows(old, 1.0))
    largest = max(op.input_melems for op in old)
    table.metadata["network_term"] = {**NO_TERM, "per_input_melem_ms": -0.5 / largest, "calibrated": True}
    table.save(tmp_path / "t.csv")

    monkeypatch.setattr(missing, "measure_ops", lambda ops, runner: rows(ops, 5.0))  # fits the old term
    table.add_missing(new[:1])
    assert refits == [] and LatencyTable.load(tmp_path / "t.csv").network_term["per_input_melem_ms"] < 0

    monkeypatch.setattr(missing, "measure_ops", lambda ops, runner: rows(ops, 1e-4))  # does not
    table.add_missing(new[1:])
    assert refits == [len(old) + len(new)] and "does not fit the ops measured since" in capsys.readouterr().err
    assert LatencyTable.load(tmp_path / "t.csv").network_term == {**NO_TERM, "calibrated": True}


@pytest.mark.parametrize("min_rounds, max_rounds", [(1, 5), (0, 0), (6, 4)])
def test_budget_refuses_fewer_than_two_rounds_or_min_above_max(min_rounds, max_rounds):
    with pytest.raises(ValueError, match="min_rounds"):
        Budget(min_rounds=min_rounds, max_rounds=max_rounds)
