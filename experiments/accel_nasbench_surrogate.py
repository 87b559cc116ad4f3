"""How well does the Accel-NASBench surrogate rank networks it was not fitted on?

`benchmark:accel_nasbench` answers a network without a record with `nas.benchmarks.accel_nasbench`'s
surrogate (gradient-boosted trees over the decision vector). Here it is measured by K-fold cross
validation over the 5,125 distinct networks (folds drawn with seed 0): each network's prediction
comes from the model fitted on the other folds. Kendall tau and Spearman rho against val_top1,
overall and within each device's cost bands [0.9 T, T] (T the 25th/50th/75th percentile of the
device's ms per image over the networks), where a budgeted search decides. For reference, on the
same folds: the project's ridge predictor over the one-hot decision vector
(`nas.supernet.predictor.AccuracyPredictor`) and MACs alone (nothing fitted).

    python experiments/accel_nasbench_surrogate.py [--folds 5] [--limit N] [--out DIR]

Writes experiments/results/accel_nasbench_surrogate{.csv,.md,.png}.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy import stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nas.benchmarks.accel_nasbench import DEVICES, SPACE, Surrogate, device_costs, distinct, vector  # noqa: E402
from nas.run_dir import write_csv, write_text  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from nas.supernet.predictor import AccuracyPredictor  # noqa: E402
from script_main import run_script  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 0
BAND_PERCENTILES = (25, 50, 75)
BAND_LOW = 0.9  # a band is [BAND_LOW x T, T]


def cross_validated(nets: pd.DataFrame, folds: int) -> tuple[pd.DataFrame, list[float]]:
    """Held-out predictions of each method for every network (columns), and the surrogate's fit seconds per fold."""
    vectors = np.array([vector(c) for c in nets.index])
    accuracy = nets["val_top1"].to_numpy()
    fold = np.random.default_rng(SEED).permutation(len(nets)) % folds
    pred = pd.DataFrame(index=nets.index, columns=["surrogate", "ridge_one_hot"], dtype=float)
    seconds = []
    for k in range(folds):
        fit, held = fold != k, fold == k
        start = time.perf_counter()
        model = Surrogate(vectors[fit], accuracy[fit], seed=SEED)
        seconds.append(time.perf_counter() - start)
        pred.loc[held, "surrogate"] = model.predict(vectors[held])
        ridge = AccuracyPredictor.for_space(SPACE, vectors[fit].tolist(), accuracy[fit])
        pred.loc[held, "ridge_one_hot"] = ridge.predict(vectors[held].tolist())
    pred["macs"] = nets["macs_m"]  # nothing fitted: more MACs, more accuracy
    return pred, seconds


def sets(nets: pd.DataFrame) -> tuple[dict[str, pd.Index], list[str]]:
    """{set name: its networks}: all, and each device's bands; a line per band."""
    out, lines = {"all": nets.index}, []
    costs = device_costs(nets)
    for d in DEVICES:
        cost = costs[d.name].dropna()
        bands = []
        for p in BAND_PERCENTILES:
            t = float(np.percentile(cost, p))
            inside = cost.index[(cost >= BAND_LOW * t) & (cost <= t)]
            out[f"{d.name}_p{p}"] = inside
            bands.append(f"p{p} [{BAND_LOW * t:.4g}, {t:.4g}] ms ({len(inside)} networks)")
        lines.append(f"- {d.name} ({d.measures}): {'; '.join(bands)}")
    return out, lines


def summarize(nets: pd.DataFrame, pred: pd.DataFrame, groups: dict[str, pd.Index]) -> pd.DataFrame:
    rows = []
    for name, index in groups.items():
        truth = nets.loc[index, "val_top1"]
        for method in pred.columns:
            guess = pred.loc[index, method]
            rows.append({"set": name, "method": method, "n": len(index),
                         "kendall_tau": stats.kendalltau(guess, truth)[0],
                         "spearman_rho": stats.spearmanr(guess, truth)[0],
                         "rmse_points": float(np.sqrt(np.mean((guess - truth) ** 2))) if method != "macs" else np.nan,
                         "accuracy_span_points": float(truth.max() - truth.min())})
    return pd.DataFrame(rows)


