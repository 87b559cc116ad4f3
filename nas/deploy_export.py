"""Export a network to the runtimes phones run, and check the export against PyTorch.

LiteRT (TensorFlow Lite; .tflite, converted by litert-torch, float or int8) and ExecuTorch
(.pte, its ops delegated to XNNPACK) are what Android apps ship; both come in the optional
`deploy` extra, as they are large. Every export is run in its own runtime (LiteRT's
interpreter; ExecuTorch's pybindings) on the check images, one image at a time as a phone runs
it, and compared with the PyTorch model it came from: the largest absolute difference of the
logits and the share of images whose top-1 class agrees. An int8 export is compared with the
float PyTorch model, so its check is what quantization costs.

`deploy_network` resolves what to export as `nas arch export` names it: an architecture with
fresh, seeded weights (checked on random inputs), or a trained model (`quantized_export.
trained_model`) as it was trained, checked on validation images of its data.
"""
from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from latency_tables.litert_runtime import from_tensor, interpreter, require, to_tensor
from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError


@dataclass
class DeployNetwork:
    model: torch.nn.Module
    inputs: np.ndarray              # check images, N x C x H x W float32, as the model takes them
    calibration: np.ndarray | None  # training images for int8 (trained models only)
    about: str                      # what the check images are, for the printed check


def deploy_network(arch_arg: str, weights: str | None = None, data_spec: str | None = None,
                   resolution: int | None = None, check_images: int = 64, calibration_images: int = 64,
                   seed: int = 0) -> DeployNetwork:
    """The network `arch_arg` names and the images its export is checked (and calibrated) on.

    A trained model (a directory, or ARCH with `weights`) is exported as it was trained (the
    proxy form at its data's resolution), checked on validation images and calibrated on
    training images of `data_spec` (default: its run's data). An architecture gets fresh weights
    seeded by `seed` and is checked on random inputs at the resolution its IR names."""
    from nas.quantized_export import model_inputs, proxy_network, trained_data, trained_model
    from search_spaces.builder import build_model
    from search_spaces.references import load_arch

    for flag, n in (("--check-images", check_images), ("--calibration-images", calibration_images)):
        if n < 1:
            raise UserError(f"{flag} must be at least 1, got {n}")
    if weights or Path(arch_arg).is_dir():
        trained = trained_model(arch_arg, weights)
        data_spec = data_spec or (trained.config and trained.config.data)
        if not data_spec:
            raise UserError("a trained model is exported as it was trained: give --calibration-data DATA "
                            "(its classes, resolution and the images the export is checked on)")
        data = trained_data(trained, data_spec, resolution)
        return DeployNetwork(proxy_network(trained, data), model_inputs(data.val, check_images),
                             model_inputs(data.train, calibration_images),
                             f"{min(check_images, len(data.val))} validation images of {data_spec}")
    if data_spec or resolution:
        raise UserError("--calibration-data and --resolution go with a trained model (a directory, or ARCH "
                        "with --weights); an architecture is exported at the resolution its IR names")
    arch = load_arch(arch_arg)
    torch.manual_seed(seed)
    model = build_model(arch).eval()
    shape = (check_images, arch.in_channels, arch.resolution, arch.resolution)
    inputs = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    return DeployNetwork(model, inputs, None, f"{check_images} random inputs (fresh weights, seed {seed})")


def agreement(reference: np.ndarray, exported: np.ndarray) -> dict:
    """How far an export's logits are from PyTorch's on the same images."""
    return {"check_images": len(reference), "max_abs_diff": float(np.abs(reference - exported).max()),
            "max_abs_logit": float(np.abs(reference).max()),  # what the difference is small against
            "top1_agreement": float(np.mean(reference.argmax(1) == exported.argmax(1)))}


