"""`netadapt refine` on a tiny run directory built here: goals met per the table, budget met,
ONNX equal to PyTorch, SIGKILL and resume without redoing an iteration, bad input."""
import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from latency_tables import load_target
from nas.data import load_data
from nas.device import resolve_device
from nas.training import TrainConfig, train
from netadapt.cli import main
from netadapt.proposals import proposals
from netadapt.surgery import resize, units
from search_spaces.builder import Net, build_model
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy

RES = 16
ARCH = Arch.from_string(
    "r224_n10|stem:c16_k3_s2_hswish|ir:i16_o16_m16_k3_s1_relu_r|ir:i16_o24_m64_k3_s2_relu"
    "|ir:i24_o24_m72_k3_s1_relu_r|ir:i24_o40_m72_k5_s2_hswish_se24h|ir:i40_o40_m120_k5_s1_hswish_se32h_r"
    "|head:mnv3_c96_f128_hswish")
FAST = ["--short-term-steps", "2", "--threads", "1", "--no-progress"]



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """What `nas search` leaves: config.json, best/arch.json (224) and best/model.pt trained at RES."""
    run = tmp_path_factory.mktemp("run")
    config = {"space": "mnv3", "target": "pixel_cpu", "data": "digits", "resolution": RES,
              "deploy_resolution": 224, "train_subset": 128, "seed": 0, "optimizer": "rmsprop",
              "batch_size": 32}
    (run / "best").mkdir()
    (run / "config.json").write_text(json.dumps(config))
    (run / "best" / "arch.json").write_text(ARCH.to_json())
    torch.manual_seed(0)
    net = Net(for_proxy(ARCH, RES))
    train(net, load_data("digits", RES, 128), TrainConfig(steps=40, batch_size=32, lr=0.02, optimizer="rmsprop",
                                                          flip=False, threads=1))
    torch.save(net.state_dict(), run / "best" / "model.pt")
    (run / "summary.md").write_text("# search\n")
    return run


def test_each_proposal_is_the_smallest_cut_meeting_the_goal():
    table = load_target("pixel_cpu")
    current = table.query_total(ARCH)
    goal = 0.03 * current
    props = proposals(ARCH, table, goal)
    assert len(props) >= 3
    for p in props:
        assert current - table.query_total(p.arch) >= goal
        smaller = resize(ARCH, p.unit, p.width + 8) if p.width + 8 < p.unit.width else None
        if smaller is not None:
            assert current - table.query_total(smaller) < goal, p.unit.name


def _check_finished(out: Path, table, objective: str) -> pd.DataFrame:
    h = pd.read_csv(out / "history.csv")
    assert list(h["iteration"]) == list(range(len(h)))
    for prev, row in zip(h.itertuples(), h.iloc[1:].itertuples()):  # each goal met per the table
        assert row.predicted_ms <= prev.predicted_ms - row.goal_ms + 1e-9
    result = json.loads((out / "result.json").read_text())
    final = Arch.from_json((out / "arch.json").read_text())
    assert table.query_total(final) == pytest.approx(h["predicted_ms"].iloc[-1])
    assert table.query_total(final) <= result["budget_ms"] and result["within_budget"]
    assert result["budget_ms"] == pytest.approx(0.85 * h["predicted_ms"].iloc[0])
    assert result["device"].split()[0] == str(resolve_device("auto"))  # --device defaults to auto

    p = pd.read_csv(out / "proposals.csv")
    for k, group in p.groupby("iteration"):
        chosen = group[group["chosen"]]
        assert len(chosen) == 1 and chosen["proposal"].item() == h["proposal"][k]
        key = "slope" if objective == "slope" else "acc_after_ft"
        assert chosen[key].item() == group[key].max()
    return h


def test_end_to_end_meets_budget_and_exports_matching_onnx(run_dir, tmp_path):
    import onnxruntime as ort

    out = tmp_path / "refined"
    code = main(["refine", str(run_dir), "--target-ratio", "0.85", "--step-ratio", "0.05",
                 "--long-term-epochs", "0.5", "--out", str(out), *FAST])
    assert code == 0
    h = _check_finished(out, load_target("pixel_cpu"), "slope")
    assert len(h) >= 3  # at least two iterations
    assert (out / "accuracy_vs_latency.png").stat().st_size > 10_000
    assert str(out) in (run_dir / "summary.md").read_text()

    arch = Arch.from_json((out / "arch.json").read_text())
    net = build_model(arch)
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = net.eval()(x).numpy()
    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_sigkill_then_resume_redoes_no_iteration(run_dir, tmp_path):
    out = tmp_path / "killed"
    args = ["refine", str(run_dir), "--target-ratio", "0.85", "--step-ratio", "0.03", "--objective", "accuracy",
            "--long-term-epochs", "0", "--out", str(out), *FAST]
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "netadapt.cli", *args], cwd=repo,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_path = out / "state" / "state.json"
    deadline = time.time() + 120
    try:
        while time.time() < deadline and proc.poll() is None:
            if state_path.is_file() and json.loads(state_path.read_text())["iteration"] >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    before = json.loads(state_path.read_text())
    done = before["iteration"]
    assert 2 <= done and before["phase"] == "trim"

    assert main(args) == 0
    after = json.loads(state_path.read_text())
    assert after["history"][:done + 1] == before["history"]  # same rows, same timings: not run again
    assert after["proposals"][:len(before["proposals"])] == before["proposals"]
    assert [r["iteration"] for r in after["history"]] == list(range(after["iteration"] + 1))
    assert after["iteration"] > done
    assert sorted(p.name for p in (out / "state").glob("*.pt")) == ["final.pt"]
    _check_finished(out, load_target("pixel_cpu"), "accuracy")


