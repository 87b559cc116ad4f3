"""Savings, not totals: does the local_cpu table predict what NetAdapt's cuts save?

NetAdapt (netadapt/refine.py) keeps a cut when the table predicts that it saves the
iteration's goal, so what matters is the table's error on a *difference* of two networks,
not on a total. For each network (MobileNetV3-Large and -Small and random `mnv3` samples, at
the table's resolution) this takes every trimmable unit (`netadapt.surgery.units`) cut
by 8 channels, plus the proposal NetAdapt makes for each goal
(1%, 2.5% and 5% of the network's latency: the smallest cut whose predicted saving reaches
it, `netadapt.proposals.proposals`), measures each cut network and its parent end to end
with onnxruntime (`latency_tables.measure`, thread CPU time, one thread), the parent
interleaved with each child, and compares predicted with measured savings.

The measured saving of a child is the median over rounds of (parent - child) within the
same round: the two ran back to back, so slow phases of a shared machine cancel (timing
the parent once against a whole batch of children left differences of 3% between two
copies of one network under load). That is repeated in several pairs of fresh sessions
(`--sessions`, 8), created parent first and child first in turn, and averaged: one session's
speed depends on where its buffers landed (on an Intel Xeon two sessions of one network, 15
rounds each, differed by 0.06 ms s.d., 1.2%), more than the rounds' own noise.
`saving_se_ms` is the standard error from the spread over the pairs (taken two at a time, one
of either creation order), a control row per network (the parent against a second session of
itself) shows the noise floor directly, and each half of the pairs gives its own saving: the
measurement's agreement with its own repeat, the bound on what any predictor can be shown to
reach.

Three predictors are scored on the same measurements: `table` (the table as NetAdapt used it
first: ops it lacks measured on the spot), `anchored` (ops it lacks scaled from the nearest
measured op of their family, `latency_tables.smooth`, channels as counted) and `aligned` (the
same with channel counts rounded up to this machine's onnxruntime channel block, what NetAdapt
uses now). Beside them, what the measurements' own noise allows: the Kendall tau of the
measured savings against themselves plus one more draw of each cut's noise, and per predictor
the share of its proposals an exact prediction would see measured within +-20%. The plan
(cuts, every predictor's proposals and predicted savings) and the measurements are written
atomically after every network and every few cuts, so a killed run resumes where it stopped;
a new predictor adds its column and measures only the cuts it proposes that are not measured
yet. Ops the `table` predictor times on the spot stay in memory: the user's cache keeps only
what a build measured.

    nas latency build --space mnv3 --device local_cpu        # the table, if not built yet
    # here on a quiet 2-core machine: 7 min planning, then about 25 min measuring
    python experiments/latency_savings_fidelity.py           # 15 min per run (--minutes); rerun to continue
    python experiments/latency_savings_fidelity.py --quick   # 2 networks, fewer cuts and rounds
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import erf
from scipy.stats import kendalltau
from tqdm import tqdm

from latency_tables.measure import Budget, OnnxRuntimeRunner
from latency_tables.table import LatencyTable
from latency_tables.smooth import anchored
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
CUTS = (1,)                  # cut sizes measured for every unit, in steps of 8 channels
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


MEASURED = ("parent_ms", "child_ms", "measured_saving_ms", "saving_se_ms", "saving_half1_ms", "saving_half2_ms",
            "sessions", "rounds", "loadavg")


def session_pairs(pairs: list[tuple[float, float, float]]) -> dict:
    """One cut's figures from its session pairs, each (parent ms, child ms, saving ms), in the
    order measured (creation order alternating): means over the pairs; the saving's standard
    error from the spread of consecutive twos (one of either order, so an effect of the order
    cancels within each instead of counting as noise), which includes what differs from one
    session to the next and not only from one round to the next; and the mean of each half of
    the pairs (alternate twos): two independent measurements of the same saving, whose
    agreement bounds what any predictor can show."""
    parent, child, saving = np.asarray(pairs, dtype=float).T
    twos = saving.reshape(-1, 2).mean(1)
    return {"parent_ms": parent.mean(), "child_ms": child.mean(), "measured_saving_ms": saving.mean(),
            "saving_se_ms": twos.std(ddof=1) / np.sqrt(len(twos)),
            "saving_half1_ms": twos[0::2].mean(), "saving_half2_ms": twos[1::2].mean()}


def measure_pair(parent_onnx, child: Arch, runner: OnnxRuntimeRunner, sessions: int) -> dict:
    """Time a cut with its parent back to back in `sessions` pairs of fresh onnxruntime sessions,
    created parent first and child first in turn (the control row's child is the parent itself,
    in a second session). Fresh sessions because one pair's saving is off by a few hundredths of
    a ms however long it is timed."""
    load = os.getloadavg()[0]
    child_onnx = export_onnx(child)
    pairs = []
    for k in range(sessions):
        s = runner.measure([parent_onnx, child_onnx] if k % 2 == 0 else [child_onnx, parent_onnx])
        parent_ms, child_ms, saving = measured_savings(s if k % 2 == 0 else s[::-1])
        pairs.append((parent_ms, child_ms[0], saving[0]))
    return {**session_pairs(pairs), "sessions": sessions, "rounds": sessions * len(s[0]),
            "loadavg": round((load + os.getloadavg()[0]) / 2, 2)}


def plan(nets, preds: dict, goals, cut_steps, cuts: pd.DataFrame, props: pd.DataFrame, save):
    """For every network and predictor not done yet: NetAdapt's proposals, the cuts to measure
    (with a control row), and each cut's predicted saving; `save` after every network."""
    for n, a in tqdm(nets, desc="proposals", unit="network", file=sys.stderr):
        for p, table in preds.items():
            if not ((props["network"] == n) & (props["predictor"] == p)).any():
                props = pd.concat([props, netadapt_proposals(n, a, table, goals).assign(predictor=p)], ignore_index=True)
        known = set(cuts.loc[cuts["network"] == n, "arch"])
        new = [Cut(n, "control", "control", 0, 0, a)] + cuts_to_measure(n, a, props[props["network"] == n], cut_steps)
        cuts = pd.concat([cuts, pd.DataFrame([{"network": c.network, "unit": c.unit, "kind": c.kind,
                                                "width_from": c.width_from, "width_to": c.width_to,
                                                "arch": c.arch.to_string()} for c in new
                                               if c.arch.to_string() not in known])], ignore_index=True)
        for p, table in preds.items():
            col = f"predicted_saving_ms_{p}"
            todo = (cuts["network"] == n) & (cuts[col].isna() if col in cuts else True)
            parent_ms = table.query_total(a)
            cuts.loc[todo, col] = [parent_ms - table.query_total(Arch.from_string(x)) for x in cuts.loc[todo, "arch"]]
        save(cuts, props)
    return cuts, props


