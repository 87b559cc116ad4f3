"""Proxy fidelity: how well a short proxy training ranks architectures, against 18-epoch CIFAR-10 accuracies.

For each proxy setting (training images, epochs, resolution, lr, batch size, BN recalibration,
score) every architecture of the reference file (`../shared/gt/cifar10_18ep.csv`: 21 networks,
read in place, never copied) is trained on CIFAR-10 and scored; per setting, Kendall's tau and
Spearman's rho (scipy) between the score and `test_acc_18ep`, with seconds per candidate. A
search is only as good as this ranking: a proxy with tau near 0 picks winners by chance.

`--benchmark nasbench_macro`: the classic reference instead. The networks are a seeded sample of
`--sample N` (default 60) of the 3,969 distinct NAS-Bench-Macro networks (the sample
experiments/zero_cost_fidelity.py --limit N scores), each trained as its proxy IR, the ground truth
their `mean_acc` (50 epochs, mean of 3 seeds); tau also within the latency bands of the other
studies (a band holding fewer than 8 sampled networks gets its n, no tau).

Resumable: every (setting, architecture) result is appended to proxy_fidelity_runs.csv
(rewritten atomically) and skipped when the script runs again. Outputs under --out:
proxy_fidelity_runs.csv, proxy_fidelity.{csv,md} and proxy_fidelity.png (tau vs seconds); with
--benchmark B, proxy_fidelity_B_runs.csv and proxy_fidelity_B.{csv,md,png}.

    python experiments/proxy_fidelity.py                                  # the full study (hours on 2 cores)
    python experiments/proxy_fidelity.py --settings tiny --archs 3 --out /tmp/pf   # an end-to-end check
    python experiments/proxy_fidelity.py --benchmark nasbench_macro --settings 2k_e1_r32 [--sample 60]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch
from scipy import stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nas.data import load_data  # noqa: E402
from nas.device import add_device_argument, resolve_device  # noqa: E402
from nas.run_dir import write_csv, write_text  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from nas.training import TrainConfig, build_for_training, recalibrate_bn, train  # noqa: E402
from nas.training import evaluate as train_evaluate  # noqa: E402
from results_paths import shown  # noqa: E402
from script_main import run_script  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402
from search_spaces.ir import Arch  # noqa: E402
from macro_bands import BAND_LOW, LATENCY_CSV, SEED, sets_of  # noqa: E402
from zero_cost_fidelity import nasbench_group  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"
BENCHMARKS = ("nasbench_macro",)
MIN_NETWORKS = 8  # the least --sample, and the least sampled networks of a latency band that get a tau


@dataclass(frozen=True)
class ProxySetting:
    name: str
    train_images: int
    epochs: float
    resolution: int
    lr: float
    batch_size: int


# Along the axes that matter; the first two are the search's earlier CIFAR-10 settings. BN
# recalibration and the score are not settings of their own: every run is scored three ways (SCORES).
SETTINGS = {s.name: s for s in [
    ProxySetting("2k_e1_r32", 2000, 1, 32, 0.05, 64),
    ProxySetting("2k_e3_r32", 2000, 3, 32, 0.05, 64),
    ProxySetting("2k_e2_r32_lr0.1", 2000, 2, 32, 0.1, 64),
    ProxySetting("5k_e2_r16", 5000, 2, 16, 0.1, 64),
    ProxySetting("10k_e1_r16_lr0.2_bs128", 10000, 1, 16, 0.2, 128),
    ProxySetting("5k_e4_r16_lr0.2_bs128", 5000, 4, 16, 0.2, 128),
    ProxySetting("10k_e2_r32_lr0.2_bs128", 10000, 2, 32, 0.2, 128),
    ProxySetting("20k_e5_r32_lr0.4_bs256", 20000, 5, 32, 0.4, 256),
    ProxySetting("45k_e5_r32_lr0.4_bs512", 45000, 5, 32, 0.4, 512),
    ProxySetting("tiny", 256, 0.5, 16, 0.05, 64),  # end-to-end checks of this script only
]}
STUDY = [name for name in SETTINGS if name != "tiny"]

#: score name -> (column of proxy_fidelity_runs.csv, sign: higher score = better network)
SCORES = {"val_acc": ("val_acc", 1.0),                   # after re-estimating BN statistics on 1,024 images
          "val_acc_no_recal": ("val_acc_no_recal", 1.0),  # BN running averages as training left them
          "train_loss": ("train_loss", -1.0)}             # mean training loss (no validation needed)
RECALIBRATE_IMAGES = 1024


@dataclass(frozen=True)
class Study:
    """The networks a run ranks and where its results go."""
    gt: pd.DataFrame   # columns name, arch (IR string) and `truth`, one row per network
    truth: str         # the ground-truth column: higher = better network
    stem: str          # results <stem>_runs.csv and <stem>.{csv,md,png}
    sets: dict[str, pd.Series] = field(default_factory=dict)  # benchmark: set name -> its networks' truth
    band_lines: list[str] = field(default_factory=list)       # where each latency band lies


def mnv3_study(gt: Path, archs: int | None) -> Study:
    """The mnv3 networks of the reference file (the first `archs` of them)."""
    if not gt.is_file():
        raise UserError(f"ground truth {shown(gt)} not found (--gt)")
    table = pd.read_csv(gt)
    return Study(table.head(archs) if archs else table, "test_acc_18ep", "proxy_fidelity")


def nasbench_macro_study(sample: int, archs: int | None) -> Study:
    """A seeded sample of NAS-Bench-Macro's distinct networks (the first `archs` of it), named by their
    codes: their proxy IRs and `mean_acc`, and the latency bands over them."""
    group, latency = nasbench_group(sample)
    nets = group.networks.head(archs) if archs else group.networks
    gt = pd.DataFrame({"name": nets.index, "arch": nets["arch"].to_numpy(), "mean_acc": nets["accuracy"].to_numpy()})
    sets, band_lines = sets_of(nets["accuracy"], latency)
    return Study(gt, "mean_acc", "proxy_fidelity_nasbench_macro", sets, band_lines)


def evaluate(setting: ProxySetting, arch: Arch, data, threads: int, device: str = "cpu") -> dict:
    """Train one architecture with one setting; its validation accuracy before and after BN
    recalibration, its training loss, and seconds (both evaluations included)."""
    model = build_for_training(arch, data, seed=0)
    cfg = TrainConfig(epochs=setting.epochs, batch_size=setting.batch_size, lr=setting.lr, seed=0, threads=threads,
                      recalibrate_images=0, device=device)
    start, cpu = time.perf_counter(), time.process_time()
    result = train(model, data, cfg)
    split = data.train.to(device)
    gen = torch.Generator(device=device).manual_seed(1)
    with torch.no_grad():
        recalibrate_bn(model, split, gen, flip=True, images=RECALIBRATE_IMAGES)
    val_acc = train_evaluate(model, data.val)
    return {"val_acc": val_acc, "val_acc_no_recal": result["val_acc"], "train_loss": result["train_loss"],
            "seconds": time.perf_counter() - start, "cpu_seconds": time.process_time() - cpu,
            "load_avg": os.getloadavg()[0]}


def rank_agreement(runs: pd.DataFrame, gt: pd.DataFrame, truth: str = "test_acc_18ep",
                   min_networks: int = 2) -> pd.DataFrame:
    """Per setting and score: Kendall's tau and Spearman's rho against the ground-truth column `truth`
    of `gt`, seconds per candidate. A score is left out for runs that did not record it (runs before
    it existed); with fewer than `min_networks` networks, tau, its p and rho are NaN."""
    rows = []
    for name, group in runs.groupby("setting", sort=False):
        merged = group.merge(gt[["name", truth]], left_on="arch_name", right_on="name")
        for score, (column, sign) in SCORES.items():
            if column not in merged or merged[column].isna().any():
                continue
            if len(merged) >= min_networks:
                tau, tau_p = stats.kendalltau(sign * merged[column], merged[truth])
                rho, _ = stats.spearmanr(sign * merged[column], merged[truth])
            else:
                tau = tau_p = rho = np.nan
            rows.append({"setting": name, "score": score, "architectures": len(merged), "kendall_tau": tau,
                         "kendall_p": tau_p, "spearman_rho": rho, "seconds_per_candidate": merged["seconds"].mean(),
                         "cpu_seconds_per_candidate": merged["cpu_seconds"].mean(),
                         "mean_val_acc": merged["val_acc"].mean(), "load_avg_mean": merged["load_avg"].mean(),
                         **{k: v for k, v in asdict(SETTINGS[name]).items() if k != "name"}})
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame, study: Study) -> pd.DataFrame:
    """rank_agreement over the study's networks; for a benchmark, a row per set too (all, each latency
    band), setting by setting."""
    if not study.sets:
        return rank_agreement(runs, study.gt, study.truth)
    parts = []
    for set_name, truth in study.sets.items():
        part = rank_agreement(runs, study.gt[study.gt["name"].isin(truth.index)], study.truth,
                              2 if set_name == "all" else MIN_NETWORKS)
        part.insert(2, "set", set_name)
        parts.append(part)
    summary = pd.concat(parts, ignore_index=True)
    order = {name: i for i, name in enumerate(runs["setting"].drop_duplicates())}
    return summary.iloc[np.argsort(summary["setting"].map(order).to_numpy(), kind="stable")].reset_index(drop=True)


def plot(summary: pd.DataFrame, path: Path, truth: str = "18-epoch accuracy") -> None:
    summary = summary.dropna(subset=["kendall_tau"])  # too few networks, or a constant score: no point
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for score, group in summary.groupby("score", sort=False):  # one colour per score, settings named once
        ax.scatter(group["seconds_per_candidate"], group["kendall_tau"], label=score)
    tops = summary.groupby("setting", sort=False).agg(x=("seconds_per_candidate", "first"), y=("kendall_tau", "max"))
    for setting, top in tops.iterrows():
        ax.annotate(setting, (top.x, top.y), fontsize=7, xytext=(3, 4), textcoords="offset points")
    if not summary.empty:
        ax.legend(title="score", fontsize=7)
        ax.set_xscale("log")
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="seconds per candidate (this machine)", ylabel=f"Kendall tau vs {truth}",
           title="proxy fidelity: ranking quality vs cost")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def command(args: argparse.Namespace, names: list[str]) -> str:
    """The command line that reproduces a benchmark study, its paths relative to the repository."""
    parts = ["python experiments/proxy_fidelity.py", f"--benchmark {args.benchmark}", f"--sample {args.sample}",
             f"--settings {','.join(names)}"]
    if args.archs:
        parts.append(f"--archs {args.archs}")
    if Path(args.data_dir).resolve() != (SHARED / "data").resolve():
        parts.append(f"--data-dir {shown(Path(args.data_dir).resolve())}")
    if args.threads != 1:
        parts.append(f"--threads {args.threads}")
    if args.device != "auto":
        parts.append(f"--device {args.device}")
    if Path(args.out).resolve() != (HERE / "results").resolve():
        parts.append(f"--out {shown(Path(args.out).resolve())}")
    return " ".join(parts)


def benchmark_markdown(args: argparse.Namespace, names: list[str], study: Study, summary: pd.DataFrame) -> str:
    cells = summary.astype(object).where(summary.notna(), "")  # no tau: an empty cell, not "nan"
    first = f"; its first {args.archs}" if args.archs else ""
    return "\n".join([
        f"# Proxy fidelity on NAS-Bench-Macro: Kendall tau / Spearman of proxy score vs `{study.truth}`", "",
        (f"Reproduce: `{command(args, names)}` (per-network results in {study.stem}_runs.csv beside this file; "
         "a killed run resumes)."), "",
        (f"Networks: a seeded sample of {len(study.gt)} of the 3,969 distinct NAS-Bench-Macro networks "
         f"(`--sample {args.sample}`, seed {SEED}: the sample `experiments/zero_cost_fidelity.py --limit "
         f"{args.sample}` scores{first}), each trained as its proxy IR (`for_proxy`, 10 classes) on CIFAR-10 from "
         f"{shown(Path(args.data_dir).resolve())}. Ground truth: `{study.truth}` (CIFAR-10 test accuracy after 50 "
         f"epochs, mean of 3 seeds). Sets: `all`, and latency bands [{BAND_LOW} T, T] for T a percentile of "
         f"`local_cpu_table_ms` over all networks of {shown(LATENCY_CSV)} (a band holding fewer than "
         f"{MIN_NETWORKS} sampled networks: its n, no tau):"),
        *study.band_lines, "",
        (f"Seconds are wall time on this machine ({os.cpu_count()} cores, {args.threads} torch thread(s); the load "
         "average is recorded: other jobs slow it down)."), "",
        markdown_table(cells), ""])


def run(args: argparse.Namespace) -> None:
    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise UserError(f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(SETTINGS)})")
    if args.benchmark is not None and args.benchmark not in BENCHMARKS:
        raise UserError(f"unknown benchmark {args.benchmark} (known: {', '.join(BENCHMARKS)})")
    if args.benchmark is None and args.sample is not None:
        raise UserError("--sample applies to --benchmark only (the mnv3 study has its 21 networks, --archs N)")
    if args.benchmark is not None:
        args.sample = 60 if args.sample is None else args.sample
        if args.sample < MIN_NETWORKS:
            raise UserError(f"--sample must be at least {MIN_NETWORKS}, got {args.sample}")
    device = str(resolve_device(args.device))
    study = (nasbench_macro_study(args.sample, args.archs) if args.benchmark else
             mnv3_study(Path(args.gt), args.archs))
    gt = study.gt
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / f"{study.stem}_runs.csv"
    runs = (pd.read_csv(runs_path, dtype={"arch_name": str}).drop(columns=["score"], errors="ignore")
            if runs_path.exists() else pd.DataFrame())  # str: a code such as 00000010 stays one
    for name in names:
        setting = SETTINGS[name]
        done = set(runs.loc[runs["setting"] == name, "arch_name"]) if not runs.empty else set()
        todo = [row for row in gt.itertuples() if row.name not in done]  # the rest ran earlier
        if not todo:
            continue
        data = load_data(f"cifar10:{args.data_dir}", resolution=setting.resolution,
                         train_subset=setting.train_images, seed=0).to(device)  # copied to a GPU once
        for arch_row in todo:
            arch = Arch.from_string(arch_row.arch).replace(num_classes=data.num_classes)
            result = {"setting": name, "arch_name": arch_row.name, **evaluate(setting, arch, data, args.threads, device)}
            print(f"{name} {arch_row.name}: val acc {result['val_acc']:.4f} in {result['seconds']:.1f} s", flush=True)
            runs = pd.concat([runs, pd.DataFrame([result])], ignore_index=True)
            write_csv(runs_path, runs)
    done = runs[runs["setting"].isin(names) & runs["arch_name"].isin(gt["name"])]
    summary = summarize(done, study)
    write_csv(out / f"{study.stem}.csv", summary)
    if args.benchmark:
        write_text(out / f"{study.stem}.md", benchmark_markdown(args, names, study, summary))
        plot(summary[summary["set"] == "all"], out / f"{study.stem}.png", f"NAS-Bench-Macro {study.truth}")
    else:
        write_text(out / f"{study.stem}.md",
                   "# Proxy fidelity: Kendall tau / Spearman of proxy score vs 18-epoch CIFAR-10 accuracy\n\n"
                   f"{len(gt)} architectures from {shown(args.gt)}; seconds are wall time on this machine "
                   "(load average recorded: other jobs slow it down).\n\n" + markdown_table(summary) + "\n")
        plot(summary, out / f"{study.stem}.png")
    print(markdown_table(summary[["setting", "score", *(["set"] if study.sets else []), "architectures",
                                  "kendall_tau", "spearman_rho", "seconds_per_candidate"]]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gt", default=str(SHARED / "gt" / "cifar10_18ep.csv"), help="architectures and their accuracy")
    ap.add_argument("--benchmark", metavar="NAME",
                    help=f"rank a sample of a benchmark's networks instead of --gt's: {', '.join(BENCHMARKS)}")
    ap.add_argument("--sample", type=int, metavar="N",
                    help=f"with --benchmark: a seeded sample of N networks (default 60, at least {MIN_NETWORKS})")
    ap.add_argument("--data-dir", default=str(SHARED / "data"), help="holds cifar10_{train,test}.npz")
    ap.add_argument("--settings", default=",".join(STUDY), help=f"comma-separated names from {', '.join(SETTINGS)}")
    ap.add_argument("--archs", type=int, help="only the first N architectures (checks)")
    ap.add_argument("--threads", type=int, default=1)
    add_device_argument(ap)
    ap.add_argument("--out", default=str(HERE / "results"))
    return run_script(ap, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
