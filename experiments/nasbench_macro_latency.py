"""Latency of every NAS-Bench-Macro network: measured end to end on this CPU, and predicted by the
`local_cpu` and `pixel_cpu` tables; the tables' fidelity on this family.

All 3,969 distinct networks at 32x32, batch 1, timed whole the way a table's validation times
networks (`latency_tables.build.measure_networks`: onnxruntime, interleaved chunks, median of
stable rounds, 1 thread). The timings go to a state file in the user's cache directory after
every chunk (atomically), so a killed run continues where it stopped, and a later session on the
same machine too. The `local_cpu` table first gets the space's ops and its 32-px end-to-end term
(`nas latency build --space nasbench_macro --device local_cpu` does the same ahead of time).

    python experiments/nasbench_macro_latency.py [--chunk 40] [--limit N]

Writes experiments/results/nasbench_macro_latency{.csv,.md,.png}.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau
from tqdm import tqdm

from latency_tables.build import measure_networks
from latency_tables.measure import OnnxRuntimeRunner
from latency_tables.targets import load_target
from latency_tables.validate import agreement
from nas.benchmarks.nasbench_macro import distinct
from nas.search_report import markdown_table
from results_paths import experiment_state
from search_spaces.atomic import atomic_write
from search_spaces.space import get_space

RESULTS = Path(__file__).resolve().parent / "results"
SPACE = get_space("nasbench_macro")


def state_path() -> Path:
    return experiment_state("nasbench_macro_latency_measured.csv")


def vector(code: str) -> list[int]:
    return [int(c) for c in code]


def write_csv(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def measure_all(codes: list[str], chunk: int, threads: int) -> pd.DataFrame:
    """End-to-end medians of `codes`, resumed from and saved to the state file chunk by chunk."""
    path = state_path()
    done = pd.read_csv(path, dtype={"code": str}) if path.exists() else pd.DataFrame(columns=["code", "measured_ms"])
    todo = [c for c in codes if c not in set(done["code"])]
    runner = OnnxRuntimeRunner(threads)
    with tqdm(total=len(codes), initial=len(codes) - len(todo), unit="net", desc="measure 32x32") as bar:
        for i in range(0, len(todo), chunk):
            batch = todo[i:i + chunk]
            ms = measure_networks([SPACE.decode(vector(c)) for c in batch], runner)
            done = pd.concat([done, pd.DataFrame({"code": batch, "measured_ms": ms,
                                                  "time": time.strftime("%H:%M:%S")})], ignore_index=True)
            write_csv(done, path)
            bar.update(len(batch))
    return done.set_index("code").loc[codes].reset_index()


def fidelity(predicted, measured) -> dict:
    s = agreement(predicted, measured)
    return {k: s[k] for k in ("n", "within_10pct", "within_5pct", "rmspe_pct", "kendall_tau", "mean_rel_err_pct")
            if k in s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, help="only the first N networks (a quick check)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--predict-only", action="store_true",
                    help="write the tables' predictions now and measure nothing (the CSV's measured column stays empty)")
    args = ap.parse_args()

    nets = distinct().reset_index()[["code", "mean_acc", "params", "flops"]]
    if args.limit:
        nets = nets.head(args.limit)
    vectors = np.array([vector(c) for c in nets["code"]])
    local, pixel = load_target("local_cpu"), load_target("pixel_cpu")
    nets["local_cpu_table_ms"] = local.predict_many(vectors, space=SPACE)
    nets["pixel_cpu_table_ms"] = pixel.predict_many(vectors, space=SPACE)
    if args.predict_only:
        write_csv(nets.assign(local_cpu_measured_ms=np.nan), args.out / "nasbench_macro_latency.csv")
        return
    nets["local_cpu_measured_ms"] = measure_all(list(nets["code"]), args.chunk, args.threads)["measured_ms"].to_numpy()
    write_csv(nets, args.out / "nasbench_macro_latency.csv")

    term = local.term_at(32)
    rows = [{"table": "local_cpu", **fidelity(nets.local_cpu_table_ms, nets.local_cpu_measured_ms)},
            {"table": "pixel_cpu (another device: rank only)",
             "kendall_tau": float(kendalltau(nets.pixel_cpu_table_ms, nets.local_cpu_measured_ms).statistic)}]
    flops_tau = float(kendalltau(nets.flops, nets.local_cpu_measured_ms).statistic)
    summary = pd.DataFrame(rows).assign(n=len(nets))  # an int column, also on the rank-only row
    lines = ["# NAS-Bench-Macro: latency of every network", "",
             f"{len(nets)} distinct networks at 32x32, batch 1, 1 thread, onnxruntime "
             f"{local.metadata.get('runtime_version')} on {local.metadata.get('cpu')}; measured end to end "
             "(median of stable rounds, interleaved chunks of "
             f"{args.chunk}) and predicted by the tables. local_cpu's 32-px end-to-end term: scale "
             f"{term['scale']:.3f}, {term.get('per_input_melem_ms', 0):+.3f} ms per M input elements, "
             f"{term.get('per_mmac_ms', 0):+.5f} ms per M MACs, offset {term['offset_ms']:+.3f} ms, fitted on "
             f"{term.get('networks')} random networks of {'nasbench_macro'} at 32 px. pixel_cpu is a "
             "per-op model of a Pixel 1 (a model estimate, not a measurement): only its ranking is compared.", "",
             "Reproduce: `python experiments/nasbench_macro_latency.py`", "",
             markdown_table(summary, ".3g"), "",
             f"Measured range {nets.local_cpu_measured_ms.min():.3f}-{nets.local_cpu_measured_ms.max():.3f} ms "
             f"(median {nets.local_cpu_measured_ms.median():.3f}); FLOPs rank the measured latencies at tau "
             f"{flops_tau:.3f}. Percentiles of measured latency (25/50/75): "
             + " / ".join(f"{q:.3f}" for q in nets.local_cpu_measured_ms.quantile([.25, .5, .75])) + " ms."]
    atomic_write(args.out / "nasbench_macro_latency.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    print("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    axes[0].scatter(nets.local_cpu_measured_ms, nets.local_cpu_table_ms, s=3, alpha=.5)
    lo, hi = nets.local_cpu_measured_ms.min(), nets.local_cpu_measured_ms.max()
    axes[0].plot([lo, hi], [lo, hi], "k--", lw=1)
    axes[0].set(xlabel="measured end to end (ms)", ylabel="local_cpu table (ms)",
                title=f"local_cpu: {rows[0].get('within_10pct', float('nan')):.0%} within ±10%")
    axes[1].scatter(nets.local_cpu_measured_ms, nets.pixel_cpu_table_ms, s=3, alpha=.5, color="C1")
    axes[1].set(xlabel="measured here (ms)", ylabel="pixel_cpu model (ms)",
                title=f"pixel_cpu vs this CPU: tau {rows[1]['kendall_tau']:.2f}")
    fig.suptitle(f"NAS-Bench-Macro, {len(nets)} networks at 32x32")
    fig.tight_layout()
    atomic_write(args.out / "nasbench_macro_latency.png", lambda tmp: fig.savefig(tmp, dpi=120, format="png"))


if __name__ == "__main__":
    main()
