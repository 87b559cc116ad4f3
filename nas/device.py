"""The device that trains: `--device auto|cpu|cuda|cuda:N` resolved once, and described for reports.

Every command that trains takes the same flag through `add_device_argument` and resolves it
with `resolve_device`, so a typo or a GPU that is not there is one line (UserError) before
any work starts. Inside a Ray trial, Ray restricts CUDA_VISIBLE_DEVICES to the GPU it
assigned, so `cuda` there means that GPU. A search with `--device cuda:N` (`--workers 1`
only) asks Ray for no GPU: Ray then leaves CUDA_VISIBLE_DEVICES as the command had it, and
the trial trains on cuda:N as the command numbers it (`nas.search.trial_resources`).
"""
from __future__ import annotations

import platform
import re

import torch

from search_spaces.errors import UserError


def add_device_argument(parser) -> None:
    parser.add_argument("--device", default="auto", metavar="DEVICE",
                        help="auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or cuda:N (default auto)")


def resolve_device(spec: str = "auto") -> torch.device:
    """`auto`, `cpu`, `cuda` or `cuda:N` -> a torch.device that exists on this machine."""
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if not match:
        raise UserError(f"unknown device {spec!r}: use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UserError(f"device {spec!r}: CUDA is not available here (torch {torch.__version__}, "
                        f"built {'with CUDA ' + torch.version.cuda if torch.version.cuda else 'without CUDA'}); "
                        f"GPUs present: {gpus_present()}")
    index = int(match.group(1)) if match.group(1) is not None else torch.cuda.current_device()
    if index >= torch.cuda.device_count():
        raise UserError(f"device {spec!r}: this machine has {torch.cuda.device_count()} CUDA device(s): "
                        f"{gpus_present()}")
    return torch.device("cuda", index)


def gpus_present() -> str:
    """The CUDA devices torch sees here (after CUDA_VISIBLE_DEVICES), for error messages: 'none' or
    'cuda:0 (NVIDIA H100), cuda:1 (...)'."""
    if not torch.cuda.is_available():
        return "none"
    return ", ".join(f"cuda:{i} ({torch.cuda.get_device_name(i)})" for i in range(torch.cuda.device_count())) \
        or "none"


def describe(device: torch.device) -> dict:
    """What config.json and the summaries record about the device."""
    cuda, amp = device.type == "cuda", amp_dtype(device)
    return {"device": str(device),
            "name": torch.cuda.get_device_name(device) if cuda else (platform.processor() or platform.machine()),
            "torch": torch.__version__, "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version() if cuda else None,
            "amp": str(amp).removeprefix("torch.") if amp else None}


def describe_line(info: dict) -> str:
    cuda = f", CUDA {info['cuda']}" if info.get("cuda") else ""
    amp = f", {info['amp']} autocast" if info.get("amp") else ""
    return f"{info['device']} ({info['name']}), torch {info['torch']}{cuda}{amp}"


def amp_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed precision on CUDA: bf16 where the GPU supports it (no loss scaling), else fp16; none on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
