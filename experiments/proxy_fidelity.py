"""Proxy fidelity: how well a short proxy training ranks architectures, against 18-epoch CIFAR-10 accuracies.

For each proxy setting (training images, epochs, resolution, lr, batch size, BN recalibration,
score) every architecture of the reference file (`../shared/gt/cifar10_18ep.csv`: 21 networks,
read in place, never copied) is trained on CIFAR-10 and scored; per setting, Kendall's tau and
Spearman's rho (scipy) between the score and `test_acc_18ep`, with seconds per candidate. A
search is only as good as this ranking: a proxy with tau near 0 picks winners by chance.

Resumable: every (setting, architecture) result is appended to proxy_fidelity_runs.csv
(rewritten atomically) and skipped when the script runs again. Outputs under --out:
proxy_fidelity_runs.csv, proxy_fidelity.{csv,md} and proxy_fidelity.png (tau vs seconds).

    python experiments/proxy_fidelity.py                                  # the full study (hours on 2 cores)
    python experiments/proxy_fidelity.py --settings tiny --archs 3 --out /tmp/pf   # an end-to-end check
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import matplotlib
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
from search_spaces.atomic import atomic_path  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402
from search_spaces.ir import Arch  # noqa: E402

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared"


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


def rank_agreement(runs: pd.DataFrame, gt: pd.DataFrame) -> pd.DataFrame:
    """Per setting and score: Kendall's tau and Spearman's rho against test_acc_18ep, seconds per
    candidate. A score is left out for runs that did not record it (runs before it existed)."""
    rows = []
    for name, group in runs.groupby("setting", sort=False):
        merged = group.merge(gt[["name", "test_acc_18ep"]], left_on="arch_name", right_on="name")
        for score, (column, sign) in SCORES.items():
            if column not in merged or merged[column].isna().any():
                continue
            tau, tau_p = stats.kendalltau(sign * merged[column], merged["test_acc_18ep"])
            rho, _ = stats.spearmanr(sign * merged[column], merged["test_acc_18ep"])
            rows.append({"setting": name, "score": score, "architectures": len(merged), "kendall_tau": tau,
                         "kendall_p": tau_p, "spearman_rho": rho, "seconds_per_candidate": merged["seconds"].mean(),
                         "cpu_seconds_per_candidate": merged["cpu_seconds"].mean(),
                         "mean_val_acc": merged["val_acc"].mean(), "load_avg_mean": merged["load_avg"].mean(),
                         **{k: v for k, v in asdict(SETTINGS[name]).items() if k != "name"}})
    return pd.DataFrame(rows)


def plot(summary: pd.DataFrame, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for score, group in summary.groupby("score", sort=False):  # one colour per score, settings named once
        ax.scatter(group["seconds_per_candidate"], group["kendall_tau"], label=score)
    tops = summary.groupby("setting", sort=False).agg(x=("seconds_per_candidate", "first"), y=("kendall_tau", "max"))
    for setting, top in tops.iterrows():
        ax.annotate(setting, (top.x, top.y), fontsize=7, xytext=(3, 4), textcoords="offset points")
    ax.legend(title="score", fontsize=7)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xscale="log", xlabel="seconds per candidate (this machine)", ylabel="Kendall tau vs 18-epoch accuracy",
           title="proxy fidelity: ranking quality vs cost")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gt", default=str(SHARED / "gt" / "cifar10_18ep.csv"), help="architectures and their accuracy")
    ap.add_argument("--data-dir", default=str(SHARED / "data"), help="holds cifar10_{train,test}.npz")
    ap.add_argument("--settings", default=",".join(STUDY), help=f"comma-separated names from {', '.join(SETTINGS)}")
    ap.add_argument("--archs", type=int, help="only the first N architectures (checks)")
    ap.add_argument("--threads", type=int, default=1)
    add_device_argument(ap)
    ap.add_argument("--out", default=str(HERE / "results"))
    args = ap.parse_args()
    try:
        device = str(resolve_device(args.device))
    except UserError as e:
        ap.error(str(e))

    names = args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(SETTINGS)})")
    gt = pd.read_csv(args.gt).head(args.archs) if args.archs else pd.read_csv(args.gt)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs_path = out / "proxy_fidelity_runs.csv"
    runs = pd.read_csv(runs_path).drop(columns=["score"], errors="ignore") if runs_path.exists() else pd.DataFrame()
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
    summary = rank_agreement(done, gt)
    write_csv(out / "proxy_fidelity.csv", summary)
    write_text(out / "proxy_fidelity.md",
               "# Proxy fidelity: Kendall tau / Spearman of proxy score vs 18-epoch CIFAR-10 accuracy\n\n"
               f"{len(gt)} architectures from {shown(args.gt)}; seconds are wall time on this machine "
               "(load average recorded: other jobs slow it down).\n\n" + markdown_table(summary) + "\n")
    plot(summary, out / "proxy_fidelity.png")
    print(markdown_table(summary[["setting", "score", "architectures", "kendall_tau", "spearman_rho",
                                  "seconds_per_candidate"]]))


if __name__ == "__main__":
    main()
