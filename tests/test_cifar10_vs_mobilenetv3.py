"""The headline experiment's harness end to end with --quick on digits: every stage runs, the outputs
agree with each other and with the latency tables, and a second invocation only reports."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from latency_tables import load_target
from latency_tables.pixel import TABLE_FILE
from search_spaces.ir import Arch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "cifar10_vs_mobilenetv3.py"
STAGES = ["search_pixel_cpu", "retrain_pixel_cpu", "netadapt_T", "netadapt_tight", "search_second",
          "retrain_second", "final_training", "latency"]
NETWORKS = {"mobilenet_v3_large_x0.5", "mobilenet_v3_large_x0.75", "mobilenet_v3_large_x1",
            "mobilenet_v3_large_x1.25", "mobilenet_v3_small", "mobilenet_v2", "mnasnet_a1", "proxylessnas_mobile",
            "searched_pixel_cpu", "netadapt_T", "netadapt_tight", "searched_second"}


def run(work: Path, results: Path) -> str:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--data", "digits", "--seeds", "1",
                           "--work", str(work), "--results", str(results)],
                          capture_output=True, text=True, env=env, timeout=1200)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def chosen_latency(search: Path, trial: int) -> float:
    trials = pd.read_csv(search / "trials.csv")
    return float(trials.loc[trials["trial"] == trial, "latency_ms"].iloc[0])


def test_quick_pipeline_end_to_end_and_resumes(tmp_path):
    work, results = tmp_path / "work", tmp_path / "results"
    first = run(work, results)
    for stage in STAGES:
        assert f"[{stage}] running" in first or (stage == "netadapt_T" and "netadapt_T: not needed" in first)

    stages = {s: json.loads((work / "stages" / f"{s}.json").read_text()) for s in STAGES if
              (work / "stages" / f"{s}.json").exists()}
    # NetAdapt to T runs only for a winner above T; otherwise the winner is the network at T
    expected = NETWORKS if "netadapt_T" in stages else NETWORKS - {"netadapt_T"}
    table = pd.read_csv(results / "cifar10_vs_mobilenetv3_quick.csv")
    assert set(table["network"]) == expected and len(table) == len(expected)
    assert table["test_acc_mean"].between(0, 1).all() and (table["seeds"] == 1).all()
    assert (table["local_cpu_measured_ms"] > 0).all() and (table["macs_m"] > 0).all() and (table["params_m"] > 0).all()
    pixel, second = load_target("pixel_cpu"), load_target(str(TABLE_FILE))
    for row in table.itertuples():
        arch = Arch.from_string(row.arch)
        assert row.pixel_cpu_ms == pytest.approx(pixel.query_total(arch), rel=1e-9)
        assert row.second_target_ms == pytest.approx(second.query_total(arch), rel=1e-9)
    # T is MobileNetV3-Large's latency, and the width curve is ordered by latency
    t_ms = stages["search_pixel_cpu"]["latency_target_ms"]
    by_name = table.set_index("network")
    assert by_name.loc["mobilenet_v3_large_x1", "pixel_cpu_ms"] == pytest.approx(t_ms)
    curve = by_name.loc[[f"mobilenet_v3_large_x{w}" for w in ("0.5", "0.75", "1", "1.25")], "pixel_cpu_ms"]
    assert curve.is_monotonic_increasing
    # NetAdapt never ends above where it started, and meets T when it reports so
    start = by_name.loc["searched_pixel_cpu", "pixel_cpu_ms"]
    for name in expected & {"netadapt_T", "netadapt_tight"}:
        assert by_name.loc[name, "pixel_cpu_ms"] <= start + 1e-9
    if stages.get("netadapt_T", {}).get("within_budget"):
        assert by_name.loc["netadapt_T", "pixel_cpu_ms"] <= t_ms + 1e-9

    # the 2x2 table's diagonal: each winner's latency on its own target, as its search measured it
    two = pd.read_csv(results / "cifar10_vs_mobilenetv3_quick_2x2.csv").set_index("winner")
    pick_px, pick_2 = stages["retrain_pixel_cpu"], stages["retrain_second"]
    assert two.loc["searched_pixel_cpu", "pixel_cpu_ms"] == pytest.approx(chosen_latency(work / "search_pixel_cpu",
                                                                                         pick_px["trial"]))
    assert two.loc["searched_second", "second_target_ms"] == pytest.approx(chosen_latency(work / "search_second",
                                                                                          pick_2["trial"]))
    assert two.loc["searched_pixel_cpu", "pixel_cpu_ms"] == pytest.approx(start)
    md = (results / "cifar10_vs_mobilenetv3_quick.md").read_text()
    assert md.startswith("# QUICK") and "searched_second" in md
    # results name paths relative to the repository: the second target is the pixel_cpu table file
    assert "`latency_tables/data/pixel_cpu_mnv3.csv`" in md
    assert str(ROOT) not in md and str(ROOT) not in (results / "cifar10_vs_mobilenetv3_quick_2x2.csv").read_text()
    assert (results / "cifar10_vs_mobilenetv3_quick.png").stat().st_size > 0

    # a second invocation resumes: every stage is skipped, nothing is trained again
    runs_before = pd.read_csv(work / "final_runs.csv")
    second_run = run(work, results)
    assert "running" not in second_run
    for stage in stages:
        assert f"[{stage}] done before, skipped" in second_run
    pd.testing.assert_frame_equal(pd.read_csv(work / "final_runs.csv"), runs_before)
    assert set(pd.read_csv(results / "cifar10_vs_mobilenetv3_quick.csv")["network"]) == expected