def measure_order(cuts: pd.DataFrame, props: pd.DataFrame, seed: int) -> list:
    """Unmeasured cuts, most telling first (a run cut short by its time budget still covers
    every network): the controls, then NetAdapt's proposals by goal, smallest first, then the rest."""
    goal = cuts.merge(props.groupby(["network", "unit", "width_to"], as_index=False)["goal_frac"].min(),
                      on=["network", "unit", "width_to"], how="left")["goal_frac"].to_numpy()
    rank = np.where(cuts["unit"] == "control", -1.0, np.nan_to_num(goal, nan=1.0))
    tiebreak = np.random.default_rng(seed).random(len(cuts))
    order = np.lexsort((tiebreak, rank))
    return [cuts.index[i] for i in order if np.isnan(cuts["measured_saving_ms"].iloc[i])]


# ---- scoring -------------------------------------------------------------------------
def score(cuts: pd.DataFrame, props: pd.DataFrame, predicted: str) -> dict:
    """Savings fidelity of one predictor: rank agreement and errors over every measured cut;
    over NetAdapt's measured proposals, the share whose measured saving reaches the goal and
    the share within +-20% of the promised (predicted) saving."""
    c = cuts[(cuts["unit"] != "control") & cuts["measured_saving_ms"].notna()]
    err = c[predicted] - c["measured_saving_ms"]
    promised = c[predicted].where(c[predicted] > 0)
    p = props.merge(c, on=["network", "unit", "width_to"], how="left")
    measured = p["measured_saving_ms"]
    seen = measured.notna() & (p[predicted] > 0)
    return {"cuts": len(c), "kendall_tau": float(kendalltau(c[predicted], c["measured_saving_ms"]).statistic),
            # on the same footing as the measurement's repeat (`split_half_tau`): against one half of the pairs
            "kendall_tau_half": float(np.mean([kendalltau(c[predicted], c[h]).statistic for h in HALVES])),
            "median_abs_err_ms": float(err.abs().median()),
            "median_abs_err_pct": float((err.abs() / promised).median() * 100),
            "proposals": len(p), "proposals_unmeasured": int(measured.isna().sum()),
            "reach_goal": float((measured >= p["goal_ms"])[measured.notna()].mean()),
            "within_20pct": float(((measured - p[predicted]).abs() <= WITHIN * p[predicted])[measured.notna()].mean()),
            # were the promise exact, the measurement's noise alone: P(|N(0, se)| <= 20% of the promise)
            "within_20pct_if_exact": float(erf(WITHIN * p[predicted][seen].to_numpy(float)
                                               / (p["saving_se_ms"][seen].to_numpy(float) * np.sqrt(2))).mean())}


