"""Reference architectures: exact parameter counts, published multiply-adds, width multiplier."""
import pytest

from module_counts import count_module_macs, count_params
from search_spaces.builder import build_model
from search_spaces.counting import count
from search_spaces.references import REFERENCES, make_divisible, reference

# (params exact, published MACs in millions, tolerance): torchvision's counts for the first three
PUBLISHED = {
    "mobilenet_v3_large": (5_483_032, 217, 0.02),
    "mobilenet_v3_small": (2_542_856, 57, 0.02),
    "mobilenet_v2": (3_504_872, 300, 0.02),
    "proxylessnas_mobile": (4_080_512, 320, 0.05),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_reference_counts(name):
    params, macs_m, tol = PUBLISHED[name]
    arch = reference(name)
    counted = count(arch)
    assert counted["params"] == params
    assert abs(counted["macs"] / 1e6 - macs_m) / macs_m < tol


def test_mnasnet_a1_close_to_paper():
    counted = count(reference("mnasnet_a1"))
    assert abs(counted["params"] / 1e6 - 3.9) < 0.05
    assert abs(counted["macs"] / 1e6 - 312) < 3


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_analytic_counts_match_module(name):
    arch = reference(name)
    model = build_model(arch)
    counted = count(arch)
    assert counted["params"] == count_params(model)
    assert counted["macs"] == count_module_macs(model)


def test_make_divisible():
    assert make_divisible(12) == 16 and make_divisible(18) == 24 and make_divisible(60) == 64
    assert make_divisible(3) == 8


def test_width_multiplier():
    large = reference("mobilenet_v3_large")
    small = reference("mobilenet_v3_large", 0.75)
    assert small.stem.out == 16 and small.blocks[-1].out == 120 and small.head.conv == 720
    assert all(b.out % 8 == 0 and b.mid % 8 == 0 for b in small.blocks)
    assert count(small)["params"] < count(large)["params"]
    assert count(reference("mobilenet_v3_large", 1.25))["macs"] > count(large)["macs"]
    # residuals survive wherever the channels still match
    assert [b.residual for b in small.blocks] == [b.residual for b in large.blocks]
    build_model(small)
