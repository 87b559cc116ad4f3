"""Tables fitted from whole-network timings (`nas latency plan|time|fit`), and where a table holds
(`nas latency show`, a local table of another machine refused). Everything on NAS-Bench-Macro's
space (17 ops, 32 px), with made-up additive latencies where a truth must be known exactly."""
import json
import random
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from latency_tables import LatencyTable, arch_ops, load_target
from latency_tables.fit import fit_table
from latency_tables.plan import candidates, one_hot, plan_networks
from latency_tables.table import machine_fingerprint, new_metadata
from nas.cli import main
from search_spaces.errors import UserError
from search_spaces.space import get_space

SPACE = get_space("nasbench_macro")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def additive_truth(seed=0, offset=0.05):
    """A made-up device: each op its own random latency, a network their sum plus `offset`."""
    rng = random.Random(seed)
    per_op = {}

    def latency(arch):
        ops = [op.key for _, op in arch_ops(arch)]
        return sum(per_op.setdefault(k, rng.uniform(0.01, 0.5)) for k in ops) + offset
    return latency


def networks(n, seed):
    return [SPACE.decode(v) for v in candidates(SPACE, n, seed)]


def test_a_fit_on_an_additive_truth_recovers_it_and_ranks_perfectly():
    truth = additive_truth()
    timed = [SPACE.decode(v) for v in plan_networks(SPACE, 30, seed=1, pool=candidates(SPACE, 400, 2))]
    # one network per multiset of ops: two orders of the same ops tie in any additive truth
    held_out = list({tuple(sorted(op.key for _, op in arch_ops(a))): a for a in networks(300, 9)}.values())
    for prior in (None, "features"):
        table = fit_table(SPACE, timed, [truth(a) for a in timed], prior=prior)
        predicted, actual = table.predict_many(held_out), np.array([truth(a) for a in held_out])
        assert np.max(np.abs(predicted - actual) / actual) < 1e-4
        assert kendalltau(predicted, actual).statistic == pytest.approx(1.0)
        fit = table.metadata["fit"]
        assert fit["timings"] == 30 and fit["unknowns"] == 18 and fit["determined_by"] == "timings"
        assert fit["cv"]["within_10pct"] == 1.0 and fit["cv"]["spearman_rho"] == pytest.approx(1.0)


def test_with_fewer_timings_than_unknowns_the_prior_decides_and_says_so():
    """The device is the prior table at half its speed: five timings fix the scale, and the prior
    ranks every network; without a prior the same five timings cannot."""
    prior = load_target("pixel_cpu")
    timed, held_out = networks(5, 3), networks(200, 4)
    measured = [0.5 * prior.query_total(a) for a in timed]
    table = fit_table(SPACE, timed, measured, prior=prior)
    fit = table.metadata["fit"]
    assert fit["determined_by"] == "prior" and fit["timings"] == 5 < fit["unknowns"]
    assert "pixel_cpu" in fit["prior"] and set(fit["prior_scales"]) == {"all ops"}
    actual = np.array([0.5 * prior.query_total(a) for a in held_out])
    assert np.max(np.abs(table.predict_many(held_out) - actual) / actual) < 1e-3
    alone = fit_table(SPACE, timed, measured, prior=None).predict_many(held_out)
    assert np.mean(np.abs(alone - actual) / actual) > 0.05


def test_a_fitted_table_loads_as_a_target_and_predicts(tmp_path, capsys):
    truth = additive_truth(seed=5)
    timed = networks(40, 6)
    path = fit_table(SPACE, timed, [truth(a) for a in timed], device="board").save(tmp_path / "board.csv")
    table = load_target(str(path))
    arch = networks(1, 11)[0]
    assert table.query_total(arch) == pytest.approx(truth(arch), rel=1e-3)
    vectors = candidates(SPACE, 50, 12)
    assert np.allclose(table.predict_many(vectors, SPACE), [table.query_total(SPACE.decode(v)) for v in vectors])
    code, out, _ = run(capsys, "latency", "predict", "--target", path, arch.to_string(), "--json")
    assert code == 0 and json.loads(out)["latency_ms"] == pytest.approx(truth(arch), rel=1e-3)
    assert not table.is_local


def test_the_plan_is_well_posed_and_distinct(tmp_path, capsys):
    pool = candidates(SPACE, 400, 0)
    full = np.linalg.matrix_rank(one_hot(SPACE, pool))
    picked = plan_networks(SPACE, full, seed=0, pool=pool)
    assert np.linalg.matrix_rank(one_hot(SPACE, picked)) == full  # every choice of every layer pinned down
    assert len({SPACE.decode(v).to_string() for v in picked}) == full
    with pytest.raises(UserError, match="only 400 candidate"):
        plan_networks(SPACE, 401, pool=pool)
    code, out, _ = run(capsys, "latency", "plan", "--space", "nasbench_macro", "--n", 3, "--out", tmp_path / "p.txt")
    assert code == 0 and len((tmp_path / "p.txt").read_text().split()) == 3


