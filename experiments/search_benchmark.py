"""Benchmark: wall time of the default `nas search`, and seconds per candidate for CIFAR-10 proxy training.

Runs, as a user would (subprocesses of the `nas` CLI):
  1. `nas search --space mnv3 --target pixel_cpu` with no other flag (digits data);
  2. `nas search ... --data cifar10:DIR --train-subset N` (a few candidates).
Prints and saves experiments/results/search_benchmark.{csv,md,png} and each run's trials.csv
(search_default_trials.csv, search_cifar10_trials.csv). Run directories go to experiments/runs/.
The machine's load average is recorded next to each figure: other jobs on these 2 cores slow trials down.

    python experiments/search_benchmark.py [--cifar-dir /work/shared/data] [--train-subset 2000] [--trials 6]
                                           [--device auto|cpu|cuda]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from nas.search_report import markdown_table
from results_paths import shown  # the command as results name it: paths relative to the repository

HERE = Path(__file__).resolve().parent
RESULTS, RUNS = HERE / "results", HERE / "runs"


def timed_search(name: str, extra: list[str]) -> tuple[dict, pd.DataFrame]:
    run = RUNS / f"search_{name}"
    shutil.rmtree(run, ignore_errors=True)
    argv = [sys.executable, "-m", "nas.cli", "search", "--space", "mnv3", "--target", "pixel_cpu",
            "--out", str(run), *extra]
    load_before = os.getloadavg()[0]
    start = time.time()
    subprocess.run(argv, check=True)
    wall = time.time() - start
    trials = pd.read_csv(run / "trials.csv")
    ok = trials[trials["status"] == "ok"]
    row = {"run": name, "command": "nas search --space mnv3 --target pixel_cpu " + " ".join(map(shown, extra)),
           "trials": len(trials), "failed": int((trials["status"] != "ok").sum()), "wall_s": wall,
           "wall_s_per_trial": wall / len(trials), "candidate_s_mean": trials["seconds"].mean(),
           "candidate_s_median": trials["seconds"].median(), "images_per_s_median": ok["images_per_s"].median(),
           "best_reward": ok["reward"].max(), "best_accuracy": ok.loc[ok["reward"].idxmax(), "accuracy"],
           "best_latency_ms": ok.loc[ok["reward"].idxmax(), "latency_ms"],
           "load_avg_before": load_before, "load_avg_after": os.getloadavg()[0]}
    trials.drop(columns=["vector"]).to_csv(RESULTS / f"search_{name}_trials.csv", index=False)
    return row, trials


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cifar-dir", default=str(HERE.parents[1] / "shared" / "data"))
    ap.add_argument("--train-subset", type=int, default=2000)
    ap.add_argument("--trials", type=int, default=6, help="CIFAR-10 candidates")
    ap.add_argument("--skip-default", action="store_true")
    ap.add_argument("--device", default="auto", help="passed to `nas search --device` (auto, cpu or cuda)")
    args = ap.parse_args()
    device = [] if args.device == "auto" else ["--device", args.device]  # auto: the default command as is
    RESULTS.mkdir(parents=True, exist_ok=True)

    runs = {}
    if not args.skip_default:
        runs["default"] = timed_search("default", device)
    runs["cifar10"] = timed_search("cifar10", ["--evaluator", "train", "--data", f"cifar10:{args.cifar_dir}", "--train-subset",
                                               str(args.train_subset), "--trials", str(args.trials), "--epochs", "1",
                                               *device])
    table = pd.DataFrame([row for row, _ in runs.values()])
    table.to_csv(RESULTS / "search_benchmark.csv", index=False)
    text = ("# `nas search` benchmark\n\nWall time includes Ray start-up and reports; candidate seconds are "
            "one trial's build + latency lookup + proxy training + BN recalibration + validation.\n\n"
            + markdown_table(table.drop(columns=["command"]), ".3g") + "\n\nCommands:\n\n"
            + "\n".join(f"- {r['run']}: `{r['command']}`" for _, r in table.iterrows()) + "\n")
    (RESULTS / "search_benchmark.md").write_text(text)
    print(text)

    fig = Figure(figsize=(5 * len(runs), 3.5))
    axes = fig.subplots(1, len(runs), squeeze=False)
    for ax, (name, (row, trials)) in zip(axes[0], runs.items()):
        ax.bar(trials["trial"], trials["seconds"], color=["C0" if s == "ok" else "C3" for s in trials["status"]])
        ax.set(xlabel="trial", ylabel="seconds per candidate",
               title=f"{name}: {row['wall_s'] / 60:.1f} min wall, {len(trials)} trials")
    fig.tight_layout()
    fig.savefig(RESULTS / "search_benchmark.png", dpi=110)


if __name__ == "__main__":
    main()
