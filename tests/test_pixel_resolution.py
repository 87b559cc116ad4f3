"""`pixel_cpu`'s resolution scaling on made-up op models whose answer is known (no timing).

A per-op cost that grows with the input (MACs, tensor elements) quarters when the input side
halves; a cost per conv weight does not. The shipped Pixel 1 model carries both, its weight cost
fitted on whole networks at several input sizes (`latency_tables.pixel.fit_in_network`).
"""
from dataclasses import replace
from pathlib import Path

import pytest

from latency_tables import LatencyTable, arch_ops, load_target
from latency_tables.model import OpModel, op_features
from latency_tables.pixel import fit_in_network
from latency_tables.pixel_networks import published_arch, published_networks, scale_width_by_ratio
from latency_tables.table import new_metadata
from latency_tables.targets import open_table
from search_spaces.errors import UserError
from search_spaces.ir import Arch, Head, Stem
from search_spaces.references import mbconv, reference

# Made-up costs: ms per million dense / depthwise MACs, tensor elements, conv weights.
PIXEL_WORK = {"dense_mmacs": 0.15, "dw_mmacs": 0.3, "mem_melems": 2.0}
WEIGHT_MS = 2.5


def tiny_arch(resolution: int) -> Arch:
    """Stride-2 stem and first block, so every feature map halves exactly when the input does."""
    blocks = (mbconv(16, 24, 96, 3, 2, "relu6"), mbconv(24, 24, 144, 3, 1, "relu6"))
    return Arch(Stem(16, 3, 2, "relu6"), blocks, Head("mnv2", 64, "relu6"), resolution=resolution, num_classes=10)


# conv filter weights of tiny_arch, by hand: stem 3x16x3x3; per block expand + depthwise 3x3 +
# project; the head's 1x1 conv (the classifier is a matrix-vector product, costed on its own)
TINY_WEIGHTS = 3 * 16 * 9 + (16 * 96 + 96 * 9 + 96 * 24) + (24 * 144 + 144 * 9 + 144 * 24) + 24 * 64


def modelled_table(tmp_path: Path, coef: dict, scale: float) -> LatencyTable:
    """A table with no rows, a made-up op model and a scale-only term, read back from its file
    as `pixel_cpu` is: every op is predicted by the model it carries."""
    meta = new_metadata("made_up_phone", "none", 64, 1, cpu="phone", runtime="tflite (modelled)",
                        op_model=OpModel(coef).to_dict(),
                        network_term={"scale": scale, "offset_ms": 0.0, "calibrated": True})
    return open_table(LatencyTable(None, meta).save(tmp_path / "phone.csv"))


def test_conv_weights_counted_once_per_op_whatever_the_input():
    ops = [op for _, op in arch_ops(tiny_arch(64))]
    assert sum(op_features(op)["conv_mweights"] for op in ops) * 1e6 == pytest.approx(TINY_WEIGHTS)
    halved = [op for _, op in arch_ops(tiny_arch(32))]
    assert [op_features(a)["conv_mweights"] for a in ops] == [op_features(b)["conv_mweights"] for b in halved]


@pytest.mark.parametrize("weight_ms", [0.0, WEIGHT_MS])
def test_halving_the_input_quarters_all_but_the_weight_cost(tmp_path, weight_ms):
    scale = 0.9
    table = modelled_table(tmp_path, {**PIXEL_WORK, "conv_mweights": weight_ms}, scale)
    big, small = table.query_total(tiny_arch(64)), table.query_total(tiny_arch(32))
    # big = scale * (work + W), small = scale * (work / 4 + W): 4 small - big = 3 scale W
    assert 4 * small - big == pytest.approx(3 * scale * weight_ms * TINY_WEIGHTS / 1e6, rel=1e-9, abs=1e-12)
    assert small / big > 0.25 if weight_ms else small / big == pytest.approx(0.25)


def test_the_in_network_fit_recovers_a_known_law_and_predicts_unseen_sizes():
    """Networks timed under a known law (a scale on the standalone ops, a different element
    cost, a cost per conv weight) are fitted exactly; the fitted model, as a table, predicts
    networks at widths and input sizes it never saw."""
    standalone = OpModel(dict(PIXEL_WORK))
    law = OpModel({**PIXEL_WORK, "mem_melems": 0.8, "conv_mweights": WEIGHT_MS})
    law_scale = 1.1

    def timed(arch):
        return law_scale * float(law.predict([op for _, op in arch_ops(arch)]).sum())

    seen = [published_arch("mobilenet_v2", w, r) for w in (0.5, 1.0) for r in (96, 224)]
    model, term = fit_in_network(standalone, [(a, timed(a)) for a in seen])
    assert term["scale"] == pytest.approx(law_scale) and term["offset_ms"] == 0.0
    assert model.coef["mem_melems"] == pytest.approx(0.8) and model.coef["conv_mweights"] == pytest.approx(WEIGHT_MS)
    unseen = [published_arch("mobilenet_v2", 0.75, 160), published_arch("mnasnet_a1", 1.4, 128)]
    for arch in unseen:
        ms = term["scale"] * float(model.predict([op for _, op in arch_ops(arch)]).sum())
        assert ms == pytest.approx(timed(arch), rel=1e-9)

    # a scale alone (the model before) cannot: calibrated at 224 px it makes small inputs too fast
    only, t = fit_in_network(standalone, [(a, timed(a)) for a in seen if a.resolution == 224], "scale")
    small = published_arch("mobilenet_v2", 1.0, 96)
    assert t["scale"] * only.predict([op for _, op in arch_ops(small)]).sum() < 0.9 * timed(small)


def test_the_in_network_fit_refuses_a_negative_cost():
    standalone = OpModel(dict(PIXEL_WORK))
    nets = [published_arch("mobilenet_v2", w, r) for w in (0.5, 1.0) for r in (96, 224)]
    # networks far faster at small sizes than even free weights allow: a negative weight cost
    timed = [(a, 0.001 * a.resolution ** 4 * (a.blocks[-1].out / 320)) for a in nets]
    with pytest.raises(UserError, match="negative cost"):
        fit_in_network(standalone, timed)


def test_published_widths_reproduce_the_published_multiply_adds():
    """The MobileNetV2 checkpoints keep each block's expansion ratio when scaling width."""
    for n in published_networks(("mobilenet_v2_grid",)):
        macs = sum(op.macs() for _, op in arch_ops(n.arch)) / 1e6
        assert macs == pytest.approx(n.mmacs, abs=1.0), n.label
    narrow = scale_width_by_ratio(reference("mobilenet_v2"), 0.75)
    assert narrow.head.conv == 1280 and all(b.mid in (b.in_, 6 * b.in_) for b in narrow.blocks)


def test_shipped_pixel_cpu_has_a_cost_that_does_not_shrink_with_the_input():
    table = load_target("pixel_cpu")
    assert table.metadata["op_model"]["coef"]["conv_mweights"] > 0
    assert table.network_term["offset_ms"] == 0.0     # a scale only: it answers at any input size
    arch = reference("mobilenet_v2")
    big, small = table.query_total(arch), table.query_total(replace(arch, resolution=112))
    assert small > big / 4
