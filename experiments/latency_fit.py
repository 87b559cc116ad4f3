"""Tables fitted from whole-network timings (`latency_tables.fit`): how many timings, chosen how,
with which prior, to predict held-out networks within +-10% and rank them.

On recorded measurements only, no new timing: a benchmark (`--benchmark`) gives networks of a
space with each device's measured cost (`nasbench_macro`: this machine's end-to-end latency of
every NAS-Bench-Macro network; `accel_nasbench`: Accel-NASBench's two FPGAs' latency and four
accelerators' throughput as ms per image). For every N, choice (planned: greedy
D-optimal, `latency_tables.plan`; random) and prior (none; `features`: MACs and memory traffic;
`pixel_cpu`: another device's table rescaled per op kind), a table is fitted on N networks of the
training pool and judged on a fixed held-out set: share within +-10%, Kendall tau, Spearman rho
(and the fit's own cross-validated share, which a user sees without held-out data). The per-op
table of the same device, where the benchmark has its predictions, is the reference row.

    python experiments/latency_fit.py [--benchmark nasbench_macro accel_nasbench] [--sizes 10 20 50 100 200 500]
        [--repeats 3] [--held-out 1000]

Writes experiments/results/latency_fit{.csv,.md,.png}.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from latency_tables.fit import fit_metrics, fit_table
from latency_tables.plan import plan_networks
from latency_tables.targets import load_target
from nas.search_report import markdown_table
from results_paths import shown
from script_main import run_script
from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError
from search_spaces.space import Space, get_space

RESULTS = Path(__file__).resolve().parent / "results"
SIZES = (10, 20, 50, 100, 200, 500)
PRIORS = ("none", "features", "pixel_cpu")
CHOICES = ("planned", "random")


@dataclass
class Benchmark:
    """Networks of one space (decision vectors) and, per device, their measured ms; `per_op`: a
    per-op table's predictions of the same networks on the same device, where recorded."""

    space: Space
    vectors: np.ndarray
    measured: dict[str, np.ndarray]   # NaN where a device did not time a network
    per_op: dict[str, np.ndarray]
    source: str
    cv_folds: int = 5                 # the fit's own k-fold estimate (0: skipped, to save k more fits)


def nasbench_macro() -> Benchmark:
    """This machine's measured latency of every NAS-Bench-Macro network
    (experiments/nasbench_macro_latency.py), and the local_cpu per-op table's predictions."""
    path = RESULTS / "nasbench_macro_latency.csv"
    if not path.exists():
        raise UserError(f"{shown(path)} not found: run experiments/nasbench_macro_latency.py first")
    df = pd.read_csv(path, dtype={"code": str}).dropna(subset=["local_cpu_measured_ms"])
    vectors = np.array([[int(c) for c in code] for code in df["code"]])
    return Benchmark(get_space("nasbench_macro"), vectors, {"this CPU": df["local_cpu_measured_ms"].to_numpy()},
                     {"this CPU": df["local_cpu_table_ms"].to_numpy()}, shown(path))


def accel_nasbench() -> Benchmark:
    """Accel-NASBench's six accelerators (the package's derived records, `nas.benchmarks.accel_nasbench`):
    two FPGAs' end-to-end latency and four throughputs as ms per image. No per-op table exists for
    them; the fits' own cross-validation is skipped (6 devices x 216 fits)."""
    from nas.benchmarks import accel_nasbench as anb

    nets = anb.distinct()
    costs = anb.device_costs(nets)
    return Benchmark(anb.SPACE, np.array([anb.vector(c) for c in nets.index]),
                     {d: costs[d].to_numpy(float) for d in costs.columns}, {},
                     f"nas/benchmarks/data/{anb.DATA_FILE}", cv_folds=0)


#: benchmarks by name
BENCHMARKS = {"nasbench_macro": nasbench_macro, "accel_nasbench": accel_nasbench}


def choose(bench: Benchmark, pool: np.ndarray, n: int, choice: str, seed: int) -> np.ndarray:
    """Indices (into the benchmark) of the `n` training networks to time."""
    if choice == "random":
        return np.random.default_rng(seed).choice(pool, n, replace=False)
    picked = plan_networks(bench.space, n, seed=seed, pool=bench.vectors[pool].tolist())
    where = {tuple(v): i for i, v in zip(pool, bench.vectors[pool].tolist())}
    return np.array([where[tuple(v)] for v in picked])


def study(name: str, bench: Benchmark, sizes, repeats: int, held_out: int, seed: int) -> pd.DataFrame:
    priors = {"none": None, "features": "features", "pixel_cpu": load_target("pixel_cpu")}
    space, rows = bench.space, []
    for device, measured in bench.measured.items():
        timed_here = np.flatnonzero(np.isfinite(measured))
        order = timed_here[np.random.default_rng(seed).permutation(len(timed_here))]
        test, pool = order[:held_out], order[held_out:]
        if device in bench.per_op:
            rows.append({"benchmark": name, "device": device, "n": 0, "choice": "-",
                         "prior": "per-op table (reference)", "repeat": 0,
                         **fit_metrics(bench.per_op[device][test], measured[test])})
        for n in sizes:
            for choice in CHOICES:
                for r in range(repeats):
                    timed = choose(bench, pool, n, choice, seed + r)
                    for prior_name, prior in priors.items():
                        table = fit_table(space, [space.decode(v) for v in bench.vectors[timed].tolist()],
                                          measured[timed], prior=prior, device=device, cv_folds=bench.cv_folds)
                        predicted = table.predict_many(bench.vectors[test], space)
                        cv = table.metadata["fit"]["cv"] or {}
                        rows.append({"benchmark": name, "device": device, "n": n, "choice": choice,
                                     "prior": prior_name, "repeat": r,
                                     **fit_metrics(predicted, measured[test]),
                                     "cv_within_10pct": cv.get("within_10pct", np.nan),
                                     "determined_by": table.metadata["fit"]["determined_by"]})
                        print(f"{device} N={n} {choice} prior {prior_name} #{r}: "
                              f"{rows[-1]['within_10pct']:.1%} within 10%, rho {rows[-1]['spearman_rho']:.3f}", file=sys.stderr, flush=True)
    return pd.DataFrame(rows)


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """Mean over repeats per device, N, choice and prior."""
    cols = ["within_10pct", "kendall_tau", "spearman_rho", "rmspe_pct", "cv_within_10pct"]
    return df.groupby(["benchmark", "device", "n", "choice", "prior"], sort=False)[cols].mean().reset_index()


