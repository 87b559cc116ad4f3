"""A small per-op latency model: linear in multiply-adds and memory traffic per kind of work.

latency_ms = sum_j coef_j * feature_j(op), with non-negative coefficients fitted by
least squares on relative error (scipy's NNLS). The features split an op into its
parts (dense and depthwise convolutions, tensors read and written, h-swish and SE
passes, classifier weights, a fixed cost per op), so the model predicts ops of any
shape, e.g. channel counts NetAdapt trims to, or ops missing from a published table.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import nnls

from latency_tables.ops import Op
from search_spaces.counting import conv_out
from search_spaces.ir import Block, Stem

FEATURES = ("dense_mmacs", "dw_mmacs", "mem_melems", "hswish_melems", "se_melems", "fc_mweights", "ops")


def op_features(op: Op) -> dict[str, float]:
    """Feature values of one op (millions of MACs / elements / weights; `ops` counts parts
    with their own fixed cost: 1 per stem or block, 2 for the head's conv and classifier)."""
    f = dict.fromkeys(FEATURES, 0.0)
    L, hw, cin = op.layer, op.hw, op.cin

    def conv(ci, co, k, h_in, stride=1, groups=1, act=None):
        h_out = conv_out(h_in, k, stride)
        f["dw_mmacs" if groups > 1 else "dense_mmacs"] += co * (ci // groups) * k * k * h_out ** 2 / 1e6
        f["mem_melems"] += (ci * h_in ** 2 + co * h_out ** 2) / 1e6
        if act == "hswish":
            f["hswish_melems"] += co * h_out ** 2 / 1e6
        return h_out

    if isinstance(L, Stem):
        conv(cin, L.out, L.kernel, hw, L.stride, act=L.act)
        f["ops"] = 1
    elif isinstance(L, Block):
        if L.op == "ir":
            if L.mid != L.in_:
                conv(L.in_, L.mid, 1, hw, act=L.act)
            ho = conv(L.mid, L.mid, L.kernel, hw, L.stride, groups=L.mid, act=L.act)
            conv(L.mid, L.out, 1, ho)
            se_ch = L.mid
        else:
            ho = conv(L.in_, L.out, L.kernel, hw, L.stride, act=L.act)
            se_ch = L.out
        if L.se is not None:  # pool + gate multiply: two passes over the tensor, two tiny FCs
            f["se_melems"] += se_ch * ho ** 2 / 1e6
            f["dense_mmacs"] += 2 * se_ch * L.se.squeeze / 1e6
        if L.residual:
            f["mem_melems"] += 3 * L.out * ho ** 2 / 1e6
        f["ops"] = 1
    else:
        f.update(head_features(op, "conv"))
        for k, v in head_features(op, "classifier").items():
            f[k] += v
    return f


def head_features(op: Op, part: str) -> dict[str, float]:
    """Features of the head's 1x1 conv part, or of its pool + FC + classifier part (published
    tables time them separately)."""
    f = dict.fromkeys(FEATURES, 0.0)
    L, hw = op.layer, op.hw
    if part == "conv":
        f["dense_mmacs"] = op.cin * L.conv * hw ** 2 / 1e6
        f["mem_melems"] = (op.cin + L.conv) * hw ** 2 / 1e6
        f["hswish_melems"] = L.conv * hw ** 2 / 1e6 if L.act == "hswish" else 0.0
    else:
        f["mem_melems"] = L.conv * hw ** 2 / 1e6       # global pooling reads the map once
        width = L.hidden or L.conv
        f["fc_mweights"] = (L.conv * L.hidden if L.hidden else 0) / 1e6 + width * op.num_classes / 1e6
    f["ops"] = 1
    return f


def feature_matrix(ops: list[Op]) -> np.ndarray:
    return np.array([[op_features(op)[k] for k in FEATURES] for op in ops])


def fit_coefficients(X: np.ndarray, y: np.ndarray, columns: list[int]) -> np.ndarray:
    """NNLS on relative error (rows divided by y) using only the given feature columns."""
    w = 1.0 / y
    sol, _ = nnls(X[:, columns] * w[:, None], np.ones_like(y))
    coef = np.zeros(X.shape[1])
    coef[columns] = sol
    return coef


RELATIVE = ("hswish_melems", "se_melems")


@dataclass
class OpModel:
    """Fitted coefficients (ms per unit of each feature) and where they came from.

    `relative` (optional) are coefficients of another device that set the relative cost of
    h-swish and SE: a prediction is multiplied by relative(op) / relative(op without them),
    which is how the Pixel 1 model (no SE or h-swish in its data) borrows them from Note10."""

    coef: dict[str, float]
    provenance: dict = field(default_factory=dict)
    relative: dict[str, float] | None = None

    def predict(self, ops: list[Op]) -> np.ndarray:
        X = feature_matrix(ops)
        y = X @ np.array([self.coef.get(k, 0.0) for k in FEATURES])
        if self.relative:
            r = np.array([self.relative.get(k, 0.0) for k in FEATURES])
            base = r * np.array([k not in RELATIVE for k in FEATURES])
            y = y * (X @ r) / (X @ base)
        return y

    def stats(self, op: Op) -> dict:
        """Table statistics of a modelled op: the prediction, no spread, zero measurements."""
        ms = float(self.predict([op])[0])
        nan = float("nan")
        return {"mean_ms": ms, "median_ms": ms, "p10_ms": nan, "p90_ms": nan, "std_ms": nan, "count": 0}

    def to_dict(self) -> dict:
        return {"features": list(FEATURES), "coef": self.coef, "relative": self.relative,
                "provenance": self.provenance}

    @classmethod
    def from_dict(cls, d: dict) -> "OpModel":
        from search_spaces.errors import UserError

        unknown = set(d.get("coef", {})) | set(d.get("relative") or {})
        if not isinstance(d.get("coef"), dict) or unknown - set(FEATURES):
            raise UserError(f"op model: coefficients must be a mapping over {FEATURES}")
        return cls(dict(d["coef"]), dict(d.get("provenance", {})), d.get("relative"))


def leave_one_out(X: np.ndarray, y: np.ndarray, columns: list[int]) -> np.ndarray:
    """Relative error of each entry predicted by a model fitted on all the others."""
    errs = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        errs[i] = (X[i] @ fit_coefficients(X[keep], y[keep], columns) - y[i]) / y[i]
    return errs
