"""`nas arch export --litert / --executorch`: a tiny network exported to each phone runtime, run
there and checked against PyTorch; without the deploy extra, one line and exit 2; the LiteRT
timer on the exported network.

The export tests need the deploy extra (pip install -e '.[deploy]', which CI installs) and are
skipped, saying so, where it is missing. Each file written is loaded again here with the
runtime's own API, not the project's, and compared with the PyTorch model it came from.
"""
import contextlib
import importlib.util
import io
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.cli import main
from nas.deploy_export import deploy_network
from search_spaces.ir import Arch

ARCH = ("r32_n10|stem:c8_k3_s2_hswish|ir:i8_o16_m32_k3_s2_hswish_se8h|"
        "ir:i16_o16_m32_k3_s1_relu_r|head:mnv3_c32_f64_hswish")
MISSING = "the deploy extra is not installed: pip install -e '.[deploy]'"
needs_litert = pytest.mark.skipif(importlib.util.find_spec("litert_torch") is None, reason=MISSING)
needs_executorch = pytest.mark.skipif(importlib.util.find_spec("executorch") is None, reason=MISSING)


def check_line(text: str) -> tuple[float, float, float]:
    """(max |diff|, largest logit, top-1 agreement) from the printed check."""
    m = re.search(r"max \|diff\| (\S+) \(logits up to (\S+)\), top-1 agreement (\S+)", text)
    assert m, text
    return float(m[1]), float(m[2]), float(m[3])


def pytorch_logits(x: np.ndarray) -> np.ndarray:
    """The network the CLI exports for ARCH (fresh weights, seed 0), run by PyTorch."""
    with torch.no_grad():
        return deploy_network(ARCH, check_images=1).model(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def litert_float(tmp_path_factory):
    """ARCH exported by the CLI to a float .tflite file, and what the CLI printed."""
    out = tmp_path_factory.mktemp("litert") / "net.tflite"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["arch", "export", ARCH, "--litert", str(out), "--check-images", "8"]) == 0
    return out, printed.getvalue()


@needs_litert
def test_litert_float_export_runs_in_litert_as_in_pytorch(litert_float):
    from ai_edge_litert.interpreter import Interpreter

    out, text = litert_float
    diff, scale, top1 = check_line(text)
    assert "LiteRT float32" in text and "8 random inputs" in text
    assert diff <= 1e-4 * scale and top1 == 1.0
    it = Interpreter(model_path=str(out), num_threads=1)
    it.allocate_tensors()
    (inp,), (outp,) = it.get_input_details(), it.get_output_details()
    assert list(inp["shape"]) == [1, 3, 32, 32] and inp["dtype"] == np.float32
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    it.set_tensor(inp["index"], x)
    it.invoke()
    ref = pytorch_logits(x)
    np.testing.assert_allclose(it.get_tensor(outp["index"]), ref, rtol=0, atol=1e-4 * np.abs(ref).max())


@needs_litert
def test_litert_timer_returns_milliseconds(litert_float):
    from latency_tables.litert_runtime import time_litert
    from latency_tables.measure import Budget

    r = time_litert(litert_float[0], budget=Budget(warmup=1, min_rounds=3, max_rounds=5))
    assert 3 <= r["count"] <= 5
    assert all(np.isfinite(r[k]) and r[k] > 0 for k in ("median_ms", "mean_ms", "p10_ms", "p90_ms"))


@needs_executorch
def test_executorch_export_is_delegated_to_xnnpack_and_runs_as_in_pytorch(tmp_path, capsys):
    from executorch.runtime import Runtime

    out = tmp_path / "net.pte"
    assert main(["arch", "export", ARCH, "--executorch", str(out), "--check-images", "8"]) == 0
    text = capsys.readouterr().out
    diff, scale, top1 = check_line(text)
    assert "ExecuTorch (XNNPACK) float32" in text and diff <= 1e-4 * scale and top1 == 1.0
    left = re.search(r"left to portable kernels: (.*)", text)
    # every conv, activation, SE and the classifier run in XNNPACK; at most the head's pooling does not
    assert left is None or set(re.findall(r"(\S+) \d+", left[1])) <= {"aten.mean.dim"}
    program = Runtime.get().load_program(str(out))
    x = np.random.default_rng(1).standard_normal((1, 3, 32, 32)).astype(np.float32)
    (logits,) = program.load_method("forward").execute([torch.from_numpy(x)])
    ref = pytorch_logits(x)
    np.testing.assert_allclose(logits.numpy(), ref, rtol=0, atol=1e-4 * np.abs(ref).max())


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """best/-like directory of a model trained 40 steps on digits at 8x8."""
    from nas.data import load_data
    from nas.run_dir import save_deployment
    from nas.training import TrainConfig, build_for_training, train

    arch = Arch.from_string(ARCH)
    data = load_data("digits", resolution=8)
    model = build_for_training(arch, data)
    train(model, data, TrainConfig(steps=40, batch_size=32, lr=0.1, flip=False, threads=1, recalibrate_images=256))
    out = tmp_path_factory.mktemp("best")
    save_deployment(out, arch, model.state_dict())
    return out


@needs_litert  # before the fixture trains
def test_litert_int8_export_of_a_trained_model_agrees_with_the_float_model(trained, tmp_path, capsys):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "q.tflite"
    assert main(["arch", "export", str(trained), "--litert", str(out), "--int8", "--calibration-data", "digits",
                 "--calibration-images", "32", "--check-images", "100"]) == 0
    text = capsys.readouterr().out
    _, _, top1 = check_line(text)
    assert "LiteRT int8" in text and "against PyTorch (float) on 100 validation images of digits" in text
    assert top1 >= 0.9  # 40 training steps leave close logits; a broken quantization agrees at chance (~0.1)
    it = Interpreter(model_path=str(out), num_threads=1)
    it.allocate_tensors()
    assert it.get_input_details()[0]["dtype"] == np.int8  # integer kernels from the input on
    assert {d["dtype"] for d in it.get_tensor_details()} >= {np.int8, np.int32}  # int32 biases


@pytest.mark.parametrize("flag, module", [("--litert", "litert_torch"), ("--executorch", "executorch")])
def test_a_missing_extra_is_one_line_naming_it(flag, module, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # what `import` sees where the package is not installed
    out = tmp_path / "net.file"
    assert main(["arch", "export", ARCH, flag, str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{flag} needs {module}" in err and "pip install -e '.[deploy]'" in err
    assert not out.exists()


@pytest.mark.parametrize("argv, message", [
    ([ARCH], "name a file to write"),
    ([ARCH, "--executorch", "x.pte", "--int8", "--calibration-data", "digits"], "the ExecuTorch export is float"),
    ([ARCH, "--litert", "x.tflite", "--int8", "--calibration-data", "digits"], "--int8 quantizes a trained model"),
    ([ARCH, "--litert", "x.tflite", "--int8"], "--int8 needs --calibration-data"),
    ([ARCH, "--litert", "."], "is a directory"),
])
def test_bad_input_is_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["arch", "export", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not any(Path(tmp_path).iterdir())
