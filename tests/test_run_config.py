"""The run configuration: every number checked before anything starts, config.json read back
as it was written, and documents of another shape refused in one line."""
import json

import pandas as pd
import pytest

from nas.cli import build_parser, main
from nas.run_dir import RunDir
from nas.search import SearchSession
from nas.search_cli import new_config


def one_line_error(capsys, message):
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "nan"], "--epochs must be a finite number"),
    (["--epochs", "inf"], "--epochs must be a finite number"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--lr", "0"], "--lr must be positive"),
    (["--lr", "-1"], "--lr must be positive"),
    (["--lr", "nan"], "--lr must be a finite number"),
    (["--w", "nan"], "--w must be a finite number"),
    (["--w", "1e300"], "--w must be at most 10"),
    (["--latency-target", "inf"], "--latency-target must be a finite number"),
    (["--latency-target", "nan"], "--latency-target must be a finite number"),
    (["--latency-target", "0"], "--latency-target must be positive"),
    (["--seed", "-1"], "--seed must be at least 0"),
    (["--resolution", "100000"], "--resolution must be at most 2048"),
    (["--deploy-resolution", "0"], "--deploy-resolution must be at least 1"),
    (["--train-subset", "1"], "--train-subset must be at least 2"),
])
def test_bad_numbers_are_refused_before_anything_starts(argv, message, capsys, tmp_path):
    assert main(["search", "--out", str(tmp_path / "run"), *argv]) == 2
    one_line_error(capsys, message)
    assert not (tmp_path / "run").exists()


def args(*argv):
    return build_parser().parse_args(["search", "--evaluator", "train", *argv])  # a later --evaluator wins


def test_config_json_reads_back_as_written(tmp_path):
    config = new_config(args("--train-subset", "64", "--w", "-0.1", "--steps", "2"))
    assert (config.num_classes, config.train_images, config.val_images) == (10, 64, 144)
    run = RunDir(tmp_path / "run")
    run.create(config)
    assert run.config() == config
    assert (run / "config.json").read_text() == config.to_json()
    assert list(json.loads(config.to_json()))[:3] == ["space", "reference", "target"]


def test_a_relative_data_directory_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir("/work/shared")
    config = new_config(args("--data", "cifar10:data", "--train-subset", "100"))
    assert config.data == "cifar10:/work/shared/data"
    assert (config.num_classes, config.train_images, config.val_images) == (10, 100, 256)


@pytest.mark.parametrize("document, message", [
    ("[1, 2]", "must hold a JSON object, not list"),
    ('{"space": "mnv3"}', "lacks reference, target"),
    ("{", "is not valid JSON"),
    ("EDIT", "--lr must be a finite number"),
])
def test_config_of_another_shape_is_one_line(document, message, tmp_path, capsys):
    good = new_config(args("--train-subset", "64"))
    if document == "EDIT":  # a hand-edited config.json must not slip a NaN past the checks
        document = good.to_json().replace(f'"lr": {good.lr}', '"lr": NaN')
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(document)
    for argv in (["show", str(run)], ["train", str(run)], ["search", "--resume", str(run)]):
        assert main(argv) == 2
        one_line_error(capsys, message)


def test_a_score_that_is_not_finite_fails_the_trial_not_the_search(tmp_path):
    """w = 10 with a tiny T overflows the reward: that trial is failed, the run and its resume go on."""
    run = RunDir(tmp_path / "run")
    run.create(new_config(args("--w", "10", "--latency-target", "1e-300", "--latency-window", "0,1e303", "--trials", "3",
                               "--controller", "random")))
    session = SearchSession(run, progress=False)
    for key in ("ref", "k0", "k1"):  # the space's reference is trained first
        assert session.ask(key) is not None
        session.weights[key] = b"weights"  # as a worker's result brings them
        session.finish(key, {"arch": "a", "accuracy": 0.5, "latency_ms": 20.0, "macs": 1, "params": 1,
                             "status": "ok", "reason": "", "seconds": 1.0, "images_per_s": 1.0,
                             "train_loss": 1.0, "node": "n"})
    trials = run.trials()
    assert trials["status"].tolist() == ["failed", "failed"]
    assert trials["reason"].str.contains("OverflowError").all() and trials["reward"].isna().all()
    assert run.reference()["status"].tolist() == ["failed"]
    resumed = SearchSession(run, progress=False)
    assert resumed.best_row() is None and resumed.to_ask == 1


@pytest.mark.parametrize("epochs, message", [("nan", "finite"), ("inf", "finite"), ("0", "positive")])
def test_nas_train_refuses_bad_epochs(tmp_path, capsys, epochs, message):
    run = RunDir(tmp_path / "run")
    run.create(new_config(args("--train-subset", "64")))
    assert main(["train", str(run.path), "--epochs", epochs]) == 2
    one_line_error(capsys, f"--epochs must be {'a ' if message == 'finite' else ''}{message}")


def test_resume_cannot_shrink_a_search_below_its_finished_trials(tmp_path, capsys):
    run = RunDir(tmp_path / "run")
    run.create(new_config(args("--trials", "3", "--controller", "random")))
    rows = [{"trial": i, "key": f"k{i}", "arch": "a", "vector": "[0]", "status": "failed", "reason": "x"}
            for i in range(2)]
    run.record(pd.DataFrame(rows).reindex(columns=run.trials().columns), {})
    assert main(["search", "--resume", str(run.path), "--trials", "1"]) == 2
    one_line_error(capsys, "--trials 1 is fewer than the 2 trials")
    assert run.config().trials == 3


def test_cifar10_gets_the_measured_proxy_defaults_and_explicit_flags_win(tmp_path):
    """cifar10's defaults are experiments/proxy_fidelity.py's best measured setting under ~60 s per
    candidate on 2 cores (5k_e2_r16); other data sets keep the generic ones."""
    import numpy as np

    rng = np.random.default_rng(0)
    for split, n in (("train", 6000), ("test", 100)):
        np.savez(tmp_path / f"cifar10_{split}.npz", **{f"x_{split}": np.zeros((n, 4, 4, 3), np.uint8),
                                                      f"y_{split}": rng.integers(0, 10, n)})
    config = new_config(args("--data", f"cifar10:{tmp_path}"))
    assert (config.resolution, config.epochs, config.batch_size, config.lr, config.trials, config.train_subset) == (
        16, 2.0, 64, 0.1, 12, 5000)
    config = new_config(args("--data", f"cifar10:{tmp_path}", "--resolution", "32", "--train-subset", "800"))
    assert (config.resolution, config.train_subset, config.epochs) == (32, 800, 2.0)
    assert new_config(args()).resolution == 8  # digits
