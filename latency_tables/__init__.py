"""Per-op latency lookup tables: measure on a device, predict networks, validate, ship `pixel_cpu`.

    from latency_tables import LatencyTable, load_target
    table = load_target("pixel_cpu")
    table.query_total(arch)
"""
from latency_tables.ops import Op, arch_ops, parse_key, space_ops
from latency_tables.table import LatencyTable
from latency_tables.targets import load_target

__all__ = ["LatencyTable", "Op", "arch_ops", "load_target", "parse_key", "space_ops"]