HALVES = ("saving_half1_ms", "saving_half2_ms")


def split_half_tau(cuts: pd.DataFrame) -> float:
    """Kendall tau of each cut's saving measured in one half of its session pairs against the
    other half: how well the measurement agrees with its own repeat."""
    c = cuts[(cuts["unit"] != "control") & cuts["measured_saving_ms"].notna()]
    return float(kendalltau(c[HALVES[0]], c[HALVES[1]]).statistic)


def noise_tau(cuts: pd.DataFrame, seed: int = 0, draws: int = 20) -> float:
    """Kendall tau of the measured savings against themselves plus one more draw of each cut's
    noise (its standard error): about the best any predictor can score against these measurements."""
    c = cuts[(cuts["unit"] != "control") & cuts["measured_saving_ms"].notna()]
    m, se = c["measured_saving_ms"].to_numpy(float), c["saving_se_ms"].to_numpy(float)
    rng = np.random.default_rng(seed)
    return float(np.median([kendalltau(m, m + rng.normal(0.0, se)).statistic for _ in range(draws)]))


def noise_floor(cuts: pd.DataFrame) -> float:
    """Median |measured saving| of a network against itself: what measurement alone gives."""
    return float(cuts.loc[cuts["unit"] == "control", "measured_saving_ms"].abs().median())


