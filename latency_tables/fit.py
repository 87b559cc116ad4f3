"""A latency table fitted from whole-network timings: for a device that can only time a network whole
(an FPGA DPU, a TensorRT engine, a phone app), where `build` cannot time one op at a time.

A timed network's latency is modelled as the table predicts it: the sum of its ops plus an
end-to-end constant, `y_i = sum_j A_ij x_j + c`, where `A_ij` counts op `j` in network `i`. The
unknowns are every op of the space's layer groups (what the fast predictor tabulates, and what a
table stores) and `c`. They are fitted in two steps, both on relative error (rows weighted 1/y):

1. the prior: `x_j = sum_k s_k F_jk`, a few non-negative scales `s` (and `c`) by bounded least
   squares. `F` is another device's table split by op kind (its ms, one scale per kind: HELP's
   idea without meta-training), or the per-op features of `latency_tables.model` (MACs, memory
   traffic, a fixed cost per op), or nothing;
2. per-op corrections: `x_j = b_j + p_j u_j` around the prior's `b`, a ridge on `u` (so the
   penalty is on relative departures from the prior), its strength chosen by leave-one-out
   (scikit-learn's RidgeCV); if that leaves an op at zero or below, the same problem is solved
   with bounds (scipy's lsq_linear).

With fewer timings than unknowns the prior decides what the timings cannot; the table's metadata
(`fit`) says so, with the number of timings, the prior, and the fit's own k-fold cross-validated
error. The result is an ordinary table file: every command takes it as `--target TABLE.csv`.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.optimize import lsq_linear
from scipy.stats import spearmanr

from latency_tables.model import FEATURES, feature_matrix, modelled_stats
from latency_tables.ops import Op, arch_ops, space_ops
from latency_tables.table import NO_TERM, LatencyTable, new_metadata, op_row
from search_spaces.anatomy import block_kind
from search_spaces.errors import UserError
from search_spaces.ir import Arch

#: priors that are not a table
PRIORS = ("features", "none")
#: ridge strengths tried, relative to the mean squared column of the weighted design
ALPHAS = np.logspace(-9, 3, 25)
CV_FOLDS = 5
#: unknowns up to which the bounded fit is solved exactly (dense); beyond, iteratively (sparse)
EXACT_BOUNDED = 2000
#: the smallest latency a fitted op may get, as a share of its prior (or of the typical op without one)
FLOOR = 1e-3
#: groupings of the features prior, fullest first: a form is used with at least 2 timings per unknown
FEATURE_FORMS = ((("dense_mmacs",), ("dw_mmacs",), ("mem_melems",), ("hswish_melems",), ("se_melems",),
                  ("fc_mweights",), ("ops",)),
                 (("dense_mmacs", "dw_mmacs"), ("mem_melems",), ("ops",)),
                 (("dense_mmacs", "dw_mmacs", "mem_melems"),))


def op_kind(op: Op) -> str:
    """What a table prior is rescaled by: stem, head, or the block's kind (conv / dwsep / mbconv)."""
    return block_kind(op.layer) if op.kind == "block" else op.kind


def design(archs: list[Arch], ops: list[Op]) -> np.ndarray:
    """(networks, ops) counts of each op in each network."""
    index = {op.key: j for j, op in enumerate(ops)}
    A = np.zeros((len(archs), len(ops)))
    for i, arch in enumerate(archs):
        for _, op in arch_ops(arch):
            A[i, index[op.key]] += 1
    return A


def prior_forms(ops: list[Op], prior: LatencyTable | str | None) -> tuple[str, list[tuple[list[str], np.ndarray]]]:
    """The prior's name and its forms, fullest first: per form, the names of its columns and an
    (ops, columns) matrix whose columns the first step scales."""
    if prior is None or prior == "none":
        return "none", [([], np.zeros((len(ops), 0)))]
    if prior == "features":
        X = feature_matrix(ops)
        return "features", [(["+".join(g) for g in form],
                             np.stack([X[:, [FEATURES.index(f) for f in g]].sum(1) for g in form], axis=1))
                            for form in FEATURE_FORMS]
    if not isinstance(prior, LatencyTable):
        raise UserError(f"latency fit: prior {prior!r} is not a table, {' or '.join(PRIORS)}")
    ms = np.array([prior.query_op(op) for op in ops])
    kinds = sorted({op_kind(op) for op in ops})
    per_kind = np.stack([np.where([op_kind(op) == k for op in ops], ms, 0.0) for k in kinds], axis=1)
    name = f"table {prior.metadata.get('device')} ({prior.path.name if prior.path else 'in memory'})"
    return name, [(kinds, per_kind), (["all ops"], ms[:, None])]


