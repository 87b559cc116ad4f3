"""Counting by hooks on the real module: the oracle the IR-only counts are checked against."""
import torch
from torch import nn

from search_spaces.builder import Net


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
