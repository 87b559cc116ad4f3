"""Savings, not totals: does the local_cpu table predict what NetAdapt's cuts save?

NetAdapt (netadapt/refine.py) keeps a cut when the table predicts that it saves the
iteration's goal, so what matters is the table's error on a *difference* of two networks,
not on a total. For each network (MobileNetV3-Large and -Small and random `mnv3` samples, at
the table's resolution) this takes every trimmable unit (`netadapt.surgery.units`) at
several cut sizes (8 and 32 channels) plus the proposal NetAdapt makes for each goal
(1%, 2.5% and 5% of the network's latency: the smallest cut whose predicted saving reaches
it, `netadapt.proposals.proposals`), measures each cut network and its parent end to end
with onnxruntime (`latency_tables.measure`, thread CPU time, one thread), the parent
interleaved with each child, and compares predicted with measured savings.

The measured saving of a child is the median over rounds of (parent - child) within the
same round: the two ran back to back, so slow phases of a shared machine cancel (timing
the parent once against a whole batch of children left differences of 3% between two
copies of one network under load). `saving_se_ms` is the standard error of that median,
and a control row per network (the parent against a second session of itself) shows the
noise floor directly.

Rows are appended to the CSV after every batch (atomically), so a killed run resumes with
the cuts it has not measured. Predictions are recomputed from the table at every run, so
one set of measurements scores the table before and after a change to its predictions.

    nas latency build --space mnv3 --device local_cpu        # the table, if not built yet
    python experiments/latency_savings_fidelity.py           # ~10-15 min on 2 shared cores
    python experiments/latency_savings_fidelity.py --quick   # 2 networks, fewer cuts and rounds
"""
from __future__ import annotations

import argparse
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau
from tqdm import tqdm

from latency_tables.measure import Budget, OnnxRuntimeRunner
from latency_tables.table import LatencyTable
from latency_tables.targets import local_cpu_path, open_table
from nas.run_dir import write_csv, write_text
from netadapt.proposals import proposals
from netadapt.surgery import STEP, resize, units
from search_spaces.ir import Arch
from search_spaces.onnx_export import export_onnx
from search_spaces.references import reference
from search_spaces.space import get_space

RESULTS = Path(__file__).resolve().parent / "results"
NAME = "latency_savings_fidelity"
GOALS = (0.01, 0.025, 0.05)     # NetAdapt's step (MobileNetV3: 1% of the latency) and larger ones
CUTS = (1, 4)                   # cut sizes measured for every unit, in steps of 8 channels
WITHIN = 0.20                   # a proposal "saves what it promised" within +-20%


@dataclass(frozen=True)
class Cut:
    network: str
    unit: str
    kind: str
    width_from: int
    width_to: int
    arch: Arch


# ---- what to measure -----------------------------------------------------------------
def networks(n_random: int, resolution: int, seed: int) -> list[tuple[str, Arch]]:
    space = get_space("mnv3")
    rng = random.Random(seed)
    nets = [(name, reference(name).replace(resolution=resolution))
            for name in ("mobilenet_v3_large", "mobilenet_v3_small")]
    nets += [(f"mnv3_random{i}", space.decode(space.sample(rng)).replace(resolution=resolution))
             for i in range(n_random)]
    return nets


def netadapt_proposals(name: str, arch: Arch, table, goals=GOALS) -> pd.DataFrame:
    """NetAdapt's proposals for each goal (a fraction of the parent's predicted latency):
    one row per (goal, unit) with the width it cuts to."""
    current = table.query_total(arch)
    rows = [{"network": name, "goal_frac": g, "goal_ms": g * current, "unit": p.unit.name, "width_to": p.width}
            for g in goals for p in proposals(arch, table, g * current, current)]
    return pd.DataFrame(rows, columns=["network", "goal_frac", "goal_ms", "unit", "width_to"])


def cuts_to_measure(name: str, arch: Arch, props: pd.DataFrame, cut_steps=CUTS) -> list[Cut]:
    """Every unit at the given cut sizes, plus the widths NetAdapt proposes."""
    wanted = {}
    for u in units(arch):
        widths = {u.width - STEP * k for k in cut_steps}
        widths |= set(props.loc[props["unit"] == u.name, "width_to"].astype(int))
        for w in sorted(widths, reverse=True):
            new = resize(arch, u, w) if w >= 8 else None
            if new is not None:
                wanted[(u.name, w)] = Cut(name, u.name, u.kind, u.width, w, new)
    return list(wanted.values())


# ---- measuring -----------------------------------------------------------------------
def measured_savings(samples: list[list[float]]) -> tuple[float, np.ndarray, np.ndarray]:
    """Samples of [parent, child1, child2, ...] timed in the same rounds: the parent's median
    and, per child, its median and the median of the paired per-round savings."""
    s = np.asarray(samples, dtype=float)
    return float(np.median(s[0])), np.median(s[1:], axis=1), np.median(s[0] - s[1:], axis=1)


