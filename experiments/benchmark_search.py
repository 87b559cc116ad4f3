"""Benchmark: the search controllers on NAS-Bench-Macro under a latency budget, without training.

For each target (local_cpu, pixel_cpu; latency = the `<target>_table_ms` column of --latency-csv,
what a search sees) and each budget T at the 25th/50th/75th percentile latency of the 3,969
distinct networks on that target, each controller runs Q queries per seed through the product's
ask/tell loop with the latency window [0, 1.0] x T (`nas.latency_window.Screen`: proposals over
T are rejected and cost no query). A query's observed accuracy is one of the benchmark's three
trainings of the network, drawn with a generator seeded from (target, budget, controller, seed):
what a real training would report, noise included. rl, evolution, random and tpe get the hard
reward (accuracy for latency <= T); nsga2 gets the pareto objectives (accuracy, -latency). As in
`nas search`, the controllers see accuracy as a fraction; regrets are reported in points.

After each query the search's pick is the queried in-budget network with the highest OBSERVED
accuracy so far; its regret is the best mean accuracy among networks with latency <= T minus the
pick's mean accuracy (points), its rank that among in-budget networks by mean accuracy (1 = best).

Outputs under --out (every file written atomically; a group (target, budget, controller) already
in the runs file with the same seeds, queries and T is skipped, so a killed run continues):
  benchmark_search_runs.csv       regret and rank per run at q in SAVE_AT (and q = Q)
  benchmark_search.csv            summary per target x budget x controller, plus "most FLOPs under T"
  benchmark_search_baselines.csv  uniform hand-made networks against the optimum at their own latency
  benchmark_search_hw.csv         each device's optimum at T = latency of 11111111, on both devices
  benchmark_search.md / .png      tables, the goals check, median regret vs queries

    python experiments/benchmark_search.py [--latency-csv experiments/results/nasbench_macro_latency.csv]
        [--seeds 25] [--queries 300] [--controllers rl,evolution,random,tpe,nsga2]
        [--targets local_cpu,pixel_cpu] [--out experiments/results]
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
import zlib
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402

from nas.benchmarks import nasbench_macro as nb  # noqa: E402
from nas.controllers import make_controller  # noqa: E402
from nas.latency_window import LatencyWindow, Screen  # noqa: E402
from nas.reward import Reward  # noqa: E402
from nas.run_dir import write_csv, write_text  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from script_main import run_script  # noqa: E402
from search_spaces.atomic import atomic_write  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402
from search_spaces.space import get_space  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS = ("local_cpu", "pixel_cpu")
BUDGET_PCTS = (25, 50, 75)
CONTROLLERS = ("rl", "evolution", "random", "tpe", "nsga2")
UNIFORM = ("11111111", "22222222", "12121212")
HW_REFERENCE = "11111111"
MEASURED = "local_cpu_measured_ms"
#: queries at which each run's curve is saved (all 300 for 25 seeds x 30 groups would be ~10 MB)
SAVE_AT = tuple(range(1, 11)) + (15, 20, 25, 30, 40, 50, 60, 75, 100, 125, 150, 200, 250, 300)
GOAL_REGRET, GOAL_QUERIES, GOAL_SPEEDUP = 0.1, 100, 3
REACH = f"queries_to_median_regret_le_{GOAL_REGRET:g}"
#: share of seeds whose pick had regret <= 0.1 at some query q <= min(100, Q)
SHARE = f"share_seeds_reaching_regret_le_{GOAL_REGRET:g}_within_{GOAL_QUERIES}"
SUMMARY_COLUMNS = ["target", "budget_pct", "T_ms", "controller", "reward", "seeds", "queries", "final_regret_median",
                   "final_regret_q25", "final_regret_q75", "final_rank_median", REACH, SHARE, "seconds_per_run",
                   "cpu_seconds_per_run",
                   "rejected_per_query", "runs_stopped", "distinct_networks_per_run", "optimum_acc",
                   "in_budget_networks", "network"]
RUN_COLUMNS = ["target", "budget_pct", "T_ms", "controller", "seed", "query", "regret", "rank", "rejected"]


# ---- the arithmetic (pure) ------------------------------------------------------------------

def regret_curve(observed_acc, true_acc, latency_ms, T: float, best: float) -> tuple[np.ndarray, np.ndarray]:
    """(regret, pick) after each query. The pick after query q is the index of the query, among
    the first q whose latency is <= T, with the highest observed accuracy (the earliest on a tie):
    what the search itself would choose, never the truth. regret = best - true_acc[pick]; NaN and
    pick -1 while no in-budget network has been queried."""
    observed, true = np.asarray(observed_acc, float), np.asarray(true_acc, float)
    inside = np.asarray(latency_ms, float) <= T
    picks = np.full(len(observed), -1)
    current = -1
    for q in range(len(observed)):
        if inside[q] and (current < 0 or observed[q] > observed[current]):
            current = q
        picks[q] = current
    regret = np.where(picks >= 0, best - true[np.maximum(picks, 0)], np.nan)
    return regret, picks


def rank_among(accuracy, in_budget_acc) -> np.ndarray:
    """Rank (1 = best) of each `accuracy` among `in_budget_acc`: 1 + how many are strictly better."""
    ordered = np.sort(np.asarray(in_budget_acc, float))
    acc = np.asarray(accuracy, float)
    return 1 + len(ordered) - np.searchsorted(ordered, acc, side="right")


def first_query_at_most(curve, threshold: float):
    """1-based first query where `curve` (one value per query) is <= threshold, else None."""
    hits = np.flatnonzero(np.asarray(curve, float) <= threshold)
    return int(hits[0]) + 1 if len(hits) else None


def best_under(latency, accuracy, limit: float) -> float:
    """Best accuracy among networks with latency <= limit."""
    latency, accuracy = np.asarray(latency, float), np.asarray(accuracy, float)
    return float(accuracy[latency <= limit].max())


# ---- the benchmark --------------------------------------------------------------------------

class Bench:
    """NAS-Bench-Macro's distinct networks with each target's latency, and lookups by raw code."""

    def __init__(self, latency_csv: Path, targets):
        frame = pd.read_csv(latency_csv, dtype={"code": str})
        missing = [f"{t}_table_ms" for t in targets if f"{t}_table_ms" not in frame.columns]
        if "code" not in frame.columns or missing:
            raise UserError(f"{latency_csv}: needs columns code and {', '.join(missing) or '<target>_table_ms'}")
        frame = frame.drop_duplicates("code").set_index("code")
        distinct = nb.distinct()
        absent = distinct.index.difference(frame.index)
        if len(absent):
            raise UserError(f"{latency_csv}: no latency for {len(absent)} of the {len(distinct)} distinct "
                            f"NAS-Bench-Macro networks (e.g. {', '.join(absent[:3])})")
        columns = [c for c in frame.columns if c.endswith("_table_ms")]
        self.table = distinct[["mean_acc", "params", "flops"]].join(frame.loc[distinct.index, columns])
        self.targets = [c[:-len("_table_ms")] for c in columns]
        # every one of the 6,561 codes -> its canonical code, so a vector is looked up in one step
        self.canonical = {code: nb.canonical(code) for code in nb.records().index}
        self.mean = self.table["mean_acc"].to_dict()
        #: local_cpu measured end to end (experiments/nasbench_macro_latency.py), where the CSV has it
        measured = frame.get(MEASURED)
        self.measured = (measured.loc[distinct.index].to_dict()
                         if measured is not None and measured.loc[distinct.index].notna().all() else None)

    def latency(self, target: str) -> pd.Series:
        return self.table[f"{target}_table_ms"]

    def latency_of_raw(self, target: str) -> dict:
        lat = self.latency(target).to_dict()
        return {code: lat[canon] for code, canon in self.canonical.items()}

    def budget(self, target: str, pct: float) -> float:
        return float(np.percentile(self.latency(target).to_numpy(), pct))

    def in_budget(self, target: str, T: float) -> pd.DataFrame:
        return self.table[self.latency(target) <= T]


def draw_rng(target: str, pct: int, controller: str, seed: int) -> np.random.Generator:
    """The training noise of one run, seeded from (target, budget, controller, seed)."""
    return np.random.default_rng([zlib.crc32(target.encode()), pct, zlib.crc32(controller.encode()), seed])


def run_search(bench: Bench, space, controller: str, target: str, pct: int, T: float, seed: int,
               queries: int, lat_raw: dict) -> dict:
    """One search: codes queried, observed accuracies, rejections, whether Screen gave up."""
    reward = Reward("pareto" if controller == "nsga2" else "hard", T)
    ctrl = make_controller(controller, space, seed=seed, n_objectives=reward.n_objectives)
    screen = Screen(LatencyWindow(0.0, 1.0, T), lambda v: lat_raw["".join(map(str, v))])
    rng = draw_rng(target, pct, controller, seed)
    codes, observed, rejected, stopped, given_up = [], [], [], False, 0
    start, cpu_start = time.perf_counter(), time.process_time()
    for q in range(queries):
        key = f"q{q}"
        vector, n_rejected = screen.propose(ctrl, key)
        if vector is None:
            stopped, given_up = True, n_rejected
            break
        code = bench.canonical["".join(map(str, vector))]
        acc = nb.draw(code, rng)
        # the product's controllers see accuracy as a fraction (RL's rejection penalty is on that scale)
        ctrl.tell(key, vector, reward.objectives(acc / 100, lat_raw[code]))
        codes.append(code)
        observed.append(acc)
        rejected.append(n_rejected)
    return {"codes": codes, "observed": observed, "rejected": np.cumsum(rejected, dtype=int),
            "stopped": stopped, "rejected_total": int(sum(rejected)) + given_up, "seconds": time.perf_counter() - start,
            "cpu_seconds": time.process_time() - cpu_start}


def run_group(bench: Bench, space, controller: str, target: str, pct: int, seeds: int, queries: int,
              progress) -> tuple[dict, pd.DataFrame]:
    """All seeds of one (target, budget, controller): its summary row and its saved curves."""
    T = bench.budget(target, pct)
    inside = bench.in_budget(target, T)
    best, in_acc = float(inside["mean_acc"].max()), inside["mean_acc"].to_numpy()
    lat_raw = bench.latency_of_raw(target)
    lat = bench.latency(target).to_dict()
    save_at = np.array(sorted({q for q in SAVE_AT if q <= queries} | {queries})) - 1
    regrets, ranks, rows, seconds, cpu_seconds, stopped, rejected, distinct = [], [], [], [], [], 0, [], []
    for seed in range(seeds):
        run = run_search(bench, space, controller, target, pct, T, seed, queries, lat_raw)
        progress.update(1)
        true = [bench.mean[c] for c in run["codes"]]
        regret, picks = regret_curve(run["observed"], true, [lat[c] for c in run["codes"]], T, best)
        rank = np.where(picks >= 0, rank_among(np.asarray(true + [np.nan])[picks], in_acc), -1)
        n = len(regret)
        cumulative = run["rejected"]
        if n < queries:   # Screen gave up: the search stopped, its pick stands (curves carry it on)
            stopped += 1
            regret = np.concatenate([regret, np.full(queries - n, regret[-1] if n else np.nan)])
            rank = np.concatenate([rank, np.full(queries - n, rank[-1] if n else -1)])
            cumulative = np.concatenate([cumulative, np.full(queries - n, run["rejected_total"])])
        regrets.append(regret)
        ranks.append(rank)
        seconds.append(run["seconds"])
        cpu_seconds.append(run["cpu_seconds"])
        distinct.append(len(set(run["codes"])))
        rejected.append(run["rejected_total"] / max(n, 1))
        for q in save_at:
            rows.append((target, pct, T, controller, seed, q + 1, regret[q], int(rank[q]), int(cumulative[q])))
    regrets, ranks = np.array(regrets), np.array(ranks)
    median = np.median(regrets, axis=0)
    reach = first_query_at_most(median, GOAL_REGRET)
    at = min(GOAL_QUERIES, queries) - 1
    final = regrets[:, -1]
    summary = {
        "target": target, "budget_pct": pct, "T_ms": T, "controller": controller,
        "reward": "pareto" if controller == "nsga2" else "hard", "seeds": seeds, "queries": queries,
        "final_regret_median": float(np.median(final)), "final_regret_q25": float(np.percentile(final, 25)),
        "final_regret_q75": float(np.percentile(final, 75)), "final_rank_median": float(np.median(ranks[:, -1])),
        REACH: reach if reach is not None else "never",
        SHARE: float(np.mean((regrets[:, :at + 1] <= GOAL_REGRET).any(axis=1))),
        "seconds_per_run": float(np.mean(seconds)), "cpu_seconds_per_run": float(np.mean(cpu_seconds)),
        "rejected_per_query": float(np.nanmean(rejected)), "runs_stopped": stopped,
        "distinct_networks_per_run": float(np.median(distinct)), "optimum_acc": best, "in_budget_networks": len(inside),
    }
    return summary, pd.DataFrame(rows, columns=RUN_COLUMNS)


# ---- baselines and hardware specialization --------------------------------------------------

def most_flops_row(bench: Bench, target: str, pct: int) -> dict:
    T = bench.budget(target, pct)
    inside = bench.in_budget(target, T)
    code = inside["flops"].idxmax()
    regret = float(inside["mean_acc"].max() - inside.at[code, "mean_acc"])
    return {"target": target, "budget_pct": pct, "T_ms": T, "controller": "most FLOPs under T", "reward": "",
            "final_regret_median": regret, "final_regret_q25": regret, "final_regret_q75": regret,
            "final_rank_median": float(rank_among([inside.at[code, "mean_acc"]], inside["mean_acc"])[0]),
            "optimum_acc": float(inside["mean_acc"].max()), "in_budget_networks": len(inside), "network": code}


def uniform_baselines(bench: Bench, targets) -> pd.DataFrame:
    """Each hand-made uniform network against the best network no slower than itself."""
    rows = []
    for target in targets:
        lat = bench.latency(target)
        for code in UNIFORM:
            own = float(lat[code])
            inside = bench.table[lat <= own]
            best_code = inside["mean_acc"].idxmax()
            rows.append({"target": target, "network": code, "latency_ms": own,
                         "mean_acc": float(bench.mean[code]), "optimum_at_its_latency": best_code,
                         "optimum_acc": float(inside.at[best_code, "mean_acc"]),
                         "optimum_latency_ms": float(lat[best_code]),
                         "regret": float(inside.at[best_code, "mean_acc"] - bench.mean[code]),
                         "rank": int(rank_among([bench.mean[code]], inside["mean_acc"])[0]),
                         "networks_at_most_its_latency": len(inside)})
    return pd.DataFrame(rows)


def hardware_specialization(bench: Bench) -> pd.DataFrame:
    """For each target t, T_t = t's latency of 11111111 and the best network within it; each
    optimum's latency on both targets and whether it fits the other target's budget."""
    budgets = {t: float(bench.latency(t)[HW_REFERENCE]) for t in TARGETS}
    rows = []
    for t in TARGETS:
        code = bench.in_budget(t, budgets[t])["mean_acc"].idxmax()
        row = {"optimum_of": t, "T_ms": budgets[t], "code": code, "mean_acc": float(bench.mean[code])}
        for other in TARGETS:
            ms = float(bench.latency(other)[code])
            row[f"{other}_ms"] = ms
            row[f"fits_{other}_budget"] = bool(ms <= budgets[other])
            row[f"regret_on_{other}"] = (float(bench.in_budget(other, budgets[other])["mean_acc"].max()
                                               - bench.mean[code]) if ms <= budgets[other] else np.nan)
        if bench.measured is not None:  # what the table's local_cpu figure stands for, timed end to end
            row[MEASURED] = bench.measured[code]
            row[f"{HW_REFERENCE}_{MEASURED}"] = bench.measured[HW_REFERENCE]
        rows.append(row)
    return pd.DataFrame(rows)


# ---- report ---------------------------------------------------------------------------------

def goals_check(summary: pd.DataFrame) -> list[str]:
    """Per target and budget: do evolution and RL reach median regret <= 0.1 within 100 queries,
    with >= 3x fewer queries than random search?"""
    col = REACH
    lines = []
    searches = summary[summary["controller"].isin(CONTROLLERS)]
    for (target, pct), group in searches.groupby(["target", "budget_pct"], sort=False):
        by = group.set_index("controller")
        if not {"evolution", "rl", "random"} <= set(by.index):
            lines.append(f"- {target}, T = p{pct}: not checked (needs evolution, rl and random)")
            continue
        queries = int(by.at["random", "queries"])
        rand = by.at["random", col]
        verdicts, notes = [], []
        for name in ("evolution", "rl"):
            q = by.at[name, col]
            if q == "never" or int(q) > GOAL_QUERIES:
                verdicts.append(False)
                notes.append(f"{name} {'never reaches it' if q == 'never' else f'needs {q} queries'}")
            elif rand == "never":
                ok = GOAL_SPEEDUP * int(q) <= queries
                verdicts.append(ok if ok else None)
                notes.append(f"{name} {q} vs random never within {queries}"
                             + ("" if ok else f" (cannot tell {GOAL_SPEEDUP}x)"))
            else:
                verdicts.append(int(rand) >= GOAL_SPEEDUP * int(q))
                notes.append(f"{name} {q} vs random {rand} ({int(rand) / int(q):.1f}x)")
        verdict = "HOLDS" if all(v is True for v in verdicts) else (
            "FAILS" if any(v is False for v in verdicts) else "UNDECIDED")
        lines.append(f"- {target}, T = p{pct} ({by['T_ms'].iloc[0]:.3g} ms): **{verdict}** — " + "; ".join(notes))
    checked = [line for line in lines if "not checked" not in line]
    holds = sum("**HOLDS**" in line for line in checked)
    if checked:
        lines.append(f"\nOverall: the goal holds at {holds} of the {len(checked)} target x budget cases checked"
                     + (" (every one)." if holds == len(checked) else "; it does not hold at every budget."))
    return lines


def plot(runs: pd.DataFrame, targets, path: Path) -> None:
    rows = [t for t in targets if t in set(runs["target"])]
    fig = Figure(figsize=(13, 3.6 * max(len(rows), 1)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(max(len(rows), 1), len(BUDGET_PCTS), squeeze=False))
    for i, target in enumerate(rows):
        for j, pct in enumerate(BUDGET_PCTS):
            ax = axes[i, j]
            sub = runs[(runs["target"] == target) & (runs["budget_pct"] == pct)]
            for name, group in sub.groupby("controller", sort=False):
                stats = group.groupby("query")["regret"].quantile([0.25, 0.5, 0.75]).unstack()
                color = f"C{CONTROLLERS.index(name)}"
                ax.plot(stats.index, stats[0.5], label=name, color=color)
                ax.fill_between(stats.index, stats[0.25], stats[0.75], color=color, alpha=0.15)
            ax.axhline(GOAL_REGRET, color="grey", ls=":", lw=1)  # the goal: regret <= 0.1 within 100 queries
            ax.axvline(GOAL_QUERIES, color="grey", ls=":", lw=1)
            ax.set_xscale("log")
            T = sub["T_ms"].iloc[0] if len(sub) else float("nan")
            ax.set_title(f"{target}, T = p{pct} ({T:.3g} ms)", fontsize=9)
            if i == len(rows) - 1:
                ax.set_xlabel("queries (in budget; rejected proposals not counted)")
            if j == 0:
                ax.set_ylabel("regret of the pick (points)")
            ax.set_yscale("symlog", linthresh=GOAL_REGRET, linscale=0.5)
            ax.set_ylim(bottom=0)
    axes[0, 0].legend(fontsize=8)
    fig.suptitle("NAS-Bench-Macro: median regret vs queries (band: interquartile range over seeds)", fontsize=10)
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))


def display_path(path: Path) -> str:
    """`path` relative to the repository: a committed report never names this machine's directories."""
    return Path(os.path.relpath(Path(path).resolve(), ROOT)).as_posix()


