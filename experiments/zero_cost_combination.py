"""Does a combination of zero-cost scores rank NAS-Bench-Macro better than NASWOT alone?

The issue allows a combination "only if it pays, measured on networks it was not fitted on". This
reads the per-network scores experiments/zero_cost_fidelity.py left in its state file (nothing is
scored again) and compares, on one held-out half of the networks scored by every score (drawn
with seed 0):

- each score alone (the references);
- rank votes, nothing fitted: the mean rank percentile of NASWOT and jacob_cov (the two scores
  that rank within a latency band), and of all zero-cost scores;
- small models over every score's rank percentile and the table latency, fitted to the benchmark's
  accuracy of networks of the other half: ridge regression (scikit-learn's RidgeCV) and boosted
  trees (HistGradientBoostingRegressor), each fitted on FIT_SIZES networks. A model needs trained
  accuracies to fit on, which a user of a new space does not have for free, and those truths alone
  already buy a predictor: the same ridge over the architecture's one-hot encoding (Once-for-All's
  accuracy predictor, `nas.supernet.predictor`), no score, is the row a model must beat.

Kendall tau and Spearman rho of each against `mean_acc` on the held-out half, overall and within
the latency bands [0.9 T, T] of experiments/macro_bands.py.

    python experiments/zero_cost_combination.py [--out DIR]

Writes experiments/results/zero_cost_combination{.csv,.md,.png}.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nas.benchmarks.nasbench_macro import distinct  # noqa: E402
from nas.run_dir import write_csv, write_text  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from nas.supernet.predictor import AccuracyPredictor  # noqa: E402
from nas.zero_cost import SCORES  # noqa: E402
from macro_bands import SEED, rank_vote, sets_of, table_latency  # noqa: E402
from results_paths import shown  # noqa: E402
from script_main import run_script  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402
from search_spaces.space import get_space  # noqa: E402
from zero_cost_fidelity import read_state, state_path  # noqa: E402

HERE = Path(__file__).resolve().parent
BASELINES = ("flops", "params")  # counted, not measured at initialization: not zero-cost scores proper
FIT_SIZES = (100, None)  # None: the whole fitting half
VOTED = ("naswot", "jacob_cov")


def score_table() -> pd.DataFrame:
    """NAS-Bench-Macro networks (rows, by code) x scores (columns), only networks every score rated."""
    state = read_state()
    macro = state[state["group"] == "nasbench_macro"]
    if macro.empty:
        raise UserError(f"{shown(state_path())} holds no NAS-Bench-Macro score: run "
                        "experiments/zero_cost_fidelity.py first")
    table = macro.pivot_table(index="network", columns="score", values="value", aggfunc="last")
    table = table[[s for s in SCORES if s in table.columns]].dropna()
    if "naswot" not in table.columns or len(table) < 200:
        raise UserError(f"{shown(state_path())} holds NASWOT and every other score for {len(table)} networks; "
                        "a held-out comparison needs at least 200")
    return table


def features(table: pd.DataFrame, latency: pd.Series) -> pd.DataFrame:
    """Each score's rank percentile among the scored networks, and the latency's: a rank map fitted
    on no accuracy, so it leaks nothing from the held-out half."""
    return table.assign(latency_ms=latency.reindex(table.index)).rank(pct=True)


def fidelity_rows(method: str, fitted_on: int, prediction: pd.Series, sets: dict[str, pd.Series]) -> list[dict]:
    rows = []
    for set_name, truth in sets.items():
        p = prediction.reindex(truth.index)
        tau = stats.kendalltau(p, truth).statistic if len(truth) >= 2 else np.nan
        rho = stats.spearmanr(p, truth).statistic if len(truth) >= 2 else np.nan
        rows.append({"method": method, "fitted_on": fitted_on, "set": set_name, "n": len(truth),
                     "kendall_tau": float(tau), "spearman_rho": float(rho)})
    return rows


def compare(table: pd.DataFrame, accuracy: pd.Series, latency: pd.Series) -> tuple[pd.DataFrame, list[str], int]:
    """Every method's rows on the held-out half; the band lines; the size of the fitting half."""
    rng = np.random.default_rng(SEED)
    order = table.index[rng.permutation(len(table))]
    fit_half, held = order[: len(order) // 2], order[len(order) // 2:]
    sets, band_lines = sets_of(accuracy.reindex(held), latency)
    x = features(table, latency)
    zero_cost = [s for s in table.columns if s not in BASELINES]
    rows = []
    for s in table.columns:
        rows += fidelity_rows(s, 0, table[s], sets)
    if all(v in table.columns for v in VOTED):
        rows += fidelity_rows(f"vote {'+'.join(VOTED)}", 0, rank_vote(table[VOTED[0]], table[VOTED[1]]), sets)
    rows += fidelity_rows(f"vote of {len(zero_cost)} zero-cost scores", 0, x[zero_cost].mean(axis=1), sets)
    models = {"ridge over scores + latency": lambda: RidgeCV(alphas=np.logspace(-3, 3, 13)),
              "boosted trees over scores + latency": lambda: HistGradientBoostingRegressor(
                  max_iter=200, learning_rate=0.05, random_state=SEED)}
    for size in FIT_SIZES:
        fit_on = fit_half if size is None else fit_half[:size]
        for name, make in models.items():
            model = make().fit(x.loc[fit_on].to_numpy(), accuracy.reindex(fit_on).to_numpy())
            prediction = pd.Series(model.predict(x.loc[held].to_numpy()), index=held)
            rows += fidelity_rows(name, len(fit_on), prediction, sets)
        # what the same truths buy without any score: Once-for-All's predictor on the architecture alone
        vectors = [[int(c) for c in code] for code in fit_on]
        predictor = AccuracyPredictor.for_space(get_space("nasbench_macro"), vectors, accuracy.reindex(fit_on))
        prediction = pd.Series(predictor.predict([[int(c) for c in code] for code in held]), index=held)
        rows += fidelity_rows("ridge over the architecture (one-hot), no score", len(fit_on), prediction, sets)
    return pd.DataFrame(rows), band_lines, len(fit_half)


def plot(summary: pd.DataFrame, path: Path) -> None:
    keys = list(dict.fromkeys(zip(summary["method"], summary["fitted_on"])))  # the table's order
    labels = [f"{m} ({n})" if n else m for m, n in keys]
    tau = summary.pivot_table(index=["method", "fitted_on"], columns="set", values="kendall_tau").reindex(
        pd.MultiIndex.from_tuples(keys))
    sets = list(dict.fromkeys(summary["set"]))
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(labels) + 1.5))
    height = 0.8 / len(sets)
    for i, s in enumerate(sets):
        ax.barh(np.arange(len(labels)) + (i - (len(sets) - 1) / 2) * height, tau[s], height, label=s)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_yticks(np.arange(len(labels)), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel="Kendall tau vs mean_acc on the held-out half",
           title="zero-cost scores and their combinations (fitted on: networks)")
    ax.legend(fontsize=7)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def reading(summary: pd.DataFrame) -> list[str]:
    """Per set: the best single score, the best vote, and per number of truths the best model over
    the scores against the architecture-only predictor fitted on the same truths."""
    lines = []
    for set_name, g in summary.groupby("set", sort=False):
        unfitted = g[g["fitted_on"] == 0]
        votes = unfitted["method"].str.startswith("vote")
        best, vote = (unfitted[~votes].sort_values("kendall_tau").iloc[-1],
                      unfitted[votes].sort_values("kendall_tau").iloc[-1])
        text = (f"- {set_name} (n = {int(best['n'])}): best single score {best['method']} {best['kendall_tau']:.3f}; "
                f"best {vote['method']} {vote['kendall_tau']:.3f}")
        for size, fitted in g[g["fitted_on"] > 0].groupby("fitted_on", sort=False):
            alone = fitted["method"].str.startswith("ridge over the architecture")
            model = fitted[~alone].sort_values("kendall_tau").iloc[-1]
            text += (f"; fitted on {size} truths: {model['method']} {model['kendall_tau']:.3f} against the "
                     f"architecture alone {fitted[alone]['kendall_tau'].iloc[0]:.3f}")
        lines.append(text)
    return lines


