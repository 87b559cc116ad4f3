"""What each layer of the IR is made of: the one description every other module reads.

A layer (stem, block, head) is a list of parts, one per module of the built network,
each with its channels, kernel, stride, groups, activation and the state-dict entries
it owns (with the axes holding its input and output channels). The builder builds the
parts, counting sums them, the latency model reads them, ONNX export emits them, and
NetAdapt (and later a weight-sharing supernet) slices the entries they name.

A block's channels live in three sets named on every part: its input ("in"), expanded
("mid") and output ("out") channels. Without an expansion conv (depthwise-separable)
`mid` is tied to `in`; in a plain conv block it is tied to `out`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from search_spaces.ir import Block, Head, Stem

_BN = ("weight", "bias", "running_mean", "running_var")


@dataclass(frozen=True)
class Param:
    """One state-dict entry of a part: its name inside the part and which axis holds the
    part's input channels (`in_axis`) and output channels (`out_axis`), None when neither."""

    name: str
    out_axis: int | None = None
    in_axis: int | None = None


@dataclass(frozen=True)
class Part:
    """One module of a layer. `path` is its module path inside the layer ("" for the stem,
    which is a single conv); `in_set`/`out_set` name the block's channel sets it reads and
    writes. Kinds: "conv" (conv + BN [+ act]), "se" (pool, 1x1 down to `hidden`, ReLU,
    1x1 up, `gate`), "pool" (global average + flatten), "linear" ([dropout] + linear [+ act])."""

    kind: str
    path: str
    cin: int
    cout: int
    kernel: int = 1
    stride: int = 1
    groups: int = 1
    act: str | None = None
    hidden: int = 0              # se: squeezed channels
    gate: str | None = None      # se: hsigmoid | sigmoid
    dropout: float | None = None  # linear: dropout before it
    in_set: str = "in"
    out_set: str = "out"

    @property
    def params(self) -> tuple[Param, ...]:
        if self.kind == "conv":  # depthwise: one filter per channel, input and output on axis 0
            return (Param("0.weight", 0, 0 if self.groups > 1 else 1),) + tuple(Param(f"1.{p}", 0) for p in _BN)
        if self.kind == "se":
            return (Param("fc1.weight", None, 1), Param("fc1.bias"), Param("fc2.weight", 0), Param("fc2.bias", 0))
        if self.kind == "linear":
            return (Param("weight", 0, 1), Param("bias", 0))
        return ()

    def key(self, layer: str, param: str) -> str:
        """Full state-dict key of `param` in the layer at module path `layer`."""
        return ".".join(p for p in (layer, self.path, param) if p)

    def out_hw(self, hw: int) -> int:
        if self.kind == "pool":
            return 1
        if self.kind == "conv":
            return conv_out(hw, self.kernel, self.stride)
        return hw

    def count(self, hw_in: int) -> tuple[int, int]:
        """(parameters, multiply-adds) at input size hw_in (BN affine parameters included)."""
        if self.kind == "conv":
            w = self.cout * (self.cin // self.groups) * self.kernel ** 2
            return w + 2 * self.cout, w * self.out_hw(hw_in) ** 2
        if self.kind == "se":
            return 2 * self.cin * self.hidden + self.hidden + self.cin, 2 * self.cin * self.hidden
        if self.kind == "linear":
            return self.cin * self.cout + self.cout, self.cin * self.cout
        return 0, 0


def conv_out(size: int, kernel: int, stride: int) -> int:
    pad = kernel // 2
    return (size + 2 * pad - kernel) // stride + 1


# ---- the rules of a block's channel sets --------------------------------------------
def has_expand(b: Block) -> bool:
    """An inverted residual has a 1x1 expansion conv unless its mid channels are its input."""
    return b.op == "ir" and b.mid != b.in_


def block_kind(b: Block) -> str:
    """conv / dwsep / mbconv: which set of weights a block has (its parts differ by kind)."""
    return "conv" if b.op == "conv" else "mbconv" if has_expand(b) else "dwsep"


def kind_name(layer: Stem | Block | Head) -> str:
    """How `arch show` names a layer: conv / dwsep / mbconv with the kernel, or the head's type."""
    if isinstance(layer, Head):
        return f"head_{layer.type}"
    return ("conv" if isinstance(layer, Stem) else block_kind(layer)) + f"{layer.kernel}x{layer.kernel}"


def with_channels(b: Block, in_: int | None = None, out: int | None = None, mid: int | None = None) -> Block:
    """`b` with new channel counts; a tied `mid` (see the module docstring) follows its set."""
    in_ = b.in_ if in_ is None else in_
    out = b.out if out is None else out
    if b.op == "conv":
        mid = out
    elif not has_expand(b):
        mid = in_
    elif mid is None:
        mid = b.mid
    return replace(b, in_=in_, out=out, mid=mid)


# ---- the parts of each layer ---------------------------------------------------------
def stem_parts(s: Stem, in_channels: int) -> tuple[Part, ...]:
    return (Part("conv", "", in_channels, s.out, s.kernel, s.stride, act=s.act),)


def block_parts(b: Block) -> tuple[Part, ...]:
    """expand 1x1 (if any) -> depthwise kxk -> [SE] -> project 1x1, or kxk conv -> [SE]."""
    act = None if b.act == "none" else b.act
    if b.op == "conv":
        parts = [Part("conv", "conv", b.in_, b.out, b.kernel, b.stride, act=act)]
        inner = "out"
    else:
        inner = "mid" if has_expand(b) else "in"
        parts = [Part("conv", "expand", b.in_, b.mid, act=act, out_set="mid")] if has_expand(b) else []
        parts.append(Part("conv", "dw", b.mid, b.mid, b.kernel, b.stride, groups=b.mid, act=act,
                          in_set=inner, out_set=inner))
    if b.se is not None:
        parts.append(Part("se", "se", b.mid, b.mid, hidden=b.se.squeeze, gate=b.se.gate,
                          in_set=inner, out_set=inner))
    if b.op == "ir":
        parts.append(Part("conv", "project", b.mid, b.out, in_set=inner))
    return tuple(parts)


def head_parts(h: Head, cin: int, num_classes: int) -> tuple[Part, ...]:
    """1x1 conv + BN + act, pool, [FC to `hidden` + act (mnv3)], dropout + classifier."""
    parts = [Part("conv", "conv", cin, h.conv, act=h.act, out_set="conv"),
             Part("pool", "pool", h.conv, h.conv, in_set="conv", out_set="conv")]
    width = h.conv
    if h.type == "mnv3":
        parts.append(Part("linear", "fc", h.conv, h.hidden, act=h.act, in_set="conv", out_set="hidden"))
        width = h.hidden
    parts.append(Part("linear", "classifier", width, num_classes, dropout=h.dropout,
                      in_set="hidden" if h.type == "mnv3" else "conv"))
    return tuple(parts)


def layer_parts(layer: Stem | Block | Head, cin: int, num_classes: int = 0) -> tuple[Part, ...]:
    """Parts of any layer; `cin` is the layer's input channels."""
    if isinstance(layer, Stem):
        return stem_parts(layer, cin)
    if isinstance(layer, Block):
        return block_parts(layer)
    return head_parts(layer, cin, num_classes)


def slices(parts: tuple[Part, ...], layer: str, channel_set: str) -> list[tuple[str, int]]:
    """(state-dict key, axis) of every entry of the layer's parts that holds `channel_set`."""
    out = []
    for part in parts:
        for p in part.params:
            for axis, chset in ((p.out_axis, part.out_set), (p.in_axis, part.in_set)):
                if axis is not None and chset == channel_set:
                    out.append((part.key(layer, p.name), axis))
    return list(dict.fromkeys(out))


def filters(parts: tuple[Part, ...], layer: str, channel_set: str) -> list[str]:
    """Weights whose filters create `channel_set` from another set (what channel norms rank)."""
    return [part.key(layer, part.params[0].name) for part in parts  # conv and linear: weight first
            if part.kind in ("conv", "linear") and part.out_set == channel_set and part.in_set != channel_set]