def torch_logits(model: torch.nn.Module, inputs: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model.eval()(torch.from_numpy(inputs)).numpy()


def _write(path: str | Path, content: bytes) -> None:
    if Path(path).is_dir():
        raise UserError(f"{path} is a directory; name the file to write")
    try:
        atomic_write(path, lambda tmp: tmp.write_bytes(content))
    except OSError as e:  # an unwritable or missing place: the user's to fix
        raise UserError(f"cannot write {path}: {e.strerror or e}") from None


def _pt2e_quantized(model: torch.nn.Module, sample: tuple, calibration: np.ndarray, quantizer):
    """Static post-training quantization in PyTorch 2 export form: observers see the calibration
    images (one at a time, as the model is exported for batch 1), then fake quantization is
    folded into quantize/dequantize pairs the converter lowers to integer kernels."""
    from torchao.quantization.pt2e import move_exported_model_to_eval, quantize_pt2e

    prepared = quantize_pt2e.prepare_pt2e(torch.export.export(model, sample).module(), quantizer)
    with torch.no_grad():
        for x in calibration:
            prepared(torch.from_numpy(x[None]))
    quantized = move_exported_model_to_eval(quantize_pt2e.convert_pt2e(prepared, fold_quantize=False))
    quantized.training = False  # its graph is in eval form now; the flag tells the converter so
    return quantized


def run_litert(path: str | Path, inputs: np.ndarray) -> np.ndarray:
    """Logits of a .tflite model for each image (batch 1), from LiteRT's interpreter; an int8
    model's integer input and output are (de)quantized with their own scale and zero point."""
    it = interpreter(path)
    (inp,), (out,) = it.get_input_details(), it.get_output_details()
    logits = []
    for x in inputs:
        it.set_tensor(inp["index"], to_tensor(x[None], inp))
        it.invoke()
        logits.append(from_tensor(it.get_tensor(out["index"])[0], out))
    return np.stack(logits)


def export_litert(model: torch.nn.Module, path: str | Path, inputs: np.ndarray,
                  calibration: np.ndarray | None = None) -> dict:
    """Convert `model` to a LiteRT flatbuffer at `path` (batch 1, NCHW float input as in PyTorch);
    int8 (per-channel weights, static activations) when `calibration` images are given.
    Returns the check against the float PyTorch model on `inputs`, the conversion's seconds
    and the file's MB."""
    os.environ.setdefault("LITERT_TORCH_SHOW_PROGRESS", "n")  # its progress lines would bury the check
    litert_torch = require("litert_torch", "--litert")
    model = model.eval()
    sample = (torch.from_numpy(inputs[:1]),)
    t0, c0 = time.perf_counter(), time.process_time()
    if calibration is None:
        edge = litert_torch.convert(model, sample)
    else:
        from litert_torch.quantize import pt2e_quantizer, quant_config

        quantizer = pt2e_quantizer.PT2EQuantizer().set_global(
            pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
        edge = litert_torch.convert(_pt2e_quantized(model, sample, calibration, quantizer), sample,
                                    quant_config=quant_config.QuantConfig(pt2e_quantizer=quantizer))
    content = edge.model_content()
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    _write(path, content)
    return {"format": "litert", "precision": "int8" if calibration is not None else "float32",
            "export_seconds": seconds, "export_cpu_seconds": cpu_seconds, "mb": len(content) / 1e6,
            **agreement(torch_logits(model, inputs), run_litert(path, inputs))}


def run_executorch(path: str | Path, inputs: np.ndarray) -> np.ndarray:
    """Logits of a .pte program for each image (batch 1), from ExecuTorch's runtime."""
    require("executorch", "--executorch")
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    return np.stack([method.execute([torch.from_numpy(x[None])])[0][0].numpy() for x in inputs])


def not_delegated(edge) -> Counter:
    """Ops of a lowered program that XNNPACK did not take (they run in ExecuTorch's portable
    kernels, slower on a phone): op name -> count. Ops on constants alone (dtype copies of
    scalar constants) are left out: they cost nothing per image."""
    program = edge.exported_program()
    user_inputs = set(program.graph_signature.user_inputs)
    counts = Counter()
    for n in program.graph_module.graph.nodes:
        name = getattr(n.target, "__name__", str(n.target))
        if n.op != "call_function" or name in ("executorch_call_delegate", "getitem"):
            continue
        if all(a.op == "placeholder" and a.name not in user_inputs for a in n.all_input_nodes):
            continue
        counts[name] += 1
    return counts


def export_executorch(model: torch.nn.Module, path: str | Path, inputs: np.ndarray) -> dict:
    """Lower `model` to an ExecuTorch program at `path` (batch 1, float32) with its ops delegated
    to XNNPACK. Returns the check against PyTorch on `inputs`, the seconds, the file's MB and
    the ops XNNPACK left out."""
    require("executorch", "--executorch")
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    model = model.eval()
    t0, c0 = time.perf_counter(), time.process_time()
    edge = to_edge_transform_and_lower(torch.export.export(model, (torch.from_numpy(inputs[:1]),)),
                                       partitioner=[XnnpackPartitioner()])
    left = not_delegated(edge)
    content = edge.to_executorch().buffer
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    _write(path, content)
    return {"format": "executorch", "precision": "float32", "export_seconds": seconds,
            "export_cpu_seconds": cpu_seconds, "mb": len(content) / 1e6, "not_delegated": dict(left),
            **agreement(torch_logits(model, inputs), run_executorch(path, inputs))}


def describe(result: dict, path: str | Path, about: str) -> str:
    """The lines `nas arch export` prints for one export."""
    name = {"litert": "LiteRT", "executorch": "ExecuTorch (XNNPACK)"}[result["format"]]
    lines = [f"wrote {path}: {name} {result['precision']}, {result['mb']:.2f} MB, "
             f"converted in {result['export_seconds']:.1f} s ({result['export_cpu_seconds']:.1f} s CPU)",
             f"check against PyTorch{' (float)' if result['precision'] == 'int8' else ''} on {about}: "
             f"max |diff| {result['max_abs_diff']:.3g} (logits up to {result['max_abs_logit']:.3g}), "
             f"top-1 agreement {result['top1_agreement']:.4f}"]
    if result["format"] == "executorch":
        left = result["not_delegated"]
        lines.append("XNNPACK runs every op" if not left else "left to portable kernels: "
                     + ", ".join(f"{op} {n}" for op, n in sorted(left.items())))
    return "\n".join(lines)
