"""Latency targets by name: `pixel_cpu` (shipped), `local_cpu` and `local_cpu_int8` (this machine,
float or 8-bit, cached), Accel-NASBench's six devices (shipped, fitted), or a table file."""
from __future__ import annotations

import os
import sys
from pathlib import Path

from latency_tables.missing import Measure, for_table
from latency_tables.provenance import check_local, differences
from latency_tables.quantize import precision_suffix
from latency_tables.table import LatencyTable, new_metadata
from search_spaces.errors import UserError

DATA = Path(__file__).resolve().parent / "data"
#: Accel-NASBench's devices: tables fitted from the benchmark's whole-network timings
#: (experiments/accel_nasbench_targets.py; models, with their held-out fidelity in their metadata)
DEVICE_TABLES = {d: DATA / f"accel_nasbench_{d}.csv" for d in ("zcu102", "vck190", "a100", "rtx3090", "tpuv2", "tpuv3")}
TARGETS = ("pixel_cpu", "local_cpu", "local_cpu_int8", *DEVICE_TABLES)
#: this machine's targets and the precision each is timed in
LOCAL_CPU = {"local_cpu": "fp32", "local_cpu_int8": "int8"}


def local_cpu_path(threads: int = 1, precision: str = "fp32") -> Path:
    """This machine's table in the user's cache directory (respects XDG_CACHE_HOME); the int8
    table lives next to the float one."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hw-nas" / "latency" / f"local_cpu{precision_suffix(precision)}_t{threads}.csv"


def local_cpu(threads: int = 1, space: str = "mnv3", resolution: int = 224, precision: str = "fp32") -> LatencyTable:
    """This machine's table of `precision`. Ops missing from it are measured on first use and
    written back to the cache; `nas latency build --device local_cpu [--precision int8]` fills it
    (and fits its end-to-end term) in one go. A cache measured on a different machine or runtime
    (saying so on stderr), or in another precision, is started afresh."""
    path = local_cpu_path(threads, precision)
    table = LatencyTable.load(path) if path.exists() else None
    if table is not None and not table.is_local:
        print(f"latency table {path} was timed on another machine or runtime ({', '.join(differences(table))}): "
              f"starting it afresh", file=sys.stderr, flush=True)
    if table is None or not table.is_local or table.precision != precision:
        table = LatencyTable(None, new_metadata("local_cpu", space, resolution, threads, runner="onnxruntime",
                                                clock="thread_cpu" if threads == 1 else "wall",
                                                precision=precision, complete=False))
        table.save(path)
    table.missing = Measure(threads, autosave=True, precision=precision)
    return table


def open_table(path: str | Path) -> LatencyTable:
    """A table file, filling missing ops as its metadata allows (see `latency_tables.missing`);
    UserError for a table of this machine timed on another (`provenance.check_local`)."""
    table = LatencyTable.load(path)
    check_local(table)
    table.missing = for_table(table)
    return table


def load_target(name: str) -> LatencyTable:
    """A target name (`pixel_cpu`, `local_cpu`, `local_cpu_int8`) or a path to a table file."""
    if name == "pixel_cpu":
        from latency_tables.pixel import TABLE_FILE
        return open_table(TABLE_FILE)
    if name in LOCAL_CPU:
        return local_cpu(precision=LOCAL_CPU[name])
    if name in DEVICE_TABLES:
        return open_table(DEVICE_TABLES[name])
    if Path(name).suffix == ".csv" or Path(name).exists():
        return open_table(name)
    raise UserError(f"unknown latency target {name!r}: use {', '.join(TARGETS)} or a table file (.csv)")
