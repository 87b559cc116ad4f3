"""The anchor: one fixed network timed among the whole networks a table is calibrated on and
among those a validation times, so that a validation can divide out the machine's speed.

On a shared VM the same networks' median moves by up to 17% from minute to minute while every
network moves together (`experiments/latency_fresh_vs_build.py`: tau about 0.9 between any two
tables), so a validation an hour after a table's calibration is off by the machine's drift,
whatever the table. A search states its budget against a reference network timed with the same
table (T = MobileNetV3-Large's latency by default): what it depends on is latency relative to
the machine's speed of the moment. The end-to-end term records the anchor's time among its
calibration networks (`anchor_ms`: the table's level); a validation times the anchor among its
networks too and reports the error both absolute and at the table's level (`relative`).

The anchor is timed among whole networks only, not with the chunks of ops: between ops its time
depends on what ran before it (0.35-0.78 ms across chunks of 8-40 random ops, against 0.27 ms
alone, while one op moved 6%), and scaling each chunk by it made a fresh table's ranking worse
(Kendall tau 0.92 -> 0.66 on 40 mnv3 networks). Among networks it runs in the same company at
calibration and at validation.
"""
from __future__ import annotations

import functools

import numpy as np

#: the anchor network: MobileNetV3-Small, 10 classes, at 64 px (a fraction of a millisecond on
#: one core here, built of the same kinds of layers as the spaces)
ANCHOR_NAME = "mobilenet_v3_small-10cls-64px"


@functools.lru_cache(maxsize=1)
def anchor_onnx():
    from search_spaces.onnx_export import export_onnx
    from search_spaces.references import reference

    return export_onnx(reference("mobilenet_v3_small").replace(num_classes=10, resolution=64))


def level_of(term: dict) -> float | None:
    """The anchor's time when `term` was fitted (None for terms fitted before the anchor)."""
    return term.get("anchor_ms") if term.get("anchor_network") == ANCHOR_NAME else None


def at_level(measured_ms, anchor_ms: float, level_ms: float) -> np.ndarray:
    """Times measured beside an anchor timing of `anchor_ms`, brought to a table's level."""
    return np.asarray(measured_ms, float) * (level_ms / anchor_ms)
