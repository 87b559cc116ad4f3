"""Latency-table ops: the IR's layers with their input size, as hashable keys.

An op is one layer of an `Arch` (the stem, one block, or the head) plus what its cost
depends on outside the layer itself: the input height/width (and, for the stem and the
head, the input channels and number of classes). Its key is the layer's own one-line IR
form followed by `@` and that context, so keys read like the IR strings users already know:

    stem:c16_k3_s2_hswish@r224_x3
    ir:i24_o24_m72_k3_s1_relu_r@r56
    head:mnv3_c960_f1280_hswish@r7_x160_n1000
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from functools import cached_property

from search_spaces.anatomy import conv_out, layer_parts
from search_spaces.counting import parts_count
from search_spaces.errors import UserError
from search_spaces.ir import (Arch, ArchError, Block, Head, Stem, block_token, head_token, parse_block, parse_head,
                              parse_stem, stem_token)
from search_spaces.space import Space

_CONTEXT = re.compile(r"^r(\d+)(?:_x(\d+))?(?:_n(\d+))?$")


@dataclass(frozen=True)
class Op:
    """One layer at one input size; `key` is its canonical text form."""

    layer: Stem | Block | Head
    hw: int                 # input height = width
    cin: int                # input channels
    num_classes: int = 0    # head only

    @property
    def kind(self) -> str:
        return {Stem: "stem", Block: "block", Head: "head"}[type(self.layer)]

    @cached_property
    def key(self) -> str:
        if isinstance(self.layer, Stem):
            return f"{stem_token(self.layer)}@r{self.hw}_x{self.cin}"
        if isinstance(self.layer, Block):  # the block carries its input channels
            return f"{block_token(self.layer)}@r{self.hw}"
        head = replace(self.layer, dropout=0.2)  # dropout does not change inference cost
        return f"{head_token(head)}@r{self.hw}_x{self.cin}_n{self.num_classes}"

    @property
    def parts(self):
        """The op's parts (see `search_spaces.anatomy`)."""
        return layer_parts(self.layer, self.cin, self.num_classes)

    def __str__(self) -> str:
        return self.key

    def macs(self) -> int:
        return parts_count(self.parts, self.hw)[1]

    @property
    def input_melems(self) -> float:
        """Millions of input elements: what a standalone op copies in and reorders."""
        return self.cin * self.hw ** 2 / 1e6


def parse_key(key: str) -> Op:
    """Op of a key string; UserError saying what is wrong with a malformed key."""
    layer_text, sep, context = str(key).partition("@")
    m = _CONTEXT.match(context)
    if not sep or not m:
        raise UserError(f"malformed op key {key!r}: expected LAYER@r<hw>[_x<cin>][_n<classes>]")
    hw, cin, ncls = int(m[1]), m[2] and int(m[2]), m[3] and int(m[3])
    try:
        kind = layer_text.partition(":")[0]
        if kind == "stem":
            layer = parse_stem(layer_text)
        elif kind == "head":
            layer = replace(parse_head(layer_text), dropout=0.2)
        else:
            layer = parse_block(layer_text, 0)
            cin = layer.in_
    except ArchError as e:
        raise UserError(f"malformed op key {key!r}: {e}") from None
    if not cin or (kind == "head" and not ncls):
        raise UserError(f"malformed op key {key!r}: {'stem' if kind == 'stem' else 'head'} keys need "
                        f"_x<in channels>{' and _n<classes>' if kind == 'head' else ''}")
    return Op(layer, hw, cin, ncls or 0)


def chain_ops(blocks, hw: int) -> tuple[list[Op], int]:
    """Ops of blocks applied one after another from input size hw, and the output size."""
    ops = []
    for b in blocks:
        ops.append(Op(b, hw, b.in_))
        hw = conv_out(hw, b.kernel, b.stride)
    return ops, hw


def arch_ops(arch: Arch) -> list[tuple[str, Op]]:
    """(layer name, op) for every layer of `arch` at `arch.resolution`, in network order."""
    blocks, hw = chain_ops(arch.blocks, conv_out(arch.resolution, arch.stem.kernel, arch.stem.stride))
    head = replace(arch.head, dropout=0.2)  # dropout does not change inference cost
    return [("stem", Op(arch.stem, arch.resolution, arch.in_channels)),
            *((f"block{i}", op) for i, op in enumerate(blocks)),
            ("head", Op(head, hw, arch.last_channels, arch.num_classes))]


def op_onnx(op: Op):
    """The op alone as an ONNX model (composed directly, milliseconds)."""
    from search_spaces.builder import build_layer
    from search_spaces.onnx_export import module_to_onnx

    module = build_layer(op.layer, op.cin, op.num_classes).eval()
    return module_to_onnx(module, (1, op.cin, op.hw, op.hw), graph_name=op.kind)


@dataclass(frozen=True)
class OpGrid:
    """Every op of a space laid out by the decisions it depends on (`Space.layer_groups`): the stem
    op; per layer group, its ops for each combination of its decisions; the head op for each
    combination of the head's input decisions."""

    stem: Op
    groups: list[tuple[tuple[int, ...], dict[tuple[int, ...], list[Op]]]]
    head: tuple[tuple[int, ...], dict[tuple[int, ...], Op]]

    def ops(self) -> list[Op]:
        """Every distinct op, in a stable order."""
        blocks = [op for _, by_idx in self.groups for ops in by_idx.values() for op in ops]
        return list(dict.fromkeys([self.stem, *blocks, *self.head[1].values()]))


def op_grid(space: Space, resolution: int | None = None) -> OpGrid:
    r = resolution or space.resolution
    groups, head = space.layer_groups(r)
    return OpGrid(Op(space.stem, r, 3),
                  [(g.columns, {idx: chain_ops(blocks, g.hw)[0] for idx, blocks in g.blocks.items()}) for g in groups],
                  (head.columns, {idx: Op(space.head, head.hw, c, space.num_classes)
                                  for idx, c in head.channels.items()}))


def space_ops(space: Space, resolution: int | None = None) -> list[Op]:
    """Every distinct op reachable in `space` at `resolution`, in a stable order."""
    return op_grid(space, resolution).ops()