def test_stops_with_a_message_when_nothing_can_be_trimmed(run_dir, tmp_path, capsys):
    out = tmp_path / "stuck"
    code = main(["refine", str(run_dir), "--target-ratio", "0.1", "--step-ratio", "0.6",
                 "--long-term-epochs", "0", "--out", str(out), *FAST])
    assert code == 1
    assert "no unit can be trimmed to save" in capsys.readouterr().err
    result = json.loads((out / "result.json").read_text())
    assert result["iterations"] == 0 and not result["within_budget"]


@pytest.mark.parametrize("extra, message", [
    (["--target-ratio", "1.5"], "--target-ratio must be in (0, 1)"),
    (["--target-ratio", "0.8", "--target-latency", "3"], "not allowed with argument"),
    (["--objective", "speed"], "invalid choice"),
    (["--target", "tpu_v9"], "unknown latency target"),
    (["--data", "mnist"], "unknown data"),
    (["--target-latency", "nan"], "--target-latency must be a finite number"),
    (["--target-latency", "inf"], "--target-latency must be a finite number"),
    (["--lr", "0"], "--lr must be positive"),
    (["--batch-size", "0"], "--batch-size must be at least 1"),
    (["--long-term-epochs", "nan"], "--long-term-epochs must be a finite number"),
])
def test_bad_input_is_one_line_and_status_2(run_dir, tmp_path, capsys, extra, message):
    code = main(["refine", str(run_dir), "--out", str(tmp_path / "x"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()  # refused before any work


@pytest.mark.parametrize("weights, message", [
    (torch.zeros(3), "is not a state_dict"),
    ([torch.zeros(3)], "is not a state_dict"),
    ({"other.weight": torch.zeros(3)}, "do not fit its arch.json"),
    (b"garbage", "cannot load weights"),
    (argparse.Namespace(), "cannot load weights"),  # refused: unpickling it could run code
])
def test_a_model_pt_of_another_kind_is_one_line(run_dir, tmp_path, capsys, weights, message):
    run = tmp_path / "run"
    (run / "best").mkdir(parents=True)
    for name in ("config.json", "best/arch.json"):
        (run / name).write_text((run_dir / name).read_text())
    if isinstance(weights, bytes):
        (run / "best/model.pt").write_bytes(weights)
    else:
        torch.save(weights, run / "best/model.pt")
    assert main(["refine", str(run), *FAST]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "weights_only" not in err and len(err.splitlines()) == 1


def test_missing_run_and_changed_settings_are_user_errors(run_dir, tmp_path, capsys):
    assert main(["refine", str(tmp_path / "nope")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    empty = tmp_path / "empty"
    (empty / "best").mkdir(parents=True)
    (empty / "config.json").write_text((run_dir / "config.json").read_text())
    assert main(["refine", str(empty), *FAST]) == 2
    assert "needs arch.json and model.pt" in capsys.readouterr().err

    out = tmp_path / "o"
    common = ["refine", str(run_dir), "--out", str(out), "--long-term-epochs", "0", *FAST]
    assert main([*common, "--target-ratio", "0.97", "--step-ratio", "0.05"]) == 0
    assert main([*common, "--target-ratio", "0.9"]) == 2
    assert "other settings (target_ratio 0.97 -> 0.9" in capsys.readouterr().err


def test_step_schedule_constant_decaying_and_capped_at_the_budget():
    from netadapt.refine import Settings, iteration_goal

    constant = Settings("pixel_cpu", "digits", 16, step_ratio=0.01)
    assert [iteration_goal(constant, 50.0, k, 49.0, 10.0) for k in (0, 5)] == [0.5, 0.5]
    decaying = Settings("pixel_cpu", "digits", 16, step_ratio=0.04, step_decay=0.5)
    assert [iteration_goal(decaying, 50.0, k, 49.0, 10.0) for k in range(3)] == [2.0, 1.0, 0.5]
    assert iteration_goal(decaying, 50.0, 0, 10.3, 10.0) == pytest.approx(0.3)  # last step: just to the budget


def test_the_winner_retrained_by_nas_train_is_preferred(run_dir, tmp_path):
    from nas.run_dir import RunDir

    run = tmp_path / "trained"
    run.mkdir()
    (run / "config.json").write_text((run_dir / "config.json").read_text())
    assert RunDir(run_dir).load_winner().source == run_dir / "best"
    retrained = resize(ARCH, next(u for u in units(ARCH) if u.name == "mid:b4"), 64)
    (run / "final" / "2").mkdir(parents=True)
    (run / "final" / "2" / "arch.json").write_text(retrained.to_json())
    torch.save(Net(retrained).state_dict(), run / "final" / "2" / "model.pt")
    (run / "final" / "winner.json").write_text(json.dumps({"rank": 2, "dir": "final/2"}))
    w = RunDir(run).load_winner()
    assert w.source == run / "final" / "2" and w.arch == retrained
    assert w.state["blocks.4.expand.0.weight"].shape[0] == 64
