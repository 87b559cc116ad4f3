"""The one documented IR transform for small proxy images (CIFAR-10 and digits at 32x32).

At 32x32 a MobileNetV3 that downsamples 32x ends at 1x1; training on such maps tells
little about the architecture. `for_proxy` turns the earliest stride-2 layers (stem
first, then blocks) into stride 1 until the last feature map is at least 4x4, and sets
the resolution. At 224 nothing changes. Latency is always looked up on the original.
"""
from __future__ import annotations

from dataclasses import replace

from search_spaces.counting import layer_counts
from search_spaces.ir import Arch

MIN_FINAL_HW = 4


def for_proxy(arch: Arch, resolution: int) -> Arch:
    arch = arch.replace(resolution=resolution)
    stem, blocks = arch.stem, list(arch.blocks)
    i = -1  # -1 is the stem
    while layer_counts(arch)[-1].in_shape[1] < MIN_FINAL_HW and i < len(blocks):
        if i == -1:
            stem = replace(stem, stride=1)
        else:
            blocks[i] = replace(blocks[i], stride=1)
        i += 1
        arch = arch.replace(stem=stem, blocks=tuple(blocks))
    return arch
