"""`nas arch export --int8`: a tiny digits-trained model quantized, run by onnxruntime, scored.

The model is trained for a few steps only (seconds): the test checks the pipeline (what is
written, what runs, what is reported), not how good 8-bit accuracy is.
"""
import re

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from nas.cli import main
from nas.data import load_data
from nas.run_dir import save_deployment
from nas.training import TrainConfig, build_for_training, evaluate, train
from search_spaces.ir import Arch

ARCH = Arch.from_string("r224_n10|stem:c8_k3_s2_hswish|ir:i8_o16_m32_k3_s2_hswish_se8h|"
                        "ir:i16_o16_m32_k3_s1_relu_r|head:mnv3_c32_f64_hswish")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """best/-like directory of a model trained 40 steps on digits at 8x8, and its torch val top-1."""
    data = load_data("digits", resolution=8)
    model = build_for_training(ARCH, data)
    train(model, data, TrainConfig(steps=40, batch_size=32, lr=0.1, flip=False, threads=1, recalibrate_images=256))
    out = tmp_path_factory.mktemp("best")
    save_deployment(out, ARCH, model.state_dict())
    return out, evaluate(model.cpu(), data.val)


def test_export_int8_writes_a_quantized_model_and_reports_both_top1(trained, tmp_path, capsys):
    best, torch_top1 = trained
    out = tmp_path / "model_int8.onnx"
    assert main(["arch", "export", str(best), "--int8", "--calibration-data", "digits", "--onnx", str(out)]) == 0
    text = capsys.readouterr().out
    model = onnx.load(out)
    types = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= types
    # per-channel weights: a conv weight's DequantizeLinear has one scale per output channel
    scales = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert any(scales.get(n.input[1], np.zeros(0)).size == 8 for n in model.graph.node if n.op_type == "DequantizeLinear")
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (logits,) = sess.run(None, {"input": np.zeros((1, 3, 8, 8), np.float32)})
    assert logits.shape == (1, 10) and np.isfinite(logits).all()
    floats = re.search(r"float (\d\.\d+), int8 (\d\.\d+)", text)
    assert floats and float(floats[1]) == pytest.approx(torch_top1, abs=1.5 / 144)  # one image may flip at a tie
    assert 0 <= float(floats[2]) <= 1 and "144 images" in text
    assert re.search(r"integer kernels: .*QLinearConv \d+", text)
    assert "stay float" not in text  # h-swish and the SE gate quantize too


def test_a_run_directory_brings_its_split_and_data(trained, tmp_path, capsys):
    import json
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained[0], run / "best")
    (run / "config.json").write_text(json.dumps({"data": "digits", "resolution": 8, "seed": 0}))
    out = tmp_path / "q.onnx"
    assert main(["arch", "export", str(run), "--int8", "--calibration-data", "digits", "--onnx", str(out)]) == 0
    assert "8x8 inputs" in capsys.readouterr().out and out.exists()
    assert main(["arch", "export", str(run), "--int8", "--calibration-data", "cifar10:/nowhere",
                 "--onnx", str(tmp_path / "other.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert "trained on digits" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("argv, message", [
    (["--int8", "--onnx", "x.onnx"], "--int8 needs --calibration-data"),
    (["--calibration-data", "digits", "--onnx", "x.onnx"], "go with --int8"),
    (["--int8", "--calibration-data", "digits", "--resolution", "0", "--onnx", "x.onnx"], "--resolution must be at least 1"),
    (["--int8", "--calibration-data", "digitz", "--onnx", "x.onnx"], "unknown data 'digitz'"),
    (["--int8", "--calibration-data", "digits", "--calibration-images", "0", "--onnx", "x.onnx"],
     "--calibration-images must be at least 1"),
])
def test_bad_input_is_one_line(trained, argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["arch", "export", str(trained[0]), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


def test_an_architecture_needs_weights_that_fit(trained, tmp_path, capsys):
    args = ["--int8", "--calibration-data", "digits", "--onnx", str(tmp_path / "x.onnx")]
    assert main(["arch", "export", "mobilenet_v3_small", *args]) == 2
    assert "trained model" in capsys.readouterr().err
    assert main(["arch", "export", "mobilenet_v3_small", "--weights", str(trained[0] / "model.pt"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "do not fit" in err and len(err.splitlines()) == 1
    import torch
    torch.save([torch.zeros(3)], tmp_path / "list.pt")
    assert main(["arch", "export", "mobilenet_v3_small", "--weights", str(tmp_path / "list.pt"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not a state_dict" in err and len(err.splitlines()) == 1