def measure_batch(parent: Arch, cuts: list[Cut], runner: OnnxRuntimeRunner) -> list[dict]:
    """Time each cut in rounds with its parent (and, as the control, the parent with a second
    session of itself): a pair per call, so parent and child always run back to back."""
    parent_onnx = export_onnx(parent)
    control = Cut(cuts[0].network, "control", "control", 0, 0, parent)
    rows = []
    for c in [control, *cuts]:
        load = os.getloadavg()[0]
        samples = runner.measure([parent_onnx, parent_onnx if c is control else export_onnx(c.arch)])
        parent_ms, (child_ms,), (saving,) = measured_savings(samples)
        spread = np.subtract(*samples).std() / np.sqrt(len(samples[0]))
        rows.append({"network": c.network, "unit": c.unit, "kind": c.kind, "width_from": c.width_from,
                     "width_to": c.width_to, "parent_ms": parent_ms, "child_ms": float(child_ms),
                     "measured_saving_ms": float(saving), "saving_se_ms": float(1.2533 * spread),
                     "rounds": len(samples[0]), "loadavg": round((load + os.getloadavg()[0]) / 2, 2),
                     "arch": c.arch.to_string()})
    return rows


# ---- scoring -------------------------------------------------------------------------
def add_predictions(df: pd.DataFrame, parents: dict[str, Arch], predictors: dict) -> pd.DataFrame:
    """Predicted saving of every measured cut by each predictor (name -> table)."""
    df = df.copy()
    for name, table in predictors.items():
        parent_ms = {n: table.query_total(a) for n, a in parents.items()}
        df[f"predicted_saving_ms_{name}"] = [parent_ms[n] - table.query_total(Arch.from_string(a))
                                             for n, a in zip(df["network"], df["arch"])]
    return df


def score(cuts: pd.DataFrame, props: pd.DataFrame, predicted: str) -> dict:
    """Savings fidelity of one predictor: rank agreement and errors over every measured cut;
    over NetAdapt's proposals, the share whose measured saving reaches the goal and the share
    within +-20% of the promised (predicted) saving."""
    c = cuts[cuts["unit"] != "control"]
    err = c[predicted] - c["measured_saving_ms"]
    promised = c[predicted].where(c[predicted] > 0)
    p = props.merge(c, on=["network", "unit", "width_to"], how="left")
    measured = p["measured_saving_ms"]
    return {"cuts": len(c), "kendall_tau": float(kendalltau(c[predicted], c["measured_saving_ms"]).statistic),
            "median_abs_err_ms": float(err.abs().median()),
            "median_abs_err_pct": float((err.abs() / promised).median() * 100),
            "proposals": len(p), "proposals_unmeasured": int(measured.isna().sum()),
            "reach_goal": float((measured >= p["goal_ms"]).mean()),
            "within_20pct": float(((measured - p[predicted]).abs() <= WITHIN * p[predicted]).mean())}


def noise_floor(cuts: pd.DataFrame) -> float:
    """Median |measured saving| of a network against itself: what measurement alone gives."""
    return float(cuts.loc[cuts["unit"] == "control", "measured_saving_ms"].abs().median())


