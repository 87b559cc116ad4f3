"""`LatencyTable`: one latency per op, its device's metadata, and lookups for whole networks.

A table is a pandas DataFrame (one row per op key) plus a metadata dict, saved as one
CSV file whose first line is `# nas-latency-table <metadata JSON>`. The latency of an
architecture is the sum over its ops plus the table's end-to-end term
(`scale * op ms + per_input_melem_ms * op input size + per_mmac_ms * op MACs` summed over the
ops, `+ offset_ms`),
fitted on whole networks measured end to end (see `build.fit_network_term`).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import io
import json
import os
import platform
import re
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from search_spaces.atomic import atomic_path
from latency_tables.measure import STATS
from latency_tables.ops import Op, arch_ops, parse_key
from latency_tables.quantize import PRECISIONS
from search_spaces.errors import UserError
from search_spaces.ir import Arch

SCHEMA_VERSION = 1
HEADER = "# nas-latency-table "
COLUMNS = ["key", "kind", "hw", "cin", "cout", "mid", "kernel", "stride", "act", "se", "residual", "macs",
           *STATS, "source"]
SOURCES = ("measured", "model")
REQUIRED_META = ("device", "cpu", "cores", "runtime", "runtime_version", "threads", "resolution",
                 "date", "space", "schema_version", "statistic", "network_term")
NO_TERM = {"scale": 1.0, "per_input_melem_ms": 0.0, "per_mmac_ms": 0.0, "offset_ms": 0.0, "calibrated": False}


def cpuinfo(field: str) -> str | None:
    """The first value of `field` in /proc/cpuinfo ("model name", "flags"); None off Linux or without it."""
    with contextlib.suppress(OSError):
        found = re.search(rf"^{re.escape(field)}\s*:(.*)$", Path("/proc/cpuinfo").read_text(), re.M)
        return found[1].strip() if found else None
    return None


@functools.lru_cache(maxsize=1)
def machine_fingerprint() -> dict:
    """What makes a measurement on this machine comparable: CPU model, cores, runtime version."""
    import onnxruntime as ort

    cpu = cpuinfo("model name") or platform.processor() or platform.machine()
    return {"cpu": cpu, "cores": os.cpu_count(), "runtime": "onnxruntime", "runtime_version": ort.__version__}


def new_metadata(device: str, space: str, resolution: int, threads: int, **extra) -> dict:
    """A new table's metadata; `extra` adds to it or overrides it (a table of another runtime
    names its own runtime, runtime_version, cpu and cores instead of this machine's)."""
    return {"device": device, **machine_fingerprint(), "threads": threads, "resolution": resolution,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "space": space,
            "schema_version": SCHEMA_VERSION, "statistic": "median_ms", "network_term": dict(NO_TERM),
            "precision": "fp32", **extra}


def op_row(op: Op, stats: dict, source: str) -> dict:
    """A table row: the key, the op's fields spelled out for filtering, its statistics, its source."""
    L = op.layer
    if op.kind == "block":
        fields = {"cout": L.out, "mid": L.mid, "kernel": L.kernel, "stride": L.stride, "act": L.act,
                  "se": L.se.squeeze if L.se else 0, "residual": L.residual}
    elif op.kind == "stem":
        fields = {"cout": L.out, "mid": L.out, "kernel": L.kernel, "stride": L.stride, "act": L.act, "se": 0,
                  "residual": False}
    else:  # head: mid is its 1x1 conv width
        fields = {"cout": op.num_classes, "mid": L.conv, "kernel": 1, "stride": 1, "act": L.act, "se": 0,
                  "residual": False}
    return {"key": op.key, "kind": op.kind, "hw": op.hw, "cin": op.cin, **fields, "macs": op.macs(),
            **stats, "source": source}


