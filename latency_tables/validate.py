"""Validating a table: time random networks end to end and compare with the table's prediction.

A table whose end-to-end term keeps reference networks (`latency_tables.anchor`) is validated
twice over: against the networks' absolute times, and against their times relative to the
reference timed among them (the machine's speed of the moment divided out, what a budget stated
against a reference network depends on)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from latency_tables.anchor import at_level, reference_of, speed
from latency_tables.build import measure_networks, random_archs
from latency_tables.ops import arch_ops
from search_spaces.ir import Arch


def validate_table(table, space, runner, samples: int = 100, seed: int = 12345,
                   out: str | Path | None = None, stem: str = "latency_validation") -> tuple[dict, pd.DataFrame]:
    """Measure `samples` random archs of `space` end to end and compare with the table; with `out`,
    write STEM.csv (per network), STEM_summary.csv and STEM.png there.

    A table that fits its own end-to-end term on first use fits it on networks of `space`, the
    space validated, not the table's own; a table that can neither measure nor model the ops of
    `space` refuses in one line (UserError naming the op) before any network is timed."""
    r = table.metadata.get("resolution") or space.resolution
    table.calibrate_if_able(r, space=space)
    archs = random_archs(space, samples, seed, r)
    # every op the table lacks, timed in a build's batches before any prediction, rather than a
    # few at a time as each network is queried (see `build.op_chunks`)
    table.add_missing([op for a in archs for _, op in arch_ops(a)])
    predicted = np.array([table.query_total(a) for a in archs])
    reference = reference_of(table.term_at(r))
    refs = [] if reference is None else [Arch.from_string(s) for s in reference[0]]
    timed = measure_networks(refs + archs, runner)  # the reference among the networks, in the same company
    measured = timed[len(refs):]
    df = pd.DataFrame({"arch": [a.to_string() for a in archs], "predicted_ms": predicted,
                       "measured_ms": measured, "rel_err": (predicted - measured) / measured})
    stats = agreement(predicted, measured)
    if reference is not None:
        factor = speed(timed[:len(refs)], reference[1])
        df["measured_at_table_level_ms"] = leveled = at_level(measured, factor)
        df["anchor_rel_err"] = (predicted - leveled) / leveled
        stats.update({f"anchor_{k}": v for k, v in agreement(predicted, leveled).items() if k != "n"},
                     anchor_speed=factor, anchor_networks=len(refs))
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        df.to_csv(out / f"{stem}.csv", index=False)
        pd.DataFrame([stats]).to_csv(out / f"{stem}_summary.csv", index=False)
        scatter(df, stats, out / f"{stem}.png", f"{table.metadata.get('device')} {table.precision}")
    return stats, df


def agreement(predicted, measured) -> dict:
    """How well predictions match end-to-end measurements (the figures a validation reports)."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    rel = (predicted - measured) / measured
    return {"n": len(measured), "rmse_ms": float(np.sqrt(np.mean((predicted - measured) ** 2))),
            "rmspe_pct": float(np.sqrt(np.mean(rel ** 2)) * 100),
            "within_5pct": float(np.mean(np.abs(rel) <= 0.05)), "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
            "kendall_tau": float(kendalltau(predicted, measured).statistic), "mean_rel_err_pct": float(rel.mean() * 100)}


def scatter(df: pd.DataFrame, stats: dict, path: Path, device: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    ax.scatter(df["measured_ms"], df["predicted_ms"], s=10)
    lo, hi = df[["measured_ms", "predicted_ms"]].min().min(), df[["measured_ms", "predicted_ms"]].max().max()
    x = np.linspace(lo, hi, 2)
    ax.plot(x, x, "k-", lw=0.8)
    ax.fill_between(x, 0.9 * x, 1.1 * x, color="gray", alpha=0.2, label="+-10%")
    ax.set(xlabel="measured end to end (ms)", ylabel="table prediction (ms)",
           title=f"{device}: {stats['within_10pct']:.0%} within +-10%, tau {stats['kendall_tau']:.2f}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
