"""`nas arch export --int8`: post-training quantization of a trained model, and what it costs in top-1.

The network exported is the one the weights were trained as: the architecture's proxy form
(`for_proxy`) at the data's resolution, taking the training split's normalized images, so that
the float and the 8-bit model can both be run with onnxruntime on the validation split of the
same data and compared. Calibration (activation ranges, min/max) uses training images, never
validation ones. Quantization itself is `latency_tables.quantize`, the same as the int8
latency tables time.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latency_tables.quantize import graph_report, quantize
from nas.data import Data, Split, load_data
from nas.run_config import RunConfig
from nas.run_dir import RunDir, load_state_dict
from search_spaces.atomic import atomic_write
from search_spaces.builder import build_model
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy


@dataclass
class Trained:
    arch: Arch                  # deployment architecture
    state: dict                 # its state_dict (trained on the proxy form)
    config: RunConfig | None    # the search's settings when the model comes from a run directory


#: what a run's config.json must say for its model to be scored as it was trained
NEEDED_FROM_RUN = ("data", "resolution", "seed")


def _run_config(directory: Path) -> RunConfig | None:
    """The config of the run a result directory belongs to: itself (a run), best/ or netadapt/
    in it, or final/<rank>/."""
    for run in (directory, directory.parent, directory.parent.parent):
        if (run / "config.json").is_file():
            return RunDir(run).config(NEEDED_FROM_RUN)
    return None


def trained_model(arch_arg: str, weights: str | None) -> Trained:
    """A run directory (its winner), a directory with arch.json and model.pt (best/, final/<rank>/,
    netadapt/), final/ (the winner it names), or ARCH with --weights FILE."""
    from search_spaces.references import load_arch

    path = Path(arch_arg)
    if path.is_dir():
        if weights:
            raise UserError("--weights is for an architecture; a directory brings its own model.pt")
        if (path / "config.json").is_file() or (path / "winner.json").is_file():
            run = RunDir(path if (path / "config.json").is_file() else path.parent)
            w = run.load_winner()
            return Trained(w.arch, w.state, run.config(NEEDED_FROM_RUN))
        arch_file, model_file = path / "arch.json", path / "model.pt"
        if not arch_file.is_file() or not model_file.is_file():
            raise UserError(f"{path} holds no trained model (arch.json and model.pt)")
        return Trained(load_arch(str(arch_file)), load_state_dict(model_file), _run_config(path))
    if not weights:
        raise UserError("--int8 quantizes a trained model: give a run's best/ or final/ directory, "
                        "or ARCH with --weights FILE")
    return Trained(load_arch(arch_arg), load_state_dict(weights), None)


def model_inputs(split: Split, limit: int | None = None) -> np.ndarray:
    """Normalized float images of a split (N x C x H x W, contiguous), as the ONNX model takes them."""
    x = split.x if limit is None else split.x[:limit]
    return split.normalize(x).contiguous().numpy()


def onnx_top1(model, split: Split) -> float:
    """Top-1 accuracy of an ONNX model (batch 1) on a split, run by onnxruntime on the CPU."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    pred = [int(sess.run(None, {name: x[None]})[0].argmax()) for x in model_inputs(split)]
    return float(np.mean(np.array(pred) == split.y.numpy()))


def proxy_network(trained: Trained, data: Data) -> torch.nn.Module:
    """The network the weights were trained as, with them loaded."""
    arch = for_proxy(trained.arch.replace(num_classes=data.num_classes), data.resolution)
    net = build_model(arch).eval()
    try:
        net.load_state_dict(trained.state)
    except RuntimeError as e:
        first = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise UserError(f"the weights do not fit {arch.name or 'the architecture'} with {data.num_classes} "
                        f"classes: {first}") from None
    return net


def trained_data(trained: Trained, data_spec: str, resolution: int | None) -> Data:
    """The data a trained model is calibrated and scored on, split as it was trained.

    A run directory's settings pick the split (seed, training subset) and resolution, so the
    normalization is the one the model was trained with and no training image is validated on."""
    from nas.search_setup import PROXY_DEFAULTS

    cfg = trained.config
    if cfg and cfg.data != data_spec:  # another data set's top-1 would say nothing about this model
        raise UserError(f"the model was trained on {cfg.data}; use --calibration-data {cfg.data}")
    if resolution is None:  # no run directory: the resolution a search on this data trains at
        resolution = cfg.resolution if cfg else PROXY_DEFAULTS["digits" if data_spec == "digits" else "other"]["resolution"]
    return load_data(data_spec, resolution=resolution, train_subset=cfg and cfg.train_subset,
                     seed=cfg.seed if cfg else 0)


def export_int8(trained: Trained, data_spec: str, out: str | Path, resolution: int | None,
                calibration_images: int) -> dict:
    """Quantize the trained model on training images of `data_spec`, write it to `out`, and return
    the float and int8 top-1 on the validation split (see `trained_data`) and the quantized
    graph's node counts."""
    import onnx

    from search_spaces.onnx_export import export_onnx

    if calibration_images < 1:
        raise UserError(f"--calibration-images must be at least 1, got {calibration_images}")
    data = trained_data(trained, data_spec, resolution)
    resolution = data.resolution
    float_model = export_onnx(proxy_network(trained, data))
    int8_model = quantize(float_model, list(model_inputs(data.train, calibration_images)[:, None]))
    try:
        atomic_write(out, lambda tmp: onnx.save(int8_model, str(tmp)))
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    return {"resolution": resolution, "val_images": len(data.val),
            "calibration_images": min(calibration_images, len(data.train)),
            "float_top1": onnx_top1(float_model, data.val), "int8_top1": onnx_top1(int8_model, data.val),
            "float_mb": float_model.ByteSize() / 1e6, "int8_mb": int8_model.ByteSize() / 1e6,
            "graph": graph_report(int8_model)}
