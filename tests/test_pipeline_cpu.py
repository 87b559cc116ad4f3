"""experiments/pipeline_cpu.py: how a search's candidates are judged by NAS-Bench-Macro (the best of
its top 5 by score, its rank and regret among the in-budget networks), and its one-line errors. The
searches themselves are `nas search` runs, tested elsewhere."""
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nas.benchmarks.nasbench_macro import distinct

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import pipeline_cpu as pc  # noqa: E402

sys.path.remove(str(ROOT / "experiments"))


@pytest.fixture(scope="module")
def bench():
    latency = pc.table_latency()
    T = float(latency.reindex(distinct().index).median())
    return latency, T


def write_trials(run: Path, rows: list[tuple[str, float, str]], latency: pd.Series) -> None:
    run.mkdir(parents=True)
    pd.DataFrame([{"trial": i, "vector": json.dumps([int(c) for c in code]), "accuracy": score,
                   "latency_ms": latency[code], "status": status} for i, (code, score, status) in enumerate(rows)]
                 ).to_csv(run / "trials.csv", index=False)


def test_the_network_found_is_the_best_of_the_top_five_by_score(tmp_path, bench):
    latency, T = bench
    nets = distinct()
    window = nets[(latency.reindex(nets.index) >= 0.9 * T) & (latency.reindex(nets.index) <= T)]
    by_acc = window.sort_values("mean_acc", ascending=False).index
    best_in_window, others = by_acc[0], list(by_acc[50:56])
    # the window's best is scored 6th (out of the top 5), a failed trial scores highest, and the
    # first network appears twice; the best of the five by accuracy is the last by score
    rows = [("22222222", 0.99, "failed")] + [(c, 0.8 + 0.01 * i, "ok") for i, c in enumerate(others[:5])]
    rows += [(others[0], 0.5, "ok"), (best_in_window, 0.79, "ok")]
    write_trials(tmp_path / "run", rows, latency)
    row = pc.judged(pc.Method("m", "evolution", "zc:flops", 7), tmp_path / "run", 1800.0, latency, T, "digits")
    budget = nets["mean_acc"][latency.reindex(nets.index) <= T]
    found = max(others[:5], key=lambda c: nets.at[c, "mean_acc"])
    assert row["network"] == found and row["accuracy"] == nets.at[found, "mean_acc"]
    assert row["candidates"] == 7 and row["ranked"] == 6 and row["hours"] == pytest.approx(0.5) and row["in_budget"] == len(budget)
    assert row["rank"] == 1 + int((budget > nets.at[found, "mean_acc"]).sum()) > 50
    assert row["regret"] == pytest.approx(budget.max() - nets.at[found, "mean_acc"]) and row["regret"] > 0
    assert found == others[0] and row["top1_by_score"] == others[4]


def scored_window(run: Path, latency: pd.Series, T: float) -> tuple[pd.DataFrame, pd.Series]:
    """A search's trials in `run`: 40 networks of the window, scored by their true accuracy; the
    window's networks and the predictor's (fitted on those scores) prediction for each."""
    from nas.supernet.predictor import AccuracyPredictor

    nets = distinct()
    lat = latency.reindex(nets.index)
    window = nets[(lat >= 0.9 * T) & (lat <= T)]
    scored = window.sample(n=40, random_state=1)
    write_trials(run, [(c, a / 100, "ok") for c, a in scored["mean_acc"].items()], latency)
    predictor = AccuracyPredictor.fit((3,) * 8, [list(map(int, c)) for c in scored.index], scored["mean_acc"] / 100)
    return window, pd.Series(predictor.predict([list(map(int, c)) for c in window.index]), index=window.index)


def test_the_predictor_method_ranks_the_whole_window_by_a_predictor_of_the_scores(tmp_path, bench):
    latency, T = bench
    nets = distinct()
    window, ranked = scored_window(tmp_path / "run", latency, T)
    row = pc.judged(pc.Method("p", "random", "zc:flops", 40, rank_all=True), tmp_path / "run", 60.0, latency, T, "digits")
    top = ranked.sort_values(ascending=False).index[:5]
    assert row["network"] == max(top, key=lambda c: nets.at[c, "mean_acc"]) and row["top1_by_score"] == top[0]
    assert row["candidates"] == 40 and row["ranked"] == len(window)


