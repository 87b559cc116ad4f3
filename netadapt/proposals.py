"""NetAdapt proposals: for each trimmable unit, the smallest cut that saves the iteration's goal."""
from __future__ import annotations

from dataclasses import dataclass

from netadapt.surgery import Unit, units, widths
from search_spaces.ir import Arch

TOLERANCE_MS = 1e-9  # float sums of per-op latencies: a saving equal to the goal counts


@dataclass(frozen=True)
class Proposal:
    unit: Unit
    width: int           # the unit's width after the cut
    arch: Arch           # deployment architecture after the cut
    latency_ms: float    # its latency predicted by the table

    @property
    def channels(self) -> str:
        return f"{self.unit.width}->{self.width}"


def smallest_cut(arch: Arch, unit: Unit, table, current_ms: float, goal_ms: float) -> Proposal | None:
    """Cut the unit by 8, 16, ... channels until the table predicts a saving of `goal_ms`;
    None when even the deepest allowed cut saves less."""
    for width, new in widths(arch, unit):
        ms = table.query_total(new)
        if current_ms - ms >= goal_ms - TOLERANCE_MS:
            return Proposal(unit, width, new, ms)
    return None


def proposals(arch: Arch, table, goal_ms: float, current_ms: float | None = None) -> list[Proposal]:
    """One proposal per unit of the deployment `arch` that can meet the goal on its own."""
    current_ms = table.query_total(arch) if current_ms is None else current_ms
    found = (smallest_cut(arch, u, table, current_ms, goal_ms) for u in units(arch))
    return [p for p in found if p is not None]
