"""How one stored tensor serves every smaller choice, and the sort that makes its prefix worth serving.

A smaller choice takes the first channels of every channel axis and the centre of the kernel
(Once-for-All's elastic width and kernel, without its learned kernel transform). Both are views,
so a candidate's gradients land on the shared tensors and an exported subnet is a copy of them.
Because a slice is a prefix, Once-for-All sorts channels by importance so that the prefix holds
the filters that matter most; a sort permutes every tensor that holds a channel set, so the
largest network computes exactly what it computed before.
"""
from __future__ import annotations

import torch
from torch import nn

KERNEL_AXES = (2, 3)  # of a 4-d conv weight


def slice_to(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The view of `t` with `shape`: leading entries of channel axes, centre of kernel axes."""
    if t.ndim != len(shape) or any(n > m for n, m in zip(shape, t.shape)):
        raise ValueError(f"a tensor of shape {tuple(t.shape)} cannot serve shape {tuple(shape)}")
    index = []
    for axis, (n, m) in enumerate(zip(shape, t.shape)):
        start = (m - n) // 2 if t.ndim == 4 and axis in KERNEL_AXES else 0
        index.append(slice(start, start + n))
    return t[tuple(index)]


def named_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    return dict(model.named_parameters()) | dict(model.named_buffers())


@torch.no_grad()
def sort_channels(model: nn.Module, channel_sets, optimizer: torch.optim.Optimizer | None = None) -> None:
    """Reorder each channel set by importance (L1 norm of the filters that create it), descending.

    `channel_sets`: (entries, filter keys) pairs, entries being the (state-dict key, axis) of every
    tensor that holds the set. The optimizer's per-parameter state (momentum) moves with its
    parameter, so training continues as if the channels had always been in this order.
    """
    tensors = named_tensors(model)
    for entries, filter_keys in channel_sets:
        importance = sum(tensors[k].abs().flatten(1).sum(1) for k in filter_keys)
        order = torch.argsort(importance, descending=True, stable=True)
        for key, axis in entries:
            t = tensors[key]
            if t.shape[axis] != len(order):
                raise ValueError(f"{key} holds {t.shape[axis]} channels on axis {axis}, its set {len(order)}")
            t.copy_(t.index_select(axis, order))
            state = optimizer.state.get(t, {}) if optimizer is not None else {}
            for v in state.values():
                if torch.is_tensor(v) and v.shape == t.shape:
                    v.copy_(v.index_select(axis, order))
