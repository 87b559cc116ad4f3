"""The shipped `pixel_cpu` target: a per-op model of a Pixel 1 CPU (TF-Lite, float, one core).

No phone is available, so the model is fitted to the 72 published ProxylessNAS Pixel 1
measurements (ReLU6 MobileNetV2 blocks, no SE); the relative cost of h-swish and SE comes
from the same model fitted to the OFA Note10 tables, which have both. Those ops were timed
alone, at one input size each, so two things a network pays differently are fitted on whole
published Pixel 1 networks (`fit_in_network`): a cost per conv weight that does not shrink
with the input (the per-op table cannot show it: every op in it has one input size), and the
cost per tensor element inside a network, where each op's input was just written by the op
before it. The generated table (`data/pixel_cpu_mnv3.csv`, every row `source=model`) and the
coefficients (`data/pixel_cpu_model.json`) are produced by `experiments/latency_pixel_fit.py`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from latency_tables.missing import Predict
from latency_tables.model import (FEATURES, RELATIVE, OpModel, feature_matrix, fit_coefficients, head_features,
                                  leave_one_out, modelled_stats)
from latency_tables.ops import arch_ops, space_ops
from latency_tables.published import head_op, read_entries
from latency_tables.table import LatencyTable, new_metadata, op_row
from search_spaces.errors import UserError
from search_spaces.ir import Arch

DATA = Path(__file__).resolve().parent / "data"
MODEL_FILE = DATA / "pixel_cpu_model.json"
TABLE_FILE = DATA / "pixel_cpu_mnv3.csv"


def entry_matrix(path: str | Path, fmt: str, features: tuple[str, ...] = FEATURES
                 ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, `features`, mean ms) of every entry of a published table, head parts included."""
    entries = read_entries(path, fmt)
    head = head_op(entries, fmt, str(path))
    keys, rows, y = [], [], []
    for key, op, _, stats in entries:
        name = key.split("-")[0]
        if op is not None:
            f = feature_matrix([op], features=features)[0]
        elif name in ("Conv_1", "Logits") and fmt == "proxylessnas":
            part = head_features(head[0], "conv" if name == "Conv_1" else "classifier")
            f = np.array([part[k] for k in features])
        else:
            continue  # the OFA head is only used whole, through its blocks' fit
        keys.append(key)
        rows.append(f)
        y.append(stats["mean_ms"])
    return keys, np.array(rows), np.array(y)


def fit_pixel(pixel_yaml: str | Path, note10_yamls: list[str | Path]) -> tuple[OpModel, dict]:
    """Fit the Pixel 1 model of standalone ops; returns it and a report with the leave-one-out
    errors. `fit_in_network` then turns it into the shipped in-network model."""
    keys, X, y = entry_matrix(pixel_yaml, "proxylessnas")
    base_cols = [i for i, k in enumerate(FEATURES) if k not in RELATIVE]
    coef = fit_coefficients(X, y, base_cols)
    loo = leave_one_out(X, y, base_cols)
    note10 = [entry_matrix(path, "ofa") for path in note10_yamls]
    nX, ny = np.vstack([m[1] for m in note10]), np.concatenate([m[2] for m in note10])
    ncoef = fit_coefficients(nX, ny, list(range(len(FEATURES))))
    nloo = leave_one_out(nX, ny, list(range(len(FEATURES))))
    model = OpModel(dict(zip(FEATURES, map(float, coef))), relative=dict(zip(FEATURES, map(float, ncoef))),
                    provenance={"fit": "NNLS on relative error",
                                "base": f"{Path(pixel_yaml).name}: {len(y)} ProxylessNAS Pixel 1 entries (TF-Lite, float)",
                                "relative": f"h-swish and SE relative cost from {len(ny)} OFA Note10 entries "
                                            f"({', '.join(Path(p).name for p in note10_yamls)})",
                                "loo_mean_abs_pct": round(float(np.abs(loo).mean() * 100), 2),
                                "loo_max_abs_pct": round(float(np.abs(loo).max() * 100), 2),
                                "note10_loo_mean_abs_pct": round(float(np.abs(nloo).mean() * 100), 2)})
    report = {"keys": keys, "measured_ms": y, "loo_rel_err": loo, "fit_ms": X @ coef}
    return model, report


#: what whole networks fit (`fit_in_network`): the end-to-end scale alone (the model before
#: networks at several sizes were used), or with the element and conv-weight costs
NETWORK_FITS = {"scale": ("scale",), "in_network": ("scale", "mem_melems", "conv_mweights")}
COLUMNS = ("scale", "mem_melems", "conv_mweights")   # what `network_columns` sums, by the coefficient each fits


def network_columns(model: OpModel, arch: Arch) -> np.ndarray:
    """A network's summed standalone ms, tensor elements and conv weights (millions) under
    `model`; the last two carry each op's h-swish/SE factor, as the model applies it."""
    ops = [op for _, op in arch_ops(arch)]
    def unit(feature: str) -> float:
        return float(OpModel({feature: 1.0}, relative=model.relative).predict(ops).sum())
    return np.array([model.predict(ops).sum(), unit("mem_melems"), unit("conv_mweights")])


def fit_in_network(model: OpModel, networks: list[tuple[Arch, float]], fit: str = "in_network"
                   ) -> tuple[OpModel, dict]:
    """Fit on whole networks (arch, published ms) what the standalone per-op model misses:

        latency = scale * sum(standalone ops) + d_mem * elements + w * conv weights

    by least squares on relative error; fit "scale" keeps d_mem = w = 0. Returns the model
    with the element cost shifted by d_mem / scale and a conv-weight cost w / scale, and the
    scale-only end-to-end term (so the table answers at any resolution). A cost per conv
    weight is one that does not shrink with the input: at 96 px an op does 5.4x less work
    than at 224 px but its filters are as large, and runtimes re-pack (or re-stream) them
    on every call. UserError if the fit leaves a negative cost."""
    names = NETWORK_FITS[fit]
    X = np.array([network_columns(model, arch) for arch, _ in networks])[:, [COLUMNS.index(n) for n in names]]
    y = np.array([ms for _, ms in networks])
    sol = dict(zip(names, np.linalg.lstsq(X / y[:, None], np.ones(len(y)), rcond=None)[0]))
    scale = float(sol["scale"])
    coef = dict(model.coef)
    coef["mem_melems"] = coef.get("mem_melems", 0.0) + float(sol.get("mem_melems", 0.0)) / scale
    if "conv_mweights" in sol:
        coef["conv_mweights"] = float(sol["conv_mweights"]) / scale
    if scale <= 0 or min(coef.values()) < 0:
        raise UserError(f"pixel_cpu: the whole-network fit leaves a negative cost (scale {scale:.3g}, "
                        f"coefficients {coef}); check the calibration networks")
    fitted = OpModel(coef, {**model.provenance, "in_network": {k: round(float(v), 4) for k, v in sol.items()}},
                     model.relative)
    term = {"scale": scale, "offset_ms": 0.0, "calibrated": True}
    return fitted, term


def pixel_table(model: OpModel, space) -> LatencyTable:
    """Every op of `space` predicted by the model, marked `model`."""
    ops = space_ops(space)
    rows = [op_row(op, modelled_stats(ms), "model") for op, ms in zip(ops, model.predict(ops))]
    meta = new_metadata("pixel_cpu", space.name, space.resolution, threads=1, runtime="tflite (modelled)", cpu="Pixel 1 (model)",
                        cores=1, runtime_version="TF-Lite of 2018 (ProxylessNAS measurements)",
                        op_model=model.to_dict())
    return LatencyTable(rows, meta, missing=Predict(model))
