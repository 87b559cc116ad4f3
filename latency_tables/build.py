"""Building a table on a device: time every op of a space, resumably, then fit the end-to-end term.

Ops are timed in chunks (interleaved within a chunk, see `measure`); after every chunk the
partial table is written atomically, so a build killed at any point and rerun with the same
arguments continues with the ops it has not measured yet. Finally a few random networks
are timed whole and the end-to-end term (see `fit_network_term`) is fitted on them.
"""
from __future__ import annotations

import random
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from latency_tables.anchor import REFERENCE_NETWORKS
from latency_tables.measure import Budget, summarize
from latency_tables.ops import Op, arch_ops, op_onnx, parse_key, space_ops
from latency_tables.table import LatencyTable, new_metadata, op_row, validate_network_term
from search_spaces.errors import UserError

NETWORK_BUDGET = Budget(warmup=2, runs_per_round=1, min_rounds=15, max_rounds=60, max_seconds=0.8, rel_tol=0.01)
#: what a table file's ops were timed with: another space or resolution adds its ops (and its own
#: end-to-end term) to the same device's table, other settings would mix incomparable timings
RESUME_FIELDS = ("device", "threads", "runner", "precision")
#: random networks timed whole to fit the end-to-end term
CALIBRATION_NETWORKS = 40
#: ops timed together in one interleaved batch, by a build, a calibration and a table filling itself alike
OP_CHUNK = 40


def random_archs(space, n: int, seed: int, resolution: int) -> list:
    """`n` random networks of `space` at `resolution`, the same for the same seed."""
    rng = random.Random(seed)
    return [space.decode(space.sample(rng)).replace(resolution=resolution) for _ in range(n)]


def measure_ops(ops: list[Op], runner) -> list[dict]:
    """Table rows of ops timed together (one interleaved batch)."""
    samples = runner.measure([op_onnx(op) for op in ops])
    return [op_row(op, summarize(s), "measured") for op, s in zip(ops, samples)]


def op_chunks(ops: list[Op], chunk: int = OP_CHUNK, seed: int = 0) -> list[list[Op]]:
    """`ops` shuffled and cut into batches of `chunk`, the company every op of a table is timed in.

    An op's standalone time depends on the ops interleaved with it, and the end-to-end term is
    fitted on ops timed in such batches: ops timed a few at a time (one queried network's) would be
    predicted with a term fitted for other conditions. Shuffling mixes big and small ops in every batch."""
    todo = list(ops)
    random.Random(seed).shuffle(todo)
    return [todo[i:i + chunk] for i in range(0, len(todo), chunk)]


def measure_networks(archs, runner) -> np.ndarray:
    """Median end-to-end latency (ms) of whole networks, timed interleaved like the ops."""
    from search_spaces.onnx_export import export_onnx

    if hasattr(runner, "budget"):
        saved, runner.budget = runner.budget, NETWORK_BUDGET
    try:
        samples = runner.measure([export_onnx(a) for a in archs])
    finally:
        if hasattr(runner, "budget"):
            runner.budget = saved
    return np.array([np.median(s) for s in samples])


def fit_network_term(table: LatencyTable, archs, runner, resolution: int | None = None) -> dict:
    """Time whole networks and fit the end-to-end term on them (see `fit_term`): the fullest
    form whose term the table accepts. Few or noisy networks can make least squares trade the
    terms against each other (a negative scale, an op with a negative in-network latency); a
    simpler form is then the honest fit, and the term records which one was used, and the first
    networks with their times (the table's level, see `anchor`)."""
    features, measured = network_features(table, archs), measure_networks(archs, runner)
    reference = {"anchor_archs": [a.to_string() for a in archs[:REFERENCE_NETWORKS]],
                 "anchor_ms": [float(x) for x in measured[:REFERENCE_NETWORKS]]}
    reasons = []
    for form in TERM_FORMS:
        term = fit_term(*features, measured, form=form)
        try:
            check_term(table, term, f"form {term['form']}", resolution)
            return {**term, **reference}
        except UserError as e:
            reasons.append(str(e))
    raise UserError(f"no end-to-end term fits the {len(archs)} networks timed whole (last: {reasons[-1]}); "
                    f"time more of them (--calibrate) on a quieter machine")


def check_term(table: LatencyTable, term: dict, where: str, resolution: int | None = None) -> None:
    """UserError unless `term` keeps every op of the table positive inside a network (the check
    the table's file gets on load); a term of another resolution than the table's, every op that
    fits in a network at it."""
    ops = list(table.df["key"].map(parse_key))
    if resolution is not None and resolution != table.metadata.get("resolution"):
        ops = [op for op in ops if op.hw <= resolution]
    validate_network_term(term, [table.query_op(op) for op in ops], [op.input_melems for op in ops],
                          [op.macs() / 1e6 for op in ops], where)


