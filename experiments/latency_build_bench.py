"""Benchmark: build the full local_cpu table of a space on this machine, then re-time a sample.

Prints and saves (experiments/results/latency_build_*): build time, ops per minute, and the
repeat-to-repeat spread of op medians (a random sample of ops timed a second time).
The built table goes to the local_cpu cache (it is this machine's table), not the repo.

    python experiments/latency_build_bench.py [--space mnv3] [--resolution 224] [--repeat 300]
"""
from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from latency_tables.build import build_table, measure_ops
from latency_tables.measure import OnnxRuntimeRunner
from latency_tables.ops import parse_key, space_ops
from latency_tables.targets import local_cpu_path
from search_spaces.space import get_space

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mnv3")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=300, help="ops re-timed for the spread")
    ap.add_argument("--out", default=None, help="table file (default: the local_cpu cache)")
    args = ap.parse_args()
    space = get_space(args.space)
    out = Path(args.out) if args.out else local_cpu_path(args.threads)
    runner = OnnxRuntimeRunner(args.threads)
    n_ops = len(space_ops(space, args.resolution))
    t0 = time.time()
    table = build_table(space, "local_cpu", out, runner, resolution=args.resolution)
    wall = time.time() - t0
    measure_s = table.metadata.get("measure_seconds", wall)

    # repeat-to-repeat spread: time a sample of ops again, in new interleaved batches
    keys = random.Random(1).sample(list(table.df["key"]), min(args.repeat, len(table)))
    again = []
    for i in range(0, len(keys), 40):
        again += measure_ops([parse_key(k) for k in keys[i:i + 40]], runner)
    first = table.df.set_index("key").loc[keys, "median_ms"].to_numpy()
    second = np.array([r["median_ms"] for r in again])
    ratio = second / first
    spread = pd.DataFrame({"key": keys, "first_ms": first, "second_ms": second, "ratio": ratio})
    RESULTS.mkdir(parents=True, exist_ok=True)
    spread.to_csv(RESULTS / "latency_build_spread.csv", index=False)

    summary = {
        "space": args.space, "resolution": args.resolution, "threads": args.threads, "ops": n_ops,
        "wall_seconds_this_run": round(wall, 1), "measure_seconds_total": round(measure_s, 1),
        "ops_per_minute": round(n_ops / measure_s * 60, 1),
        "network_term": table.metadata["network_term"],
        "repeat_ops": len(keys),
        "repeat_median_abs_diff_pct": round(float(np.median(np.abs(ratio - 1)) * 100), 2),
        "repeat_p90_abs_diff_pct": round(float(np.percentile(np.abs(ratio - 1), 90)) * 100, 2),
        "repeat_within_5pct": round(float(np.mean(np.abs(ratio - 1) <= 0.05)), 3),
        "cpu": table.metadata["cpu"], "onnxruntime": table.metadata["runtime_version"],
    }
    lines = ["# Latency table build benchmark", "", "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in summary.items()]
    (RESULTS / "latency_build.md").write_text("\n".join(lines) + "\n")
    pd.DataFrame([{k: v for k, v in summary.items() if k != "network_term"}]).to_csv(
        RESULTS / "latency_build.csv", index=False)

    fig = Figure(figsize=(10, 4))
    ax = fig.subplots(1, 2)
    ax[0].hist(table.df["median_ms"], bins=60)
    ax[0].set(xlabel="op median (ms)", ylabel="ops", yscale="log",
              title=f"{n_ops} ops, {summary['ops_per_minute']:.0f} ops/min")
    ax[1].scatter(first, second, s=6)
    lim = [min(first.min(), second.min()), max(first.max(), second.max())]
    ax[1].plot(lim, lim, "k--", lw=0.8)
    ax[1].set(xscale="log", yscale="log", xlabel="first timing (ms)", ylabel="second timing (ms)",
              title=f"repeat spread: median |diff| {summary['repeat_median_abs_diff_pct']}%")
    fig.tight_layout()
    fig.savefig(RESULTS / "latency_build.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