def test_the_vote_ranks_the_window_by_the_mean_rank_of_the_predictor_and_a_zero_cost_score(tmp_path, bench,
                                                                                            monkeypatch):
    from search_spaces.counting import count
    from search_spaces.proxy import for_proxy
    from search_spaces.space import get_space

    latency, T = bench
    nets = distinct()
    window, predicted = scored_window(tmp_path / "run", latency, T)
    method = pc.Method("v", "random", "zc:flops", 40, rank_all=True, vote="flops")
    row = pc.judged(method, tmp_path / "run", 60.0, latency, T, "digits")
    space = get_space("nasbench_macro")
    flops = pd.Series({c: count(for_proxy(space.decode([int(d) for d in c]).replace(num_classes=10), 32))["macs"]
                       for c in window.index})
    vote = (predicted.rank(pct=True) + flops.rank(pct=True)) / 2
    top = vote.sort_values(ascending=False, kind="stable").index[:5]
    assert row["top1_by_score"] == top[0] and row["network"] == max(top, key=lambda c: nets.at[c, "mean_acc"])
    assert row["ranked"] == len(window) and row["hours"] > 60 / 3600  # the zero-cost scoring's time counts
    # the window's scores are kept beside the run: judged again, nothing is scored again
    monkeypatch.setattr(pc, "score_arch", lambda *a, **k: pytest.fail("scored again"))
    assert pc.judged(method, tmp_path / "run", 60.0, latency, T, "digits")["network"] == row["network"]


def test_no_search_is_the_median_network_of_the_window(bench):
    latency, T = bench
    row = pc.random_pick_row(latency, T)
    nets = distinct()
    lat = latency.reindex(nets.index)
    window = nets["mean_acc"][(lat >= 0.9 * T) & (lat <= T)]
    assert row["accuracy"] == pytest.approx(np.median(window)) and row["candidates"] == 0
    assert 0 < row["regret"] < 5 and 1 < row["rank"] < row["in_budget"]


@pytest.mark.parametrize("argv, message", [
    (["--methods", "zc,foo"], "--methods foo: expected some of supernet, random, predictor, vote, zc, train"),
    (["--methods", "supernet"], "--supernet None: not a trained supernet directory"),
])
def test_bad_arguments_are_one_line(argv, message, capsys, tmp_path):
    assert pc.main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not list(tmp_path.iterdir())


def test_a_supernet_epoch_counts_the_training_up_to_it_and_must_be_kept(tmp_path, bench, capsys):
    latency, T = bench
    sn = tmp_path / "sn"
    sn.mkdir()
    pd.DataFrame({"epoch": [1, 2, 3], "loss": [2.0, 1.5, 1.2], "seconds": [3600.0, 1800.0, 900.0]}).to_csv(
        sn / "epochs.csv", index=False)
    (sn / "weights_epoch1.pt").write_bytes(b"")
    (sn / "weights_epoch2.pt").write_bytes(b"")
    scored_window(tmp_path / "run", latency, T)
    at_two = pc.Method("p", "random", f"supernet:{sn}@2", 40, supernet=sn, supernet_epoch=2)
    assert pc.judged(at_two, tmp_path / "run", 360.0, latency, T, "digits")["hours"] == pytest.approx(0.1 + 1.5)
    last = pc.Method("p", "random", f"supernet:{sn}", 40, supernet=sn)
    assert pc.judged(last, tmp_path / "run", 360.0, latency, T, "digits")["hours"] == pytest.approx(0.1 + 1.75)
    out = tmp_path / "out"
    assert pc.main(["--methods", "vote", "--supernet", str(sn), "--supernet-epoch", "3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--supernet-epoch 3:" in err and "keeps the weights of epochs 1, 2" in err
    names = [m.name for m in pc.methods(pc.argparse.Namespace(
        supernet=sn, supernet_epoch=2, data="digits", zc="naswot", candidates=3, predictor_candidates=3,
        train_candidates=1, train_epochs=1, train_subset=10, methods=["vote", "supernet", "zc"]))]
    assert names == ["vote-epoch2", "supernet-epoch2", "zc"]  # rows of their own beside the last epoch's
