"""The headline study (experiments/headline.py) end to end with --quick on digits: every stage runs, the
table agrees with the latency table and the counts, the curve distance is what it says, and a second
invocation only reports."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from latency_tables import load_target
from search_spaces.counting import count
from search_spaces.ir import Arch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "headline.py"
sys.path.insert(0, str(ROOT / "experiments"))
from headline import curve_distance  # noqa: E402


def run(tmp: Path, *extra) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "XDG_CACHE_HOME": str(tmp / "cache")}
    return subprocess.run([sys.executable, str(SCRIPT), "--quick", "--results", str(tmp / "results"), *extra],
                          capture_output=True, text=True, env=env, timeout=1500)


def test_curve_distance_interpolates_and_extends_the_end_segments():
    curve = pd.DataFrame({"ms": [10.0, 20.0, 40.0], "test_acc": [0.80, 0.90, 0.94]})
    at = pd.Series([15.0, 30.0, 50.0, 5.0, np.nan])
    acc = pd.Series([0.86, 0.92, 0.97, 0.70, 0.9])
    d = curve_distance(curve, "ms", at, acc)
    assert d.iloc[:4].tolist() == pytest.approx([1.0, 0.0, 1.0, -5.0])  # points above the curve
    assert np.isnan(d.iloc[4])


def test_quick_headline_end_to_end_and_resumes(tmp_path):
    first = run(tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    for stage in ("search_T", "search_tight", "train_T_1", "netadapt", "train_netadapt_0.75T", "train_tight_1",
                  "train_mobilenet_v3_large_x0.5", "train_mobilenet_v3_large_x1", "latency"):
        assert f"[{stage}] running" in first.stdout
    results = tmp_path / "results"
    table = pd.read_csv(results / "headline_quick.csv").set_index("network")
    assert {"T_1", "tight_1", "netadapt_0.75T", "mobilenet_v3_large_x1"} <= set(table.index)
    pixel = load_target("pixel_cpu")
    work = tmp_path / "cache" / "hw-nas" / "experiments" / "headline_quick"
    stages = {f.stem: json.loads(f.read_text()) for f in (work / "stages").glob("*.json")}
    t_ms = stages["search_T"]["latency_target_ms"]
    for name, row in table.iterrows():
        arch = Arch.from_string(row["arch"])
        assert (arch.resolution, arch.num_classes) == (224, 1000)  # as the shared ground truth counts them
        assert row["pixel_cpu_ms"] == pytest.approx(pixel.query_total(arch))
        assert row["params_m"] == pytest.approx(count(arch)["params"] / 1e6) and row["measured_ms"] > 0
    # each search's finalists stay within their budget (the window ends at it), at the search's deployment
    for budget, ms in (("T", t_ms), ("tight", 0.75 * t_ms)):
        assert all(f["latency_ms"] <= ms + 1e-9 for f in stages[f"search_{budget}"]["finalists"])
    assert stages["netadapt"]["budget_ms"] == pytest.approx(0.75 * t_ms)
    # the curve's own points sit on it
    assert table.loc["mobilenet_v3_large_x1", "vs_curve_pixel_pts"] == pytest.approx(0, abs=1e-9)
    trained = table.drop(index=["mobilenet_v3_large_x0.75", "mobilenet_v3_large_x1.25"])  # --quick: the curve's ends
    assert (trained["test_acc_from"] == "trained here").all() and trained["test_acc"].between(0, 1).all()
    assert (table.loc[["mobilenet_v3_large_x0.75", "mobilenet_v3_large_x1.25"], "test_acc_from"] == "not yet trained").all()
    md = (results / "headline_quick.md").read_text()
    assert md.startswith("# QUICK") and "not the recipe" in md and str(ROOT) not in md
    assert (results / "headline_quick.png").stat().st_size > 0

    again = run(tmp_path)  # every stage done: only the report
    assert again.returncode == 0 and "running" not in again.stdout
    pd.testing.assert_frame_equal(pd.read_csv(results / "headline_quick.csv").set_index("network"), table)


def test_bad_data_is_one_line(tmp_path):
    done = run(tmp_path, "--data", "cifar10:/nonexistent")
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "cifar10 data not found" in done.stderr
