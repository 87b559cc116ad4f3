"""The supernet: every layer of a search space at its largest choice, serving any candidate.

Layout: `stem`, `stages[s][i][key]`, `head`. Layer i of stage s holds several sets of weights,
each built by the project's builder from the largest block it serves; `sharing` says which
blocks share a set (`weight_key`):

- `ofa` (Once-for-All, the default): one set per block kind the space offers there
  (`anatomy.block_kind`: mbconv, dwsep, conv), the space's own `slots()`. Every expansion
  ratio and kernel of the mbconv kind is a slice of one set (the expanded channels are a
  prefix, a smaller kernel the centre), as are all widths and SE sizes; the plain conv cannot
  be a slice of an inverted residual, and a depthwise-separable block filters its input
  channels where an mbconv filters expanded ones, so each keeps its own.
- `spos` (single-path one-shot): one set per op (kind, expansion ratio, kernel), so no op of a
  layer reads another's weights. Widths and SE sizes stay slices of their op's set, as in
  SPOS's channel search.

Activations and the identity skip are switches, depth takes the first d layers of a stage.

A candidate runs as the builder's own network for its IR (`build_model` on the meta device: no
memory, no init) called with views of the shared tensors (`torch.func.functional_call`), so
the supernet's forward and an exported subnet are the same code on the same numbers.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Iterator

import torch
from torch import nn
from torch.func import functional_call

from nas.supernet.elastic import named_tensors, slice_to
from search_spaces.anatomy import block_kind, block_parts, filters, head_parts, slices
from search_spaces.builder import Net, build_layer, build_model, init_weights
from search_spaces.ir import Arch, Block
from search_spaces.proxy import for_proxy
from search_spaces.space import Slot, Space

SHARING = ("ofa", "spos")


def weight_key(b: Block, sharing: str) -> str:
    """The name of the weight set of its layer that serves block `b` (see the module docstring)."""
    kind = block_kind(b)
    if sharing == "ofa":
        return kind
    expansion = f"_e{b.mid / b.in_:g}".replace(".", "p") if kind == "mbconv" else ""  # a module name has no dot
    return f"{kind}{expansion}_k{b.kernel}"


def extreme_vector(space: Space, pick=max) -> list[int]:
    """Every decision at the choice that uses most (`pick=max`) or least (`min`) of the shared weights."""
    return [pick(range(len(d.choices)), key=lambda c, n=n: space.choice_size(n, c))
            for n, d in enumerate(space.decisions())]


def placed_blocks(space: Space) -> Iterator[tuple[Slot, Block]]:
    """(slot, block) for every block any network of the space holds, with repeats. The latency
    groups enumerate every block (a network's blocks are its groups' blocks, in order); the j-th
    block of a group lands on one slot in every network, the one it takes in the largest."""
    groups, _ = space.layer_groups()
    vector = extreme_vector(space, max)
    places, slot = iter(space.places(vector)), {}
    for g, group in enumerate(groups):
        for j in range(len(group.blocks[tuple(vector[c] for c in group.columns)])):
            slot[g, j] = next(places)
    for g, group in enumerate(groups):
        for blocks in group.blocks.values():
            for j, b in enumerate(blocks):
                yield slot[g, j], b


def covering(a: Block, b: Block) -> Block:
    """The smallest block that `a` and `b` are both slices of (activation and skip are `a`'s: switches)."""
    se = max((x for x in (a.se, b.se) if x is not None), key=lambda x: x.squeeze, default=None)
    return replace(a, in_=max(a.in_, b.in_), out=max(a.out, b.out), mid=max(a.mid, b.mid),
                   kernel=max(a.kernel, b.kernel), se=se)


def weight_sets(space: Space, sharing: str) -> list[list[dict[str, Block]]]:
    """For each stage and layer slot, {weight key: the largest block the set serves}."""
    if sharing == "ofa":
        return space.slots()
    sets: list[list[dict[str, Block]]] = [[{} for _ in stage] for stage in space.slots()]
    for (s, i), b in placed_blocks(space):
        key = weight_key(b, sharing)
        sets[s][i][key] = covering(sets[s][i][key], b) if key in sets[s][i] else b
    return sets


@dataclass(frozen=True)
class Candidate:
    """A decision vector, its proxy IR (the supernet's classes and resolution) and, for each
    block of the IR, the (stage, layer) of the supernet that holds its weights."""

    vector: tuple[int, ...]
    arch: Arch
    places: tuple[tuple[int, int], ...]


class Supernet(nn.Module):
    def __init__(self, space: Space, num_classes: int, resolution: int, sharing: str = "ofa"):
        super().__init__()
        if sharing not in SHARING:
            raise ValueError(f"sharing must be one of {', '.join(SHARING)}, got {sharing!r}")
        self.space, self.num_classes, self.resolution, self.sharing = space, num_classes, resolution, sharing
        self.largest = weight_sets(space, sharing)
        self.stem = build_layer(space.stem, 3)
        self.stages = nn.ModuleList(
            nn.ModuleList(nn.ModuleDict({key: build_layer(b, b.in_) for key, b in layer.items()})
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
        return self.candidate(extreme_vector(self.space, pick))

    def supernet_key(self, cand: Candidate, key: str) -> str:
        """The supernet's entry holding the subnet's state-dict entry `key`."""
        layer, index, rest = (key.split(".", 2) + ["", ""])[:3]
        if layer != "blocks":
            return key
        s, i = cand.places[int(index)]
        return f"stages.{s}.{i}.{weight_key(cand.arch.blocks[int(index)], self.sharing)}.{rest}"

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
                for name, block in layer.items():
                    key, parts = f"stages.{s}.{i}.{name}", block_parts(block)
                    entries += slices(parts, key, "out") + (slices(parts, key, "in") if i else [])
                    makers += filters(parts, key, "out")
                    if filters(parts, key, "mid"):
                        yield slices(parts, key, "mid"), filters(parts, key, "mid")
            if s + 1 < len(self.largest):
                for name, block in self.largest[s + 1][0].items():
                    entries += slices(block_parts(block), f"stages.{s + 1}.0.{name}", "in")
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
