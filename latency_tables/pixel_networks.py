"""Whole networks with published Pixel 1 latencies (TF-Lite, float, one large core), built as
the timed checkpoints were.

`data/pixel1_networks.csv` lists them, one row per network with its source: the MobileNetV2
grid (widths 0.35-1.4, inputs 96-224) of the slim README, the MnasNet-A1 grid of the
tensorflow/tpu README, MobileNetV3 of the slim README (a newer TF-Lite: MobileNetV2 ran faster
there), and the two paper figures `pixel_cpu` was first calibrated on. They calibrate and
validate the end-to-end behaviour of the `pixel_cpu` model (`latency_tables.pixel`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

from search_spaces.anatomy import with_channels
from search_spaces.ir import Arch
from search_spaces.references import make_divisible, reference

NETWORKS_FILE = Path(__file__).resolve().parent / "data" / "pixel1_networks.csv"
#: the published checkpoints whose width multiplier keeps each block's expansion ratio
RATIO_SCALED = ("mobilenet_v2", "mnasnet_a1")


@dataclass(frozen=True)
class PublishedNetwork:
    set: str            # which published table the figure comes from
    arch: Arch          # at its width and resolution
    width: float
    ms: float           # published latency
    mmacs: float        # published multiply-adds (millions; NaN where not given)
    source: str

    @property
    def label(self) -> str:
        return f"{self.arch.name}@{self.arch.resolution}"


def scale_width_by_ratio(arch: Arch, multiplier: float) -> Arch:
    """`arch` at a width multiplier as slim's MobileNetV2 and tensorflow/tpu's MnasNet scale it:
    every block's input and output widths rounded to a multiple of 8, its expanded width the
    rounded input times the block's expansion ratio (not rounded on its own, as
    `search_spaces.references.scale_width` does), the SE squeeze the same fraction of the block
    input, and a MobileNetV2 head's 1x1 conv never narrower than at 1.0. This reproduces the
    published multiply-adds of the MobileNetV2 checkpoints exactly."""
    def c(v: int) -> int:
        return make_divisible(v * multiplier)

    stem = replace(arch.stem, out=c(arch.stem.out))
    blocks, cin = [], stem.out
    for b in arch.blocks:
        out = c(b.out)
        mid = cin * b.mid // b.in_
        se = b.se and replace(b.se, squeeze=max(1, cin * b.se.squeeze // b.in_))
        blocks.append(replace(with_channels(b, in_=cin, out=out, mid=mid), se=se, residual=b.residual and cin == out))
        cin = out
    head = replace(arch.head, conv=make_divisible(arch.head.conv * max(1.0, multiplier)))
    return replace(arch, stem=stem, blocks=tuple(blocks), head=head, name=f"{arch.name}_{multiplier:g}")


def published_arch(network: str, width: float, resolution: int) -> Arch:
    base = reference(network)
    if width == 1.0:
        arch = base
    elif network in RATIO_SCALED:
        arch = scale_width_by_ratio(base, width)
    else:
        arch = reference(network, width)
    return replace(arch, resolution=resolution)


def calibrates(network: PublishedNetwork) -> bool:
    """Whether `pixel_cpu`'s whole-network fit uses this network: the MobileNetV2 grid at its
    largest and smallest inputs (224 and 96 px, every width) and the two paper figures. The
    rest (MobileNetV2 at 128-192 px, every MnasNet-A1 and MobileNetV3) validate it."""
    return network.set == "papers" or (network.set == "mobilenet_v2_grid" and network.arch.resolution in (96, 224))


def published_networks(sets: tuple[str, ...] | None = None) -> list[PublishedNetwork]:
    """The published networks of `sets` (all when None), in the file's order."""
    df = pd.read_csv(NETWORKS_FILE)
    if sets is not None:
        df = df[df["set"].isin(sets)]
    return [PublishedNetwork(r.set, published_arch(r.network, float(r.width), int(r.resolution)), float(r.width),
                             float(r.ms), float(r.mmacs), r.source) for r in df.itertuples()]
