"""The weight-sharing supernet: exact slices and the importance sort."""
import random

import torch

from nas.supernet.elastic import named_tensors, sort_channels
from nas.supernet.model import Supernet
from search_spaces.proxy import for_proxy
from search_spaces.space import STAGE_DECISIONS, get_space

SPACE = get_space("mnv3_small")


def scrambled_supernet(seed=0) -> Supernet:
    """A supernet whose every tensor (BatchNorm statistics included) is random, so a slice taken
    from the wrong place changes the output."""
    torch.manual_seed(seed)
    model = Supernet(SPACE, 10, 16)
    with torch.no_grad():
        for name, t in named_tensors(model).items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.3)
    return model.eval()


def test_a_slice_and_its_exported_subnet_compute_the_same():
    model = scrambled_supernet()
    rng = random.Random(1)
    cands = [model.extreme(max), model.extreme(min)] + [model.candidate(SPACE.sample(rng)) for _ in range(8)]
    # every choice of every kind of decision (op, kernel, SE, activation, skip, width, depth) is exercised
    covered = {(name.split(".")[1], choice) for c in cands for name, choice in SPACE.describe(c.vector).items()}
    offered = {(d.name.split(".")[1], choice) for d in SPACE.decisions() for choice in d.choices}
    assert covered == offered and {name for name, _ in covered} == set(STAGE_DECISIONS)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        for cand in cands:
            expected = model(x, cand)
            assert torch.allclose(model.subnet(cand).eval()(x), expected, atol=1e-5)
            # the subnet is the builder's own network for the candidate's proxy IR
            assert model.subnet(cand).arch == for_proxy(SPACE.decode(list(cand.vector)).replace(num_classes=10), 16)
    largest, smallest = (sum(p.numel() for p in model.subnet(c).parameters()) for c in cands[:2])
    assert largest > max(sum(p.numel() for p in model.subnet(c).parameters()) for c in cands[2:])
    assert smallest < min(sum(p.numel() for p in model.subnet(c).parameters()) for c in cands[2:])


def test_widths_share_a_prefix_and_kernels_their_centre():
    model = scrambled_supernet()
    sub = model.subnet(model.extreme(min))
    state = named_tensors(model)
    dw = "stages.1.0.dwsep.dw.0.weight"  # the smallest candidate is depthwise-separable, kernel 3
    assert torch.equal(sub.state_dict()["blocks.1.dw.0.weight"], state[dw][:sub.arch.blocks[1].in_, :, 2:5, 2:5])
    # the largest candidate uses every tensor of the stem, the head and the mbconv layers whole
    largest = model.subnet(model.extreme(max)).state_dict()
    whole = {k: v for k, v in state.items() if not k.startswith("stages.") or k.split(".")[3] == "mbconv"}
    assert len(largest) == len(whole)
    for k, v in largest.items():
        assert torch.equal(v, whole[model.supernet_key(model.extreme(max), k)]), k


def test_the_importance_sort_keeps_the_largest_network_and_orders_filters():
    model = scrambled_supernet()
    x = torch.randn(2, 3, 16, 16)
    before = model(x, model.extreme(max))
    sets = list(model.channel_sets())
    sort_channels(model, sets)
    torch.testing.assert_close(model(x, model.extreme(max)), before, atol=1e-5, rtol=1e-5)
    tensors = named_tensors(model)
    for _, makers in sets:
        importance = sum(tensors[k].abs().flatten(1).sum(1) for k in makers)
        assert (importance[:-1] >= importance[1:]).all()
    assert len(sets) > len(SPACE.stages)  # widths and expanded channels
