"""Channel surgery on the IR and on a trained `Net`: remove channels, keep the rest intact.

A *unit* is a set of channels that must go together so the network stays valid:
- `mid:bI`: the expanded channels of inverted-residual block I (expand conv out, its BN,
  depthwise conv and BN, SE fc1 in / fc2 out, project conv in);
- `width:...`: one feature-map width shared by a producer (the stem or a block that is
  not residual) and the residual blocks after it, whose identity shortcuts add into the
  same tensor; the consumers (the next block's input conv, or the head conv) lose the
  same input channels.
Each unit is described as (state_dict key, axis) slices, read from the parts of the layers
it touches (`search_spaces.anatomy`), so trimming a trained network is `index_select` on
exactly those tensors and a copy of everything else.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from search_spaces.anatomy import (block_parts, filters, has_expand, head_parts, slices as part_slices, stem_parts,
                                  with_channels)
from search_spaces.builder import Net
from search_spaces.ir import Arch

STEP = 8        # channels are cut in multiples of 8 (MobileNet widths are multiples of 8)
MIN_WIDTH = 8   # never trim a unit below this many channels


@dataclass(frozen=True)
class Unit:
    """`kind` "mid": `blocks == (i,)`. `kind` "width": `producer` (-1 = stem) writes the
    tensor, `blocks` are the residual blocks that add into it, `consumer` (None = head) reads it."""

    kind: str
    name: str
    width: int
    blocks: tuple[int, ...]
    producer: int | None = None
    consumer: int | None = None


def units(arch: Arch) -> list[Unit]:
    """Every trimmable unit of `arch`: the widths first, then the mid channels, in network order."""
    groups, blocks, producer = [], arch.blocks, -1
    while producer is not None:
        members, i = [], producer + 1
        while i < len(blocks) and blocks[i].residual:
            members.append(i)
            i += 1
        names = ["stem" if producer == -1 else f"b{producer}"] + [f"b{j}" for j in members]
        width = arch.stem.out if producer == -1 else blocks[producer].out
        consumer = i if i < len(blocks) else None
        groups.append(Unit("width", "width:" + "-".join(dict.fromkeys([names[0], names[-1]])), width,
                            tuple(members), producer, consumer))
        producer = consumer
    mids = [Unit("mid", f"mid:b{i}", b.mid, (i,)) for i, b in enumerate(blocks) if has_expand(b)]
    return groups + mids


# ---- the IR side ---------------------------------------------------------------
def resize(arch: Arch, unit: Unit, width: int) -> Arch | None:
    """`arch` with the unit at `width` channels; None if that would change the network's
    structure (a block whose expand conv would vanish because mid would equal in)."""
    blocks = list(arch.blocks)
    stem = arch.stem
    if unit.kind == "mid":
        i = unit.blocks[0]
        blocks[i] = replace(blocks[i], mid=width)
    else:
        if unit.producer == -1:
            stem = replace(stem, out=width)
        else:
            blocks[unit.producer] = with_channels(blocks[unit.producer], out=width)
        for j in unit.blocks:
            blocks[j] = with_channels(blocks[j], in_=width, out=width)
        if unit.consumer is not None:
            blocks[unit.consumer] = with_channels(blocks[unit.consumer], in_=width)
    if any(has_expand(a) != has_expand(b) for a, b in zip(arch.blocks, blocks)):
        return None
    return arch.replace(stem=stem, blocks=tuple(blocks))


def widths(arch: Arch, unit: Unit):
    """Candidate widths in order of increasing cut: width-8, width-16, ... down to MIN_WIDTH,
    each paired with the resized Arch (widths that would change the structure are skipped)."""
    for w in range(unit.width - STEP, MIN_WIDTH - 1, -STEP):
        new = resize(arch, unit, w)
        if new is not None:
            yield w, new


# ---- the weights side ------------------------------------------------------------
def _layer(arch: Arch, i: int | None):
    """(parts, state-dict prefix) of block i, the stem (i = -1) or the head (i = None)."""
    if i == -1:
        return stem_parts(arch.stem, arch.in_channels), "stem"
    if i is None:
        return head_parts(arch.head, arch.last_channels, arch.num_classes), "head"
    return block_parts(arch.blocks[i]), f"blocks.{i}"


def _touched(arch: Arch, unit: Unit) -> list[tuple[int | None, str]]:
    """(layer, channel set of that layer) holding the unit's channels."""
    if unit.kind == "mid":
        return [(unit.blocks[0], "mid")]
    return ([(unit.producer, "out")] + [(j, s) for j in unit.blocks for s in ("in", "out")]
            + [(unit.consumer, "in")])


def slices(arch: Arch, unit: Unit) -> list[tuple[str, int]]:
    """Every (state_dict key, axis) whose entries along `axis` are the unit's channels."""
    return [kv for i, chset in _touched(arch, unit) for kv in part_slices(*_layer(arch, i), chset)]


def channel_scores(model: Net, unit: Unit) -> torch.Tensor:
    """L2 norm of each channel's filters (summed in square over all convs writing the channel)."""
    state = model.state_dict()
    weights = [k for i, chset in _touched(model.arch, unit) for k in filters(*_layer(model.arch, i), chset)]
    sq = sum(state[k].detach().flatten(1).pow(2).sum(1) for k in weights)
    return sq.sqrt()


def keep_indices(model: Net, unit: Unit, width: int) -> torch.Tensor:
    """The `width` channels with the largest filter norm, in their original order."""
    return channel_scores(model, unit).topk(width).indices.sort().values


def trim(model: Net, unit: Unit, width: int) -> Net:
    """A new Net with the unit cut to `width` channels (largest filter norms kept), all other
    weights copied unchanged. `unit` must come from `units()` of an Arch with the same blocks."""
    new_arch = resize(model.arch, unit, width)
    if new_arch is None:
        raise ValueError(f"{unit.name}: width {width} would remove a block's expand conv")
    keep = keep_indices(model, unit, width)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for key, axis in slices(model.arch, unit):
        state[key] = state[key].index_select(axis, keep)
    new = Net(new_arch)
    new.load_state_dict(state)
    return new
