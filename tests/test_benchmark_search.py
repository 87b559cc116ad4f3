"""The controller benchmark on NAS-Bench-Macro: its regret arithmetic on a hand-made case, and a tiny
end-to-end run on a synthetic latency table (not a measurement) that also resumes."""
from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nas.benchmarks import nasbench_macro as nb

EXPERIMENTS = Path(__file__).resolve().parents[1] / "experiments"
sys.path.insert(0, str(EXPERIMENTS))  # as the script runs: its siblings (script_main) import by name
from benchmark_search import SAVE_AT, best_under, first_query_at_most, main, rank_among, regret_curve  # noqa: E402

sys.path.remove(str(EXPERIMENTS))


def test_regret_curve_picks_by_observed_score_and_only_in_budget():
    # networks queried in order D, C, B, A; T = 6 ms; the best in-budget network (E, 93.5) is never queried
    true = [90.0, 94.0, 92.0, 93.0]          # D, C, B, A: mean accuracies (the truth)
    observed = [90.5, 99.0, 93.2, 92.9]      # what one training reported
    latency = [4.0, 8.0, 3.0, 5.0]           # C is over budget
    regret, picks = regret_curve(observed, true, latency, T=6.0, best=93.5)
    # C's observed 99 is never picked (over T); A is truly better than B but observed lower: B stays
    assert picks.tolist() == [0, 0, 2, 2]
    assert regret == pytest.approx([3.5, 3.5, 1.5, 1.5])


def test_regret_curve_before_any_in_budget_query_and_ties():
    regret, picks = regret_curve([95.0, 91.0, 91.0], [95.0, 91.0, 92.0], [9.0, 1.0, 1.0], T=2.0, best=92.0)
    assert picks.tolist() == [-1, 1, 1]      # a tie keeps the earlier pick
    assert math.isnan(regret[0]) and regret[1:] == pytest.approx([1.0, 1.0])
    regret, picks = regret_curve([91.0], [91.0], [2.0], T=2.0, best=91.0)   # latency == T is in budget
    assert picks.tolist() == [0] and regret.tolist() == [0.0]


def test_rank_threshold_and_best_under():
    in_budget = [93.5, 93.0, 92.0, 90.0, 93.0]
    assert rank_among([93.5, 93.0, 92.0, 90.0], in_budget).tolist() == [1, 2, 4, 5]
    assert first_query_at_most([3.0, 1.0, 0.1, 0.05], 0.1) == 3
    assert first_query_at_most([3.0, 1.0], 0.1) is None
    assert best_under([4.0, 8.0, 3.0, 5.0], [90.0, 94.0, 92.0, 93.0], 5.0) == 93.0


def synthetic_latency(path):
    """A made-up table for the test only: local_cpu from FLOPs, pixel_cpu weighted towards params."""
    d = nb.distinct()
    frame = pd.DataFrame({"code": d.index, "local_cpu_measured_ms": d["flops"] / 1e7,
                          "local_cpu_table_ms": d["flops"] / 1e7,
                          "pixel_cpu_table_ms": d["flops"] / 2e7 + d["params"] / 2e5})
    frame.to_csv(path, index=False)


def test_end_to_end_tiny_and_resume(tmp_path, capsys):
    latency, out = tmp_path / "latency.csv", tmp_path / "out"
    synthetic_latency(latency)
    argv = ["--latency-csv", str(latency), "--seeds", "2", "--queries", "10", "--controllers",
            "evolution,random,nsga2", "--targets", "local_cpu", "--out", str(out)]
    main(argv)
    for name in ("benchmark_search_runs.csv", "benchmark_search.csv", "benchmark_search_baselines.csv",
                 "benchmark_search_hw.csv", "benchmark_search.md", "benchmark_search.png"):
        assert (out / name).stat().st_size > 0, name
    runs = pd.read_csv(out / "benchmark_search_runs.csv")
    assert len(runs) == 3 * 3 * 2 * len([q for q in SAVE_AT if q <= 10])
    assert (runs["regret"] >= 0).all() and (runs["rank"] >= 1).all()
    summary = pd.read_csv(out / "benchmark_search.csv")
    searches = summary[summary["controller"].isin(["evolution", "random", "nsga2"])]
    assert len(searches) == 9 and (searches["final_regret_median"] >= 0).all()
    assert (summary["controller"] == "most FLOPs under T").sum() == 3
    # the budgets are the 25/50/75th percentiles of the distinct networks' latency
    lat = pd.read_csv(latency)["local_cpu_table_ms"]
    assert sorted(set(summary["T_ms"])) == pytest.approx(np.percentile(lat, [25, 50, 75]))
    baselines = pd.read_csv(out / "benchmark_search_baselines.csv", dtype={"network": str})
    assert set(baselines["network"]) == {"11111111", "22222222", "12121212"} and (baselines["regret"] >= 0).all()
    hw = pd.read_csv(out / "benchmark_search_hw.csv", dtype={"code": str})
    assert hw["fits_local_cpu_budget"].iloc[0] and hw["fits_pixel_cpu_budget"].iloc[1]
    md = (out / "benchmark_search.md").read_text()
    assert "Goals check" in md and "--seeds 2 --queries 10" in md
    # a second invocation finds every group done and leaves the curves as they were
    capsys.readouterr()
    main(argv)
    assert "9 of 9 groups already" in capsys.readouterr().out
    pd.testing.assert_frame_equal(pd.read_csv(out / "benchmark_search_runs.csv"), runs)


def test_a_search_that_screen_stops_keeps_its_pick(tmp_path, monkeypatch):
    import experiments.benchmark_search as bs
    from nas.latency_window import Screen
    from search_spaces.space import get_space
    from tqdm import tqdm
    synthetic_latency(tmp_path / "latency.csv")
    bench = bs.Bench(tmp_path / "latency.csv", ["local_cpu"])
    # random search at the 25th percentile: 3 proposals in a row over T happen often (about 0.75^3)
    monkeypatch.setattr(bs, "Screen", lambda window, latency: Screen(window, latency, max_proposals=3))
    with tqdm(disable=True) as progress:
        summary, curves = bs.run_group(bench, get_space("nasbench_macro"), "random", "local_cpu", 25, 6, 40,
                                       progress)
    assert summary["runs_stopped"] > 0
    saved = [q for q in SAVE_AT if q <= 40]
    assert len(curves) == 6 * len(saved)      # a stopped run's curve carries its pick to the last query
    for _, run in curves.groupby("seed"):
        picked = run["regret"].notna()
        assert (run.loc[picked, "regret"] >= 0).all() and (run.loc[picked, "rank"] >= 1).all()
        assert (run["rejected"].diff().dropna() >= 0).all()
