"""experiments/device_check.py end to end with --dry-run on this CPU: every step ends with a status,
nothing fails, a skipped step says why; and a rehearsal of the device machine (no Ray, Optuna,
matplotlib, scikit-learn, scipy, pytest, tqdm, PyYAML or Pillow installed) runs on what --prepare carries."""
import csv
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "experiments" / "device_check.py"
_spec = importlib.util.spec_from_file_location("device_check", SCRIPT)
device_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(device_check)
STEPS = list(device_check.STEPS)
#: what the device machine lacks (it has torch, onnx, onnxruntime, pandas)
#: as tests/test_relative_paths.py finds absolute paths in committed results
MACHINE_PATH = re.compile(r"(?<![\w./-])/(?:work|home|tmp|root)(?![\w.-])|\b[A-Za-z]:\\")
DEVICE_LACKS = "ray,optuna,matplotlib,sklearn,scipy,pytest,pluggy,iniconfig,pygments,packaging,tqdm,yaml,PIL"


def run(*args: str, timeout: int = 400) -> str:
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def steps(results: Path) -> dict:
    with open(results / "device_check_cpu-dry-run.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["step"] for r in rows] == STEPS
    for r in rows:
        assert r["status"] in ("ok", "skipped"), r
        assert r["status"] == "ok" or r["reason"].strip(), r  # a skip says why
        assert r["device"] == "cpu-dry-run" and float(r["seconds"]) >= 0
    md = (results / "device_check_cpu-dry-run.md").read_text()
    assert md.startswith("# Device check: cpu-dry-run") and "--dry-run" in md
    assert all(f"## {s}: " in md for s in STEPS)
    assert (results / "device_check_cpu-dry-run_logs").is_dir()
    # results are read on other machines: no absolute path of this one, logs included
    for f in results.rglob("*"):
        if f.is_file() and b"\0" not in f.read_bytes():
            assert not MACHINE_PATH.search(f.read_text()), (f.name, MACHINE_PATH.search(f.read_text()).group())
    return {r["step"]: r for r in rows}


def check_common(rows: dict, results: Path) -> None:
    assert rows["data"]["status"] == "ok"
    if not torch.cuda.is_available():
        assert rows["cuda_tests"]["status"] == "skipped" and "no CUDA" in rows["cuda_tests"]["reason"]
        assert "tests/test_device.py::" in rows["cuda_tests"]["command"]
    for step in ("throughput", "search_plain", "supernet"):
        assert rows[step]["status"] == "ok", rows[step]
    assert "images/s" in rows["throughput"]["figures"]
    assert (results / "train_throughput_cpu-dry-run.csv").is_file()
    assert (results / "train_throughput_cpu-dry-run.md").is_file()
    assert "candidates ok" in rows["search_plain"]["figures"]
    assert (results / "search_plain_cpu-dry-run.csv").is_file()
    assert (results / "supernet_epoch_cpu-dry-run.csv").is_file()
    assert rows["supernet"]["command"].startswith("python -m nas.cli supernet train ")
    # nothing of the rehearsal lands among the committed figures
    assert not list((ROOT / "experiments" / "results").glob("*cpu-dry-run*"))


def test_dry_run_end_to_end(tmp_path):
    results = tmp_path / "results"
    run("--dry-run", "--results", str(results))
    rows = steps(results)
    check_common(rows, results)
    if importlib.util.find_spec("ray") and importlib.util.find_spec("optuna"):
        assert rows["search_ray"]["status"] == "ok", rows["search_ray"]
        assert (results / "search_cpu-dry-run_trials.csv").is_file()
    else:
        assert rows["search_ray"]["status"] == "skipped" and "ray" in rows["search_ray"]["reason"]


def test_rehearsal_of_the_device_machine_runs_on_what_prepare_carries(tmp_path):
    carry, results = tmp_path / "carry", tmp_path / "results"
    out = run("--prepare", "--carry", str(carry), "--compact-source", "")
    assert "tqdm" in out and (carry / "pylib" / "pytest").is_dir() and (carry / "digits.npz").is_file()
    out = run("--dry-run", "--carry", str(carry), "--results", str(results), "--emulate-missing", DEVICE_LACKS)
    for stand_in in ("tqdm: not installed here, the copy carried", "matplotlib: not installed; a stand-in",
                     "scipy: not installed; a stand-in", "scikit-learn: not installed; a stand-in"):
        assert stand_in in out
    rows = steps(results)
    check_common(rows, results)
    # no Pillow: the digits stand in for CIFAR-10; no Ray or Optuna: the search runs without Ray only
    assert "digits" in rows["data"]["figures"] and "PIL" in rows["data"]["reason"]
    assert rows["search_ray"]["status"] == "skipped" and "ray and optuna" in rows["search_ray"]["reason"]
    assert not (results / "train_throughput_cpu-dry-run.png").exists()  # matplotlib's stand-in draws nothing
