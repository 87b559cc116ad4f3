"""A small per-op latency model: linear in multiply-adds and memory traffic per kind of work.

latency_ms = sum_j coef_j * feature_j(op), with non-negative coefficients fitted by
least squares on relative error (scipy's NNLS). The features split an op into its
parts (dense and depthwise convolutions, tensors read and written, h-swish and SE
passes, classifier weights, a fixed cost per op), so the model predicts ops of any
shape, e.g. channel counts NetAdapt trims to, or ops missing from a published table.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.optimize import nnls

from latency_tables.ops import Op
from search_spaces.errors import UserError
from search_spaces.ir import Block, Head

FEATURES = ("dense_mmacs", "dw_mmacs", "mem_melems", "hswish_melems", "se_melems", "fc_mweights", "ops")
#: costs that do not grow with the input size: the millions of conv filter weights, which a runtime
#: re-packs for its GEMM (or streams from memory) on every call. A model opts in by giving it a
#: coefficient (`pixel_cpu` does, see `latency_tables.pixel`); the fits of measured tables keep FEATURES.
STATIC_FEATURES = ("conv_mweights",)
ALL_FEATURES = FEATURES + STATIC_FEATURES


def parts_features(parts, hw: int) -> tuple[dict[str, float], int]:
    """Feature values of parts applied in order at input size hw, counted as one op with its
    own fixed cost; and the output size."""
    f = dict.fromkeys(ALL_FEATURES, 0.0)
    se_mmacs = []  # added after the convs: the order the shipped coefficients were computed in
    for p in parts:
        h_out = p.out_hw(hw)
        if p.kind == "conv":
            f["dw_mmacs" if p.groups > 1 else "dense_mmacs"] += p.count(hw)[1] / 1e6
            f["mem_melems"] += (p.cin * hw ** 2 + p.cout * h_out ** 2) / 1e6
            f["conv_mweights"] += p.cin * p.cout * p.kernel ** 2 / p.groups / 1e6
            if p.act == "hswish":
                f["hswish_melems"] += p.cout * h_out ** 2 / 1e6
        elif p.kind == "se":  # pool + gate multiply: two passes over the tensor, two tiny FCs
            f["se_melems"] += p.cin * hw ** 2 / 1e6
            se_mmacs.append(p.count(hw)[1] / 1e6)
        elif p.kind == "pool":  # global pooling reads the map once
            f["mem_melems"] += p.cin * hw ** 2 / 1e6
        else:
            f["fc_mweights"] += p.cin * p.cout / 1e6
        hw = h_out
    for m in se_mmacs:
        f["dense_mmacs"] += m
    f["ops"] = 1
    return f, hw


IMAGE_CHANNELS = 4   # a conv reading at most this many channels reads the image, unblocked


def round_up(channels: int, block: int) -> int:
    return -(-channels // block) * block


def aligned(parts, block: int):
    """The parts as a runtime that computes channels in groups of `block` runs them: every
    channel count rounded up to it (but the image's input channels and a classifier's outputs,
    which are not blocked). onnxruntime's x86 convolutions use such a blocked layout, so there
    cutting 128 channels to 120 saves almost nothing and 120 to 112 saves 16 channels' work."""
    if block <= 1:
        return parts
    return [replace(p, cin=p.cin if p.cin <= IMAGE_CHANNELS else round_up(p.cin, block),
                    cout=p.cout if p.kind == "linear" else round_up(p.cout, block),
                    groups=round_up(p.groups, block) if p.groups > 1 else 1) for p in parts]


def op_features(op: Op, block: int = 1) -> dict[str, float]:
    """Feature values of one op (millions of MACs / elements / weights; `ops` counts parts
    with their own fixed cost: 1 per stem or block, 2 for the head's conv and classifier),
    with channel counts rounded up to `block` (see `aligned`)."""
    f, hw = parts_features(aligned(op.parts, block), op.hw)
    if isinstance(op.layer, Head):
        f["ops"] = 2
    elif isinstance(op.layer, Block) and op.layer.residual:
        f["mem_melems"] += 3 * round_up(op.layer.out, block) * hw ** 2 / 1e6
    return f


def head_features(op: Op, part: str) -> dict[str, float]:
    """Features of the head's 1x1 conv part, or of its pool + FC + classifier part (published
    tables time them separately)."""
    conv, *rest = op.parts
    f, hw = parts_features([conv], op.hw)
    return f if part == "conv" else parts_features(rest, hw)[0]


def feature_matrix(ops: list[Op], block: int = 1, features: tuple[str, ...] = FEATURES) -> np.ndarray:
    return np.array([[op_features(op, block)[k] for k in features] for op in ops])


def fit_coefficients(X: np.ndarray, y: np.ndarray, columns: list[int]) -> np.ndarray:
    """NNLS on relative error (rows divided by y) using only the given feature columns."""
    w = 1.0 / y
    sol, _ = nnls(X[:, columns] * w[:, None], np.ones_like(y))
    coef = np.zeros(X.shape[1])
    coef[columns] = sol
    return coef


RELATIVE = ("hswish_melems", "se_melems")


def modelled_stats(ms: float) -> dict:
    """Table statistics of a modelled op: the prediction, no spread, zero measurements."""
    nan = float("nan")
    return {"mean_ms": ms, "median_ms": ms, "p10_ms": nan, "p90_ms": nan, "std_ms": nan, "count": 0}


@dataclass
class OpModel:
    """Fitted coefficients (ms per unit of each feature) and where they came from.

    `relative` (optional) are coefficients of another device that set the relative cost of
    h-swish and SE: a prediction is multiplied by relative(op) / relative(op without them),
    which is how the Pixel 1 model (no SE or h-swish in its data) borrows them from Note10."""

    coef: dict[str, float]
    provenance: dict = field(default_factory=dict)
    relative: dict[str, float] | None = None

    def predict(self, ops: list[Op], block: int = 1) -> np.ndarray:
        """Predicted ms of each op; `block`: channel counts rounded up to it (see `aligned`)."""
        X = feature_matrix(ops, block, ALL_FEATURES)
        y = X @ np.array([self.coef.get(k, 0.0) for k in ALL_FEATURES])
        if self.relative:
            r = np.array([self.relative.get(k, 0.0) for k in ALL_FEATURES])
            base = r * np.array([k not in RELATIVE for k in ALL_FEATURES])
            y = y * (X @ r) / (X @ base)
        return y

    def stats(self, op: Op) -> dict:
        return modelled_stats(float(self.predict([op])[0]))

    def to_dict(self) -> dict:
        used = list(FEATURES) + [k for k in STATIC_FEATURES if k in self.coef]
        return {"features": used, "coef": self.coef, "relative": self.relative,
                "provenance": self.provenance}

    @classmethod
    def from_dict(cls, d: dict) -> "OpModel":
        unknown = set(d.get("coef", {})) | set(d.get("relative") or {})
        if not isinstance(d.get("coef"), dict) or unknown - set(ALL_FEATURES):
            raise UserError(f"op model: coefficients must be a mapping over {ALL_FEATURES}")
        return cls(dict(d["coef"]), dict(d.get("provenance", {})), d.get("relative"))


def leave_one_out(X: np.ndarray, y: np.ndarray, columns: list[int]) -> np.ndarray:
    """Relative error of each entry predicted by a model fitted on all the others."""
    errs = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        errs[i] = (X[i] @ fit_coefficients(X[keep], y[keep], columns) - y[i]) / y[i]
    return errs
