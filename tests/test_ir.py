"""The IR: JSON and string forms, and errors that name the block and the field."""
import json

import pytest

from search_spaces.ir import SE, Arch, ArchError, Block, Head, Stem
from search_spaces.references import REFERENCES, load_arch, reference


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_references_round_trip(name):
    arch = reference(name)
    assert Arch.from_dict(json.loads(json.dumps(arch.to_dict()))) == arch
    assert Arch.from_string(arch.to_string()) == arch
    assert "\n" not in arch.to_string() and "," not in arch.to_string()


def test_json_document_shape():
    doc = reference("mobilenet_v3_small").to_dict()
    b = doc["blocks"][0]
    assert set(b) == {"op", "in", "out", "mid", "kernel", "stride", "act", "se", "residual"}
    assert b["se"] == {"squeeze": 8, "gate": "hsigmoid"}
    assert doc["head"]["type"] == "mnv3" and doc["head"]["hidden"] == 1024


def test_expressible_ops():
    blocks = (Block("conv", 16, 24, 24, 3, 1, "relu"),                      # plain kxk conv
              Block("ir", 24, 24, 24, 5, 1, "relu6", residual=True),        # depthwise-separable
              Block("ir", 24, 32, 96, 3, 2, "hswish", SE(24, "sigmoid")))  # MBConv + MnasNet SE
    arch = Arch(Stem(16), blocks, Head("mnv2", 64, "relu6"), resolution=32, num_classes=10)
    assert Arch.from_string(arch.to_string()) == arch


def _doc():
    return reference("mobilenet_v3_large").to_dict()


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d["blocks"][3].update({"in": 32}), "block 3: field 'in' is 32 but the previous layer outputs 24"),
    (lambda d: d["blocks"][1].update({"residual": True}), "block 1: field 'residual' needs stride 1"),
    (lambda d: d["blocks"][2].update({"act": "gelu"}), "block 2: field 'act' is 'gelu'"),
    (lambda d: d["blocks"][5].update({"mid": -8}), "block 5: field 'mid' must be a positive integer"),
    (lambda d: d["stem"].update({"out": 0}), "stem: field 'out' must be a positive integer"),
    (lambda d: d["blocks"][0].update({"kernel": 4}), "block 0: field 'kernel' must be odd"),
    (lambda d: d["blocks"][3]["se"].update({"gate": "tanh"}), "block 3: field 'se.gate'"),
    (lambda d: d["blocks"][0].update({"colour": 1}), "block 0: unknown field"),
    (lambda d: d["head"].update({"type": "resnet"}), "head: field 'type'"),
    (lambda d: d.update({"resolution": -1}), "field 'resolution' must be a positive integer"),
    (lambda d: d["blocks"][0].pop("in"), "block 0: missing field 'in'"),
    # sizes bounded to what a real network could use, the message stating the bound
    (lambda d: d["blocks"][4].update({"mid": 10**7}), "block 4: field 'mid' is 10000000, more than the largest supported 8192"),
    (lambda d: d["blocks"][3]["se"].update({"squeeze": 10**20}), "block 3 se: field 'squeeze' is 100000000000000000000, more than"),
    (lambda d: d.update({"resolution": 99_999_999}), "field 'resolution' is 99999999, more than the largest supported 2048"),
    (lambda d: d["blocks"][0].update({"kernel": 31}), "block 0: field 'kernel' is 31, more than the largest supported 15"),
    (lambda d: d["stem"].update({"kernel": 4}), "stem: field 'kernel' must be odd"),
    (lambda d: d["head"].update({"hidden": 10**6}), "head: field 'hidden' is 1000000, more than"),
    (lambda d: d.update({"blocks": "ir:i16_o16"}), "field 'blocks' must be a list of block objects"),
    (lambda d: d["blocks"].append("ir:i16_o16"), "block 15: must be a JSON object"),
])
def test_invalid_documents_name_block_and_field(mutate, message):
    doc = _doc()
    mutate(doc)
    with pytest.raises(ArchError) as e:
        Arch.from_dict(doc)
    assert message in str(e.value)


@pytest.mark.parametrize("text, message", [
    ("r224_n1000|stem:c16_k3_s2_hswish|ir:i16_o16_m16_k3_s1_swish|head:mnv3_c960_f1280_hswish",
     "block 0: cannot read token 'swish'"),
    ("r224_n1000|stem:c16_k3_s2_hswish|dw:i16_o16_m16_k3_s1_relu|head:mnv3_c960_f1280_hswish", "unknown op 'dw'"),
    ("r224_n1000|stem:c16_k3_s2_hswish|ir:i16_o16_m16_k3_s2_relu_r|head:mnv3_c960_f1280_hswish",
     "block 0: field 'residual' needs stride 1 and in == out"),
    ("r224_n1000|stem:c16_k3_s2_hswish|head:mnv3_c960_f1280_hswish", None),
    ("garbage", "at least"),
    ("r224_n1000|stem:c16_k3_s2_hswish|ir:i16_o16_m16_k3_k7_s1_relu|head:mnv3_c960_f1280_hswish",
     "block 0: 'k' is given twice"),
    ("r224_n1000|stem:c16_k3_s2_relu_relu|head:mnv3_c960_f1280_hswish", "stem: 'relu' is given twice"),
    ("r224_n1000|stem:c16_k3_s2_hswish|head:mnv3_c960_f1280_hswish_d1.2.3", "head: dropout 'd1.2.3' is not a number"),
    ("r224_n1000|stem:c16_k4_s2_hswish|head:mnv3_c960_f1280_hswish", "stem: field 'kernel' must be odd"),
    ("r224_n1000|stem:c10000000_k3_s2_hswish|head:mnv3_c960_f1280_hswish", "more than the largest supported 8192"),
])
def test_invalid_strings(text, message):
    if message is None:  # no blocks at all is a legal (if useless) network
        assert Arch.from_string(text).blocks == ()
        return
    with pytest.raises(ArchError, match=message):
        Arch.from_string(text)


def test_load_arch(tmp_path):
    arch = reference("mnasnet_a1")
    path = tmp_path / "a.json"
    path.write_text(arch.to_json())
    assert load_arch("mnasnet_a1") == arch
    assert load_arch(str(path)) == arch
    assert load_arch(arch.to_string()) == arch
    with pytest.raises(ValueError, match="unknown architecture"):
        load_arch("mnasnet_b9")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ArchError, match="not valid JSON"):
        load_arch(str(bad))
