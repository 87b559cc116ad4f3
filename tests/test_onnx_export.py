"""ONNX export: h-swish / h-sigmoid / SE export and run in onnxruntime, matching PyTorch within 1e-4."""
import random

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from search_spaces.builder import build_model
from search_spaces.onnx_export import export_onnx
from search_spaces.references import reference
from search_spaces.space import SPACES


def _randomize(model):
    """Non-trivial BN statistics and a larger classifier so the comparison is meaningful."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
        elif isinstance(m, torch.nn.Linear):
            torch.nn.init.normal_(m.weight, 0, 0.05, generator=g)
    return model.eval()


def _parity(arch, tmp_path, resolution=64):
    torch.manual_seed(0)
    model = _randomize(build_model(arch.replace(resolution=resolution)))
    path = tmp_path / "m.onnx"
    export_onnx(model, path)
    onnx.checker.check_model(onnx.load(str(path)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, resolution, resolution)).astype(np.float32)
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    assert got.shape == want.shape
    assert np.abs(want).max() > 1e-2  # the comparison is not of near-zero outputs
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_random_samples_match_pytorch(name, tmp_path):
    space = SPACES[name]
    rng = random.Random(11)
    for _ in range(4):
        _parity(space.decode(space.sample(rng)), tmp_path)


@pytest.mark.parametrize("name", ["mobilenet_v3_small", "mobilenet_v2", "mnasnet_a1"])
def test_references_match_pytorch(name, tmp_path):
    _parity(reference(name), tmp_path)


def test_export_uses_hard_activations(tmp_path):
    proto = export_onnx(reference("mobilenet_v3_small"), tmp_path / "s.onnx")
    ops = {n.op_type for n in proto.graph.node}
    assert {"HardSwish", "HardSigmoid", "Conv", "Gemm", "GlobalAveragePool", "Add", "Mul"} <= ops
    assert "BatchNormalization" not in ops  # folded
    assert [p.name for p in tmp_path.iterdir()] == ["s.onnx"]  # no temporary file left behind
