"""The block anatomy names exactly the built network's state-dict entries, with their channel axes."""
import random

import pytest

from search_spaces.anatomy import block_parts, has_expand, head_parts, kind_name, stem_parts, with_channels
from search_spaces.builder import build_model
from search_spaces.ir import SE, Block
from search_spaces.references import REFERENCES, reference
from search_spaces.space import get_space


def archs():
    rng = random.Random(5)
    space = get_space("mnv3")
    return [reference(n) for n in sorted(REFERENCES)] + [space.decode(space.sample(rng)) for _ in range(10)]


def layers(arch):
    yield "stem", stem_parts(arch.stem, arch.in_channels)
    for i, b in enumerate(arch.blocks):
        yield f"blocks.{i}", block_parts(b)
    yield "head", head_parts(arch.head, arch.last_channels, arch.num_classes)


@pytest.mark.parametrize("arch", archs(), ids=lambda a: a.name or a.to_string()[-40:])
def test_parts_name_every_entry_with_its_channel_axes(arch):
    state = build_model(arch).state_dict()
    named = {}
    for prefix, parts in layers(arch):
        for part in parts:
            for p in part.params:
                shape = state[part.key(prefix, p.name)].shape
                if p.out_axis is not None:
                    assert shape[p.out_axis] == part.cout, (prefix, part.path, p.name)
                if p.in_axis is not None:
                    assert shape[p.in_axis] == part.cin, (prefix, part.path, p.name)
                named[part.key(prefix, p.name)] = shape
    # BN's num_batches_tracked counts steps, it has no channels
    assert set(named) == {k for k in state if not k.endswith("num_batches_tracked")}


def test_channel_sets_and_tied_mid():
    mb = Block("ir", 16, 24, 64, 3, 2, "relu", SE(16))
    dw = Block("ir", 16, 16, 16, 3, 1, "relu", residual=True)
    conv = Block("conv", 16, 24, 24, 5, 1, "hswish", SE(8))
    assert [p.path for p in block_parts(mb)] == ["expand", "dw", "se", "project"]
    assert [(p.in_set, p.out_set) for p in block_parts(mb)] == [("in", "mid"), ("mid", "mid"), ("mid", "mid"),
                                                                 ("mid", "out")]
    assert [p.path for p in block_parts(dw)] == ["dw", "project"] and not has_expand(dw)
    assert block_parts(dw)[0].in_set == "in"  # a depthwise-separable conv works on its input channels
    assert [p.path for p in block_parts(conv)] == ["conv", "se"] and block_parts(conv)[1].in_set == "out"
    assert [kind_name(b) for b in (mb, dw, conv)] == ["mbconv3x3", "dwsep3x3", "conv5x5"]
    # the tied mid follows its set; a free mid keeps its value unless given
    assert with_channels(dw, in_=8, out=8).mid == 8
    assert with_channels(conv, out=32).mid == 32
    assert with_channels(mb, in_=8).mid == 64 and with_channels(mb, mid=40).mid == 40
