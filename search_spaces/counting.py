"""Shapes, parameters and multiply-adds per layer, computed from the IR alone.

Counts are the sums over each layer's parts (`anatomy`), which the builder builds one to
one: conv weights (no bias before BN), BN affine parameters, SE and head biases; MACs
are those of convolutions and linear layers. `thop_macs` counts as the thop package does
(what benchmarks such as Accel-NASBench report), and `count_many` counts a space's decision
vectors by its layer groups, without decoding each one.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from search_spaces.anatomy import Part, head_parts, kind_name, layer_parts, stem_parts
from search_spaces.ir import Arch


@dataclass(frozen=True)
class LayerCount:
    name: str
    kind: str
    in_shape: tuple[int, int, int]   # C, H, W
    out_shape: tuple[int, int, int]
    params: int
    macs: int


def thop_extra(p: Part, hw_in: int) -> int:
    """What thop counts beyond a part's conv and linear MACs (it counts no bias): 4 per
    BatchNorm output element (affine), and for an average pool (the head's, or an SE block's
    squeeze) its input elements + its channels; activations, gates and the SE product count 0."""
    if p.kind == "conv":
        return 4 * p.cout * p.out_hw(hw_in) ** 2
    if p.kind in ("pool", "se"):
        return p.cin * hw_in ** 2 + p.cin
    return 0


def parts_count(parts: tuple[Part, ...], hw: int, thop: bool = False) -> tuple[int, int, int]:
    """(params, macs, output H/W) of parts applied in order at input size hw; with `thop`,
    the MACs as thop counts them (`thop_extra`)."""
    params = macs = 0
    for p in parts:
        n, m = p.count(hw)
        params, macs, hw = params + n, macs + m + (thop_extra(p, hw) if thop else 0), p.out_hw(hw)
    return params, macs, hw


def layer_counts(arch: Arch, resolution: int | None = None, thop: bool = False) -> list[LayerCount]:
    hw, rows = resolution or arch.resolution, []
    layers = [("stem", arch.stem, arch.in_channels), *((f"block{i}", b, b.in_) for i, b in enumerate(arch.blocks)),
              ("head", arch.head, arch.last_channels)]
    for name, layer, cin in layers:
        parts = layer_parts(layer, cin, arch.num_classes)
        p, m, out_hw = parts_count(parts, hw, thop)
        rows.append(LayerCount(name, kind_name(layer), (cin, hw, hw), (parts[-1].cout, out_hw, out_hw), p, m))
        hw = out_hw
    return rows


def count(arch: Arch, resolution: int | None = None) -> dict:
    rows = layer_counts(arch, resolution)
    return {"params": sum(r.params for r in rows), "macs": sum(r.macs for r in rows)}


def thop_macs(arch: Arch) -> int:
    """Multiply-adds as thop counts them (see `thop_extra`)."""
    return sum(r.macs for r in layer_counts(arch, thop=True))


def count_many(space, vectors, thop: bool = False) -> dict[str, np.ndarray]:
    """{"params", "macs"} of `space`'s decision vectors (an (N, decisions) array), summed over the
    space's layer groups (`Space.layer_groups`): each group's blocks are counted once per choice,
    not once per network."""
    v = space.check_many(vectors)
    groups, head = space.layer_groups()
    stem = parts_count(stem_parts(space.stem, 3), space.resolution, thop)
    totals = np.zeros((len(v), 2), dtype=np.int64) + stem[:2]

    def lookup(columns, table) -> np.ndarray:
        return np.array([table[tuple(row)] for row in v[:, list(columns)].tolist()], dtype=np.int64)

    for g in groups:
        table = {}
        for idx, blocks in g.blocks.items():
            hw, n = g.hw, np.zeros(2, dtype=np.int64)
            for b in blocks:
                p, m, hw = parts_count(layer_parts(b, b.in_), hw, thop)
                n += (p, m)
            table[idx] = n
        totals += lookup(g.columns, table)
    heads = {idx: parts_count(head_parts(space.head, c, space.num_classes), head.hw, thop)[:2]
             for idx, c in head.channels.items()}
    totals += lookup(head.columns, heads)
    return {"params": totals[:, 0], "macs": totals[:, 1]}
