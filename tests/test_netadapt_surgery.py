"""Channel surgery: zero channels removed change nothing; other cuts change only their unit."""
import pytest
import torch

from netadapt.surgery import channel_scores, keep_indices, resize, slices, trim, units, widths
from search_spaces.builder import Net
from search_spaces.ir import Arch

# every kind of block: dwsep residual, expand+SE, expand+SE residual, conv+SE residual,
# dwsep with stride 2, expand residual; mnv3 head
ARCH = Arch.from_string(
    "r32_n10|stem:c16_k3_s2_hswish|ir:i16_o16_m16_k3_s1_relu_r|ir:i16_o24_m64_k3_s2_relu_se16h"
    "|ir:i24_o24_m72_k5_s1_hswish_se24h_r|conv:i24_o24_m24_k3_s1_relu_se8s_r"
    "|ir:i24_o32_m24_k3_s2_relu|ir:i32_o32_m96_k3_s1_hswish_r|head:mnv3_c64_f48_hswish")



def random_net(arch: Arch, seed: int = 0) -> Net:
    """A Net whose BN statistics and affine terms are random too, so every tensor matters."""
    torch.manual_seed(seed)
    net = Net(arch)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_var"):
                t.uniform_(0.5, 2.0)
            elif t.is_floating_point():
                t.normal_(0, 0.3)
    return net.eval()


def test_units_cover_widths_and_mids():
    names = [u.name for u in units(ARCH)]
    assert names == ["width:stem-b0", "width:b1-b3", "width:b4-b5", "mid:b1", "mid:b2", "mid:b5"]
    u = units(ARCH)[1]
    assert (u.producer, u.blocks, u.consumer, u.width) == (1, (2, 3), 4, 24)


def test_resize_keeps_structure_and_validity():
    mid_b1 = next(u for u in units(ARCH) if u.name == "mid:b1")
    assert resize(ARCH, mid_b1, 16) is None  # mid == in would drop b1's expand conv
    assert [w for w, _ in widths(ARCH, mid_b1)] == [56, 48, 40, 32, 24, 8]
    grp = units(ARCH)[1]
    new = resize(ARCH, grp, 16)
    assert [b.out for b in new.blocks[1:4]] == [16, 16, 16]
    assert new.blocks[3].mid == 16 and new.blocks[4].in_ == new.blocks[4].mid == 16  # conv; dwsep consumer


@pytest.mark.parametrize("index", range(6))
def test_removing_zero_channels_leaves_outputs_unchanged(index):
    unit = units(ARCH)[index]
    net = random_net(ARCH, seed=index)
    drop = torch.randperm(unit.width, generator=torch.Generator().manual_seed(index))[:8]
    with torch.no_grad():
        state = net.state_dict()
        for key, axis in slices(ARCH, unit):
            if "running" not in key:  # weights only: conv/SE filters and biases, BN affine terms
                state[key].index_fill_(axis, drop, 0.0)
    x = torch.randn(2, 3, 32, 32)
    before = net(x)
    assert set(keep_indices(net, unit, unit.width - 8).tolist()).isdisjoint(drop.tolist())
    small = trim(net, unit, unit.width - 8).eval()
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in net.parameters())
    torch.testing.assert_close(small(x), before, atol=1e-5, rtol=1e-5)


def _layer_outputs(net: Net, x: torch.Tensor) -> list[torch.Tensor]:
    outs = [net.stem(x)]
    for block in net.blocks:
        outs.append(block(outs[-1]))
    return outs


# layer outputs: 0 = stem, i + 1 = block i; the unit's consumer is the first output of the old shape
@pytest.mark.parametrize("name, first_changed, consumer, cut",
                         [("mid:b2", 3, 3, 16), ("width:b1-b3", 2, 5, 16), ("width:stem-b0", 0, 2, 8)])
def test_trim_changes_only_its_unit(name, first_changed, consumer, cut):
    unit = next(u for u in units(ARCH) if u.name == name)
    net = random_net(ARCH, seed=7)
    keep = keep_indices(net, unit, unit.width - cut)
    assert torch.equal(keep, channel_scores(net, unit).argsort(descending=True)[:unit.width - cut].sort().values)
    small = trim(net, unit, unit.width - cut).eval()
    assert small.arch == resize(ARCH, unit, unit.width - cut)

    old, new = net.state_dict(), small.state_dict()
    touched = {k for k, _ in slices(ARCH, unit)}
    assert touched == {k for k in old if new[k].shape != old[k].shape}  # the slices are exactly what shrank
    for key in old:
        if key not in touched:
            assert torch.equal(old[key], new[key]), key
    for key, axis in dict(slices(ARCH, unit)).items():
        if (key, 1 - axis) not in slices(ARCH, unit):
            torch.testing.assert_close(new[key], old[key].index_select(axis, keep))

    x = torch.randn(2, 3, 32, 32)
    a, b = _layer_outputs(net, x), _layer_outputs(small, x)
    for i in range(first_changed):  # layers before the unit see exactly the same input
        torch.testing.assert_close(b[i], a[i], atol=0, rtol=0)
    # a mid cut stays inside its block; a width cut narrows the unit's feature maps
    assert b[first_changed].shape[1] == (a[first_changed].shape[1] if unit.kind == "mid" else unit.width - cut)
    assert not torch.allclose(b[consumer], a[consumer], atol=1e-3)
