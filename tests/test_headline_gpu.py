"""The headline's GPU script rehearsed on this CPU (--dry-run): every (network, seed) trained in its own
process, the report written, a second call trains nothing again."""
import subprocess
import sys
from pathlib import Path

import pandas as pd

from search_spaces.references import reference

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "headline_gpu.py"


def run(tmp: Path, *extra) -> subprocess.CompletedProcess:
    nets = tmp / "headline.csv"  # two small networks, as the CPU headline's table lists them
    pd.DataFrame([{"network": f"small_x{w}", "kind": "searched", "arch": reference("mobilenet_v3_small", w).to_string(),
                   "pixel_cpu_ms": 10.0 * w} for w in (0.5, 0.75)]).to_csv(nets, index=False)
    return subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--seeds", "2", "--workers", "2",
                           "--networks", str(nets), "--work", str(tmp / "work"), "--time-limit", "3000",
                           "--results", str(tmp / "results"), *extra], capture_output=True, text=True, timeout=900)


def test_dry_run_trains_every_network_and_seed_then_resumes(tmp_path):
    first = run(tmp_path)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "2 networks x 2 seeds = 4 trainings" in first.stdout
    runs = pd.read_csv(tmp_path / "results" / "headline_gpu_dry_run_runs.csv")
    assert len(runs) == 4 and set(runs["seed"]) == {0, 1} and not runs["is_recipe"].any()
    table = pd.read_csv(tmp_path / "results" / "headline_gpu_dry_run.csv")
    assert (table["seeds"] == 2).all() and table["test_acc_mean"].between(0, 1).all()
    assert (tmp_path / "results" / "headline_gpu_dry_run.md").read_text().startswith("# DRY RUN")
    again = run(tmp_path)
    assert again.returncode == 0 and " seed " not in again.stdout  # nothing trained again
    assert "4 of 4 trainings done" in again.stdout


def test_the_curve_stands_in_when_the_headline_has_no_table(tmp_path):
    sys.path.insert(0, str(ROOT / "experiments"))
    from headline_gpu import jobs, networks

    nets = networks(tmp_path / "absent.csv")
    assert list(nets["network"]) == [f"mobilenet_v3_large_x{w:g}" for w in (0.5, 0.75, 1.0, 1.25)]
    order = jobs(nets, 3)
    assert [s for _, _, s in order] == [0] * 4 + [1] * 4 + [2] * 4  # seed 0 of every network first


def test_without_data_on_a_gpu_run_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--results", str(tmp_path)], capture_output=True, text=True)
    assert done.returncode == 2 and "--data cifar10:DIR is needed" in done.stderr and done.stderr.count("\n") == 1
