"""Nothing lost: a search killed with SIGKILL resumes with no finished trial lost or run twice."""
import io
import json
import os
import signal
import subprocess
import sys
import time

import pandas as pd
import torch

from nas.ray_session import RaySessionRecord, leftover_processes
from nas.run_dir import TRIAL_COLUMNS, RunDir


TINY = ["--evaluator", "train", "--steps", "1", "--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--quiet"]


def nas(*argv, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "nas.cli", *argv], start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def rows(run) -> int:
    try:
        return len(pd.read_csv(run / "trials.csv"))
    except (FileNotFoundError, pd.errors.EmptyDataError):
        return 0


def test_sigkill_then_resume(tmp_path):
    run = tmp_path / "run"
    proc = nas("search", "--out", str(run), "--trials", "6", "--workers", "2", "--controller", "rl", *TINY)
    try:
        deadline = time.time() + 240
        while rows(run) < 2 and proc.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert rows(run) >= 2, "no trial finished in time"
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # as `kill -9 PID` does: Ray's agents live on
        proc.wait()
    left = RaySessionRecord.load(RunDir(run))  # what the killed search's Ray left on this machine
    before = RunDir(run).trials()
    assert len(before) < 6

    resumed = nas("search", "--resume", str(run))
    try:
        out, err = resumed.communicate(timeout=300)
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
    assert resumed.returncode == 0, err[-2000:]

    after = RunDir(run).trials()
    assert len(after) == 6 and after["trial"].tolist() == list(range(6))
    assert after["key"].is_unique and after["vector"].is_unique  # no trial run twice
    pd.testing.assert_frame_equal(after.iloc[:len(before)], before)  # none lost or rewritten
    state = torch.load(run / "controller.pt", weights_only=True)
    assert state["n_trials"] == 6
    best = json.loads((run / "best/trial.json").read_text())
    assert best["reward"] == after["reward"].max()
    assert not list((run / "pending").glob("*"))
    # the resumed search cleaned up after the killed one, and after itself
    assert not leftover_processes(left.temp_dir) and not os.path.exists(left.temp_dir)
    assert not (run / RaySessionRecord.FILE).exists()


def test_hex_keys_and_nodes_read_back_as_text(tmp_path):
    run = RunDir(tmp_path)
    rows = pd.DataFrame([{c: None for c in TRIAL_COLUMNS}
                         | {"trial": i, "key": k, "node": n, "arch": "a", "vector": "[0]", "status": "failed"}
                         for i, (k, n) in enumerate([("1234e567", "00000012"), ("00000001", "5e000000")])])
    run.record(rows, {})
    back = run.trials()
    assert back["key"].tolist() == ["1234e567", "00000001"] and back["node"].tolist() == ["00000012", "5e000000"]


def test_a_torn_last_row_is_dropped_said_once_and_run_again(tmp_path):
    """A copy cut trials.csv inside the last row's arch field (the newline kept): `--resume` drops
    that row with one line on stderr and runs its trial again; the controller, which saw it, is rebuilt."""
    run = tmp_path / "run"
    first = nas("search", "--out", str(run), "--trials", "3", "--controller", "random", *TINY)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    text = (run / "trials.csv").read_text()
    last = text.rstrip("\n").rfind("\n") + 1
    (run / "trials.csv").write_text(text[:text.index("|stem:", last) + 8] + "\n")
    assert torch.load(run / "controller.pt", weights_only=True)["n_trials"] == 3
    kept = pd.read_csv(io.StringIO(text[:last]))

    resumed = nas("search", "--resume", str(run), "--quiet")
    try:
        out, err = resumed.communicate(timeout=300)
    finally:
        if resumed.poll() is None:
            os.killpg(resumed.pid, signal.SIGKILL)
    assert resumed.returncode == 0, err[-2000:]
    warned = [line for line in err.splitlines() if "cut short" in line]
    assert len(warned) == 1 and "line 4" in warned[0] and "Traceback" not in err, err[-2000:]
    after = RunDir(run).trials()
    assert after["trial"].tolist() == [0, 1, 2] and (after["status"] == "ok").all()
    assert after["key"].iloc[:2].tolist() == kept["key"].tolist()  # the whole rows are kept as they were
    assert after["device"].tolist() == ["cpu"] * 3  # the device each trial trained on is recorded
    assert torch.load(run / "controller.pt", weights_only=True)["n_trials"] == 3
    assert (run / "trials.csv").read_text().count("\n") == 4  # rewritten whole: header and three rows


def test_trials_csv_of_older_runs_without_device_or_rejected_before_still_loads(tmp_path):
    run = RunDir(tmp_path)
    rows = pd.DataFrame([{c: None for c in TRIAL_COLUMNS}
                         | {"trial": i, "key": f"k{i}", "arch": "a", "vector": "[0]", "status": "failed",
                            "device": "cpu"}
                         for i in range(2)])
    for columns in (TRIAL_COLUMNS[:-1], TRIAL_COLUMNS[:-2]):  # before the device column; before rejected_before
        rows[columns].to_csv(run / "trials.csv", index=False)
        back = run.trials()
        assert list(back.columns) == TRIAL_COLUMNS and back["key"].tolist() == ["k0", "k1"]
        assert back["device"].isna().all()
    run.record(rows, {})
    assert run.trials()["device"].tolist() == ["cpu", "cpu"]