def write_report(out: Path, args, summary: pd.DataFrame, baselines: pd.DataFrame, hw: pd.DataFrame | None,
                 runs: pd.DataFrame, targets) -> None:
    # one command per (seeds, queries) on file: a table filled by several invocations says so
    searches = summary[summary["controller"].isin(CONTROLLERS)]
    commands = []
    for (seeds, queries), part in searches.groupby(["seeds", "queries"], sort=False):
        names = [c for c in CONTROLLERS if c in set(part["controller"])]
        where = [t for t in TARGETS if t in set(part["target"])]
        commands.append("python experiments/benchmark_search.py --latency-csv "
                        + shlex.quote(display_path(args.latency_csv))
                        + f" --seeds {int(seeds)} --queries {int(queries)}"
                        + f" --controllers {','.join(names)} --targets {','.join(where)}"
                        + f" --out {shlex.quote(display_path(out))}")
    settings = ", ".join(f"{int(s)} seeds x {int(q)} queries" for s, q in
                         searches[["seeds", "queries"]].drop_duplicates().itertuples(index=False))
    lines = ["# Search controllers on NAS-Bench-Macro under a latency budget (no training)", "",
             f"Latencies: `<target>_table_ms` of `{display_path(args.latency_csv)}` (what a search sees). "
             "Accuracies: NAS-Bench-Macro (CIFAR-10, percent); each query observes one of the three "
             "trainings at random, the regret is measured on the mean of the three.",
             f"Budgets T: the 25th/50th/75th percentile latency of the 3,969 distinct networks on each target. "
             f"Window [0, 1.0] x T: proposals over T are rejected (no query spent). {settings} "
             "per controller (columns seeds, queries of benchmark_search.csv); rl/evolution/random/tpe get the "
             "hard reward, nsga2 the pareto objectives (accuracy, -latency); as in `nas search` they see accuracy "
             "as a fraction. The pick after q queries = the queried network with the highest observed "
             "accuracy; regret = best mean accuracy within T minus the pick's, in points; rank 1 = best within T. "
             f"{REACH}: first query where the median over seeds is <= {GOAL_REGRET:g}; {SHARE}: share of "
             f"seeds whose pick was within {GOAL_REGRET:g} point at some query <= {GOAL_QUERIES}. A search whose "
             "controller makes 2,000 proposals in a row over T stops (runs_stopped) and keeps its pick. "
             "seconds_per_run is wall time, cpu_seconds_per_run this process's CPU time (the machine is shared).",
             "", "Reproduce:", "", *(f"    {c}" for c in commands), "",
             f"Load average when written: {os.getloadavg()[0]:.2f} (2 shared cores; seconds per run depend on it).", ""]
    lines += ["## Goals check", "",
              f"Goal: \"Evolution and RL reach a median regret <= {GOAL_REGRET:g} point within {GOAL_QUERIES} "
              f"queries at every budget, with at least {GOAL_SPEEDUP}x fewer queries than random search needs "
              "for the same regret\".", ""]
    lines += goals_check(summary) + [""]
    shown = summary.drop(columns=[c for c in ("reward", "seeds", "queries") if c in summary.columns])
    for target in targets:
        part = shown[shown["target"] == target].drop(columns=["target"])
        if len(part):
            lines += [f"## {target}", "", markdown_table(part.astype(object).fillna("")), ""]
    lines += ["## Uniform hand-made networks against the optimum at their own latency", "",
              markdown_table(baselines), ""]
    if hw is not None:
        lines += [f"## Hardware specialization: T = each target's latency of {HW_REFERENCE}", "",
                  markdown_table(hw.astype(object).fillna("over budget")), ""]
        a, b = hw["code"].tolist()
        if a == b:
            lines.append(f"Both devices pick the same network, {a}.")
        else:
            lines.append(f"The two devices pick different networks: local_cpu picks {a}, pixel_cpu picks {b}.")
        for _, row in hw.iterrows():
            other = next(t for t in TARGETS if t != row["optimum_of"])
            lines.append(f"- {row['optimum_of']}'s optimum {row['code']} "
                         + (f"fits {other}'s budget (regret there {row[f'regret_on_{other}']:.3g} points)"
                            if row[f"fits_{other}_budget"] else f"exceeds {other}'s budget "
                            f"({row[f'{other}_ms']:.3g} ms > {hw.set_index('optimum_of').at[other, 'T_ms']:.3g} ms)"))
        lines.append("")
    lines += ["Figure: `benchmark_search.png`; curves per run: `benchmark_search_runs.csv` "
              f"(queries {', '.join(map(str, sorted(set(runs['query']))))}).", ""]
    write_text(out / "benchmark_search.md", "\n".join(lines))


