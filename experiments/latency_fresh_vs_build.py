"""Benchmark: `nas latency validate --table local_cpu` on a fresh cache (the table fills and
calibrates itself on first use) against the same validation after `nas latency build`, idle and
with a busy loop on the other core, all through the public commands.

Every step validates the same 40 networks (the command's default seed), so the median of their
measured latencies tracks the machine's own speed from step to step: where it moves, a table
measured minutes earlier is off by as much, whatever its ops and term.

    python experiments/latency_fresh_vs_build.py [--rounds 2] [--samples 40]

Each table lives in its own temporary cache (XDG_CACHE_HOME), removed at the end. Writes
experiments/results/latency_fresh_vs_build{.csv,.md,.png}; a step's row is written (atomically)
as soon as it finishes.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from nas.run_dir import write_csv, write_text
from onnx_latency import busy_processes
from nas.search_report import markdown_table
from search_spaces.atomic import atomic_path

HERE = Path(__file__).resolve().parent
NAS = [sys.executable, "-m", "nas.cli", "latency"]


def validate(cache: Path, samples: int, out: Path) -> dict:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}
    subprocess.run([*NAS, "validate", "--table", "local_cpu", "--space", "mnv3", "--samples", str(samples),
                    "--out", str(out)], env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    summary = pd.read_csv(out / "latency_validation_summary.csv").iloc[0].to_dict()
    networks = pd.read_csv(out / "latency_validation.csv")
    return {**summary, "median_measured_ms": networks["measured_ms"].median(),
            "median_predicted_ms": networks["predicted_ms"].median()}


def plot(rows: pd.DataFrame, path: Path) -> None:
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    minutes = (rows["started"] - rows["started"].min()) / 60
    ax.plot(minutes, rows["median_measured_ms"], "o-", label="measured (median of the same networks)")
    ax.plot(minutes, rows["median_predicted_ms"], "s--", label="predicted by the table validated")
    for m, row in zip(minutes, rows.itertuples()):
        ax.annotate(f"{row.table}{' +busy' if row.loaded else ''}: {row.within_10pct:.0%}",
                    (m, row.median_measured_ms), fontsize=7, xytext=(3, 5), textcoords="offset points")
    ax.set(xlabel="minutes since the first step", ylabel="ms", title="validation (share within ±10%) vs machine speed")
    ax.legend(fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=2, help="fresh caches and builds, each (default 2)")
    ap.add_argument("--samples", type=int, default=40)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nas-fresh-vs-build-") as tmp:
        steps = [(f"fresh{i}", False) for i in range(args.rounds)] + [(f"built{i}", False) for i in range(args.rounds)]
        steps += [(f"fresh{args.rounds}", True), ("built0", True)]
        for name, loaded in steps:
            cache = Path(tmp) / name
            started, build_s = time.time(), None
            with busy_processes(1 if loaded else 0):  # the timed thread is pinned to the other core
                if name.startswith("built") and not cache.exists():
                    subprocess.run([*NAS, "build", "--space", "mnv3", "--device", "local_cpu"], check=True,
                                   env={**os.environ, "XDG_CACHE_HOME": str(cache)}, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
                    build_s = time.time() - started
                result = validate(cache, args.samples, Path(tmp) / f"val_{len(rows)}")
            rows.append({"step": len(rows), "table": name, "loaded": loaded, "started": started,
                         "build_seconds": build_s, "load_avg_1min": os.getloadavg()[0], **result})
            print(f"{name}{' (busy core)' if loaded else ''}: {result['within_10pct']:.0%} within 10%, "
                  f"RMSPE {result['rmspe_pct']:.1f}%, median measured {result['median_measured_ms']:.2f} ms",
                  flush=True)
            write_csv(out / "latency_fresh_vs_build.csv", pd.DataFrame(rows))
    frame = pd.DataFrame(rows)
    write_text(out / "latency_fresh_vs_build.md",
               "# local_cpu validation: fresh cache (first-use calibration) vs after `nas latency build`\n\n"
               f"`python experiments/latency_fresh_vs_build.py --rounds {args.rounds} --samples {args.samples}`; "
               "the same validation networks at every step; `loaded`: a busy loop on the other core.\n\n"
               + markdown_table(frame.drop(columns=["started", "n"])) + "\n")
    plot(frame, out / "latency_fresh_vs_build.png")


if __name__ == "__main__":
    main()
