"""Reference architectures from the papers' tables, as IR documents, the width multiplier, and
the CLI's ARCH argument (a reference name, an IR JSON file, or an IR string)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from search_spaces.anatomy import with_channels
from search_spaces.errors import UserError
from search_spaces.ir import SE, Arch, Block, Head, Stem


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round to a multiple of `divisor`, never more than 10% down (MobileNet's rule)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mbconv(cin: int, cout: int, mid: int, kernel: int, stride: int, act: str,
           se: SE | None = None, skip: bool = True) -> Block:
    """An inverted residual with the identity shortcut wherever it is legal (and wanted)."""
    return Block("ir", cin, cout, mid, kernel, stride, act, se, skip and stride == 1 and cin == cout)


def mnv3_se(mid: int) -> SE:
    """MobileNetV3's SE: squeeze to mid/4 rounded to a multiple of 8, hard-sigmoid gate."""
    return SE(make_divisible(mid // 4), "hsigmoid")


def efficientnet_se(cin: int) -> SE:
    """EfficientNet's SE as Accel-NASBench builds it: squeeze to a quarter of the block's *input*
    channels (not of the expanded ones), hard-sigmoid gate."""
    return SE(max(1, cin // 4), "hsigmoid")


#: how a space's SE blocks follow from a block's (input, expanded) channels, by name
SE_RULES = {"mnv3": lambda cin, mid: mnv3_se(mid), "efficientnet": lambda cin, mid: efficientnet_se(cin)}


def _mnv3(stem: int, rows, head_conv: int, hidden: int, name: str) -> Arch:
    blocks, cin = [], stem
    for k, mid, out, se, act, stride in rows:
        blocks.append(mbconv(cin, out, mid, k, stride, act, mnv3_se(mid) if se else None))
        cin = out
    return Arch(Stem(stem, 3, 2, "hswish"), tuple(blocks), Head("mnv3", head_conv, "hswish", hidden), name=name)


def mobilenet_v3_large() -> Arch:
    R, H = "relu", "hswish"
    rows = [(3, 16, 16, 0, R, 1), (3, 64, 24, 0, R, 2), (3, 72, 24, 0, R, 1),
            (5, 72, 40, 1, R, 2), (5, 120, 40, 1, R, 1), (5, 120, 40, 1, R, 1),
            (3, 240, 80, 0, H, 2), (3, 200, 80, 0, H, 1), (3, 184, 80, 0, H, 1), (3, 184, 80, 0, H, 1),
            (3, 480, 112, 1, H, 1), (3, 672, 112, 1, H, 1),
            (5, 672, 160, 1, H, 2), (5, 960, 160, 1, H, 1), (5, 960, 160, 1, H, 1)]
    return _mnv3(16, rows, 960, 1280, "mobilenet_v3_large")


def mobilenet_v3_small() -> Arch:
    R, H = "relu", "hswish"
    rows = [(3, 16, 16, 1, R, 2), (3, 72, 24, 0, R, 2), (3, 88, 24, 0, R, 1),
            (5, 96, 40, 1, H, 2), (5, 240, 40, 1, H, 1), (5, 240, 40, 1, H, 1),
            (5, 120, 48, 1, H, 1), (5, 144, 48, 1, H, 1),
            (5, 288, 96, 1, H, 2), (5, 576, 96, 1, H, 1), (5, 576, 96, 1, H, 1)]
    return _mnv3(16, rows, 576, 1024, "mobilenet_v3_small")


def _stages(stem: int, stages, act: str, se_rule=None) -> list[Block]:
    """Blocks from (expansion, kernel, out, repeats, stride[, se]) stage rows, MobileNetV2 style."""
    blocks, cin = [], stem
    for row in stages:
        t, k, out, n, s = row[:5]
        with_se = len(row) > 5 and row[5]
        for i in range(n):
            se = se_rule(cin) if with_se else None
            blocks.append(mbconv(cin, out, cin * t, k, s if i == 0 else 1, act, se))
            cin = out
    return blocks


def mobilenet_v2() -> Arch:
    stages = [(1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (6, 3, 32, 3, 2), (6, 3, 64, 4, 2),
              (6, 3, 96, 3, 1), (6, 3, 160, 3, 2), (6, 3, 320, 1, 1)]
    return Arch(Stem(32, 3, 2, "relu6"), tuple(_stages(32, stages, "relu6")),
                Head("mnv2", 1280, "relu6"), name="mobilenet_v2")


def mnasnet_a1() -> Arch:
    """MnasNet-A1 (Tan et al. 2019, Fig. 7); SE squeezes to a quarter of the block input, sigmoid."""
    stages = [(1, 3, 16, 1, 1), (6, 3, 24, 2, 2), (3, 5, 40, 3, 2, True), (6, 3, 80, 4, 2),
              (6, 3, 112, 2, 1, True), (6, 5, 160, 3, 2, True), (6, 3, 320, 1, 1)]
    blocks = _stages(32, stages, "relu", se_rule=lambda cin: SE(max(1, cin // 4), "sigmoid"))
    return Arch(Stem(32, 3, 2, "relu"), tuple(blocks), Head("mnv2", 1280, "relu"), name="mnasnet_a1")


def efficientnet_b0_relu() -> Arch:
    """EfficientNet-B0's configuration (Tan & Le 2019) as Accel-NASBench builds its networks: ReLU, not
    swish; SE in every block with the hard-sigmoid gate (`efficientnet_se`); the MobileNetV2 head."""
    stages = [(1, 3, 16, 1, 1, True), (6, 3, 24, 2, 2, True), (6, 5, 40, 2, 2, True), (6, 3, 80, 3, 2, True),
              (6, 5, 112, 3, 1, True), (6, 5, 192, 4, 2, True), (6, 3, 320, 1, 1, True)]
    blocks = _stages(32, stages, "relu", se_rule=efficientnet_se)
    return Arch(Stem(32, 3, 2, "relu"), tuple(blocks), Head("mnv2", 1280, "relu"), name="efficientnet_b0_relu")


def proxylessnas_mobile() -> Arch:
    """ProxylessNAS-Mobile (Cai et al. 2019): the searched cells of the released model."""
    stages = [  # (out, kernel, expansion, stride, identity shortcut) per layer
        (16, 3, 1, 1, False),
        (32, 5, 3, 2, False), (32, 3, 3, 1, True),
        (40, 7, 3, 2, False), (40, 3, 3, 1, True), (40, 5, 3, 1, True), (40, 5, 3, 1, True),
        (80, 7, 6, 2, False), (80, 5, 3, 1, True), (80, 5, 3, 1, True), (80, 5, 3, 1, True),
        (96, 5, 6, 1, False), (96, 5, 3, 1, True), (96, 5, 3, 1, True), (96, 5, 3, 1, True),
        (192, 7, 6, 2, False), (192, 7, 6, 1, True), (192, 7, 3, 1, True), (192, 7, 3, 1, True),
        (320, 7, 6, 1, False)]
    blocks, cin = [], 32
    for out, k, t, s, skip in stages:
        blocks.append(mbconv(cin, out, cin * t, k, s, "relu6", skip=skip))
        cin = out
    return Arch(Stem(32, 3, 2, "relu6"), tuple(blocks), Head("mnv2", 1280, "relu6"),
                name="proxylessnas_mobile")


REFERENCES = {f.__name__: f for f in (mobilenet_v3_large, mobilenet_v3_small, mobilenet_v2, mnasnet_a1,
                                       proxylessnas_mobile, efficientnet_b0_relu)}


def reference(name: str, width: float = 1.0) -> Arch:
    arch = REFERENCES[name]()
    return arch if width == 1.0 else scale_width(arch, width)


def scale_width(arch: Arch, multiplier: float) -> Arch:
    """Scale every channel count by `multiplier`, rounded to a multiple of 8 (as in the papers).

    The classifier's hidden width of the MobileNetV3 head scales too, as in torchvision;
    the MobileNetV2 head's 1x1 conv never shrinks below its width at 1.0 (as in MobileNetV2).
    """
    def c(v: int) -> int:
        return make_divisible(v * multiplier)

    stem = replace(arch.stem, out=c(arch.stem.out))
    blocks, cin = [], stem.out
    for b in arch.blocks:
        out = c(b.out)
        se = b.se and replace(b.se, squeeze=c(b.se.squeeze))
        scaled = with_channels(b, in_=cin, out=out, mid=c(b.mid))
        blocks.append(replace(scaled, se=se, residual=b.residual and cin == out))
        cin = out
    h = arch.head
    if h.type == "mnv3":
        head = replace(h, conv=c(h.conv), hidden=c(h.hidden))
    else:
        head = replace(h, conv=make_divisible(h.conv * max(1.0, multiplier)))
    name = f"{arch.name}_{multiplier:g}" if arch.name else None
    return replace(arch, stem=stem, blocks=tuple(blocks), head=head, name=name)


def load_arch(spec: str) -> Arch:
    """Resolve ARCH as the CLI accepts it: a reference name, an IR JSON file, or an IR string."""
    spec = spec.strip()
    if spec in REFERENCES:
        return reference(spec)
    if "|" in spec:
        return Arch.from_string(spec)
    if spec.startswith("{"):
        return Arch.from_json(spec)
    path = Path(spec)
    if path.is_file():
        return Arch.from_json(path.read_text())
    raise UserError(f"unknown architecture {spec!r}: not a reference name "
                    f"({', '.join(sorted(REFERENCES))}), an existing JSON file, or an IR string")
