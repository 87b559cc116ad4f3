"""What a plain `nas search` does on a CPU: a NASWOT screen of many candidates, then the best few
trained (the README's "Default on a CPU" gives the measurements behind it); on a GPU, training."""
import json
import math

import numpy as np
import pytest
import torch

from nas.cli import build_parser, main
from nas.final_training import mcnemar, versus_reference
from nas.run_dir import RunDir
from nas.search_cli import CPU_SCREEN, SCREEN_FINAL_TOP, SCREEN_TRIALS, new_config

GPU = torch.cuda.is_available()


def config(*argv):
    return new_config(build_parser().parse_args(["search", "--train-subset", "64", *argv]))


def test_the_default_evaluator_follows_the_device_and_explicit_flags_win():
    default = config()
    if GPU:
        assert (default.evaluator, default.final_top, default.trials) == ("train", 0, 6)
    else:
        assert (default.evaluator, default.final_top, default.trials) == (CPU_SCREEN, SCREEN_FINAL_TOP, SCREEN_TRIALS)
    on_cpu = config("--device", "cpu")
    assert (on_cpu.evaluator, on_cpu.final_top, on_cpu.trials) == (CPU_SCREEN, SCREEN_FINAL_TOP, SCREEN_TRIALS)
    trained = config("--evaluator", "train")
    assert (trained.evaluator, trained.final_top, trained.trials) == ("train", 0, 6)
    chosen = config("--device", "cpu", "--trials", "30", "--final-top", "2")
    assert (chosen.evaluator, chosen.final_top, chosen.trials) == (CPU_SCREEN, 2, 30)
    assert config("--evaluator", "zc:synflow").final_top == SCREEN_FINAL_TOP


def test_bad_final_top_is_one_line(tmp_path, capsys):
    assert main(["search", "--final-top", "-1", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--final-top must be at least 0" in err and "\n" not in err
    assert not (tmp_path / "run").exists()


def test_a_screened_search_ends_with_trained_weights_netadapt_starts_from(tmp_path):
    run = tmp_path / "run"
    assert main(["search", "--device", "cpu", "--out", str(run), "--trials", "4", "--final-top", "2",
                 "--epochs", "0.5", "--train-subset", "64", "--quiet"]) == 0
    rundir = RunDir(run)
    assert rundir.config().evaluator == CPU_SCREEN
    results = json.loads((run / "final" / "winner.json").read_text())
    assert len(rundir.trials()) == 4 and (run / "final" / "2" / "result.json").exists()
    winner = rundir.load_winner()  # what `netadapt refine RUN` starts from: the trained winner, not best/
    assert winner.source == run / results["dir"]
    trained = torch.load(run / results["weights"], weights_only=True)
    assert all(torch.equal(trained[k], v) for k, v in winner.state.items())
    # best/, what a user ships, holds the trained winner, not the screen's untrained best
    shipped = torch.load(run / "best" / "model.pt", weights_only=True)
    assert all(torch.equal(trained[k], v) for k, v in shipped.items())
    assert json.loads((run / "best" / "trial.json").read_text())["trained"] == results["dir"]
    # the reference trained beside the finalists with the same recipe, judged on paired test images
    ref = json.loads((run / "final" / "reference" / "result.json").read_text())
    assert ref["name"] == rundir.config().reference and ref["epochs"] == results["epochs"]
    vs = results["versus_reference"]
    assert vs["images"] == len(np.load(run / "final" / "reference" / "test_correct.npy"))
    summary = (run / "summary.md").read_text()
    assert summary.index("## Winner (trained)") < summary.index("## Best candidate of the search")
    assert f"**{vs['verdict']}**" in summary and "McNemar" in summary


def test_mcnemar_counts_only_the_images_where_the_two_disagree():
    a = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0] + [1] * 50, bool)
    b = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0] + [1] * 50, bool)
    t = mcnemar(a, b)
    assert (t["a_only"], t["b_only"]) == (10, 1)
    assert t["p"] == pytest.approx(2 * sum(math.comb(11, k) for k in range(0, 2)) / 2 ** 11)
    assert mcnemar(a, a)["p"] == 1.0  # no disagreement: no evidence of a difference


@pytest.mark.parametrize("win_acc, ref_acc, win_ms, verdict", [
    (0.9, 0.5, 1.0, "beats"), (0.9, 0.5, 3.0, "more accurate but slower than"),
    (0.5, 0.9, 1.0, "less accurate than"), (0.7, 0.7, 1.0, "ties (faster)"), (0.7, 0.7, 3.0, "ties (slower)")])
def test_the_verdict_reads_the_paired_test_and_the_latency(win_acc, ref_acc, win_ms, verdict):
    rng = np.random.default_rng(0)
    a, b = rng.random(400) < win_acc, rng.random(400) < ref_acc
    vs = versus_reference({"test_accuracy": a.mean(), "latency_ms": win_ms},
                          {"test_accuracy": b.mean(), "latency_ms": 2.0}, a, b)
    assert vs["verdict"] == verdict
