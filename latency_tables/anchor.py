"""The anchor: a fixed set of reference networks, timed when a table's end-to-end term is fitted
and again among the networks of every validation, so that a validation can divide out the
machine's speed of the moment.

On a shared VM the same networks' median moves by up to 17% from minute to minute while every
network moves together (`experiments/latency_fresh_vs_build.py`: tau about 0.9 between any two
tables), so a validation an hour after a table's calibration is off by the machine's drift,
whatever the table. A search states its budget against a reference network timed with the same
table (T = MobileNetV3-Large's latency by default): what it depends on is latency relative to
the machine's speed of the moment.

The term records the first `REFERENCE_NETWORKS` of its calibration networks and their times
(`anchor_archs`, `anchor_ms`: the table's level, free since they were timed anyway). A
validation times them again among its own networks; the median of their time ratios is the
machine's speed against the table's level, and the validation reports its error both absolute
and with that speed divided out (`at_level`).

Measured before this form (`experiments/results/latency_anchor_runs.csv`): one small fixed
network (MobileNetV3-Small at 64 px) as the anchor. Timed with the chunks of ops, its time
depended on the ops around it (0.35-0.78 ms across chunks, 0.27 ms alone, while one op moved 6%),
and scaling each chunk by it made a fresh table rank worse (Kendall tau 0.92 -> 0.66); timed
among whole networks, it still moved 10% between a calibration and a validation one minute
apart while the networks did not. A median over several full-size networks, timed in the same
company as the networks validated, is the steadier yardstick.
"""
from __future__ import annotations

import numpy as np

#: calibration networks kept as the table's reference (the median of their ratios is robust to one outlier)
REFERENCE_NETWORKS = 8


def reference_of(term: dict) -> tuple[list[str], list[float]] | None:
    """(IR strings, ms at the table's level) of the term's reference networks; None for a term
    fitted before tables kept them."""
    archs, ms = term.get("anchor_archs"), term.get("anchor_ms")
    return (list(archs), [float(x) for x in ms]) if isinstance(archs, list) and isinstance(ms, list) and archs else None


def speed(now_ms, level_ms) -> float:
    """The machine's time factor against the table's level: the median ratio of the reference
    networks' times now to their times at calibration (1.1: everything takes 10% longer now)."""
    return float(np.median(np.asarray(now_ms, float) / np.asarray(level_ms, float)))


def at_level(measured_ms, factor: float) -> np.ndarray:
    """Times measured while the machine ran at `factor` (see `speed`), brought to the table's level."""
    return np.asarray(measured_ms, float) / factor
