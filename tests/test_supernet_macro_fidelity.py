"""experiments/supernet_macro_fidelity.py on tiny digits supernets over nasbench_macro (one per weight
sharing) and a sample of 12 networks: every epoch kept and every set in the summary, the scores those of
`nas search --evaluator supernet:DIR`, and a resume that scores only what the state file lacks."""
import sys
from pathlib import Path

import pandas as pd
import pytest

from nas.cli import main as nas
from nas.data import load_data
from nas.supernet.directory import SupernetConfig, SupernetDir
from nas.supernet.scoring import score

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import supernet_macro_fidelity as smf  # noqa: E402

sys.path.remove(str(ROOT / "experiments"))

TINY = ["--space", "nasbench_macro", "--data", "digits", "--train-subset", "48", "--batch-size", "16",
        "--random-candidates", "1", "--quiet"]


@pytest.fixture
def supernets(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    dirs = []
    for sharing, epochs in (("ofa", "1"), ("spos", "2")):
        dirs.append(tmp_path / sharing)
        assert nas(["supernet", "train", *TINY, "--sharing", sharing, "--epochs", epochs, "--out", str(dirs[-1])]) == 0
    return dirs


@pytest.mark.filterwarnings("ignore:An input array is constant")  # scipy, on a band of equal scores
def test_epochs_sets_and_scores_then_a_resume(supernets, tmp_path, monkeypatch):
    out = tmp_path / "results"
    argv = ["--supernet", *map(str, supernets), "--sample", "12", "--train-subset", "48", "--chunk", "5",
            "--device", "cpu", "--out", str(out)]  # recalibration on 48 images, not 512: quicker
    assert smf.main(argv) == 0
    summary = pd.read_csv(out / "supernet_macro_fidelity.csv")
    sets = ["all", "band_p25", "band_p50", "band_p75"]
    assert list(zip(summary["sharing"], summary["epoch"], summary["scores"], summary["set"])) == [
        (sharing, epoch, scores, s) for sharing, epoch in (("ofa", 1), ("spos", 1), ("spos", 2))
        for scores in ("supernet", "predictor") for s in sets]
    every = summary[summary["set"] == "all"]
    # tau is NaN when 3 steps of training leave every network at one accuracy
    assert (every["n"] == every["scores"].map({"supernet": 12, "predictor": 3969})).all()
    assert every["kendall_tau"].dropna().between(-1, 1).all()
    assert (every["seconds_per_candidate"] > 0).all()

    state = pd.read_csv(smf.state_path(), dtype={"code": str})
    assert len(state) == 3 * 12 and set(state["split"]) == {"train_subset=48 seed=0"}
    spos = SupernetDir(supernets[1])
    model, cfg = spos.trained(1)
    data = load_data("digits", resolution=16, train_subset=48, seed=0)
    row = state[state["epoch"] == 1].iloc[-1]
    assert row["accuracy"] == score(model, model.candidate([int(c) for c in row["code"]]), data, False, 0)[1]

    md = (out / "supernet_macro_fidelity.md").read_text()
    assert "a seeded sample of 12 of the 3,969 distinct networks (`--sample 12`, seed 0)" in md
    assert (f"`nas supernet train --space nasbench_macro --data digits --train-subset 48 --resolution 16 --epochs 2 "
            f"--batch-size 16 --lr 0.05 --optimizer sgd --random-candidates 1 --seed 0 --sharing spos --sampling uniform "
            f"--device auto "
            f"--out {smf.shown(spos.path)}`") in md
    assert "`python experiments/supernet_macro_fidelity.py --supernet " in md and "--sample 12 --train-subset 48" in md
    assert (out / "supernet_macro_fidelity.png").stat().st_size > 0

    # killed before its last chunk was saved: only those networks are scored again
    state.iloc[:-2].to_csv(smf.state_path(), index=False)
    calls = []
    monkeypatch.setattr(smf, "score", lambda *a: calls.append(a[1].vector) or score(*a))
    assert smf.main(argv) == 0
    assert len(calls) == 2
    again = pd.read_csv(out / "supernet_macro_fidelity.csv")
    pd.testing.assert_frame_equal(again.drop(columns="seconds_per_candidate"), summary.drop(columns="seconds_per_candidate"))

    # --epochs: only those are scored; an epoch scored before is still reported, one never scored is not
    state = pd.read_csv(smf.state_path(), dtype={"code": str})
    state[state["epoch"] != 1].to_csv(smf.state_path(), index=False)
    calls.clear()
    assert smf.main([*argv, "--epochs", "2"]) == 0
    assert not calls
    only = pd.read_csv(out / "supernet_macro_fidelity.csv")
    assert list(zip(only["sharing"], only["epoch"])) == [("spos", 2)] * 8
    assert smf.main([*argv, "--epochs", "1,3"]) == 2


def test_a_supernet_of_another_space_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    sn = tmp_path / "sn"  # refused before any epoch is scored: settings alone will do
    SupernetDir(sn).create(SupernetConfig("mnv3_small", "digits", 10, 16, None, 1))
    assert smf.main(["--supernet", str(sn), "--sample", "3", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is over space mnv3_small, not nasbench_macro" in err


def test_the_vote_of_two_scores_is_the_mean_of_their_rank_percentiles_over_networks_both_scored():
    a = pd.DataFrame({"value": [0.1, 0.5, 0.9, 0.7], "seconds": [1.0, 1.0, 1.0, 1.0]}, index=["n1", "n2", "n3", "n4"])
    b = pd.DataFrame({"value": [300.0, 100.0, 200.0], "seconds": [0.5, 0.5, 0.5]}, index=["n1", "n2", "n3"])
    vote = smf.combined(a, b)
    assert sorted(vote.index) == ["n1", "n2", "n3"]  # n4 lacks the second score
    # ranks among n1..n3: a 1,2,3 and b 3,1,2 (of 3) -> means 2/3, 1/2, 5/6
    assert vote.loc[["n1", "n2", "n3"], "value"].round(6).tolist() == [round(2 / 3, 6), 0.5, round(5 / 6, 6)]
    assert (vote["seconds"] == 1.5).all()  # a candidate costs both scores