def fit_prior(A: np.ndarray, y: np.ndarray, forms) -> tuple[np.ndarray, float, dict]:
    """Step 1: per-op prior latencies `b`, the constant, and {column: scale}, from the fullest
    form with at least two timings per unknown whose every column some timed network uses (the
    scale of SE is unknowable from networks without SE): non-negative scales and constant."""
    names, F = next(((n, F) for n, F in forms if len(y) >= 2 * (len(n) + 1) and (A @ F).any(0).all()), forms[-1])
    G = np.c_[A @ F, np.ones(len(y))] / y[:, None]
    sol = lsq_linear(G, np.ones(len(y)), bounds=(0, np.inf)).x
    return F @ sol[:-1], float(sol[-1]), dict(zip(names, map(float, sol[:-1])))


def fit_ops(A: np.ndarray, y: np.ndarray, forms) -> tuple[np.ndarray, float, dict]:
    """Both steps on timed networks: per-op ms `x`, the end-to-end constant, and what was chosen."""
    from sklearn.linear_model import Ridge, RidgeCV

    b, c, scales = fit_prior(A, y, forms)
    typical = np.median(y) / max(np.median(A.sum(1)), 1)
    if scales:  # corrections relative to the prior, which gives no op less than a floor
        p = np.maximum(b, FLOOR * (np.median(b[b > 0]) if (b > 0).any() else typical))
    else:
        p = np.full(len(b), typical)
    X, r, w = A * p, y - A @ b - c, 1 / y ** 2
    unit = float(np.mean((X ** 2 * w[:, None]).sum(0))) or 1.0
    if len(y) >= 3:
        alpha = float(RidgeCV(alphas=ALPHAS * unit).fit(X, r, sample_weight=w).alpha_)
    else:  # too few for leave-one-out: the prior, barely moved
        alpha = float(ALPHAS[-1] * unit)
    model = Ridge(alpha=alpha).fit(X, r, sample_weight=w)
    u, c2 = model.coef_, float(model.intercept_)
    lowest = FLOOR * np.where(b > 0, b, typical)
    if (b + p * u < lowest).any() or c + c2 < 0:
        # the same ridge with bounds: every op at least its floor, the constant non-negative
        sw = np.sqrt(w)[:, None]
        M = sp.vstack([sp.csr_matrix(np.c_[X * sw, sw]),
                       sp.hstack([sp.identity(len(u)) * np.sqrt(alpha), sp.csr_matrix((len(u), 1))])]).tocsr()
        lo, rhs = np.r_[(lowest - b) / p, -c], np.r_[r * np.sqrt(w), np.zeros(len(u))]
        if M.shape[1] <= EXACT_BOUNDED:  # the exact active-set solver: the iterative one can stop short
            sol = lsq_linear(M.toarray(), rhs, bounds=(lo, np.inf), method="bvls").x
        else:
            sol = lsq_linear(M, rhs, bounds=(lo, np.inf), lsmr_tol="auto", max_iter=1000).x
        u, c2 = sol[:-1], float(sol[-1])
    x = np.maximum(b + p * u, lowest)
    return x, c + c2, {"prior_scales": scales, "alpha": alpha / unit}


def fit_metrics(predicted, measured) -> dict:
    """Share within +-10%, RMSPE, Kendall tau and Spearman rho of predictions against timings."""
    from latency_tables.validate import agreement

    stats = agreement(predicted, measured)
    return {"within_10pct": stats["within_10pct"], "rmspe_pct": stats["rmspe_pct"],
            "kendall_tau": stats["kendall_tau"], "spearman_rho": float(spearmanr(predicted, measured).statistic)}