# ---- main -----------------------------------------------------------------------------------

def read_or_empty(path: Path, columns=None) -> pd.DataFrame:
    if path.exists():
        return pd.read_csv(path, dtype={"network": str, "code": str})
    return pd.DataFrame(columns=columns or [])


def parse_list(text: str, known) -> list[str]:
    items = [s.strip() for s in text.split(",") if s.strip()]
    unknown = [s for s in items if s not in known]
    if unknown or not items:
        raise UserError(f"unknown {', '.join(unknown) or 'empty list'} (known: {', '.join(known)})")
    return items


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency-csv", type=Path, default=HERE / "results" / "nasbench_macro_latency.csv")
    ap.add_argument("--seeds", type=int, default=25)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--controllers", default=",".join(CONTROLLERS))
    ap.add_argument("--targets", default=",".join(TARGETS))
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return run_script(ap, run, argv, __file__)


def run(args: argparse.Namespace) -> None:
    args.controllers = parse_list(args.controllers, CONTROLLERS)
    args.targets = parse_list(args.targets, TARGETS)
    if args.seeds < 1 or args.queries < 1:
        raise UserError("--seeds and --queries must be positive")
    torch.set_num_threads(1)

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.latency_csv, args.targets)
    space = get_space("nasbench_macro")
    runs_path, summary_path = out / "benchmark_search_runs.csv", out / "benchmark_search.csv"
    runs = read_or_empty(runs_path, RUN_COLUMNS)
    old = read_or_empty(summary_path)
    groups = [(t, p, c) for t in args.targets for p in BUDGET_PCTS for c in args.controllers]
    # a group on file is kept when its T still matches the latency file; one asked for now is
    # redone unless it also has this invocation's seeds and queries
    done_rows = []
    if len(old) and "seeds" in old.columns:
        old = old[old["controller"].isin(CONTROLLERS)]
        in_runs = set(zip(runs["target"], runs["budget_pct"], runs["controller"]))
        for row in old.to_dict("records"):
            key = (row["target"], row["budget_pct"], row["controller"])
            valid = (row["target"] in bench.targets and key in in_runs
                     and np.isclose(row["T_ms"], bench.budget(row["target"], row["budget_pct"]), rtol=1e-9, atol=0))
            if valid and (key not in groups or (row["seeds"] == args.seeds and row["queries"] == args.queries)):
                done_rows.append(row)
    done = {(r["target"], r["budget_pct"], r["controller"]) for r in done_rows}
    keep = np.array([(t, p, c) in done for t, p, c in zip(runs["target"], runs["budget_pct"], runs["controller"])],
                    dtype=bool)
    runs = runs.loc[keep, RUN_COLUMNS]
    todo = [g for g in groups if g not in done]
    if done & set(groups):
        print(f"resuming: {len(done & set(groups))} of {len(groups)} groups already in {runs_path}")

    rows = {(r["target"], r["budget_pct"], r["controller"]): r for r in done_rows}

    def summary_frame() -> pd.DataFrame:
        """Every group on file (this invocation's and earlier ones'), each budget's baseline after it."""
        ordered = []
        for t in TARGETS:
            for p in BUDGET_PCTS:
                present = [rows[(t, p, c)] for c in CONTROLLERS if (t, p, c) in rows]
                if present or t in args.targets:
                    ordered += present + [most_flops_row(bench, t, p)]
        return pd.DataFrame(ordered).reindex(columns=SUMMARY_COLUMNS)

    with tqdm(total=len(todo) * args.seeds, desc="runs", unit="run", file=sys.stderr) as progress:
        for target, pct, controller in todo:
            progress.set_postfix_str(f"{target} p{pct} {controller}")
            summary, curves = run_group(bench, space, controller, target, pct, args.seeds, args.queries, progress)
            rows[(target, pct, controller)] = summary
            stale = (runs["target"] == target) & (runs["budget_pct"] == pct) & (runs["controller"] == controller)
            frames = [frame for frame in (runs[~stale], curves) if len(frame)]
            runs = pd.concat(frames, ignore_index=True) if frames else runs[~stale]
            # summary first: a group in the runs file always has its summary row
            write_csv(summary_path, summary_frame())
            write_csv(runs_path, runs)

    summary = summary_frame()
    write_csv(summary_path, summary)
    # the report covers every target on file, this invocation's and earlier ones'
    shown = [t for t in TARGETS if t in set(summary["target"])]
    baselines = uniform_baselines(bench, shown)
    write_csv(out / "benchmark_search_baselines.csv", baselines)
    hw = hardware_specialization(bench) if set(TARGETS) <= set(bench.targets) else None
    if hw is not None:
        write_csv(out / "benchmark_search_hw.csv", hw)
    plot(runs, shown, out / "benchmark_search.png")
    write_report(out, args, summary, baselines, hw, runs, shown)
    print((out / "benchmark_search.md").read_text())


if __name__ == "__main__":
    sys.exit(main())
