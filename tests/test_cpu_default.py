"""What a plain `nas search` does on a CPU: a NASWOT screen of many candidates, then the best few
trained (the README's "Default on a CPU" gives the measurements behind it); on a GPU, training."""
import json

import torch

from nas.cli import build_parser, main
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