FAKE_DEVICE = """
    import os, sys
    # a made-up device: 0.2 ms plus 1 ms per MB of model file, printed the way a timing tool would
    print(f"latency: {0.2 + os.path.getsize(sys.argv[1]) / 1e6:.4f} ms")
"""


def test_time_through_a_runner_then_fit_then_show(tmp_path, capsys):
    device = tmp_path / "device.py"
    device.write_text(textwrap.dedent(FAKE_DEVICE))
    plan = tmp_path / "plan.txt"
    assert run(capsys, "latency", "plan", "--space", "nasbench_macro", "--n", 6, "--out", plan)[0] == 0
    timings = tmp_path / "timings.csv"
    code, out, err = run(capsys, "latency", "time", plan, "--runner", "command", "--command",
                         f"{sys.executable} {device} {{model}}", "--repeats", 1, "--out", timings)
    assert code == 0, err
    df = pd.read_csv(timings)
    assert list(df.columns) == ["arch", "measured_ms"] and len(df) == 6
    assert df["arch"].tolist() == plan.read_text().split() and (df["measured_ms"] > 0.2).all()
    table_file = tmp_path / "fake.csv"
    code, out, err = run(capsys, "latency", "fit", "--space", "nasbench_macro", "--timings", timings,
                         "--prior", "features", "--out", table_file)
    assert code == 0 and "fitted on 6 networks" in out and "decided by the prior" in out
    code, out, _ = run(capsys, "latency", "show", table_file)
    assert code == 0 and "device: timings" in out and '"timings": 6' in out and "cpu: unknown" in out


def test_fit_refuses_bad_timings_in_one_line(tmp_path, capsys):
    bad, out = tmp_path / "t.csv", tmp_path / "o.csv"
    bad.write_text(f"arch,measured_ms\n{networks(1, 0)[0].to_string()},-1\n")
    code, _, err = run(capsys, "latency", "fit", "--space", "nasbench_macro", "--timings", bad, "--out", out)
    assert code == 2 and "row 1: measured_ms '-1'" in err and err.count("\n") == 1
    bad.write_text("net,ms\nx,1\n")
    code, _, err = run(capsys, "latency", "fit", "--space", "nasbench_macro", "--timings", bad, "--out", out)
    assert code == 2 and "missing column(s) arch, measured_ms" in err and err.count("\n") == 1


def local_table(tmp_path, name="local.csv", **machine) -> LatencyTable:
    """A local_cpu table of a few modelled ops, as if timed on `machine` (default: this one)."""
    ops = load_target("pixel_cpu").df.head(3).to_dict("records")
    meta = new_metadata("local_cpu", "mnv3", 224, 1, runner="onnxruntime", **machine)
    return LatencyTable.load(LatencyTable(ops, meta).save(tmp_path / name))


def test_a_local_table_from_another_machine_is_refused_in_one_line(tmp_path, capsys):
    here = local_table(tmp_path)
    assert here.is_local and load_target(str(here.path)).is_local
    other = local_table(tmp_path, "other.csv", cpu="Some Other CPU @ 1.0GHz")
    with pytest.raises(UserError, match="timed on another machine or runtime.*Some Other CPU"):
        load_target(str(other.path))
    code, _, err = run(capsys, "latency", "predict", "--target", other.path, "mobilenet_v2")
    assert code == 2 and err.count("\n") == 1 and "rebuild it with `nas latency build --device local_cpu`" in err
    newer = local_table(tmp_path, "newer.csv", runtime_version="0.0.1")
    with pytest.raises(UserError, match="runtime_version '0.0.1'"):
        load_target(str(newer.path))


def test_the_cached_local_table_of_another_machine_starts_afresh_and_says_so(tmp_path, monkeypatch, capsys):
    from latency_tables.targets import local_cpu_path

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    local_table(tmp_path, cpu="Some Other CPU").save(local_cpu_path())
    table = load_target("local_cpu")
    assert len(table) == 0 and table.metadata["cpu"] == machine_fingerprint()["cpu"]
    assert "timed on another machine or runtime" in capsys.readouterr().err


def test_show_prints_where_a_table_holds_and_unknown_for_what_an_old_one_lacks(tmp_path, capsys):
    here = local_table(tmp_path, precision="int8", clock="thread_cpu")
    code, out, _ = run(capsys, "latency", "show", here.path)
    fp = machine_fingerprint()
    assert code == 0 and f"cpu: {fp['cpu']}" in out and f"runtime_version: {fp['runtime_version']}" in out
    assert "threads: 1" in out and "precision: int8" in out and "holds on this machine: yes" in out
    old = dict(here.metadata)
    for key in ("precision", "clock", "runner"):  # written before these fields existed
        old.pop(key)
    LatencyTable(here.df, old).save(tmp_path / "old.csv")
    code, out, _ = run(capsys, "latency", "show", tmp_path / "old.csv")
    assert code == 0 and "precision: unknown" in out and "precision as read: fp32" in out and "clock: unknown" in out
    code, out, _ = run(capsys, "latency", "show", "pixel_cpu")
    assert code == 0 and "runtime: tflite (modelled)" in out and "holds on this machine: no" in out
