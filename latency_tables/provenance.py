"""Where a table holds: the machine, runtime, threads and precision its latencies were timed with.

A table of this machine (`local_cpu`, `local_cpu_int8`) measured on another CPU or with another
onnxruntime predicts another machine's speed: it is refused in one line when named as a file
(`check_local`), and the cached one is started afresh (`targets.local_cpu`), never used silently.
`describe` is what `nas latency show` prints; tables written before a field existed show it as
unknown.
"""
from __future__ import annotations

import json

from latency_tables.table import LatencyTable, machine_fingerprint
from search_spaces.errors import UserError

#: what a local table's timings depend on, compared with this machine's
MACHINE_FIELDS = ("cpu", "cores", "runtime", "runtime_version")
#: the metadata `show` prints first, in this order (the rest follows as it is)
SHOWN = ("device", "precision", "runtime", "runtime_version", "threads", "cpu", "cores", "runner", "clock",
         "space", "resolution", "statistic", "date", "schema_version", "complete")
LOCAL_DEVICES = ("local_cpu",)
UNKNOWN = "unknown"


def differences(table: LatencyTable) -> list[str]:
    """How this machine differs from the one the table was timed on ("cpu 'A' here 'B'"), empty
    when they match."""
    here = machine_fingerprint()
    return [f"{k} {table.metadata.get(k, UNKNOWN)!r} (here {here[k]!r})" for k in MACHINE_FIELDS
            if table.metadata.get(k) != here[k]]


def check_local(table: LatencyTable) -> None:
    """UserError (one line) for a table of this machine's kind timed on another machine or runtime."""
    if table.metadata.get("device") in LOCAL_DEVICES and not table.is_local:
        raise UserError(f"latency table {table.path or table.metadata.get('device')} was timed on another machine "
                        f"or runtime ({', '.join(differences(table)) or 'not onnxruntime'}): its latencies do not "
                        f"hold here; rebuild it with `nas latency build --device local_cpu`")


def describe(table: LatencyTable) -> list[str]:
    """Lines `nas latency show` prints: every metadata field (unknown where an older table lacks
    one), the ops by source, the end-to-end terms, and whether the table holds on this machine."""
    meta = table.metadata
    lines = [f"{k}: {meta.get(k, UNKNOWN) if meta.get(k) is not None else UNKNOWN}" for k in SHOWN]
    lines.append(f"precision as read: {table.precision}")
    counts = table.df["source"].value_counts()
    lines.append(f"ops: {len(table)} ({', '.join(f'{n} {s}' for s, n in counts.items()) or 'none'})")
    rest = {k: v for k, v in meta.items() if k not in SHOWN}
    lines += [f"{k}: {json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v}"
              for k, v in sorted(rest.items())]
    if meta.get("runtime") == "onnxruntime":
        diff = differences(table)
        lines.append("holds on this machine: " + ("yes" if not diff else "no, " + ", ".join(diff)))
    else:
        lines.append(f"holds on this machine: no, timed on {meta.get('device', UNKNOWN)} "
                     f"({meta.get('runtime') or UNKNOWN})")
    return lines
