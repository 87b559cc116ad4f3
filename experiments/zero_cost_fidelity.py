"""Zero-cost fidelity: how well each zero-cost score (`nas.zero_cost`) ranks networks by their trained
accuracy, and what it costs per candidate on this CPU.

Ground truth: all 3,969 distinct NAS-Bench-Macro networks (`mean_acc`, CIFAR-10, 50 epochs, mean
of 3 seeds), overall and within latency bands [0.9 T, T] for T the 25th, 50th and 75th percentile
of `local_cpu_table_ms` over the 3,969 (experiments/results/nasbench_macro_latency.csv): a
hardware-aware search compares networks of about one latency, where FLOPs and params no longer
separate them. And the 21 mnv3 networks of ../shared/gt/cifar10_18ep.csv (`test_acc_18ep`), at 32 px,
the resolution they were trained at (its README), and at 16 px, the search's CIFAR-10 proxy
resolution. Per score and set: Kendall's tau and Spearman's rho (scipy), with seconds per
candidate (wall time of `score_arch`, network built from the IR included, 1 thread).

Each score is computed as `nas search --data cifar10:DIR --evaluator zc:NAME` computes it
(`nas.evaluators.score_batches`): the proxy network (`for_proxy`) initialized with seed 0, on
CIFAR-10 training images of the search's default subset (5,000, seed 0), normalized with their
per-channel statistics as training normalizes them: one batch of 64 images, two for ZiCo (its
statistic is over batches). A score that raises or is not finite on a network is recorded as NaN
with the reason, left out of its tau and counted in `failed`.

Per-network scores go to a state file in the user's cache after every chunk of networks
(atomically), so a killed run continues where it stopped:
${XDG_CACHE_HOME:-~/.cache}/hw-nas/experiments/zero_cost_scores.csv.

    python experiments/zero_cost_fidelity.py [--scores naswot,zico] [--chunk 25] [--limit N] [--out DIR]

Writes experiments/results/zero_cost_fidelity{.csv,.md,.png}.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
from scipy import stats
from tqdm import tqdm

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nas.evaluators import batch_count, score_batches  # noqa: E402
from nas.run_dir import write_csv, write_text  # noqa: E402
from nas.search_setup import PROXY_DEFAULTS  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from nas.zero_cost import SCORES, score_arch  # noqa: E402
from macro_bands import LATENCY_CSV, SEED, proxy_arch, sample, search_images, sets_of, table_latency  # noqa: E402
from results_paths import experiment_state, shown  # noqa: E402
from script_main import run_script  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402
from search_spaces.ir import Arch  # noqa: E402
from search_spaces.proxy import for_proxy  # noqa: E402
from search_spaces.space import get_space  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
CIFAR = PROXY_DEFAULTS["cifar10"]  # the search's CIFAR-10 subset and batch size
STATE_COLUMNS = ["group", "network", "score", "value", "seconds", "error"]


def state_path() -> Path:
    return experiment_state("zero_cost_scores.csv")


@dataclass(frozen=True)
class Group:
    """Networks scored on one data resolution: their proxy IRs and ground-truth accuracies."""
    name: str
    resolution: int
    networks: pd.DataFrame  # index: network id; columns arch (IR string at the proxy resolution), accuracy


@dataclass(frozen=True)
class Fidelity:
    set: str
    score: str
    n: int
    failed: int
    kendall_tau: float
    spearman_rho: float
    seconds_per_candidate: float


def nasbench_group(limit: int | None) -> tuple[Group, pd.Series]:
    """NAS-Bench-Macro's networks (a seeded sample of `limit` of them) and every network's table latency."""
    latency, nets = table_latency(), sample(limit)
    archs = [proxy_arch(code).to_string() for code in nets.index]
    return Group("nasbench_macro", get_space("nasbench_macro").resolution,
                 pd.DataFrame({"arch": archs, "accuracy": nets["mean_acc"].to_numpy()}, index=nets.index)), latency


def mnv3_group(gt: Path, resolution: int, limit: int | None) -> Group:
    if not gt.is_file():
        raise UserError(f"ground truth {shown(gt)} not found (--gt)")
    table = pd.read_csv(gt).set_index("name")
    if limit:
        table = table.head(limit)
    archs = [for_proxy(Arch.from_string(a).replace(num_classes=10), resolution).to_string() for a in table["arch"]]
    return Group(f"mnv3_gt_r{resolution}", resolution,
                 pd.DataFrame({"arch": archs, "accuracy": table["test_acc_18ep"].to_numpy()}, index=table.index))


def read_state() -> pd.DataFrame:
    path = state_path()
    if not path.exists():
        return pd.DataFrame(columns=STATE_COLUMNS)
    return pd.read_csv(path, dtype={"network": str, "error": str}, keep_default_na=False,
                       na_values={"value": ["nan", "NaN", ""], "seconds": ["nan", "NaN", ""]})


def score_one(name: str, arch: Arch, batches) -> tuple[float, float, str]:
    """(value, seconds, why it is NaN) of one score on one network."""
    start = time.perf_counter()
    try:
        value = score_arch(name, arch, batches, seed=SEED)
    except Exception as e:  # one network's failure is a result: counted, not the end of the run
        return math.nan, time.perf_counter() - start, f"{type(e).__name__}: {e}".splitlines()[0][:200]
    seconds = time.perf_counter() - start
    return (value, seconds, "") if math.isfinite(value) else (math.nan, seconds, f"returned {value}")


def score_group(group: Group, names: list[str], data_dir: str, chunk: int, state: pd.DataFrame) -> pd.DataFrame:
    """Every (network, score) of `group` not in `state`, saved to the state file after each chunk of networks."""
    done = set(state.loc[state["group"] == group.name, ["network", "score"]].itertuples(index=False, name=None))
    todo = [(net, s) for net in group.networks.index for s in names if (net, s) not in done]
    if not todo:
        return state
    data = search_images(f"cifar10:{data_dir}", group.resolution)
    batches = {s: score_batches(data, s, CIFAR["batch_size"], SEED) for s in names}
    nets = list(dict.fromkeys(net for net, _ in todo))
    with tqdm(total=len(todo), unit="score", desc=f"{group.name} ({len(nets)} networks)", dynamic_ncols=True) as bar:
        for i in range(0, len(nets), chunk):
            rows = []  # a chunk is saved whole: a kill loses at most this chunk
            for net in nets[i:i + chunk]:
                arch = Arch.from_string(group.networks.at[net, "arch"])
                for s in names:
                    if (net, s) not in done:
                        rows.append([group.name, net, s, *score_one(s, arch, batches[s])])
                        bar.update(1)
            state = pd.concat([state, pd.DataFrame(rows, columns=STATE_COLUMNS)], ignore_index=True)
            write_csv(state_path(), state)
    return state


def fidelity(set_name: str, score: str, accuracy: pd.Series, values: pd.DataFrame) -> Fidelity:
    """Rank agreement of one score with `accuracy` over the networks of `accuracy.index`."""
    v = values.reindex(accuracy.index)
    ok = v["value"].notna()
    if ok.sum() >= 2:
        tau = stats.kendalltau(v.loc[ok, "value"], accuracy[ok]).statistic
        rho = stats.spearmanr(v.loc[ok, "value"], accuracy[ok]).statistic
    else:
        tau = rho = math.nan
    return Fidelity(set_name, score, int(ok.sum()), int((~ok).sum()), float(tau), float(rho),
                    float(v["seconds"].mean()))


def summarize(groups: list[Group], latency: pd.Series, state: pd.DataFrame, names: list[str]) -> tuple[
        pd.DataFrame, list[str]]:
    """One row per score and set, and a line per latency band saying where it lies."""
    rows, band_lines = [], []
    for group in groups:
        acc = group.networks["accuracy"]
        sets = {group.name: acc}
        if group.name == "nasbench_macro":
            sets, band_lines = sets_of(acc, latency)
        mine = state[state["group"] == group.name]
        values = {s: mine[mine["score"] == s].set_index("network")[["value", "seconds"]] for s in names}
        rows += [asdict(fidelity(set_name, s, a, values[s])) for set_name, a in sets.items() for s in names]
    return pd.DataFrame(rows), band_lines


def plot(summary: pd.DataFrame, path: Path) -> None:
    sets = list(dict.fromkeys(summary["set"]))
    scores = list(dict.fromkeys(summary["score"]))
    tau = summary.pivot(index="score", columns="set", values="kendall_tau").reindex(index=scores, columns=sets)
    fig, ax = plt.subplots(figsize=(max(7, 1.1 * len(scores)), 4.5))
    width = 0.8 / len(sets)
    for i, s in enumerate(sets):
        ax.bar(np.arange(len(scores)) + (i - (len(sets) - 1) / 2) * width, tau[s], width, label=s)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(np.arange(len(scores)), scores)
    ax.set(ylabel="Kendall tau vs trained accuracy", title="zero-cost scores: ranking of trained accuracy")
    ax.legend(fontsize=7, ncol=2)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def reading(summary: pd.DataFrame) -> list[str]:
    """A short reading of the numbers: the best score per set against the FLOPs/params baselines."""
    lines = []
    for set_name, g in summary.groupby("set", sort=False):
        g = g.dropna(subset=["kendall_tau"])
        if g.empty:
            continue
        best = g.loc[g["kendall_tau"].idxmax()]
        base = g[g["score"].isin(["flops", "params"])]
        text = f"- {set_name} (n = {int(best['n'])}): best {best['score']} (tau {best['kendall_tau']:.3f})"
        if not base.empty:
            text += "; baselines " + ", ".join(f"{r.score} {r.kendall_tau:.3f}" for r in base.itertuples())
        lines.append(text)
    failed = summary[summary["failed"] > 0]
    lines.append("- non-finite or raising: " + (", ".join(f"{r.score} on {r.failed} of {r.n + r.failed} ({r.set})"
                                                          for r in failed.itertuples()) if not failed.empty else
                                                "none"))
    return lines


def run(args: argparse.Namespace) -> None:
    names = [s.strip() for s in args.scores.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCORES]
    if unknown or not names:
        raise UserError(f"unknown zero-cost score(s) {', '.join(unknown) or '(none given)'} "
                        f"(known: {', '.join(SCORES)})")
    if args.chunk < 1 or (args.limit is not None and args.limit < 1):
        raise UserError(f"--chunk and --limit must be positive, got {args.chunk} and {args.limit}")
    torch.set_num_threads(1)
    macro, latency = nasbench_group(args.limit)
    groups = [macro, mnv3_group(Path(args.gt), 32, args.limit), mnv3_group(Path(args.gt), 16, args.limit)]
    state = read_state()
    for group in groups:
        state = score_group(group, names, args.data_dir, args.chunk, state)

    summary, band_lines = summarize(groups, latency, state, names)
    write_csv(args.out / "zero_cost_fidelity.csv", summary)
    per_network = sum(summary.loc[summary["set"] == "all", "seconds_per_candidate"])
    batches = ", ".join(f"{s} {batch_count(s)}" for s in names)
    command = "python experiments/zero_cost_fidelity.py" + (f" --scores {','.join(names)}" if names != list(SCORES)
                                                             else "") + (f" --limit {args.limit}" if args.limit else "")
    lines = ["# Zero-cost scores against trained accuracy", "",
             f"Reproduce: `{command}` (per-network scores: the state file "
             "`${XDG_CACHE_HOME:-~/.cache}/hw-nas/experiments/zero_cost_scores.csv`; a killed run resumes).", "",
             f"Scores at initialization (seed {SEED}) of each network's proxy IR (`for_proxy`), on CIFAR-10 training "
             f"images from {shown(args.data_dir)}: the search's default subset ({CIFAR['train_subset']} images, "
             f"seed {SEED}), normalized with its per-channel mean and std, batches of {CIFAR['batch_size']} "
             f"(batches per score: {batches}). Ground truth: NAS-Bench-Macro `mean_acc` (set `all` and the latency "
             f"bands, at 32 px) and `test_acc_18ep` of {shown(args.gt)} (mnv3_gt_r32 at the 32 px the networks were "
             f"trained at, mnv3_gt_r16 at the search's 16 px CIFAR-10 proxy resolution). Latency bands [0.9 T, T] "
             f"for T a percentile of `local_cpu_table_ms` over all networks of {shown(LATENCY_CSV)}:",
             *band_lines, "",
             f"`seconds_per_candidate`: wall time of `nas.zero_cost.score_arch` (building the network included), "
             f"1 torch thread, on a machine of {os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the "
             f"end: other jobs slow it). All scores together take "
             f"{per_network:.2f} s per NAS-Bench-Macro network. `failed`: networks whose score raised or was not "
             f"finite, left out of tau and rho.", "",
             markdown_table(summary, ".3g"), "", "## Reading", "", *reading(summary)]
    write_text(args.out / "zero_cost_fidelity.md", "\n".join(lines) + "\n")
    plot(summary, args.out / "zero_cost_fidelity.png")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scores", default=",".join(SCORES), help=f"comma-separated, from {', '.join(SCORES)}")
    ap.add_argument("--gt", default=str(SHARED / "gt" / "cifar10_18ep.csv"), help="the mnv3 networks and accuracies")
    ap.add_argument("--data-dir", default=str(SHARED / "data"), help="holds cifar10_{train,test}.npz")
    ap.add_argument("--chunk", type=int, default=25, help="networks between saves of the state file")
    ap.add_argument("--limit", type=int, help="a seeded sample of N NAS-Bench-Macro networks, the first N mnv3 ones")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return run_script(ap, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