class LatencyTable:
    """Per-op latencies of one device; see the module docstring for the file format."""

    def __init__(self, rows: pd.DataFrame | list[dict] | None, metadata: dict, path: str | Path | None = None,
                 missing: Callable[[LatencyTable, list[Op]], None] | None = None):
        df = pd.DataFrame(rows if rows is not None else [], columns=COLUMNS)
        self.df = df.drop_duplicates("key", keep="last").reset_index(drop=True)
        self.metadata = metadata
        self.path = Path(path) if path is not None else None
        self.missing = missing     # adds rows for ops not in the table (see `missing`); None: error
        self._ms = dict(zip(self.df["key"], self.df[self.statistic].astype(float)))

    # ---- properties ---------------------------------------------------------
    @property
    def statistic(self) -> str:
        return self.metadata.get("statistic", "median_ms")

    @property
    def network_term(self) -> dict:
        return self.metadata.get("network_term") or dict(NO_TERM)

    @property
    def precision(self) -> str:
        """fp32, or int8: every op (and the networks of the end-to-end fit) timed statically quantized.
        Tables written before precisions existed are float."""
        return self.metadata.get("precision", "fp32")

    @property
    def is_local(self) -> bool:
        """True when this table was measured with onnxruntime on a machine like this one."""
        if self.metadata.get("runtime") != "onnxruntime":
            return False
        here = machine_fingerprint()
        return all(self.metadata.get(k) == here[k] for k in ("cpu", "cores", "runtime_version"))

    def __len__(self) -> int:
        return len(self.df)

    def __contains__(self, key) -> bool:
        return str(key) in self._ms

    # ---- lookups --------------------------------------------------------------
    def query_op(self, key: str | Op) -> float:
        """Latency (ms) of one op; a missing one goes to the missing-op policy."""
        key = str(key)
        if key not in self._ms:
            self.add_missing([parse_key(key)])
        return self._ms[key]

    def per_layer(self, arch: Arch) -> pd.DataFrame:
        """One row per layer (layer, key, ms, source), plus the end-to-end term as a last row."""
        total = self.query_total(arch)  # checks the resolution, adds missing ops, calibrates
        source = dict(zip(self.df["key"], self.df["source"]))
        rows = [{"layer": name, "key": op.key, "ms": self._ms[op.key], "source": source[op.key]}
                for name, op in arch_ops(arch)]
        rows.append({"layer": "network", "key": "end-to-end term",
                     "source": "fitted" if self.term_at(arch.resolution).get("calibrated") else "none",
                     "ms": total - sum(r["ms"] for r in rows)})
        return pd.DataFrame(rows)

    def in_network(self, op: Op, term: dict | None = None) -> float:
        """What one op adds to a network's latency: its ms with the per-op end-to-end terms (of
        `term`, default the build resolution's)."""
        t = term or self.network_term
        return (t["scale"] * self._ms[op.key] + t.get("per_input_melem_ms", 0.0) * op.input_melems
                + t.get("per_mmac_ms", 0.0) * op.macs() / 1e6)

    def query_total(self, arch: Arch) -> float:
        """Latency (ms) of the whole network: its ops plus the end-to-end term of its resolution."""
        self.check_resolution(arch.resolution)
        ops = [op for _, op in arch_ops(arch)]
        self.add_missing(ops)
        self.calibrate_if_able(arch.resolution)
        term = self.term_at(arch.resolution)
        return float(sum(self.in_network(op, term) for op in ops) + term["offset_ms"])

    # ---- the end-to-end term of each resolution -----------------------------------
    def stored_term(self, resolution: int) -> dict | None:
        """The calibrated term fitted on networks at `resolution`, if the table has one."""
        term = (self.network_term if resolution == self.metadata.get("resolution")
                else (self.metadata.get("network_terms") or {}).get(str(resolution)))
        return term if term and term.get("calibrated") else None

    def set_term(self, resolution: int, term: dict) -> None:
        if resolution == self.metadata.get("resolution"):
            self.metadata["network_term"] = term
        else:
            self.metadata.setdefault("network_terms", {})[str(resolution)] = term

    def term_at(self, resolution: int) -> dict:
        """The end-to-end term for networks at `resolution`. Each resolution has its own, fitted on
        networks at it: a 224-px term's offset and per-input terms do not carry to 32 px, where a
        whole network takes a fraction of a millisecond (they predicted negative times there). A
        term that is a pure scale (a modelled table's) holds at any resolution."""
        term = self.stored_term(resolution)
        if term is not None:
            return term
        base = self.network_term
        if not base.get("calibrated") or (base.get("offset_ms", 0.0) == 0 and not base.get("per_input_melem_ms")
                                          and not base.get("per_mmac_ms")):
            return base
        raise UserError(f"latency table {self.path or self.metadata.get('device')!r} has an end-to-end term for "
                        f"{self.metadata.get('resolution')} px networks only, not {resolution} px; build one with "
                        f"`nas latency build --resolution {resolution}`")

    def predict_many(self, archs, space=None) -> np.ndarray:
        """Latency (ms) of many networks: a list of Arch, or (with `space`) an array of decision
        vectors of that space, which is fully vectorized (see `latency_tables.fast`)."""
        if space is not None:
            from latency_tables.fast import SpacePredictor
            return SpacePredictor.for_table(self, space).predict(archs)
        return np.array([self.query_total(a) for a in archs], dtype=float)

    def check_resolution(self, resolution: int) -> None:
        """A table answers at its own resolution; one measured here, or with an op model, at any."""
        r = self.metadata.get("resolution")
        if not (self.is_local or self.metadata.get("op_model")) and r and resolution != r:
            raise UserError(f"table {self.metadata.get('device')!r} is for {r}x{r} inputs; the architecture "
                            f"is {resolution}x{resolution} (use arch.replace(resolution={r}))")

    # ---- missing ops ----------------------------------------------------------
    def calibrate_if_able(self, resolution: int | None = None, space=None) -> None:
        """Before a network-level answer at `resolution` (default the table's): a table whose policy
        measures (see `missing.Measure`) fits its end-to-end term there now if it has none, on random
        networks of `space` (default the table's); other tables answer with the term they carry."""
        r = resolution or self.metadata.get("resolution")
        if self.stored_term(r) is None and hasattr(self.missing, "calibrate"):
            self.missing.calibrate(self, resolution=r, space=space)

    def add_missing(self, ops: list[Op]) -> None:
        """Hand the ops not in the table to the missing-op policy; UserError if there is none."""
        missing = list(dict.fromkeys(op for op in ops if op.key not in self._ms))
        if not missing:
            return
        if self.missing is None:
            raise UserError(f"op {missing[0].key} is not in the latency table of device "
                            f"{self.metadata.get('device')!r}, which has no per-op model and was not "
                            f"measured on this machine" + (f" ({len(missing) - 1} more missing)" if len(missing) > 1 else ""))
        self.missing(self, missing)

    def add_rows(self, rows: list[dict]) -> None:
        if not rows:
            return
        # a key twice in one batch keeps its last row, as across batches: a file with a key twice is refused
        new = pd.DataFrame(rows, columns=COLUMNS).drop_duplicates("key", keep="last")
        kept = self.df[~self.df["key"].isin(new["key"])]
        self.df = pd.concat([kept, new], ignore_index=True) if len(kept) else new
        self._ms.update(zip(new["key"], new[self.statistic].astype(float)))

    def merge_from(self, path: str | Path) -> None:
        """Add the rows of the table file at `path` that this table does not have, and its end-to-end
        term if it is calibrated and this table's is not."""
        try:
            other = LatencyTable.load(path)
        except UserError:
            return
        if other.metadata.get("device") == self.metadata.get("device") and other.precision == self.precision:
            self.add_rows(other.df[~other.df["key"].isin(self._ms)].to_dict("records"))
            if other.network_term.get("calibrated") and not self.network_term.get("calibrated"):
                self.metadata["network_term"] = other.network_term
            for r, term in (other.metadata.get("network_terms") or {}).items():
                self.metadata.setdefault("network_terms", {}).setdefault(r, term)

    # ---- files ----------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        """Write metadata line + CSV atomically (temp file + os.replace)."""
        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "w") as f:
            f.write(HEADER + json.dumps(self.metadata, sort_keys=True) + "\n")
            self.df.to_csv(f, index=False, float_format="%.6g")
        self.path = path
        return path

    @classmethod
    def load(cls, path: str | Path) -> "LatencyTable":
        """Read and validate a table file; UserError saying what is wrong with a broken one."""
        path = Path(path)
        where = f"latency table {path}"
        try:
            text = path.read_text()
        except FileNotFoundError:
            raise UserError(f"{where}: no such file") from None
        except (OSError, UnicodeDecodeError) as e:
            raise UserError(f"{where}: cannot read ({e})") from None
        first, _, body = text.partition("\n")
        if not first.startswith(HEADER):
            raise UserError(f"{where}: first line must be '{HEADER.strip()} {{metadata JSON}}'")
        try:
            meta = json.loads(first[len(HEADER):])
        except json.JSONDecodeError as e:
            raise UserError(f"{where}: metadata line is not valid JSON ({e})") from None
        try:
            df = pd.read_csv(io.StringIO(body))
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as e:
            raise UserError(f"{where}: not a readable CSV ({str(e).strip()})") from None
        validate(df, meta, where)
        return cls(df, meta, path)