def cross_validate(A: np.ndarray, y: np.ndarray, forms, folds: int = CV_FOLDS, seed: int = 0) -> dict | None:
    """The fit's own error: each timed network predicted by a fit on the other folds' (None under 4
    timings, or with fewer than 2 folds)."""
    from sklearn.model_selection import KFold

    if len(y) < 4 or folds < 2:
        return None
    k = min(folds, len(y))
    predicted = np.empty(len(y))
    for train, test in KFold(k, shuffle=True, random_state=seed).split(A):
        x, c, _ = fit_ops(A[train], y[train], forms)
        predicted[test] = A[test] @ x + c
    return {"folds": k, **fit_metrics(predicted, y)}


def as_archs(archs, space) -> list[Arch]:
    out = [a if isinstance(a, Arch) else Arch.from_string(str(a)) for a in archs]
    wrong = [a for a in out if a.resolution != space.resolution]
    if wrong:
        raise UserError(f"latency fit: a timed network is at {wrong[0].resolution} px, space {space.name} at "
                        f"{space.resolution} px")
    return out


def fit_table(space, archs, measured_ms, prior: LatencyTable | str | None = None, device: str = "fitted",
              runtime: str = "unknown", precision: str = "fp32", cv_folds: int = CV_FOLDS,
              seed: int = 0) -> LatencyTable:
    """A latency table of `space` fitted on networks timed whole.

    space:       a `search_spaces.space.Space` (its ops and resolution make the table's rows).
    archs:       the timed networks: `Arch` objects or IR strings, at the space's resolution.
    measured_ms: their measured end-to-end latencies (ms), one per network.
    prior:       a `LatencyTable` (another device's, rescaled per op kind), "features" (MACs and
                 memory traffic), or None / "none".
    device, runtime, precision: what the timings were taken on, stored in the metadata.
    cv_folds, seed: the k-fold estimate of the fit's own error (cv_folds < 2: none, saving the
                 time of k more fits).
    Returns a table (not saved; `.save(path)` writes it) whose metadata `fit` records the timings,
    unknowns, prior, whether the prior decided (`determined_by`) and the k-fold error (`cv`).
    UserError for unusable input (mismatched lengths, non-positive times, another resolution)."""
    archs = as_archs(archs, space)
    y = np.asarray(measured_ms, dtype=float)
    if len(y) != len(archs) or len(y) == 0:
        raise UserError(f"latency fit: {len(archs)} networks and {len(y)} timings (need one timing per network, "
                        f"at least one)")
    if not np.all(np.isfinite(y) & (y > 0)):
        raise UserError("latency fit: every measured_ms must be a positive number")
    # by key: the space's head op and a network's differ only in dropout, which the key leaves out
    ops = list({op.key: op for op in [*space_ops(space), *(op for a in archs for _, op in arch_ops(a))]}.values())
    A = design(archs, ops)
    name, forms = prior_forms(ops, prior)
    x, c, chosen = fit_ops(A, y, forms)
    unknowns = len(ops) + 1
    rank = int(np.linalg.matrix_rank(np.c_[A, np.ones(len(y))]))
    fit = {"timings": len(y), "unknowns": unknowns, "rank": rank, "timed_ops": int((A.sum(0) > 0).sum()),
           "prior": name, "determined_by": "timings" if len(y) >= unknowns else "prior", **chosen,
           "train": fit_metrics(A @ x + c, y) if len(y) >= 2 else None,
           "cv": cross_validate(A, y, forms, cv_folds, seed)}
    term = {**NO_TERM, "offset_ms": c, "calibrated": True, "form": "fitted offset", "networks": len(y)}
    meta = new_metadata(device, space.name, space.resolution, None, runtime=runtime, runtime_version="unknown",
                        cpu="unknown", cores=None, precision=precision, network_term=term, fit=fit,
                        runner="whole networks")
    return LatencyTable([op_row(op, modelled_stats(float(v)), "model") for op, v in zip(ops, x)], meta)
