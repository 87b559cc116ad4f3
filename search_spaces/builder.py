"""IR -> torch.nn.Module: each layer's parts (see `anatomy`) built in order, one module each."""
from __future__ import annotations

from torch import nn

from search_spaces.anatomy import Part, layer_parts
from search_spaces.ir import Arch, Block, Head, Stem

_ACT = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}
_GATE = {"hsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid}
BN_EPS = 1e-3  # MobileNetV3's value; the ONNX exporter folds BN with the module's own eps


def act_layer(name: str) -> nn.Module:
    return _ACT[name](inplace=True)


class ConvBNAct(nn.Sequential):
    """kxk conv (no bias) + BatchNorm + optional activation."""

    def __init__(self, p: Part):
        layers = [nn.Conv2d(p.cin, p.cout, p.kernel, p.stride, p.kernel // 2, groups=p.groups, bias=False),
                  nn.BatchNorm2d(p.cout, eps=BN_EPS)]
        if p.act is not None:
            layers.append(act_layer(p.act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel gate: global pool, 1x1 conv down, ReLU, 1x1 conv up, (hard-)sigmoid."""

    def __init__(self, p: Part):
        super().__init__()
        self.fc1 = nn.Conv2d(p.cin, p.hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(p.hidden, p.cin, 1)
        self.gate = _GATE[p.gate]()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class GlobalPool(nn.Module):
    def forward(self, x):
        return x.mean((2, 3))


class Linear(nn.Linear):
    """[dropout] + linear [+ act]: the head's FC layers (parameters as in nn.Linear)."""

    def __init__(self, p: Part):
        super().__init__(p.cin, p.cout)
        self.dropout = nn.Dropout(p.dropout) if p.dropout is not None else None
        self.act = act_layer(p.act) if p.act else None

    def forward(self, x):
        x = super().forward(self.dropout(x) if self.dropout is not None else x)
        return self.act(x) if self.act is not None else x


_BUILD = {"conv": ConvBNAct, "se": SqueezeExcite, "pool": lambda p: GlobalPool(), "linear": Linear}


def build_part(p: Part) -> nn.Module:
    return _BUILD[p.kind](p)


class Layer(nn.Module):
    """A block or the head: its parts in order, each a child named by its path (+ identity)."""

    def __init__(self, parts: tuple[Part, ...], residual: bool = False):
        super().__init__()
        self.residual = residual
        for p in parts:
            self.add_module(p.path, build_part(p))

    def forward(self, x):
        y = x
        for m in self.children():
            y = m(y)
        return x + y if self.residual else y


def build_layer(layer: Stem | Block | Head, cin: int, num_classes: int = 0) -> nn.Module:
    """The module of one layer; the stem is its single conv part (state-dict keys `stem.0.*`)."""
    parts = layer_parts(layer, cin, num_classes)
    if isinstance(layer, Stem):
        return build_part(parts[0])
    return Layer(parts, isinstance(layer, Block) and layer.residual)


class Net(nn.Module):
    """A network built from an Arch; `arch` is kept so the module can be exported or trimmed."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self.stem = build_layer(arch.stem, arch.in_channels)
        self.blocks = nn.Sequential(*(build_layer(b, b.in_) for b in arch.blocks))
        self.head = build_layer(arch.head, arch.last_channels, arch.num_classes)
        if not next(self.parameters()).is_meta:  # a shell (the supernet's) has no values to initialise
            init_weights(self)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def init_weights(model: nn.Module) -> None:
    """MobileNetV3's initialisation (BatchNorm's is torch's default); the supernet's weights start the same way."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build_model(arch: Arch) -> Net:
    return Net(arch)
