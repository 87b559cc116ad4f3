"""The supernet: every layer of a search space at its largest choice, serving any candidate.

Layout: `stem`, `stages[s][i][kind]`, `head`. Layer i of stage s holds one set of weights per
block kind the space offers there (`anatomy.block_kind`: mbconv, dwsep, conv), each built by the
project's builder from the largest block of that kind. Every expansion ratio of the mbconv kind
shares one set (the expanded channels are a prefix), as do all widths, kernels and SE sizes; the
plain conv cannot be a slice of an inverted residual, and a depthwise-separable block filters its
input channels where an mbconv filters expanded ones, so each keeps its own. Activations and the
identity skip are switches, depth takes the first d layers of a stage.

A candidate runs as the builder's own network for its IR (`build_model` on the meta device: no
memory, no init) called with views of the shared tensors (`torch.func.functional_call`), so
the supernet's forward and an exported subnet are the same code on the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from torch import nn
from torch.func import functional_call

from nas.supernet.elastic import named_tensors, slice_to
from search_spaces.anatomy import block_kind, block_parts, filters, head_parts, slices
from search_spaces.builder import Net, build_layer, build_model, init_weights
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy
from search_spaces.space import Space


@dataclass(frozen=True)
class Candidate:
    """A decision vector, its proxy IR (the supernet's classes and resolution) and, for each
    block of the IR, the (stage, layer) of the supernet that holds its weights."""

    vector: tuple[int, ...]
    arch: Arch
    places: tuple[tuple[int, int], ...]


class Supernet(nn.Module):
    def __init__(self, space: Space, num_classes: int, resolution: int):
        super().__init__()
        self.space, self.num_classes, self.resolution = space, num_classes, resolution
        self.largest = space.slots()
        self.stem = build_layer(space.stem, 3)
        self.stages = nn.ModuleList(
            nn.ModuleList(nn.ModuleDict({kind: build_layer(b, b.in_) for kind, b in layer.items()})
                          for layer in stage) for stage in self.largest)
        self.head_in = max(b.out for layer in self.largest[-1] for b in layer.values())
        self.head = build_layer(space.head, self.head_in, num_classes)
        init_weights(self)

    # ---- candidates -------------------------------------------------------------
    def candidate(self, vector) -> Candidate:
        space = self.space
        vector = space.check(vector)
        arch = for_proxy(space.decode(vector).replace(num_classes=self.num_classes), self.resolution)
        return Candidate(tuple(vector), arch, space.places(vector))

    def extreme(self, pick=max) -> Candidate:
        """The largest (`pick=max`) or smallest (`pick=min`) candidate: every decision at the
        choice that uses most (least) of the shared weights."""
        return self.candidate([pick(range(len(d.choices)), key=lambda c, n=n: self.space.choice_size(n, c))
                               for n, d in enumerate(self.space.decisions())])

    def supernet_key(self, cand: Candidate, key: str) -> str:
        """The supernet's entry holding the subnet's state-dict entry `key`."""
        layer, index, rest = (key.split(".", 2) + ["", ""])[:3]
        if layer != "blocks":
            return key
        s, i = cand.places[int(index)]
        return f"stages.{s}.{i}.{block_kind(cand.arch.blocks[int(index)])}.{rest}"

    def weights(self, cand: Candidate, shapes: dict[str, torch.Size]) -> dict[str, torch.Tensor]:
        """Views of the shared tensors for a subnet whose state-dict shapes are `shapes`."""
        own = named_tensors(self)
        return {k: slice_to(own[self.supernet_key(cand, k)], shape) for k, shape in shapes.items()}

    def forward(self, x: torch.Tensor, cand: Candidate) -> torch.Tensor:
        net, shapes = _shell(cand.arch)
        net.train(self.training)
        return functional_call(net, self.weights(cand, shapes), (x,))

    @torch.no_grad()
    def subnet(self, cand: Candidate) -> Net:
        """The candidate as a stand-alone network (the builder's, for its proxy IR) with copies of
        its slice of the weights."""
        net = build_model(cand.arch)
        state = net.state_dict()
        net.load_state_dict({k: v.clone() for k, v in self.weights(cand, {k: v.shape for k, v in state.items()}).items()})
        return net.to(next(self.parameters()).device)

    # ---- importance sort ----------------------------------------------------------
    def channel_sets(self):
        """(entries, filter keys) of each elastic channel set (see `elastic.sort_channels`): every
        stage's width (its layers' outputs and the inputs of the layers after them, residuals
        included) and every mbconv layer's expanded channels."""
        for s, stage in enumerate(self.largest):
            entries, makers = [], []
            for i, layer in enumerate(stage):
                for kind, block in layer.items():
                    key, parts = f"stages.{s}.{i}.{kind}", block_parts(block)
                    entries += slices(parts, key, "out") + (slices(parts, key, "in") if i else [])
                    makers += filters(parts, key, "out")
                    if filters(parts, key, "mid"):
                        yield slices(parts, key, "mid"), filters(parts, key, "mid")
            if s + 1 < len(self.largest):
                for kind, block in self.largest[s + 1][0].items():
                    entries += slices(block_parts(block), f"stages.{s + 1}.0.{kind}", "in")
            else:
                entries += slices(head_parts(self.space.head, self.head_in, self.num_classes), "head", "in")
            yield entries, makers


@lru_cache(maxsize=64)
def _shell(arch: Arch) -> tuple[Net, dict[str, torch.Size]]:
    """The builder's network for `arch` on the meta device (no storage) and its state-dict shapes.
    Cached: building one costs about as much as a forward pass, and the largest and the smallest
    candidate run every training step."""
    with torch.device("meta"):
        net = build_model(arch)
    return net, {k: v.shape for k, v in net.state_dict().items()}
