"""Benchmark: does a table's validation figure hold from build to build, and under load?

Per build (its own seed: op order and calibration networks) it times into a fresh temporary
table the ops of the 100 validation networks (seed 12345, the same for every build) and of
the calibration networks, exactly as `nas latency build` times them (same runner, budget and
interleaved chunks; restricted to the ops these networks use, a quarter of the full `mnv3`
table, so that several builds fit in the time of one), then times the calibration networks
whole (as the build does) and the validation networks whole. Builds marked `loaded` run with
one busy process per core, so one competes with the timed thread: what the thread-CPU-time
clock must survive. The one-minute load average is recorded with every build (the machine is
shared with other jobs).

From the saved per-network figures (sum of op latencies, of op input elements, number of ops,
measured latency) it then fits the end-to-end term in several ways, on the first k
calibration networks of each build, and scores each fit on the validation networks: how
many calibration networks and which functional form the figure needs, with the ops' timing
held fixed.

    python experiments/latency_build_variance.py [--builds 2] [--loaded 1] [--calibration 40]
    python experiments/latency_build_variance.py --report      # refit and report saved builds

Each invocation adds its builds to those saved (numbered after them; `--fresh` starts over);
files are written atomically after every build.

Writes experiments/results/latency_build_variance{.csv,_networks.csv,_fits.csv,.md,.png}.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from latency_tables.build import build_table, fit_term, measure_networks, network_features, random_archs
from latency_tables.measure import OnnxRuntimeRunner
from latency_tables.ops import arch_ops
from latency_tables.validate import agreement
from nas.run_dir import write_csv, write_text
from onnx_latency import busy_processes
from search_spaces.atomic import atomic_path
from search_spaces.ir import Arch
from search_spaces.space import get_space

RESULTS = Path(__file__).resolve().parent / "results"
VALIDATION_SEED = 12345


def load1() -> float:
    return os.getloadavg()[0]


def one_build(space, condition: str, index: int, samples: int, calibration: int, resolution: int):
    """Time a build's ops, its calibration networks and the validation networks; (summary, per-network rows)."""
    val = random_archs(space, samples, VALIDATION_SEED, resolution)
    cal = random_archs(space, calibration, index + 1, resolution)  # as calibrate_table(seed=index)
    ops = list(dict.fromkeys(op for a in val + cal for _, op in arch_ops(a)))
    with busy_processes((os.cpu_count() or 1) if condition == "loaded" else 0):
        load_start = load1()
        runner = OnnxRuntimeRunner(1)
        with tempfile.TemporaryDirectory(prefix="lat-var-") as tmp:
            t0 = time.time()
            table = build_table(space, "local_cpu", Path(tmp) / "t.csv", runner, resolution=resolution, ops=ops,
                                calibrate=0, seed=index, progress=False)
            build_s = time.time() - t0
            cal_ms = measure_networks(cal, runner)
            val_ms = measure_networks(val, runner)
            networks_s = time.time() - t0 - build_s
    rows = []
    for name, archs, ms in (("calibration", cal, cal_ms), ("validation", val, val_ms)):
        sums, inputs, _ = network_features(table, archs)  # MACs: from the arch, in `fits`
        rows.append(pd.DataFrame({"build": index, "condition": condition, "set": name,
                                  "arch": [a.to_string() for a in archs], "sum_ms": sums, "input_melems": inputs,
                                  "n_ops": [len(arch_ops(a)) for a in archs], "measured_ms": ms}))
    summary = {"build": index, "condition": condition, "ops": len(ops), "build_s": round(build_s, 1),
               "networks_s": round(networks_s, 1), "load1_start": round(load_start, 2), "load1_end": round(load1(), 2)}
    return summary, pd.concat(rows)


def fit_form(form: str, cal: pd.DataFrame):
    """A predictor fitted on calibration networks: the project's `fit_term`, or another form
    (least squares on the named per-network sums plus an offset)."""
    if form == PROJECT:
        t = fit_term(cal["sum_ms"], cal["input_melems"], cal["mmacs"], cal["measured_ms"])
        return lambda d: (t["scale"] * d["sum_ms"] + t["per_input_melem_ms"] * d["input_melems"]
                          + t["per_mmac_ms"] * d["mmacs"] + t["offset_ms"])
    cols = FORMS[form]
    X = np.c_[cal[cols].to_numpy(float), np.ones(len(cal))]
    coef, *_ = np.linalg.lstsq(X, cal["measured_ms"].to_numpy(float), rcond=None)
    return lambda d: np.c_[d[cols].to_numpy(float), np.ones(len(d))] @ coef


#: the fit `nas latency build` makes now, and the alternatives measured against it
PROJECT = "scale+input+MACs+offset (fit_term)"
FORMS = {PROJECT: None, "scale+input+offset (before)": ["sum_ms", "input_melems"],
         "scale+MACs+offset": ["sum_ms", "mmacs"], "scale+offset": ["sum_ms"]}