def plot(nets: pd.DataFrame, pred: pd.DataFrame, summary: pd.DataFrame, path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.8), gridspec_kw={"width_ratios": [1, 1.6]})
    a.scatter(nets["val_top1"], pred["surrogate"], s=3, alpha=0.4)
    lo, hi = nets["val_top1"].min(), nets["val_top1"].max()
    a.plot([lo, hi], [lo, hi], "k--", lw=0.8)
    tau = summary.query("set == 'all' and method == 'surrogate'")["kendall_tau"].iloc[0]
    a.set(xlabel="val_top1 (%), the record", ylabel="surrogate, held out (%)",
          title=f"held-out predictions (Kendall tau {tau:.3f})")
    table = summary.pivot_table(index="set", columns="method", values="kendall_tau", sort=False)
    x = np.arange(len(table))
    width = 0.8 / len(table.columns)
    for i, method in enumerate(table.columns):
        b.bar(x + (i - (len(table.columns) - 1) / 2) * width, table[method], width, label=method)
    b.set_xticks(x, table.index, rotation=75, fontsize=7)
    b.axhline(0, color="k", lw=0.8)
    b.set(ylabel="Kendall tau vs val_top1", title="overall and within each device's cost bands")
    b.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def run(args: argparse.Namespace) -> None:
    if args.folds < 2:
        raise UserError(f"--folds must be at least 2, got {args.folds}")
    nets = distinct()
    if args.limit:
        nets = nets.sample(n=min(args.limit, len(nets)), random_state=SEED)
    pred, seconds = cross_validated(nets, args.folds)
    groups, band_lines = sets(nets)
    summary = summarize(nets, pred, groups)
    write_csv(args.out / "accel_nasbench_surrogate.csv", summary)
    sur = summary[summary["method"] == "surrogate"].set_index("set")
    bands = sur.drop(index="all")
    twice = nets[nets["trainings"] == 2]["val_top1_spread"]
    settings = ", ".join(f"{k}={v}" for k, v in Surrogate.SETTINGS.items())
    command = "python experiments/accel_nasbench_surrogate.py" + (
        f" --folds {args.folds}" if args.folds != 5 else "") + (f" --limit {args.limit}" if args.limit else "")
    lines = ["# The Accel-NASBench surrogate on networks it was not fitted on", "",
             f"Reproduce: `{command}`.", "",
             f"{len(nets):,} distinct networks, {args.folds}-fold cross validation (folds drawn with seed {SEED}): "
             "every prediction is of a network the model was not fitted on. `surrogate`: "
             f"`nas.benchmarks.accel_nasbench.Surrogate` ({settings}); "
             f"fitting it on {int(len(nets) * (args.folds - 1) / args.folds):,} networks took "
             f"{np.median(seconds):.1f} s (median of the folds, one thread). `ridge_one_hot`: the project's ridge "
             "predictor over the one-hot decision vector. `macs`: MACs alone, nothing fitted. Bands [0.9 T, T] "
             "of each device's ms per image:", *band_lines, "",
             markdown_table(summary, ".3g"), "", "## Reading", "",
             f"- Overall the surrogate ranks held-out networks at Kendall tau {sur.at['all', 'kendall_tau']:.3f} "
             f"(Spearman {sur.at['all', 'spearman_rho']:.3f}, RMSE {sur.at['all', 'rmse_points']:.2f} points; the "
             "authors' XGBoost: 0.917 on their own split).",
             f"- Within the device bands, where a search under a budget decides: tau "
             f"{bands['kendall_tau'].min():.3f} to {bands['kendall_tau'].max():.3f} (median "
             f"{bands['kendall_tau'].median():.3f}), RMSE {bands['rmse_points'].min():.2f} to "
             f"{bands['rmse_points'].max():.2f} points.",
             f"- A seed's noise for scale: the {len(twice)} networks trained twice differ by a median "
             f"{twice.median():.2f} points (largest {twice.max():.2f})."]
    write_text(args.out / "accel_nasbench_surrogate.md", "\n".join(lines) + "\n")
    plot(nets, pred, summary, args.out / "accel_nasbench_surrogate.png")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--limit", type=int, default=None, help="a seeded sample of this many networks (a quick check)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return run_script(ap, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
