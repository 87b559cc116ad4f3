"""The architecture IR: a stem, a list of blocks with explicit channel counts, a head.

Every other part of the project (latency tables, search, NetAdapt) speaks this IR.
An `Arch` round-trips through a JSON document (`to_dict`/`from_dict`) and through a
compact one-line string (`to_string`/`from_string`) that fits in a CSV cell:

    r224_n1000|stem:c16_k3_s2_hswish|ir:i16_o16_m16_k3_s1_relu_r|ir:i16_o24_m64_k3_s2_relu|...
    |head:mnv3_c960_f1280_hswish
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, replace

from search_spaces.errors import UserError

ACTIVATIONS = ("relu", "relu6", "hswish")
#: a block may also be linear ("none"): NAS-Bench-Macro's downsampling identity is a 1x1 conv + BN alone
BLOCK_ACTIVATIONS = ACTIVATIONS + ("none",)
GATES = ("hsigmoid", "sigmoid")
BLOCK_OPS = ("ir", "conv")  # inverted residual (MBConv / depthwise-separable), plain kxk conv
HEAD_TYPES = ("mnv2", "mnv3")
# Upper bounds on the IR's numbers: well above any published mobile network (widths reach
# 1,280, EfficientNet-L2 runs at 800 px), far below sizes whose tensors could not be allocated.
MAX_CHANNELS = 8192
MAX_RESOLUTION = 2048
MAX_KERNEL = 15
MAX_STEM_STRIDE = 4
MAX_CLASSES = 100_000


class ArchError(UserError):
    """An IR document that does not describe a valid network."""


@dataclass(frozen=True)
class SE:
    """Squeeze-and-excitation: pool, 1x1 conv to `squeeze`, ReLU, 1x1 conv back, gate."""

    squeeze: int
    gate: str = "hsigmoid"


@dataclass(frozen=True)
class Stem:
    out: int
    kernel: int = 3
    stride: int = 2
    act: str = "hswish"


@dataclass(frozen=True)
class Block:
    """One searchable layer.

    op "ir": inverted residual; `mid == in` means no expansion conv (this is the
    depthwise-separable conv). op "conv": plain kxk conv + BN + act (`mid` unused, equals
    `out`). SE acts on the expanded channels (ir) or the output (conv).
    """

    op: str
    in_: int
    out: int
    mid: int
    kernel: int
    stride: int
    act: str
    se: SE | None = None
    residual: bool = False


@dataclass(frozen=True)
class Head:
    """mnv2: 1x1 conv+BN+act, pool, classifier. mnv3: 1x1 conv+BN+act, pool, FC (no BN)
    to `hidden`, act, classifier."""

    type: str
    conv: int
    act: str
    hidden: int | None = None
    dropout: float = 0.2


@dataclass(frozen=True)
class Arch:
    stem: Stem
    blocks: tuple[Block, ...]
    head: Head
    resolution: int = 224
    num_classes: int = 1000
    in_channels: int = 3
    name: str | None = field(default=None, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "blocks", tuple(self.blocks))
        validate(self)

    # ---- JSON -------------------------------------------------------------
    def to_dict(self) -> dict:
        blocks = [{k.rstrip("_"): v for k, v in asdict(b).items()} for b in self.blocks]  # in_ -> in
        doc = {"resolution": self.resolution, "num_classes": self.num_classes,
               "in_channels": self.in_channels, "stem": asdict(self.stem), "blocks": blocks,
               "head": asdict(self.head)}
        if self.name:
            doc["name"] = self.name
        return doc

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, doc: dict) -> "Arch":
        if not isinstance(doc, dict):
            raise ArchError("architecture document must be a JSON object")
        try:
            stem = Stem(**_only(doc["stem"], Stem, "stem"))
            blocks = []
            if not isinstance(doc["blocks"], list):
                raise ArchError("field 'blocks' must be a list of block objects")
            for i, b in enumerate(doc["blocks"]):
                b = dict(_only(b, Block, f"block {i}", extra={"in"}))
                if "in" not in b:
                    raise ArchError(f"block {i}: missing field 'in'")
                b["in_"] = b.pop("in")
                se = b.get("se")
                if se is not None:
                    if not isinstance(se, dict):
                        raise ArchError(f"block {i}: field 'se' must be null or {{squeeze, gate}}")
                    b["se"] = SE(**_only(se, SE, f"block {i} se"))
                blocks.append(Block(**_only(b, Block, f"block {i}")))
            head = Head(**_only(doc["head"], Head, "head"))
        except KeyError as e:
            raise ArchError(f"missing field {e.args[0]!r}") from None
        except TypeError as e:
            raise ArchError(f"malformed document: {e}") from None
        extra = set(doc) - {"stem", "blocks", "head", "resolution", "num_classes", "in_channels", "name"}
        if extra:
            raise ArchError(f"unknown field(s) {sorted(extra)}")
        return cls(stem=stem, blocks=tuple(blocks), head=head,
                   resolution=doc.get("resolution", 224), num_classes=doc.get("num_classes", 1000),
                   in_channels=doc.get("in_channels", 3), name=doc.get("name"))

    @classmethod
    def from_json(cls, text: str) -> "Arch":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ArchError(f"not valid JSON: {e}") from None
        return cls.from_dict(doc)

    # ---- one-line string ----------------------------------------------------
    def to_string(self) -> str:
        header = f"r{self.resolution}_n{self.num_classes}" + ("" if self.in_channels == 3 else f"_x{self.in_channels}")
        return "|".join([header, stem_token(self.stem), *map(block_token, self.blocks), head_token(self.head)])

    @classmethod
    def from_string(cls, text: str) -> "Arch":
        parts = text.strip().split("|")
        if len(parts) < 3:
            raise ArchError("architecture string needs at least 'r.._n..|stem:..|head:..'")
        g = _tokens(parts[0], "header")
        stem = parse_stem(parts[1])
        blocks = tuple(parse_block(p, i) for i, p in enumerate(parts[2:-1]))
        head = parse_head(parts[-1])
        return cls(stem=stem, blocks=blocks, head=head, resolution=g.int("r"),
                   num_classes=g.int("n"), in_channels=g.int("x", 3))

    # ---- convenience --------------------------------------------------------
    def replace(self, **changes) -> "Arch":
        return replace(self, **changes)

    @property
    def last_channels(self) -> int:
        return self.blocks[-1].out if self.blocks else self.stem.out


def stem_token(s: Stem) -> str:
    return f"stem:c{s.out}_k{s.kernel}_s{s.stride}_{s.act}"


def block_token(b: Block) -> str:
    se = f"_se{b.se.squeeze}{b.se.gate[0]}" if b.se is not None else ""
    return f"{b.op}:i{b.in_}_o{b.out}_m{b.mid}_k{b.kernel}_s{b.stride}_{b.act}{se}{'_r' if b.residual else ''}"


def head_token(h: Head) -> str:
    hidden = f"_f{h.hidden}" if h.hidden is not None else ""
    dropout = f"_d{h.dropout:g}" if h.dropout != 0.2 else ""
    return f"head:{h.type}_c{h.conv}{hidden}_{h.act}{dropout}"


def _only(d: dict, cls, where: str, extra: set[str] = frozenset()) -> dict:
    if not isinstance(d, dict):
        raise ArchError(f"{where}: must be a JSON object")
    known = set(cls.__dataclass_fields__) | extra
    extra = set(d) - known
    if extra:
        raise ArchError(f"{where}: unknown field(s) {sorted(extra)}")
    return d


class _Tokens:
    def __init__(self, flags: set[str], values: dict[str, str], where: str):
        self.flags, self.values, self.where = flags, values, where

    def int(self, key: str, default: int | None = None) -> int:
        if key not in self.values:
            if default is not None:
                return default
            raise ArchError(f"{self.where}: missing '{key}<number>'")
        try:
            return int(self.values[key])
        except ValueError:
            raise ArchError(f"{self.where}: '{key}{self.values[key]}' is not an integer") from None

    def act(self, allowed: tuple[str, ...] = ACTIVATIONS) -> str:
        acts = self.flags & set(allowed)
        if len(acts) != 1:
            unknown = self.flags - set(allowed) - {"r"}
            hint = f" (unknown token(s) {sorted(unknown)})" if unknown else ""
            raise ArchError(f"{self.where}: needs exactly one activation of {allowed}{hint}")
        return acts.pop()


_TOKEN = re.compile(r"^([a-z]+?)(-?[0-9.]+)([a-z]?)$")


def _tokens(text: str, where: str, known_flags=ACTIVATIONS + ("r",)) -> _Tokens:
    flags, values = set(), {}
    for tok in text.split("_"):
        m = _TOKEN.match(tok)
        if tok not in known_flags and not m:
            raise ArchError(f"{where}: cannot read token {tok!r}")
        key = tok if tok in known_flags else m[1]
        if key in flags or key in values:
            raise ArchError(f"{where}: '{key}' is given twice")
        if tok in known_flags:
            flags.add(tok)
        else:
            values[key] = m[2] + m[3]
    return _Tokens(flags, values, where)


def _split(part: str, kind: str, where: str) -> str:
    head, sep, rest = part.partition(":")
    if not sep or head != kind:
        raise ArchError(f"{where}: expected '{kind}:...', got {part!r}")
    return rest


def parse_stem(part: str) -> Stem:
    t = _tokens(_split(part, "stem", "stem"), "stem")
    return Stem(out=t.int("c"), kernel=t.int("k"), stride=t.int("s"), act=t.act())


def parse_block(part: str, i: int) -> Block:
    where = f"block {i}"
    op, sep, rest = part.partition(":")
    if not sep or op not in BLOCK_OPS:
        raise ArchError(f"{where}: unknown op {op!r} (expected one of {BLOCK_OPS})")
    t = _tokens(rest, where, BLOCK_ACTIVATIONS + ("r",))
    se = None
    if "se" in t.values:
        raw = t.values.pop("se")
        gate = {"h": "hsigmoid", "s": "sigmoid"}.get(raw[-1:])
        if gate is None or not raw[:-1].isdigit():
            raise ArchError(f"{where}: se token must look like se24h (hsigmoid) or se8s (sigmoid)")
        se = SE(int(raw[:-1]), gate)
    return Block(op=op, in_=t.int("i"), out=t.int("o"), mid=t.int("m"), kernel=t.int("k"),
                 stride=t.int("s"), act=t.act(BLOCK_ACTIVATIONS), se=se, residual="r" in t.flags)


def parse_head(part: str) -> Head:
    rest = _split(part, "head", "head")
    kind, _, rest = rest.partition("_")
    if kind not in HEAD_TYPES:
        raise ArchError(f"head: unknown type {kind!r} (expected one of {HEAD_TYPES})")
    t = _tokens(rest, "head")
    try:
        dropout = float(t.values.get("d", 0.2))
    except ValueError:
        raise ArchError(f"head: dropout 'd{t.values['d']}' is not a number") from None
    hidden = t.int("f") if "f" in t.values else None
    return Head(type=kind, conv=t.int("c"), act=t.act(), hidden=hidden, dropout=dropout)


def _positive(where: str, name: str, value, most: int = MAX_CHANNELS) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ArchError(f"{where}: field '{name}' must be a positive integer, got {value!r}")
    if value > most:
        raise ArchError(f"{where}: field '{name}' is {value}, more than the largest supported {most}")


def _kernel(where: str, kernel) -> None:
    _positive(where, "kernel", kernel, MAX_KERNEL)
    if kernel % 2 == 0:
        raise ArchError(f"{where}: field 'kernel' must be odd, got {kernel}")


def _one_of(where: str, name: str, value, options: tuple) -> None:
    if value not in options:
        raise ArchError(f"{where}: field '{name}' is {value!r}, expected one of {options}")


def validate(arch: Arch) -> None:
    """Raise ArchError naming the block and the field of the first problem found."""
    _positive("arch", "resolution", arch.resolution, MAX_RESOLUTION)
    _positive("arch", "num_classes", arch.num_classes, MAX_CLASSES)
    _positive("arch", "in_channels", arch.in_channels)
    s = arch.stem
    _positive("stem", "out", s.out)
    _kernel("stem", s.kernel)
    _positive("stem", "stride", s.stride, MAX_STEM_STRIDE)
    _one_of("stem", "act", s.act, ACTIVATIONS)
    prev = s.out
    for i, b in enumerate(arch.blocks):
        where = f"block {i}"
        _one_of(where, "op", b.op, BLOCK_OPS)
        for f, v in (("in", b.in_), ("out", b.out), ("mid", b.mid), ("stride", b.stride)):
            _positive(where, f, v)
        _kernel(where, b.kernel)
        if b.stride not in (1, 2):
            raise ArchError(f"{where}: field 'stride' must be 1 or 2, got {b.stride}")
        if b.in_ != prev:
            raise ArchError(f"{where}: field 'in' is {b.in_} but the previous layer outputs {prev} channels")
        _one_of(where, "act", b.act, BLOCK_ACTIVATIONS)
        if b.op == "conv" and b.mid != b.out:
            raise ArchError(f"{where}: field 'mid' must equal 'out' for a plain conv block")
        if b.se is not None:
            _positive(f"{where} se", "squeeze", b.se.squeeze)
            _one_of(where, "se.gate", b.se.gate, GATES)
        if not isinstance(b.residual, bool):
            raise ArchError(f"{where}: field 'residual' must be true or false")
        if b.residual and (b.stride != 1 or b.in_ != b.out):
            raise ArchError(f"{where}: field 'residual' needs stride 1 and in == out "
                            f"(stride {b.stride}, in {b.in_}, out {b.out})")
        prev = b.out
    h = arch.head
    _one_of("head", "type", h.type, HEAD_TYPES)
    _positive("head", "conv", h.conv)
    _one_of("head", "act", h.act, ACTIVATIONS)
    if h.type == "mnv3":
        _positive("head", "hidden", h.hidden)
    elif h.hidden is not None:
        raise ArchError("head: field 'hidden' is only used by the mnv3 head")
    if not (isinstance(h.dropout, (int, float)) and 0 <= h.dropout < 1):
        raise ArchError(f"head: field 'dropout' must be in [0, 1), got {h.dropout!r}")