def validate(df: pd.DataFrame, meta: dict, where: str) -> None:
    """Raise UserError naming the first schema problem of a table."""
    if not isinstance(meta, dict):
        raise UserError(f"{where}: metadata must be a JSON object")
    missing = [k for k in REQUIRED_META if k not in meta]
    if missing:
        raise UserError(f"{where}: metadata lacks {', '.join(missing)}")
    if meta["schema_version"] != SCHEMA_VERSION:
        raise UserError(f"{where}: schema version {meta['schema_version']!r}, this program reads {SCHEMA_VERSION}")
    if meta.get("precision", "fp32") not in PRECISIONS:
        raise UserError(f"{where}: metadata precision {meta['precision']!r} is not one of {PRECISIONS}")
    if meta["statistic"] not in STATS[:4]:
        raise UserError(f"{where}: metadata statistic {meta['statistic']!r} is not one of {STATS[:4]}")
    cols = [c for c in COLUMNS if c not in df.columns]
    if cols:
        raise UserError(f"{where}: missing column(s) {', '.join(cols)}")
    for c in ("hw", "cin", "cout", "mid", "kernel", "stride", "se", "macs", *STATS):
        number = pd.to_numeric(df[c], errors="coerce")
        bad = df[c][number.isna() & df[c].notna()]
        if len(bad):
            raise UserError(f"{where}: column {c} has a non-number {bad.iloc[0]!r} (row {bad.index[0] + 1})")
        inf = df.index[np.isinf(number)]
        if len(inf):
            raise UserError(f"{where}: column {c} has an infinite value (row {inf[0] + 1})")
        df[c] = number
    stat = df[meta["statistic"]]
    bad = df.index[stat.isna() | (stat <= 0)]
    if len(bad):
        raise UserError(f"{where}: row {bad[0] + 1} ({df['key'][bad[0]]}): {meta['statistic']} must be a positive number")
    bad = df.index[~df["source"].isin(SOURCES)]
    if len(bad):
        raise UserError(f"{where}: row {bad[0] + 1}: source {df['source'][bad[0]]!r} is not one of {SOURCES}")
    dup = df["key"][df["key"].duplicated()]
    if len(dup):
        raise UserError(f"{where}: op {dup.iloc[0]} appears twice")
    ops = []
    for i, key in enumerate(df["key"]):
        try:
            ops.append(parse_key(key))
        except UserError as e:
            raise UserError(f"{where}: row {i + 1}: {e}") from None
    validate_network_term(meta["network_term"], stat.to_numpy(float), [op.input_melems for op in ops],
                          [op.macs() / 1e6 for op in ops], where)
    terms = meta.get("network_terms") or {}
    if not isinstance(terms, dict) or not all(str(r).isdigit() for r in terms):
        raise UserError(f"{where}: metadata network_terms must map resolutions to terms")
    for r, term in terms.items():  # a term serves networks at its resolution: ops no larger than it
        small = [i for i, op in enumerate(ops) if op.hw <= int(r)]
        validate_network_term(term, stat.to_numpy(float)[small], [ops[i].input_melems for i in small],
                              [ops[i].macs() / 1e6 for i in small], f"{where} ({r} px)")