def fits(nets: pd.DataFrame, sizes=(10, 20, 30, 40, 60)) -> pd.DataFrame:
    """Every build x calibration size x form, scored on that build's validation networks."""
    rows = []
    mmacs = {a: sum(op.macs() for _, op in arch_ops(Arch.from_string(a))) / 1e6 for a in nets["arch"].unique()}
    nets = nets.assign(mmacs=nets["arch"].map(mmacs))
    for (build, cond), g in nets.groupby(["build", "condition"]):
        cal, val = g[g["set"] == "calibration"], g[g["set"] == "validation"]
        rows.append({"build": build, "condition": cond, "calibration_networks": 0, "form": "none (sum of ops)",
                     **agreement(val["sum_ms"], val["measured_ms"])})
        for k in sizes:
            if k > len(cal):
                continue
            for form in FORMS:
                predict = fit_form(form, cal.iloc[:k])
                rows.append({"build": build, "condition": cond, "calibration_networks": k, "form": form,
                             **agreement(predict(val), val["measured_ms"])})
    return pd.DataFrame(rows)


def clock_robustness(nets: pd.DataFrame) -> str:
    """Median ratio of each validation network's time in loaded builds to its time in quiet builds."""
    val = nets[nets["set"] == "validation"].pivot_table(index="arch", columns="condition", values="measured_ms")
    if not {"quiet", "loaded"} <= set(val.columns):
        return ""
    r = val["loaded"] / val["quiet"]
    return (f"Thread CPU time under load: a validation network's time with one busy process per core is "
            f"{r.median():.3f}x its time in the quiet builds (median over {len(r)} networks; "
            f"10th-90th percentile {r.quantile(0.1):.3f}-{r.quantile(0.9):.3f}).")


def report(runs: pd.DataFrame, nets: pd.DataFrame) -> None:
    f = fits(nets)
    write_csv(RESULTS / "latency_build_variance_fits.csv", f)
    lines = ["# local_cpu table: validation from build to build", "",
             "Per build: the ops of 100 validation networks (seed 12345, the same for every build) and of the "
             "build's calibration networks timed into a fresh table as `nas latency build` times them, then the "
             "calibration and validation networks timed whole. `loaded`: one busy process per core throughout. "
             "load1: the machine's one-minute load average at start and end (a machine shared with other jobs).",
             "", "| build | condition | ops | build s | networks s | load1 start | load1 end |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.build} | {r.condition} | {r.ops} | {r.build_s} | {r.networks_s} | {r.load1_start} | "
              f"{r.load1_end} |" for r in runs.itertuples()]
    lines += ["", clock_robustness(nets), "",
              "End-to-end term fitted on the first k calibration networks of each build, scored on the validation "
              "networks (within: share within +-5% / +-10%; mean error: prediction bias):", "",
              "| build | condition | k | form | within 10% | within 5% | RMSPE % | mean error % | tau |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {r.build} | {r.condition} | {r.calibration_networks} | {r.form} | {r.within_10pct:.2f} | "
              f"{r.within_5pct:.2f} | {r.rmspe_pct:.2f} | {r.mean_rel_err_pct:+.2f} | {r.kendall_tau:.3f} |"
              for r in f.itertuples()]
    write_text(RESULTS / "latency_build_variance.md", "\n".join(lines) + "\n")
    print("\n".join(lines))

    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    styles = dict(zip(FORMS, ("-", "--", "-.", ":")))
    colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, ((build, cond), g) in enumerate(f[f["calibration_networks"] > 0].groupby(["build", "condition"])):
        load = runs.set_index("build").loc[build, "load1_end"]
        for form, h in g.groupby("form"):
            ax.plot(h["calibration_networks"], h["within_10pct"] * 100, styles[form], marker="o", ms=3,
                    color=colors[i % len(colors)], label=f"build {build} ({cond}, load {load:.1f}): {form}")
    ax.axhline(95, color="gray", lw=0.8)
    ax.set(xlabel="calibration networks", ylabel="% of 100 validation networks within +-10%",
           title="end-to-end term: calibration size and form, per build")
    ax.legend(fontsize=6)
    fig.tight_layout()
    with atomic_path(RESULTS / "latency_build_variance.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="mnv3")
    ap.add_argument("--builds", type=int, default=2, help="builds on the machine as it is")
    ap.add_argument("--loaded", type=int, default=1, help="builds with one busy process per core")
    ap.add_argument("--samples", type=int, default=100, help="validation networks")
    ap.add_argument("--calibration", type=int, default=40, help="calibration networks timed per build")
    ap.add_argument("--report", action="store_true", help="only refit and report the saved builds")
    ap.add_argument("--fresh", action="store_true", help="drop the saved builds (default: add new builds to them)")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs_csv = RESULTS / "latency_build_variance.csv"
    nets_csv = RESULTS / "latency_build_variance_networks.csv"
    if not args.report:
        space = get_space(args.space)
        # builds saved by earlier invocations are kept (a killed run loses only its current build)
        runs = [] if args.fresh or not runs_csv.exists() else pd.read_csv(runs_csv).to_dict("records")
        nets = [] if not runs else [pd.read_csv(nets_csv)]
        conditions = ["quiet"] * args.builds
        conditions[1:1] = ["loaded"] * args.loaded  # a loaded build early: the figures land build by build
        for i, cond in enumerate(conditions, start=len(runs)):
            summary, df = one_build(space, cond, i, args.samples, args.calibration, space.resolution)
            runs.append(summary)
            nets.append(df)
            write_csv(runs_csv, pd.DataFrame(runs))
            write_csv(nets_csv, pd.concat(nets))
            print(f"build {i} ({cond}) done: {summary}", flush=True)
    report(pd.read_csv(runs_csv), pd.read_csv(nets_csv))


if __name__ == "__main__":
    main()