# ---- report --------------------------------------------------------------------------
def scatter(df: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = df[df["unit"] != "control"]
    names = list(summary["predictor"])
    fig, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 5), squeeze=False)
    for ax, name, row in zip(axes[0], names, summary.itertuples()):
        for kind, marker in (("width", "o"), ("mid", "^")):
            k = c[c["kind"] == kind]
            ax.scatter(k["measured_saving_ms"], k[f"predicted_saving_ms_{name}"], s=10, marker=marker, label=kind)
        hi = float(max(c["measured_saving_ms"].max(), c[f"predicted_saving_ms_{name}"].max()))
        lo = float(min(c["measured_saving_ms"].min(), c[f"predicted_saving_ms_{name}"].min(), 0))
        x = np.linspace(lo, hi, 2)
        ax.plot(x, x, "k-", lw=0.8)
        ax.fill_between(x, (1 - WITHIN) * x, (1 + WITHIN) * x, color="gray", alpha=0.2, label="+-20%")
        ax.set(xlabel="measured saving (ms)", ylabel="predicted saving (ms)",
               title=f"{name}: tau {row.kendall_tau:.2f}, {row.within_20pct:.0%} of proposals within +-20%")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown(summary: pd.DataFrame, df: pd.DataFrame, table: LatencyTable, args, per_kind: pd.DataFrame) -> str:
    c = df[df["unit"] != "control"]
    lines = [f"# Latency savings fidelity ({table.metadata['device']})", "",
             f"{df['network'].nunique()} networks at {table.metadata['resolution']}x{table.metadata['resolution']} "
             f"({', '.join(df['network'].unique())}), {len(c)} cuts (every trimmable unit at "
             f"{', '.join(str(8 * k) for k in args.cuts)} channels, plus NetAdapt's proposals for goals of "
             f"{', '.join(f'{g:.1%}' for g in args.goals)} of the network's latency).",
             f"onnxruntime {table.metadata['runtime_version']}, 1 thread, thread CPU time, {int(df['rounds'].median())} "
             f"rounds per (parent, cut) pair, run back to back; load average while measuring "
             f"{df['loadavg'].min():.2f}-{df['loadavg'].max():.2f} ({os.cpu_count()} cores).",
             f"Noise floor (parent against a copy of itself): median |saving| {noise_floor(df):.3f} ms; "
             f"median standard error of a measured saving {df['saving_se_ms'].median():.3f} ms.",
             "Errors in percent are relative to the promised (predicted) saving.", "",
             "| predictor | cuts | Kendall tau | median abs err (ms) | median abs err (%) | proposals | "
             "reach goal | within +-20% |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.predictor} | {r.cuts} | {r.kendall_tau:.3f} | {r.median_abs_err_ms:.3f} | "
              f"{r.median_abs_err_pct:.1f} | {r.proposals} | {r.reach_goal:.0%} | {r.within_20pct:.0%} |"
              for r in summary.itertuples()]
    lines += ["", "Median signed error (predicted - measured, ms) by unit kind:", "",
              "| unit kind | " + " | ".join(per_kind.columns) + " |", "| --- |" + " ---: |" * len(per_kind.columns)]
    lines += [f"| {kind} | " + " | ".join(f"{v:+.3f}" for v in row) + " |" for kind, row in per_kind.iterrows()]
    return "\n".join(lines) + "\n"


def predictors(table: LatencyTable) -> dict:
    """The table as it predicts today."""
    return {"table": table}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=3, help="random mnv3 networks besides MobileNetV3-L/S")
    ap.add_argument("--rounds", type=int, default=40, help="timing rounds per (parent, cut) pair")
    ap.add_argument("--batch", type=int, default=12, help="cuts per checkpoint (rows written after each)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2 networks, one cut size, one goal, 20 rounds")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    args.goals, args.cuts = (GOALS[:1], CUTS[:1]) if args.quick else (GOALS, CUTS)
    n_random, rounds = (0, 20) if args.quick else (args.random, args.rounds)
    out = Path(args.results)
    csv = out / (f"{NAME}_quick.csv" if args.quick else f"{NAME}.csv")

    table = open_table(local_cpu_path())  # read-only: ops it lacks are measured, not written back
    if not table.network_term.get("calibrated"):
        print("note: the local_cpu table's end-to-end term is not calibrated; run "
              "`nas latency build --space mnv3 --device local_cpu` first for meaningful figures", file=sys.stderr)
    nets = networks(n_random, int(table.metadata["resolution"]), args.seed)
    preds = predictors(table)
    props = pd.concat([netadapt_proposals(n, a, t, args.goals).assign(predictor=p)
                       for p, t in preds.items() for n, a in nets], ignore_index=True)
    done = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=["network", "arch"])
    runner = OnnxRuntimeRunner(1, Budget(warmup=3, min_rounds=rounds, max_rounds=rounds, max_seconds=float("inf")),
                               seed=args.seed)
    todo = []
    for n, a in nets:
        measured = set(done.loc[done["network"] == n, "arch"])
        cuts = [c for c in cuts_to_measure(n, a, props[props["network"] == n], args.cuts)
                if c.arch.to_string() not in measured]
        todo += [(n, a, cuts[i:i + args.batch]) for i in range(0, len(cuts), args.batch)] if cuts else []
    for n, a, cuts in tqdm(todo, desc="savings", unit="batch", file=sys.stderr):
        done = pd.concat([done, pd.DataFrame(measure_batch(a, cuts, runner))], ignore_index=True)
        write_csv(csv, done)

    df = add_predictions(done, dict(nets), preds)
    write_csv(csv, df)
    summary = pd.DataFrame([{"predictor": p, **score(df, props[props["predictor"] == p].drop(columns="predictor"),
                                                        f"predicted_saving_ms_{p}")} for p in preds])
    c = df[df["unit"] != "control"]
    group = np.where(c["unit"].str.startswith("width:stem"), "stem width", c["kind"])
    per_kind = pd.DataFrame({p: (c[f"predicted_saving_ms_{p}"] - c["measured_saving_ms"]).groupby(group).median()
                             for p in preds})
    stem = out / (f"{NAME}_quick" if args.quick else NAME)
    write_csv(stem.with_name(stem.name + "_summary.csv"), summary)
    scatter(df, summary, stem.with_suffix(".png"))
    text = markdown(summary, df, table, args, per_kind)
    write_text(stem.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
