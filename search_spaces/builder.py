"""IR -> torch.nn.Module, one small class per kind of layer (as in timm's MobileNetV3)."""
from __future__ import annotations

import torch
from torch import nn

from search_spaces.ir import SE, Arch, Block, Head, Stem

_ACT = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish}
_GATE = {"hsigmoid": nn.Hardsigmoid, "sigmoid": nn.Sigmoid}
BN_EPS = 1e-3  # MobileNetV3's value; the ONNX exporter folds BN with the module's own eps


def act_layer(name: str) -> nn.Module:
    return _ACT[name](inplace=True)


class ConvBNAct(nn.Sequential):
    """kxk conv (no bias) + BatchNorm + optional activation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1,
                 act: str | None = None):
        layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=BN_EPS)]
        if act is not None:
            layers.append(act_layer(act))
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Channel gate: global pool, 1x1 conv down, ReLU, 1x1 conv up, (hard-)sigmoid."""

    def __init__(self, channels: int, se: SE):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, se.squeeze, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(se.squeeze, channels, 1)
        self.gate = _GATE[se.gate]()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class InvertedResidual(nn.Module):
    """MBConv: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 linear project (+ identity)."""

    def __init__(self, b: Block):
        super().__init__()
        self.residual = b.residual
        self.expand = ConvBNAct(b.in_, b.mid, 1, act=b.act) if b.mid != b.in_ else nn.Identity()
        self.dw = ConvBNAct(b.mid, b.mid, b.kernel, b.stride, groups=b.mid, act=b.act)
        self.se = SqueezeExcite(b.mid, b.se) if b.se else nn.Identity()
        self.project = ConvBNAct(b.mid, b.out, 1)

    def forward(self, x):
        y = self.project(self.se(self.dw(self.expand(x))))
        return x + y if self.residual else y


class ConvBlock(nn.Module):
    """Plain kxk conv + BN + act [+ SE] (+ identity): MnasNet's 'regular conv' op."""

    def __init__(self, b: Block):
        super().__init__()
        self.residual = b.residual
        self.conv = ConvBNAct(b.in_, b.out, b.kernel, b.stride, act=b.act)
        self.se = SqueezeExcite(b.out, b.se) if b.se else nn.Identity()

    def forward(self, x):
        y = self.se(self.conv(x))
        return x + y if self.residual else y


class ClassifierHead(nn.Module):
    """mnv2: 1x1 conv, pool, dropout, linear. mnv3: 1x1 conv, pool, linear (no BN), act,
    dropout, linear."""

    def __init__(self, h: Head, cin: int, num_classes: int):
        super().__init__()
        self.conv = ConvBNAct(cin, h.conv, 1, act=h.act)
        if h.type == "mnv3":
            self.fc = nn.Linear(h.conv, h.hidden)
            self.fc_act = act_layer(h.act)
            width = h.hidden
        else:
            self.fc, self.fc_act = nn.Identity(), nn.Identity()
            width = h.conv
        self.dropout = nn.Dropout(h.dropout)
        self.classifier = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.conv(x).mean((2, 3))
        return self.classifier(self.dropout(self.fc_act(self.fc(x))))


def build_block(b: Block) -> nn.Module:
    return InvertedResidual(b) if b.op == "ir" else ConvBlock(b)


def build_stem(s: Stem, in_channels: int) -> nn.Module:
    return ConvBNAct(in_channels, s.out, s.kernel, s.stride, act=s.act)


class Net(nn.Module):
    """A network built from an Arch; `arch` is kept so the module can be exported or trimmed."""

    def __init__(self, arch: Arch):
        super().__init__()
        self.arch = arch
        self.stem = build_stem(arch.stem, arch.in_channels)
        self.blocks = nn.Sequential(*(build_block(b) for b in arch.blocks))
        self.head = ClassifierHead(arch.head, arch.last_channels, arch.num_classes)
        _init_weights(self)

    def forward(self, x):
        return self.head(self.blocks(self.stem(x)))


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


def build_model(arch: Arch) -> Net:
    return Net(arch)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def count_module_macs(model: Net, resolution: int | None = None) -> int:
    """MACs of every Conv2d and Linear during one forward pass (hooks on the real module)."""
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        k = m.kernel_size[0] * m.kernel_size[1]
        total += out.numel() // out.shape[0] * (m.in_channels // m.groups) * k

    def linear_hook(m, inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    hooks = [m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
             for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        r = resolution or model.arch.resolution
        model(torch.zeros(1, model.arch.in_channels, r, r))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return total