def run(args: argparse.Namespace) -> None:
    table, latency = score_table(), table_latency()
    accuracy = distinct()["mean_acc"]
    summary, band_lines, half = compare(table, accuracy, latency)
    write_csv(args.out / "zero_cost_combination.csv", summary)
    lines = ["# Combinations of zero-cost scores, on networks they were not fitted on", "",
             "Reproduce: `python experiments/zero_cost_combination.py` (after `python "
             "experiments/zero_cost_fidelity.py`, whose per-network scores it reads from "
             f"`{shown(state_path())}`).", "",
             f"{len(table)} NAS-Bench-Macro networks carry every score ({', '.join(table.columns)}); "
             f"a seeded half (seed {SEED}) of {half} is the fitting half, the other {len(table) - half} the "
             "held-out half every row is measured on. Features of the models: each score's rank percentile "
             "and the table latency's (`local_cpu_table_ms`). `fitted_on`: networks whose benchmark "
             "accuracy the model was fitted on (0: nothing fitted). Latency bands [0.9 T, T] within the "
             "held-out half:", *band_lines, "",
             markdown_table(summary, ".3g"), "", "## Reading", "", *reading(summary)]
    write_text(args.out / "zero_cost_combination.md", "\n".join(lines) + "\n")
    plot(summary, args.out / "zero_cost_combination.png")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return run_script(ap, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