def plot(table: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    fitted = table[table["n"] > 0]
    devices = list(dict.fromkeys(fitted["device"]))
    fig = Figure(figsize=(11, 3.4 * len(devices)))
    axes = fig.subplots(len(devices), 2, squeeze=False)
    for row, device in zip(axes, devices):
        d = table[table["device"] == device]
        for i, (prior, choice) in enumerate((p, c) for p in PRIORS for c in CHOICES):
            s = d[(d["prior"] == prior) & (d["choice"] == choice)]
            style = dict(color=f"C{PRIORS.index(prior)}", ls="-" if choice == "planned" else "--", marker="o", ms=3,
                         label=f"{prior}, {choice}")
            row[0].plot(s["n"], s["within_10pct"] * 100, **style)
            row[1].plot(s["n"], s["spearman_rho"], **style)
        ref = d[d["n"] == 0]
        for ax, col, k in ((row[0], "within_10pct", 100), (row[1], "spearman_rho", 1)):
            if len(ref):
                ax.axhline(ref[col].iloc[0] * k, color="k", lw=0.8, ls=":", label="per-op table")
            ax.set_xscale("log")
            ax.set_xlabel("networks timed whole (N)")
        row[0].set(ylabel="held-out within ±10% (%)", title=f"{device}: share within ±10%")
        row[1].set(ylabel="Spearman rho", title=f"{device}: ranking")
        row[1].legend(fontsize=7)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def run(args) -> None:
    unknown = [b for b in args.benchmark if b not in BENCHMARKS]
    if unknown:
        raise UserError(f"unknown benchmark {unknown[0]!r} (known: {', '.join(BENCHMARKS)})")
    if args.repeats < 1 or min(args.sizes) < 1:
        raise UserError("--repeats and every --sizes must be at least 1")
    command = "python experiments/latency_fit.py " + " ".join(
        ["--benchmark " + " ".join(args.benchmark), "--sizes " + " ".join(map(str, args.sizes)),
         f"--repeats {args.repeats}", f"--held-out {args.held_out}", f"--seed {args.seed}"])
    lines = ["# Latency tables fitted from whole-network timings", "",
             f"Recorded measurements only, no new timing. Per device, {args.held_out} networks held out at random; "
             f"N networks of the rest \"timed\" (their recorded times) and a table fitted on them "
             f"(`latency_tables.fit.fit_table`, what `nas latency fit` runs), chosen greedily D-optimal over the "
             f"one-hot layer choices (`nas latency plan`) or at random; priors: none, `features` (MACs, memory "
             f"traffic, a fixed cost per op), `pixel_cpu` (another device's table, a Pixel 1 per-op model, "
             f"rescaled per op kind). Mean of {args.repeats} repeats (random: other draws; planned: the plan's "
             f"ties broken by another seed). `cv_within_10pct`: the fit's own 5-fold estimate, what a user sees "
             f"without held-out data. A reference row (n = 0) is the device's per-op table (every op timed alone, "
             f"end-to-end term fitted) on the same held-out networks, where one exists.", "",
             f"Reproduce: `{command}`", ""]
    runs = []
    for name in args.benchmark:
        bench = BENCHMARKS[name]()
        if args.held_out + max(args.sizes) > len(bench.vectors):
            raise UserError(f"{name}: {len(bench.vectors)} networks, too few for {args.held_out} held out and "
                            f"N = {max(args.sizes)}")
        runs.append(study(name, bench, args.sizes, args.repeats, args.held_out, args.seed))
        lines += [f"## {name}", "", f"{len(bench.vectors)} networks of space {bench.space.name} ({bench.source}); "
                  f"devices: {', '.join(bench.measured)}." + ("" if bench.cv_folds else
                                                              " The fits' own cross-validation skipped here."), "",
                  markdown_table(summary(runs[-1]), ".3g"), ""]
    runs = pd.concat(runs, ignore_index=True)
    out = args.out
    atomic_write(out / "latency_fit.csv", lambda tmp: runs.to_csv(tmp, index=False, float_format="%.6g"))
    lines.append("Full per-repeat results: `latency_fit.csv`; plot: `latency_fit.png`.")
    atomic_write(out / "latency_fit.md", lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    plot(summary(runs), out / "latency_fit.png")
    print("\n".join(lines))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--benchmark", nargs="+", default=list(BENCHMARKS), metavar="NAME",
                    help=f"benchmarks to study (default all: {', '.join(BENCHMARKS)})")
    ap.add_argument("--sizes", type=int, nargs="+", default=list(SIZES), metavar="N")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--held-out", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    return run_script(ap, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