def validate_network_term(term, op_ms, input_melems, mmacs, where: str) -> None:
    """The end-to-end term must keep latencies finite and positive: a positive finite scale,
    finite per-input, per-MAC and offset terms, every op's in-network latency positive, and no
    negative offset larger than the largest op."""
    if not isinstance(term, dict):
        raise UserError(f"{where}: metadata network_term must be a JSON object")
    for name in ("scale", "per_input_melem_ms", "per_mmac_ms", "offset_ms"):
        v = term.get(name, 0.0 if name.startswith("per_") else None)  # older tables lack them
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v):
            raise UserError(f"{where}: metadata network_term.{name} must be a finite number, got {v!r}")
    if term["scale"] <= 0:
        raise UserError(f"{where}: metadata network_term.scale must be positive, got {term['scale']!r}")
    in_network = (term["scale"] * np.asarray(op_ms, float)
                  + term.get("per_input_melem_ms", 0.0) * np.asarray(input_melems, float)
                  + term.get("per_mmac_ms", 0.0) * np.asarray(mmacs, float))
    if len(in_network) and in_network.min() <= 0:
        raise UserError(f"{where}: metadata network_term.per_input_melem_ms {term.get('per_input_melem_ms')!r} "
                        f"gives op {int(in_network.argmin()) + 1} a latency of {in_network.min():g} ms inside a "
                        f"network (with per_mmac_ms {term.get('per_mmac_ms', 0.0)!r})")
    largest_op_ms = float(np.max(op_ms)) if len(op_ms) else 0.0
    if term["offset_ms"] < -largest_op_ms:
        raise UserError(f"{where}: metadata network_term.offset_ms {term['offset_ms']!r} is below minus the "
                        f"largest op latency ({largest_op_ms:g} ms): networks would get negative latencies")
