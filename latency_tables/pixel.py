"""The shipped `pixel_cpu` target: a per-op model of a Pixel 1 CPU (TF-Lite, float, one core).

No phone is available, so the model is fitted to the 72 published ProxylessNAS Pixel 1
measurements (ReLU6 MobileNetV2 blocks, no SE); the relative cost of h-swish and SE comes
from the same model fitted to the OFA Note10 tables, which have both. The generated table
(`data/pixel_cpu_mnv3.csv`, every row `source=model`) and the coefficients
(`data/pixel_cpu_model.json`) are produced by `experiments/latency_pixel_fit.py`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from latency_tables.missing import Predict
from latency_tables.model import (FEATURES, RELATIVE, OpModel, feature_matrix, fit_coefficients, head_features,
                                  leave_one_out, modelled_stats)
from latency_tables.ops import space_ops
from latency_tables.published import head_op, read_entries
from latency_tables.table import LatencyTable, new_metadata, op_row

DATA = Path(__file__).resolve().parent / "data"
MODEL_FILE = DATA / "pixel_cpu_model.json"
TABLE_FILE = DATA / "pixel_cpu_mnv3.csv"


def entry_matrix(path: str | Path, fmt: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(keys, features, mean ms) of every entry of a published table, head parts included."""
    entries = read_entries(path, fmt)
    head = head_op(entries, fmt, str(path))
    keys, rows, y = [], [], []
    for key, op, _, stats in entries:
        name = key.split("-")[0]
        if op is not None:
            f = feature_matrix([op])[0]
        elif name in ("Conv_1", "Logits") and fmt == "proxylessnas":
            part = head_features(head[0], "conv" if name == "Conv_1" else "classifier")
            f = np.array([part[k] for k in FEATURES])
        else:
            continue  # the OFA head is only used whole, through its blocks' fit
        keys.append(key)
        rows.append(f)
        y.append(stats["mean_ms"])
    return keys, np.array(rows), np.array(y)


def fit_pixel(pixel_yaml: str | Path, note10_yamls: list[str | Path]) -> tuple[OpModel, dict]:
    """Fit the Pixel 1 model; returns it and a report with the leave-one-out errors."""
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


def pixel_table(model: OpModel, space) -> LatencyTable:
    """Every op of `space` predicted by the model, marked `model`."""
    ops = space_ops(space)
    rows = [op_row(op, modelled_stats(ms), "model") for op, ms in zip(ops, model.predict(ops))]
    meta = new_metadata("pixel_cpu", space.name, space.resolution, threads=1, runtime="tflite (modelled)", cpu="Pixel 1 (model)",
                        cores=1, runtime_version="TF-Lite of 2018 (ProxylessNAS measurements)",
                        op_model=model.to_dict())
    return LatencyTable(rows, meta, missing=Predict(model))
