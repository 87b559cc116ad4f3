"""`nas search | show | train` end to end on tiny trials, the reward, failed candidates, bad inputs."""
import argparse
import json
import math
import shutil

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest
import torch

from nas.cli import main
from nas.evaluation import evaluate_candidate
from nas.reward import Reward, pareto_mask
from nas.run_dir import RunDir
from nas.search import SearchSession
from search_spaces.builder import build_model
from search_spaces.ir import Arch
from search_spaces.space import get_space

TINY = ["--evaluator", "train", "--steps", "1", "--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--quiet"]


def test_reward_follows_mnasnet():
    soft = Reward("soft", 80.0)
    assert soft.scalar(0.8, 80.0) == pytest.approx(0.8)
    assert soft.scalar(0.8, 40.0) == pytest.approx(0.8 * 0.5 ** -0.07)   # faster than T: rewarded a little
    assert soft.scalar(0.8, 160.0) == pytest.approx(0.8 * 2 ** -0.07)    # slower: penalized as much
    hard = Reward("hard", 80.0)
    assert hard.scalar(0.8, 40.0) == pytest.approx(0.8)                  # alpha = 0
    assert hard.scalar(0.8, 160.0) == pytest.approx(0.4)                 # beta = -1
    assert Reward("soft", 80.0, w=-0.15).scalar(0.8, 160.0) == pytest.approx(0.8 * 2 ** -0.15)
    assert Reward("pareto", 80.0).objectives(0.8, 50.0) == (0.8, -50.0)


def test_pareto_mask():
    acc = [0.9, 0.8, 0.85, 0.7, 0.9]
    lat = [100, 50, 120, 60, 90]
    assert pareto_mask(acc, lat).tolist() == [False, True, False, False, True]


def test_a_diverging_candidate_is_a_failed_result():
    job = dict(space="mnv3", target="pixel_cpu", data="digits", resolution=16, deploy_resolution=224,
               train_subset=64, seed=0, epochs=1, steps=2, batch_size=32, lr=math.nan, optimizer="sgd", threads=1,
               vector=get_space("mnv3").sample(__import__("random").Random(0)))
    row = evaluate_candidate(job)
    assert row["status"] == "failed" and "TrainingDiverged" in row["reason"]
    assert row["latency_ms"] > 0 and row["params"] > 0  # measured before training


