"""Benchmark: vectorized `predict_many` throughput (architectures per second).

Saves experiments/results/latency_predict_many.{csv,md,png}.

    python experiments/latency_predict_bench.py [--target pixel_cpu] [--space mnv3]
"""
from __future__ import annotations

import argparse
import random
import time
import timeit
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from latency_tables import load_target
from search_spaces.space import get_space

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="pixel_cpu")
    ap.add_argument("--space", default="mnv3")
    args = ap.parse_args()
    table, space = load_target(args.target), get_space(args.space)
    rng = random.Random(0)
    t0 = time.perf_counter()
    table.predict_many(np.array([space.sample(rng)]), space=space)  # tabulate the stages once
    setup = time.perf_counter() - t0
    rows = []
    for n in (1_000, 10_000, 100_000, 1_000_000):
        vectors = np.array([space.sample(rng) for _ in range(min(n, 100_000))])
        vectors = np.resize(vectors, (n, vectors.shape[1]))
        s = min(timeit.repeat(lambda: table.predict_many(vectors, space=space), number=1, repeat=5))
        rows.append({"path": "decision vectors (vectorized)", "n": n, "seconds": s, "archs_per_s": n / s})
    archs = [space.decode(space.sample(rng)) for _ in range(2000)]
    s = min(timeit.repeat(lambda: table.predict_many(archs), number=1, repeat=2))
    rows.append({"path": "Arch objects (per-arch lookups)", "n": len(archs), "seconds": s, "archs_per_s": len(archs) / s})
    df = pd.DataFrame(rows)
    RESULTS.mkdir(parents=True, exist_ok=True)
    df.to_csv(RESULTS / "latency_predict_many.csv", index=False)
    lines = ["# predict_many throughput", "", f"target {args.target}, space {args.space}; "
             f"one-off stage tabulation {setup:.2f} s (best of 5 timings below).", "",
             "| path | n | seconds | archs/s |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.path} | {r.n:,} | {r.seconds:.4f} | {r.archs_per_s:,.0f} |" for r in df.itertuples()]
    (RESULTS / "latency_predict_many.md").write_text("\n".join(lines) + "\n")
    vec = df[df.path.str.startswith("decision")]
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    ax.plot(vec.n, vec.archs_per_s, "o-")
    ax.axhline(100_000, color="r", ls="--", lw=0.8, label="target 100k/s")
    ax.set(xscale="log", yscale="log", xlabel="architectures per call", ylabel="architectures / s",
           title="predict_many (vectorized)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "latency_predict_many.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
