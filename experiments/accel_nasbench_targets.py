"""Six device targets from Accel-NASBench's whole-network timings: a latency table per device.

Accel-NASBench timed its 5,125 networks end to end on six accelerators (`zcu102`, `vck190`: INT8
latency in ms; `a100`, `rtx3090`, `tpuv2`, `tpuv3`: throughput, read as ms per image). None can be
timed one op at a time, so each table is fitted from the whole-network timings
(`latency_tables.fit.fit_table`, prior: the op features of `latency_tables.model`). Its fidelity
is measured on networks it was not fitted on: a seeded fifth of the networks is held out, the
table fitted on the rest predicts them (`LatencyTable.predict_many`, the search's own path).
Then each table is fitted on every timed network and saved as
latency_tables/data/accel_nasbench_<device>.csv: `nas search --space accel_nasbench --target
zcu102` takes it by name.

    python experiments/accel_nasbench_targets.py [--out DIR]

Writes experiments/results/accel_nasbench_targets{.csv,.md,.png} and the six tables.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from scipy import stats

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from latency_tables.fit import fit_table  # noqa: E402
from nas.benchmarks.accel_nasbench import DEVICES, SPACE, device_costs, distinct, vector  # noqa: E402
from nas.run_dir import write_csv, write_text  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from script_main import run_script  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402

HERE = Path(__file__).resolve().parent
TABLES = HERE.parent / "latency_tables" / "data"
SEED = 0
HELD_OUT = 0.2
PRIOR = "features"
PRECISION = {"zcu102": "int8", "vck190": "int8"}


def table_path(device: str) -> Path:
    return TABLES / f"accel_nasbench_{device}.csv"


def agreement(predicted: np.ndarray, measured: np.ndarray) -> dict:
    err = predicted / measured - 1
    return {"within_10pct": float(np.mean(np.abs(err) <= 0.1)), "rmspe_pct": float(100 * np.sqrt(np.mean(err ** 2))),
            "kendall_tau": float(stats.kendalltau(predicted, measured)[0])}


def ceilings(nets: pd.DataFrame) -> list[str]:
    """A line per throughput device where many networks bunch near its highest throughput: a floor
    of time per image set outside the network's ops, which a sum over them does not follow."""
    lines = []
    for d in DEVICES:
        values = nets[d.column].dropna()
        near_top = float(np.mean(values >= 0.9 * values.max()))
        if d.unit != "ms" and near_top > 0.05:
            lines.append(f"- {d.name}: {near_top:.0%} of the networks run within 10% of its highest throughput "
                         f"({values.max():,.0f} images/s), small ones bunched at a floor of "
                         f"{1000 / values.max():.2f} ms per image that a sum over ops does not follow: its "
                         "held-out errors sit there.")
    return lines or ["- No device's networks bunch at a floor of time per image."]


def run(args: argparse.Namespace) -> None:
    nets, costs = distinct(), device_costs()
    vectors = np.array([vector(c) for c in nets.index])
    archs = [SPACE.decode(v.tolist()) for v in vectors]
    held = np.random.default_rng(SEED).random(len(nets)) < HELD_OUT
    rows, held_points = [], {}
    for d in DEVICES:
        y = costs[d.name].to_numpy()
        timed = np.isfinite(y)
        fit_on, test = timed & ~held, timed & held
        table = fit_table(SPACE, [a for a, f in zip(archs, fit_on) if f], y[fit_on], prior=PRIOR, device=d.name,
                          precision=PRECISION.get(d.name, "fp32"), cv_folds=0, seed=SEED)
        predicted = np.asarray(table.predict_many(vectors[test], space=SPACE))
        held_points[d.name] = (y[test], predicted)
        final = fit_table(SPACE, [a for a, t in zip(archs, timed) if t], y[timed], prior=PRIOR, device=d.name,
                          runtime=d.measures, precision=PRECISION.get(d.name, "fp32"), cv_folds=0, seed=SEED)
        final.save(table_path(d.name))
        rows.append({"device": d.name, "measures": d.measures, "timed": int(timed.sum()),
                     "fitted_on": int(fit_on.sum()), "held_out": int(test.sum()), **agreement(predicted, y[test]),
                     "median_ms": float(np.median(y[timed])), "unknowns": final.metadata["fit"]["unknowns"]})
    summary = pd.DataFrame(rows)
    write_csv(args.out / "accel_nasbench_targets.csv", summary)
    lines = ["# Six device targets fitted from Accel-NASBench's whole-network timings", "",
             "Reproduce: `python experiments/accel_nasbench_targets.py`.", "",
             f"Per device, a latency table of space `accel_nasbench` fitted by `latency_tables.fit.fit_table` "
             f"(prior `{PRIOR}`) on the networks' ms per image (a throughput inverted), measured on a seeded "
             f"{HELD_OUT:.0%} of the networks held out of the fit (seed {SEED}), predicted through "
             "`LatencyTable.predict_many`. The saved tables (latency_tables/data/accel_nasbench_<device>.csv) are "
             "then fitted on every timed network. These are models of whole-network measurements, not per-op "
             "timings.", "", markdown_table(summary.drop(columns="measures"), ".3g"), "",
             *(f"- {d.name}: {d.measures}" for d in DEVICES), "", "## Reading", "",
             *ceilings(nets)]
    write_text(args.out / "accel_nasbench_targets.md", "\n".join(lines) + "\n")
    fig, axes = plt.subplots(2, 3, figsize=(12, 7.5))
    for ax, (name, (measured, predicted)), row in zip(axes.flat, held_points.items(), rows):
        ax.scatter(measured, predicted, s=3, alpha=0.4)
        lo, hi = measured.min(), measured.max()
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(title=f"{name}: tau {row['kendall_tau']:.3f}, {row['within_10pct']:.0%} within 10%",
               xlabel="measured ms per image", ylabel="fitted table, held out")
    fig.tight_layout()
    with atomic_path(args.out / "accel_nasbench_targets.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return run_script(ap, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