def network_features(table: LatencyTable, archs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per network, summed over its ops: op latency (ms), input elements (M) and MACs (M)."""
    ops = [[op for _, op in arch_ops(a)] for a in archs]
    return (np.array([sum(table.query_op(op) for op in o) for o in ops]),
            np.array([sum(op.input_melems for op in o) for o in ops]),
            np.array([sum(op.macs() / 1e6 for op in o) for o in ops]))


#: forms of the end-to-end term, fullest first (`fit_network_term` takes the first the table accepts)
TERM_FORMS = (("scale", "per_input_melem_ms", "per_mmac_ms"), ("scale", "per_input_melem_ms"), ("scale",), ())


def fit_term(sums, inputs, mmacs, measured, form: tuple[str, ...] = TERM_FORMS[0]) -> dict:
    """Fit measured = scale * sum(op ms) + per_input_melem_ms * sum(op inputs) + per_mmac_ms *
    sum(op MACs) + offset on whole networks (least squares, on the terms named in `form`; the
    others keep their neutral value). Each standalone op pays for taking in its input, which a
    network does not, hence the input term; and its timing carries a fixed cost that a network
    amortizes, so a network is closer to its ops' sum where they compute more (the MAC term:
    `experiments/latency_build_variance.py` measured 83-86% of networks within +-10% without
    it, 89-93% with it). With fewer than 8 networks, or `form` empty, only the offset is fitted."""
    sums, inputs, mmacs, measured = (np.asarray(x, float) for x in (sums, inputs, mmacs, measured))
    columns = {"scale": sums, "per_input_melem_ms": inputs, "per_mmac_ms": mmacs}
    coef = {"scale": 1.0, "per_input_melem_ms": 0.0, "per_mmac_ms": 0.0}
    if len(measured) >= 8 and form:
        X = np.c_[tuple(columns[name] for name in form) + (np.ones(len(measured)),)]
        *fitted, offset = np.linalg.lstsq(X, measured, rcond=None)[0]
        coef.update(zip(form, map(float, fitted)))
    else:
        form, offset = (), float(np.median(measured - sums))
    predicted = sum(coef[name] * columns[name] for name in coef) + offset
    resid = (predicted - measured) / measured
    return {**coef, "offset_ms": float(offset), "calibrated": True, "networks": len(measured),
            "form": "+".join(form + ("offset",)), "fit_rmspe_pct": float(np.sqrt(np.mean(resid ** 2)) * 100)}


def calibrate_table(table: LatencyTable, space, runner, networks: int = CALIBRATION_NETWORKS, seed: int = 0,
                    resolution: int | None = None, chunk: int = OP_CHUNK, progress: bool = True) -> dict:
    """Fit the table's end-to-end term on `networks` random networks of `space` (at the table's
    resolution), timing first the ops of theirs the table lacks. One path for a build and for a
    table that fills itself on first use (`missing.Measure`), so both end with the same term."""
    r = resolution or table.metadata.get("resolution") or space.resolution
    archs = random_archs(space, networks, seed + 1, r)
    missing = list(dict.fromkeys(op for a in archs for _, op in arch_ops(a) if op.key not in table))
    with tqdm(total=len(missing) + networks, unit="model", desc=f"calibrate {table.metadata.get('device')}",
              disable=not progress, file=sys.stderr) as bar:
        for batch in op_chunks(missing, chunk, seed):
            table.add_rows(measure_ops(batch, runner))
            bar.update(len(batch))
        term = fit_network_term(table, archs, runner, r)
        table.set_term(r, term)
        bar.update(networks)
    return term


def build_table(space, device: str, out: str | Path, runner, resolution: int | None = None,
                ops: list[Op] | None = None, chunk: int = OP_CHUNK, calibrate: int = CALIBRATION_NETWORKS, seed: int = 0,
                progress: bool = True, recalibrate: bool = False) -> LatencyTable:
    """Measure every op of `space` (or the given `ops`) into the table file `out`, resuming it."""
    out = Path(out)
    r = resolution or space.resolution
    threads = getattr(runner, "threads", 1)
    args = {"device": device, "threads": threads, "runner": runner.name, "precision": runner.precision}
    if out.exists():
        table = LatencyTable.load(out)
        old = {**{k: table.metadata.get(k) for k in RESUME_FIELDS}, "precision": table.precision}
        if old != args:
            diff = ", ".join(f"{k} {old[k]!r} vs {args[k]!r}" for k in RESUME_FIELDS if old[k] != args[k])
            raise UserError(f"{out} holds a table built with other arguments ({diff}); "
                            f"choose another --out or delete it")
    else:
        extra = {} if runner.name == "onnxruntime" else {"runtime": "command", "runtime_version": runner.version,
                                                         "cpu": "unknown", "cores": None}
        table = LatencyTable(None, new_metadata(device, space.name, r, threads, runner=runner.name,
                                                clock=runner.clock_name, precision=runner.precision,
                                                complete=False, **extra))
    todo = [op for op in (ops if ops is not None else space_ops(space, r)) if op.key not in table]
    started = time.time()
    with tqdm(total=len(todo) + len(table), initial=len(table), unit="op", desc=f"build {device}",
              disable=not progress, file=sys.stderr) as bar:
        for batch in op_chunks(todo, chunk, seed):
            table.add_rows(measure_ops(batch, runner))
            table.metadata["measure_seconds"] = table.metadata.get("measure_seconds", 0.0) + (time.time() - started)
            started = time.time()
            table.save(out)
            bar.update(len(batch))
    if calibrate and (recalibrate or table.stored_term(r) is None):
        calibrate_table(table, space, runner, calibrate, seed=seed, resolution=r, chunk=chunk, progress=progress)
    table.metadata["complete"] = True
    table.save(out)
    return table
