"""Search spaces: 200 random samples per space build, run at 32x32 and round-trip unchanged."""
import math
import random

import pytest
import torch

from module_counts import count_module_macs, count_params
from search_spaces.builder import build_model
from search_spaces.counting import count
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy
from search_spaces.references import reference
from search_spaces.space import SPACES, get_space


@pytest.mark.parametrize("name", sorted(SPACES))
def test_random_samples_build_run_and_round_trip(name):
    space = get_space(name)
    rng = random.Random(1234)
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    seen, canonical = set(), set()
    with torch.no_grad():
        for i in range(200):
            arch = space.decode(space.sample(rng))
            seen.add(arch.to_string())
            canonical.add(tuple(space.encode(arch)))
            assert Arch.from_json(arch.to_json()) == arch
            assert Arch.from_string(arch.to_string()) == arch
            assert Arch.from_string(arch.to_string()).to_string() == arch.to_string()
            model = build_model(arch).eval()
            assert model(x).shape == (2, space.num_classes)
            if i % 20 == 0:  # exact counting against the module on a subset (hooks are slower)
                assert count(arch)["params"] == count_params(model)
                assert count(arch, 32)["macs"] == count_module_macs(model, 32)
    # distinct networks <-> distinct canonical vectors (a layer-wise space repeats networks)
    assert len(seen) == len(canonical) > 150


@pytest.mark.parametrize("name", sorted(SPACES))
def test_encode_decode(name):
    space = get_space(name)
    rng = random.Random(7)
    for _ in range(10):
        vector = space.sample(rng)
        arch = space.decode(vector)
        assert space.decode(space.encode(arch)) == arch
    with pytest.raises(UserError, match="not in space"):
        space.encode(reference("mobilenet_v2"))


def test_space_structure():
    space = get_space("mnv3")
    names = [d.name for d in space.decisions()]
    assert len(names) == 6 * 7 and names[:3] == ["s0.op", "s0.kernel", "s0.se"]
    assert math.prod(len(d.choices) for d in space.decisions()) > 10**17
    widths = {d.name: d.choices for d in space.decisions() if d.name.endswith("width")}
    assert widths["s2.width"] == (32, 40, 48) and widths["s0.width"] == (16, 24)
    depths = {d.name: d.choices for d in space.decisions() if d.name.endswith("depth")}
    assert depths["s0.depth"] == (1, 2) and depths["s3.depth"] == (3, 4, 5)


def test_decisions_apply_per_stage():
    space = get_space("mnv3")
    vector = [0] * len(space.decisions())
    choice = {d.name: d.choices[v] for d, v in zip(space.decisions(), vector)}
    arch = space.decode(vector)
    assert choice["s0.op"] == "mbconv3" and all(b.kernel == 3 and b.se is None for b in arch.blocks)
    # stage 3: depth choice index 2 is base+1 = 5 layers, the first one stride 2
    vector[space.position(3, "depth")] = 2
    arch = space.decode(vector)
    strides = [b.stride for b in arch.blocks]
    assert strides == [1, 2, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]


def test_mutate_changes_exactly_one_decision():
    space = get_space("mnv3")
    rng = random.Random(3)
    for _ in range(50):
        v = space.sample(rng)
        w = space.mutate(v, rng)
        assert sum(a != b for a, b in zip(v, w)) == 1
        space.decode(w)


def test_bad_vectors_and_names():
    space = get_space("mnv3")
    with pytest.raises(UserError, match="entries"):
        space.decode([0, 1])
    with pytest.raises(UserError, match="s0.op"):
        space.decode([9] + [0] * (len(space.decisions()) - 1))
    with pytest.raises(UserError, match="unknown search space"):
        get_space("mnv4")


def test_proxy_transform():
    arch = reference("mobilenet_v3_large")
    proxy = for_proxy(arch, 32)
    assert proxy.resolution == 32 and proxy.stem.stride == 1
    assert sum(b.stride == 2 for b in proxy.blocks) == sum(b.stride == 2 for b in arch.blocks) - 1
    assert count(proxy)["params"] == count(arch)["params"]
    assert for_proxy(arch, 224) == arch
    with torch.no_grad():
        out = build_model(proxy).eval()(torch.zeros(1, 3, 32, 32))
    assert out.shape == (1, 1000)