# ---- report --------------------------------------------------------------------------
def scatter(df: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    c = df[df["unit"] != "control"]
    names = list(summary["predictor"])
    fig = Figure(figsize=(5 * len(names), 5))
    axes = fig.subplots(1, len(names), squeeze=False)
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


def markdown(summary: pd.DataFrame, df: pd.DataFrame, table: LatencyTable, args, per_kind: pd.DataFrame) -> str:
    c = df[(df["unit"] != "control") & df["measured_saving_ms"].notna()]
    lines = [f"# Latency savings fidelity ({table.metadata['device']})", "",
             f"{df['network'].nunique()} networks at {table.metadata['resolution']}x{table.metadata['resolution']} "
             f"({', '.join(df['network'].unique())}), {len(c)} of {int((df['unit'] != 'control').sum())} planned cuts measured (every trimmable unit at "
             f"{', '.join(str(8 * k) for k in args.cuts)} channels, plus NetAdapt's proposals for goals of "
             f"{', '.join(f'{g:.1%}' for g in args.goals)} of the network's latency).",
             f"onnxruntime {table.metadata['runtime_version']}, 1 thread, thread CPU time, {int(df['sessions'].median())} "
             f"pairs of fresh sessions per (parent, cut), {int(df['rounds'].median())} rounds in all, parent and cut "
             f"back to back; load average while measuring "
             f"{df['loadavg'].min():.2f}-{df['loadavg'].max():.2f} ({os.cpu_count()} cores).",
             f"Noise floor (parent against a copy of itself): median |saving| {noise_floor(df):.3f} ms; "
             f"median standard error of a measured saving {df['saving_se_ms'].median():.3f} ms; an exact predictor "
             f"would score a Kendall tau of about {noise_tau(df):.2f} against measurements this noisy "
             f"(`if exact` below: its share of proposals within +-20%).",
             f"The measurement against its own repeat (half of each cut's session pairs against the other half): "
             f"Kendall tau {split_half_tau(df):.3f}; `tau vs a half` below scores each predictor the same way.",
             "Errors in percent are relative to the promised (predicted) saving.", "",
             "| predictor | cuts | Kendall tau | tau vs a half | median abs err (ms) | median abs err (%) | proposals | "
             "reach goal | within +-20% | if exact |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r.predictor} | {r.cuts} | {r.kendall_tau:.3f} | {r.kendall_tau_half:.3f} | {r.median_abs_err_ms:.3f} | "
              f"{r.median_abs_err_pct:.1f} | {r.proposals} | {r.reach_goal:.0%} | {r.within_20pct:.0%} | "
              f"{r.within_20pct_if_exact:.0%} |"
              for r in summary.itertuples()]
    lines += ["", "Median signed error (predicted - measured, ms) by unit kind:", "",
              "| unit kind | " + " | ".join(per_kind.columns) + " |", "| --- |" + " ---: |" * len(per_kind.columns)]
    lines += [f"| {kind} | " + " | ".join(f"{v:+.3f}" for v in row) + " |" for kind, row in per_kind.iterrows()]
    return "\n".join(lines) + "\n"


def predictors(path: Path) -> dict:
    """`table`: the table as NetAdapt used it first (ops it lacks measured on the spot);
    `anchored`: ops it lacks scaled from their nearest measured op (`latency_tables.smooth`);
    `aligned`: the same at this machine's channel block, as NetAdapt uses it now."""
    measuring = open_table(path)
    measuring.path = None  # ops it measures on the spot stay in memory: the cache keeps a build's ops only
    return {"table": measuring, "anchored": anchored(open_table(path), block=1), "aligned": anchored(open_table(path))}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--random", type=int, default=3, help="random mnv3 networks besides MobileNetV3-L/S")
    ap.add_argument("--rounds", type=int, default=120, help="timing rounds per (parent, cut), over all its sessions")
    ap.add_argument("--sessions", type=int, default=8,
                    help="pairs of fresh onnxruntime sessions per (parent, cut); a multiple of 4")
    ap.add_argument("--batch", type=int, default=12, help="measured cuts per checkpoint")
    ap.add_argument("--minutes", type=float, default=15, help="measuring time per run (rerun to continue)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2 networks, one cut size, one goal, 4 x 5 rounds")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args(argv)
    args.goals, args.cuts = (GOALS[:1], CUTS[:1]) if args.quick else (GOALS, CUTS)
    n_random, rounds, sessions = (0, 20, 4) if args.quick else (args.random, args.rounds, args.sessions)
    if sessions < 4 or sessions % 4 or rounds < 2 * sessions:
        ap.error(f"--sessions must be a multiple of 4 (two halves of either creation order) and --rounds at least "
                 f"2 per session, got {sessions} and {rounds}")
    out = Path(args.results)

    preds = predictors(local_cpu_path())
    table = preds["table"]
    if not table.network_term.get("calibrated"):
        print("note: the local_cpu table's end-to-end term is not calibrated; run "
              "`nas latency build --space mnv3 --device local_cpu` first for meaningful figures", file=sys.stderr)
    nets = networks(n_random, int(table.metadata["resolution"]), args.seed)
    stem = out / (f"{NAME}_quick" if args.quick else NAME)
    csv, props_csv = stem.with_suffix(".csv"), stem.with_name(stem.name + "_proposals.csv")
    cuts = pd.read_csv(csv) if csv.exists() else pd.DataFrame(columns=["network", "unit", "arch", *MEASURED])
    props = pd.read_csv(props_csv) if props_csv.exists() else pd.DataFrame(columns=["network", "predictor"])

    def save(cuts, props):
        write_csv(csv, cuts)
        write_csv(props_csv, props)

    done = cuts.reindex(columns=["measured_saving_ms", "sessions", "rounds"]).dropna(subset=["measured_saving_ms"])
    if not ((done["sessions"] == sessions) & (done["rounds"] == rounds)).all():
        ap.error(f"{csv} holds savings measured with other --sessions/--rounds than {sessions}/{rounds}: "
                 f"continue it with those, or measure anew elsewhere (--results DIR)")
    cuts, props = plan(nets, preds, args.goals, args.cuts, cuts, props, save)
    each = rounds // sessions
    runner = OnnxRuntimeRunner(1, Budget(warmup=3, min_rounds=each, max_rounds=each, max_seconds=float("inf")),
                               seed=args.seed)
    todo = measure_order(cuts, props, args.seed)
    deadline = time.monotonic() + 60 * args.minutes
    parents = {n: export_onnx(a) for n, a in nets}
    for k, i in enumerate(tqdm(todo, desc="savings", unit="cut", file=sys.stderr)):
        row = measure_pair(parents[cuts.at[i, "network"]], Arch.from_string(cuts.at[i, "arch"]), runner, sessions)
        cuts.loc[i, list(row)] = list(row.values())
        if (k + 1) % args.batch == 0 or k + 1 == len(todo) or time.monotonic() > deadline:
            save(cuts, props)
        if time.monotonic() > deadline:
            print(f"time budget spent: {len(todo) - k - 1} cuts left for the next run", file=sys.stderr)
            break

    df = cuts
    summary = pd.DataFrame([{"predictor": p, **score(df, props[props["predictor"] == p].drop(columns="predictor"),
                                                        f"predicted_saving_ms_{p}")} for p in preds])
    c = df[df["unit"] != "control"]
    group = np.where(c["unit"].str.startswith("width:stem"), "stem width", c["kind"])
    per_kind = pd.DataFrame({p: (c[f"predicted_saving_ms_{p}"] - c["measured_saving_ms"]).groupby(group).median()
                             for p in preds})
    write_csv(stem.with_name(stem.name + "_summary.csv"), summary)
    scatter(df, summary, stem.with_suffix(".png"))
    text = markdown(summary, df, table, args, per_kind)
    write_text(stem.with_suffix(".md"), text)
    print(text)


if __name__ == "__main__":
    main()