@pytest.mark.parametrize("argv, message", [
    (["--space", "mnv9"], "unknown search space"),
    (["--target", "tpu_v9"], "unknown latency target"),
    (["--controller", "bayes"], "invalid choice"),
    (["--data", "cifar10:/no/such/dir"], "not found"),
    (["--data", "mnist"], "unknown data"),
    (["--reward", "pareto", "--controller", "rl"], "pareto"),
    (["--trials", "0"], "at least 1"),
])
def test_bad_input_is_one_line_and_status_2(argv, message, capsys, tmp_path):
    assert main(["search", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_not_a_run_directory(capsys, tmp_path):
    for argv in (["search", "--resume", str(tmp_path)], ["show", str(tmp_path)], ["train", str(tmp_path)]):
        assert main(argv) == 2
        assert "not a search run directory" in capsys.readouterr().err


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One real Ray Tune search: 2 workers, 4 tiny trials, evolution controller."""
    run = tmp_path_factory.mktemp("search") / "run"
    assert main(["search", "--out", str(run), "--trials", "4", "--workers", "2", "--controller", "evolution",
                 *TINY]) == 0
    return run


def test_search_writes_the_run_directory(finished_run):
    run = finished_run
    cfg = json.loads((run / "config.json").read_text())
    for key in ("space", "target", "data", "resolution", "deploy_resolution", "train_subset", "seed", "epochs",
                "latency_target_ms", "reward", "versions", "latency_table"):
        assert key in cfg
    assert cfg["latency_target_from"].startswith("mobilenet_v3_large")
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 4 and trials["key"].is_unique and trials["trial"].tolist() == [0, 1, 2, 3]
    assert (trials["status"] == "ok").all() and trials["accuracy"].between(0, 1).all()
    assert (trials["latency_ms"] > 0).all() and (trials["macs"] > 0).all()
    low, high = cfg["latency_window_ms"]  # the default window of the soft reward: every trained trial inside
    assert cfg["latency_window"] == [0.9, 1.1] and trials["latency_ms"].between(low, high).all()
    ref = pd.read_csv(run / "reference.csv")  # trained once, with the candidates' recipe, outside trials.csv
    assert ref["name"].tolist() == ["mobilenet_v3_large"] and ref["status"].tolist() == ["ok"]
    assert "config/lr" not in ref and ref["arch"].iloc[0].startswith("r224_n10|")  # a row like trials.csv's
    assert ref["latency_ms"].iloc[0] == pytest.approx(cfg["latency_target_ms"])
    assert "## Against the reference" in (run / "summary.md").read_text()
    assert (trials["rejected_before"] >= 0).all() and "proposals rejected outside the window" in \
        (run / "summary.md").read_text()
    for name in ("pareto.csv", "reward.png", "pareto.png", "summary.md", "best/arch.json"):
        assert (run / name).stat().st_size > 0
    assert not list((run / "pending").glob("*"))  # candidates' weights are cleaned up

    best = json.loads((run / "best/trial.json").read_text())
    assert best["reward"] == pytest.approx(trials["reward"].max())
    arch = Arch.from_json((run / "best/arch.json").read_text())
    assert arch.resolution == 224 and arch.num_classes == 10
    assert arch.to_string() == trials.loc[trials["reward"].idxmax(), "arch"]
    model = build_model(arch)
    model.load_state_dict(torch.load(run / "best/model.pt", weights_only=True))
    session = ort.InferenceSession(str(run / "best/model.onnx"))
    x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], expected,
                               rtol=1e-3, atol=1e-3)


def test_show_and_train(finished_run, capsys):
    assert main(["show", str(finished_run), "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert "# Search mnv3 on pixel_cpu" in out and "top 2 by reward" in out
    assert "accuracy_vs_best" in out and "Statistical resolution" in out

    assert main(["train", str(finished_run), "--top", "2", "--epochs", "0.5", "--quiet"]) == 0
    results = pd.read_csv(finished_run / "final/results.csv")
    assert results["rank"].tolist() == [1, 2] and results["test_accuracy"].between(0, 1).all()
    winner = json.loads((finished_run / "final/winner.json").read_text())
    assert winner["reward"] == pytest.approx(results["reward"].max())
    # picked on validation: the test set only reports (the reward is that of val_accuracy)
    cfg = RunDir(finished_run).config()
    reward = Reward(cfg.reward, cfg.latency_target_ms, cfg.w)
    assert results["reward"].tolist() == pytest.approx(
        [reward.scalar(a, ms) for a, ms in zip(results["val_accuracy"], results["latency_ms"])])
    arch = Arch.from_json((finished_run / winner["arch_json"]).read_text())
    build_model(arch).load_state_dict(torch.load(finished_run / winner["weights"], weights_only=True))
    assert (finished_run / winner["onnx"]).stat().st_size > 0


def test_rows_the_controller_missed_are_replayed(finished_run, tmp_path):
    """A kill between writing trials.csv and controller.pt: the session tells the controller the rest."""
    run = shutil.copytree(finished_run, tmp_path / "copy")
    state = torch.load(run / "controller.pt", weights_only=True)
    population = state["controller"]["population"]
    assert len(population) == 4
    torch.save({"n_trials": 1, "controller": state["controller"] | {"population": population[:1]}},
               run / "controller.pt")
    session = SearchSession(RunDir(run), progress=False)
    assert [v for v, _ in session.controller.population] == [v for v, _ in population]
    assert session.to_ask == 0


def _last_row_start(text: str) -> int:
    return text.rstrip("\n").rfind("\n") + 1


@pytest.mark.parametrize("cut_after", ["|stem:", ',"['])  # inside the arch field, inside the quoted vector
def test_a_torn_last_row_is_run_again(finished_run, tmp_path, capsys, cut_after):
    run = shutil.copytree(finished_run, tmp_path / "copy")
    text = (run / "trials.csv").read_text()
    last = _last_row_start(text)
    (run / "trials.csv").write_text(text[:text.index(cut_after, last) + len(cut_after) + 2])
    assert main(["show", str(run)]) == 0
    assert "3 of 4 trials finished" in capsys.readouterr().out
    session = SearchSession(RunDir(run), progress=False)  # controller.pt has seen 4 rows: rebuilt from 3
    assert len(session.trials) == 3 and session.to_ask == 1


def test_damage_before_the_last_row_is_one_line_before_ray_starts(finished_run, tmp_path, capsys):
    run = shutil.copytree(finished_run, tmp_path / "copy")
    lines = (run / "trials.csv").read_text().splitlines(keepends=True)
    lines[2] = lines[2].replace(",ok,", ",", 1)  # trial 1 lost a field
    (run / "trials.csv").write_text("".join(lines))
    for argv in (["search", "--resume", str(run)], ["show", str(run)], ["train", str(run)]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "trials.csv is damaged at line 3" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("content", ["header", "empty"])
def test_show_and_train_on_a_run_without_rows(finished_run, tmp_path, capsys, content):
    run = shutil.copytree(finished_run, tmp_path / "copy")
    header = (run / "trials.csv").read_text().splitlines(keepends=True)[0]
    (run / "trials.csv").write_text(header if content == "header" else "")
    (run / "summary.md").unlink()
    assert main(["show", str(run)]) == 0
    assert "0 of 4 trials finished" in capsys.readouterr().out
    assert main(["train", str(run), "--quiet"]) == 2
    assert "has no successful candidate" in capsys.readouterr().err


def test_a_damaged_controller_state_is_one_line(finished_run, tmp_path, capsys):
    run = shutil.copytree(finished_run, tmp_path / "copy")
    (run / "controller.pt").write_bytes(b"garbage" * 10)
    assert main(["search", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot load controller state" in err and len(err.splitlines()) == 1
    torch.save({"n_trials": 4, "controller": argparse.Namespace()}, run / "controller.pt")
    assert main(["search", "--resume", str(run)]) == 2  # refused: unpickling it could run code
    err = capsys.readouterr().err.strip()
    assert "cannot load controller state" in err and "weights_only" not in err and len(err.splitlines()) == 1
    torch.save({"n_trials": 4, "controller": {"rng": [3, [1, 2], None]}}, run / "controller.pt")  # loads, wrong content
    assert main(["search", "--resume", str(run)]) == 2
    err = capsys.readouterr().err.strip()
    assert "controller's state" in err and "delete it to rebuild" in err and len(err.splitlines()) == 1


def test_out_naming_an_existing_file(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    assert main(["search", "--out", str(tmp_path / "f"), *TINY]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert (tmp_path / "f").read_text() == "mine"
