"""Published per-op latency tables (ProxylessNAS Pixel 1, Once-for-All Note10) as IR ops.

Both are YAML maps from an op description to {count, mean, var|std} (milliseconds).
Each entry becomes the IR op it describes; the head entries (final 1x1 conv, pooling,
classifier) are summed into the IR's single head op. The files give means only, so
imported tables use `mean_ms` as their statistic.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

from latency_tables.ops import Op
from latency_tables.table import LatencyTable, new_metadata, op_row
from search_spaces.errors import UserError
from search_spaces.ir import Block, Head, Stem
from search_spaces.references import mnv3_se

FORMATS = {  # activation of blocks without h-swish; `expand` is a ratio or a channel count
    "proxylessnas": {"act": "relu6", "expand": "ratio"},
    "ofa": {"act": "relu", "expand": "channels"},
}
_SHAPE = re.compile(r"^(\d+)x(\d+)x(\d+)$")


def _shape(text: str, where: str) -> tuple[int, int, int]:
    m = _SHAPE.match(text)
    if not m:
        raise UserError(f"{where}: cannot read shape {text!r} (expected HxWxC)")
    return int(m[1]), int(m[2]), int(m[3])


def _fields(key: str, where: str) -> tuple[str, dict]:
    name, *parts = key.split("-")
    fields = {}
    for p in parts:
        k, sep, v = p.partition(":")
        if not sep:
            raise UserError(f"{where}: cannot read {p!r} (expected name:value)")
        fields[k] = v
    return name, fields


def _stats(value, where: str) -> dict:
    if not isinstance(value, dict) or not isinstance(value.get("mean"), (int, float)) or value["mean"] <= 0:
        raise UserError(f"{where}: value must be a mapping with a positive 'mean' (ms)")
    std = value.get("std", math.sqrt(value["var"]) if isinstance(value.get("var"), (int, float)) else float("nan"))
    nan = float("nan")
    return {"mean_ms": float(value["mean"]), "median_ms": nan, "p10_ms": nan, "p90_ms": nan,
            "std_ms": float(std), "count": int(value.get("count", 0))}


def read_entries(path: str | Path, fmt: str) -> list[tuple[str, Op | None, dict, dict]]:
    """(original key, IR op or None for head parts, parsed fields, stats) per YAML entry."""
    if fmt not in FORMATS:
        raise UserError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise UserError(f"{path}: not a readable YAML file ({str(e).splitlines()[0]})") from None
    if not isinstance(doc, dict) or not doc:
        raise UserError(f"{path}: expected a YAML mapping of op descriptions to measurements")
    spec = FORMATS[fmt]
    out = []
    for key, value in doc.items():
        where = f"{path}: entry {key!r}"
        name, f = _fields(str(key), where)
        if "input" not in f or "output" not in f:
            raise UserError(f"{where}: needs input:HxWxC and output:...")
        h, _, cin = _shape(f["input"], where)
        stats = _stats(value, where)
        op = None
        if name == "Conv":
            ho, _, cout = _shape(f["output"], where)
            act = spec["act"] if fmt == "proxylessnas" else "hswish"
            op = Op(Stem(cout, 3, round(h / ho), act), h, cin)
        elif name == "expanded_conv":
            try:
                ho, _, cout = _shape(f["output"], where)
                e, k, s, skip = int(f["expand"]), int(f["kernel"]), int(f["stride"]), f["idskip"] == "1"
                hs, se = f.get("hs") == "1", f.get("se") == "1"
            except (KeyError, ValueError) as err:
                raise UserError(f"{where}: missing or non-integer field ({err})") from None
            mid = cin * e if spec["expand"] == "ratio" else e
            act = "hswish" if hs else spec["act"]
            op = Op(Block("ir", cin, cout, mid, k, s, act, mnv3_se(mid) if se else None, skip), h, cin)
        elif name not in ("Conv_1", "Conv_2", "AvgPool2D", "Logits"):
            raise UserError(f"{where}: unknown op {name!r}")
        out.append((str(key), op, f, stats))
    return out


def head_op(entries, fmt: str, where: str) -> tuple[Op, dict] | None:
    """Sum the head parts (Conv_1 [+ AvgPool2D + Conv_2] + Logits) into one IR head op."""
    parts = {e[0].split("-")[0]: e for e in entries if e[1] is None}
    need = ("Conv_1", "Logits") if fmt == "proxylessnas" else ("Conv_1", "AvgPool2D", "Conv_2", "Logits")
    if not parts:
        return None
    if set(parts) != set(need):
        raise UserError(f"{where}: head entries {sorted(parts)} do not match the {fmt} head {list(need)}")
    h, _, cin = _shape(parts["Conv_1"][2]["input"], where)
    conv = _shape(parts["Conv_1"][2]["output"], where)[2]
    classes = int(parts["Logits"][2]["output"].split("x")[-1])
    if fmt == "proxylessnas":
        head = Head("mnv2", conv, FORMATS[fmt]["act"])
    else:
        head = Head("mnv3", conv, "hswish", _shape(parts["Conv_2"][2]["output"], where)[2])
    stats = [parts[n][3] for n in need]
    total = {"mean_ms": sum(s["mean_ms"] for s in stats),
             "std_ms": math.sqrt(sum(s["std_ms"] ** 2 for s in stats)),
             "count": min(s["count"] for s in stats)}
    return Op(head, h, cin, classes), {**stats[0], **total}


def import_tables(paths: list[str | Path], fmt: str, device: str | None = None) -> LatencyTable:
    """A latency table of the ops in one or more published YAML files of one format."""
    if not paths:
        raise UserError("give at least one YAML file to import")
    rows, resolutions = {}, set()
    for path in paths:
        entries = read_entries(path, fmt)
        for key, op, _, stats in entries:
            if op is not None:
                rows[op.key] = op_row(op, stats, "measured")
                if op.kind == "stem":
                    resolutions.add(op.hw)
        head = head_op(entries, fmt, str(path))
        if head is not None:
            rows[head[0].key] = op_row(head[0], head[1], "measured")
    device = device or {"proxylessnas": "pixel1_tflite_proxylessnas", "ofa": "note10_ofa"}[fmt]
    meta = new_metadata(device, space="published", resolution=min(resolutions) if len(resolutions) == 1 else None,
                        threads=1, runtime="published", cpu="unknown", cores=None,
                        runtime_version="unknown", statistic="mean_ms",
                        source_files=[Path(p).name for p in paths], format=fmt,
                        resolutions=sorted(resolutions))
    return LatencyTable(list(rows.values()), meta)
