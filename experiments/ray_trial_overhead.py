"""Benchmark: Ray Tune's overhead per trial, on a search whose candidates cost nothing to score.

The same benchmark-scored search (`--space nasbench_macro --evaluator benchmark:nasbench_macro`,
evolution, N trials, one worker) runs twice through the public `nas search` command: in the
search's own process (what `nas search` does for an evaluator that needs no worker), and through
Ray Tune's trials as a training search runs them (forced here by marking the evaluator as needing
workers, in this process only). The difference per trial is what Ray adds: trial bookkeeping,
actor calls and result reporting, the reason a benchmark- or zero-cost-scored search runs in
process. Ray's start-up is measured apart (a 1-trial search through Ray).

    python experiments/ray_trial_overhead.py [--trials 100] [--repeats 2]

Writes experiments/results/ray_trial_overhead{.csv,.md}.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from nas.cli import main as nas_main
from nas.run_dir import write_csv, write_text
from nas.search_report import markdown_table

HERE = Path(__file__).resolve().parent
LONG_SEARCH = 500  # the "a 500-trial search scored this way finishes in about a minute"


def timed_search(trials: int, through_ray: bool, seed: int) -> float:
    from nas.evaluators import Benchmark

    Benchmark.needs_workers = through_ray
    with tempfile.TemporaryDirectory(prefix="nas-ray-overhead-") as tmp:
        start = time.perf_counter()
        code = nas_main(["search", "--space", "nasbench_macro", "--target", "local_cpu", "--evaluator",
                         "benchmark:nasbench_macro", "--controller", "evolution", "--trials", str(trials),
                         "--workers", "1", "--seed", str(seed), "--out", str(Path(tmp) / "run"), "--quiet"])
        seconds = time.perf_counter() - start
    if code != 0:
        raise SystemExit(f"nas search exited {code}")
    return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results")
    args = ap.parse_args()
    rows = []
    for r in range(args.repeats):
        for path, through_ray in (("in process", False), ("Ray Tune", True)):
            for trials in (1, args.trials):
                seconds = timed_search(trials, through_ray, seed=r)
                rows.append({"path": path, "trials": trials, "repeat": r, "seconds": seconds,
                             "load_avg_1min": os.getloadavg()[0]})
                print(f"{path}, {trials} trial(s): {seconds:.1f} s", flush=True)
    frame = pd.DataFrame(rows)
    write_csv(args.out / "ray_trial_overhead.csv", frame)
    med = frame.groupby(["path", "trials"])["seconds"].median()
    per_trial = {p: (med[p, args.trials] - med[p, 1]) / (args.trials - 1) for p in ("in process", "Ray Tune")}
    summary = pd.DataFrame([{"path": p, "start_s (1-trial search)": med[p, 1],
                             f"{args.trials}-trial search s": med[p, args.trials], "s per extra trial": per_trial[p]}
                            for p in ("in process", "Ray Tune")])
    write_text(args.out / "ray_trial_overhead.md",
               "# Ray Tune's overhead per trial (a benchmark-scored search, scoring costs nothing)\n\n"
               f"Medians of {args.repeats} repeats; `nas search --space nasbench_macro --evaluator "
               "benchmark:nasbench_macro --controller evolution --workers 1`, in process vs forced through Ray "
               "Tune. Reproduce: `python experiments/ray_trial_overhead.py "
               f"--trials {args.trials} --repeats {args.repeats}`. Load average during the runs: "
               f"{frame['load_avg_1min'].min():.1f}-{frame['load_avg_1min'].max():.1f} (2 cores; a zero-cost sweep "
               "ran at low priority beside it).\n\n"
               + markdown_table(summary, ".3g") + "\n\n"
               f"Ray adds about {per_trial['Ray Tune'] - per_trial['in process']:.2f} s per trial: a search of "
               f"{LONG_SEARCH} trials would take {LONG_SEARCH * per_trial['Ray Tune'] / 60:.1f} min through Ray against "
               f"{LONG_SEARCH * per_trial['in process'] / 60:.1f} min in process, start-up aside.\n")
    print((args.out / "ray_trial_overhead.md").read_text())


if __name__ == "__main__":
    main()
