"""The anchor: one fixed network timed with every batch a table measures, so that its times are
relative to it and a validation compares like with like.

On a shared VM the same networks' median moves by up to 17% from minute to minute while every
network moves together (`experiments/latency_fresh_vs_build.py`: tau about 0.9 between any two
tables). A table's ops measured in different minutes are then off against each other, and a
validation an hour later is off against all of them. A search states its budget against a
reference network timed with the same table (T = MobileNetV3-Large's latency by default), so
what it needs is latency relative to the machine's speed of the moment.

A table with an anchor (`metadata["anchor"]`) times it interleaved with every batch of ops and
of calibration networks (`Anchored`), and scales the batch by `level_ms / anchor_ms`: its times
are anchor-relative, stated at the level of the anchor's first timing (`level_ms`, the table's
absolute level; `latest_ms` is the latest timing, so a reader sees how far the machine has
moved since). A validation times the anchor with its networks too and reports both errors
(`latency_tables.validate`).
"""
from __future__ import annotations

import functools

import numpy as np

#: the anchor network: MobileNetV3-Small, 10 classes, at 64 px (about 1 ms on one core here: as
#: cheap to time as a mid-sized op, and built of the same kinds of layers as the spaces)
ANCHOR_NAME = "mobilenet_v3_small-10cls-64px"


def new_anchor() -> dict:
    """A new table's anchor entry; its level is set by the first batch it times."""
    return {"network": ANCHOR_NAME}


@functools.lru_cache(maxsize=1)
def anchor_onnx():
    from search_spaces.onnx_export import export_onnx
    from search_spaces.references import reference

    return export_onnx(reference("mobilenet_v3_small").replace(num_classes=10, resolution=64))


def is_anchored(metadata: dict) -> bool:
    anchor = metadata.get("anchor")
    return bool(anchor) and anchor.get("network") == ANCHOR_NAME


class Anchored:
    """A runner that times the anchor with every batch of models and returns the models' samples
    at the table's level (`level_ms / anchor_ms` of the same batch), recording the timing in the
    table's metadata. With `scale=False` it only records the timing (`last_ms`): a validation
    keeps its networks' absolute times and divides the level out itself."""

    def __init__(self, runner, metadata: dict, scale: bool = True):
        self.runner, self.metadata, self.scale = runner, metadata, scale
        self.last_ms: float | None = None

    def __getattr__(self, name):  # name, precision, threads, version, clock_name: the runner's
        return getattr(self.runner, name)

    @property
    def budget(self):
        return self.runner.budget

    @budget.setter
    def budget(self, value):
        self.runner.budget = value

    def measure(self, models: list) -> list[list[float]]:
        samples = self.runner.measure([anchor_onnx(), *models])
        self.last_ms = float(np.median(samples[0]))
        anchor = self.metadata["anchor"]
        anchor.setdefault("level_ms", self.last_ms)
        anchor["latest_ms"] = self.last_ms
        factor = anchor["level_ms"] / self.last_ms if self.scale else 1.0
        return [[x * factor for x in s] for s in samples[1:]]


def anchored(runner, metadata: dict):
    """`runner` wrapped to time the anchor when the table has one; else `runner` itself (tables
    built before the anchor, and tables of other devices' published data, stay as they were)."""
    return Anchored(runner, metadata) if is_anchored(metadata) and not isinstance(runner, Anchored) else runner


def relative(measured_ms, anchor_ms: float, level_ms: float) -> np.ndarray:
    """Times measured beside an anchor timing of `anchor_ms`, brought to a table's level."""
    return np.asarray(measured_ms, float) * (level_ms / anchor_ms)
