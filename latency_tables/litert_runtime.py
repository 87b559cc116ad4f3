"""LiteRT (TensorFlow Lite), the runtime Android phones run: load a .tflite model in its
interpreter, feed it, and time it as a phone's big core runs it (XNNPACK, one thread).

The interpreter comes from `ai-edge-litert`, part of the optional deploy extra; a missing
package is a one-line error naming the extra (`require`). The timer follows
`measure.OnnxRuntimeRunner`: warm-up runs, then timed runs until the median is stable or the
budget is spent, on the calling thread's CPU time (with one thread XNNPACK runs in the calling
thread, so preemption by other processes is left out), pinned to one CPU.
"""
from __future__ import annotations

import importlib
import time
from pathlib import Path

import numpy as np

from latency_tables.measure import Budget, pinned, summarize
from search_spaces.errors import UserError

EXTRA = "pip install -e '.[deploy]'"


def require(module: str, flag: str):
    """Import a package of the deploy extra, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise UserError(f"{flag} needs {e.name or module}, from the deploy extra: {EXTRA}") from None


def interpreter(model: str | Path | bytes, threads: int = 1):
    """LiteRT's interpreter for a .tflite file or its bytes, with its default CPU delegate
    (XNNPACK) and `threads` threads, tensors allocated."""
    Interpreter = require("ai_edge_litert.interpreter", "LiteRT").Interpreter
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    content = model if isinstance(model, bytes) else None
    it = Interpreter(model_path=None if content else str(model), model_content=content, num_threads=threads)
    it.allocate_tensors()
    return it


def to_tensor(x: np.ndarray, detail: dict) -> np.ndarray:
    """A float array as the tensor `detail` describes takes it (quantized with its scale and
    zero point where the tensor is integer, as an int8 model's input is)."""
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def from_tensor(x: np.ndarray, detail: dict) -> np.ndarray:
    """A tensor's values as floats (dequantized where it is integer)."""
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero_point = detail["quantization"]
    return ((x.astype(np.float32) - zero_point) * scale).astype(np.float32)


def _stable(samples: list[float], budget: Budget) -> bool:
    """Done timing: the budget's seconds are spent, or the median of the first half is within
    its tolerance of the median of all (the rule `OnnxRuntimeRunner` stops on)."""
    if sum(samples) / 1e3 >= budget.max_seconds:
        return True
    half, now = np.median(samples[:len(samples) // 2]), np.median(samples)
    return abs(now - half) <= budget.rel_tol * now


def time_litert(model: str | Path | bytes, threads: int = 1, budget: Budget | None = None, seed: int = 0) -> dict:
    """Time one .tflite model on random inputs in LiteRT's interpreter (XNNPACK); returns the
    summary of its runs in ms (`measure.summarize`: median_ms, mean_ms, ...)."""
    b = budget or Budget()
    it = interpreter(model, threads)
    for d in it.get_input_details():
        x = np.random.default_rng(seed).standard_normal(d["shape"]).astype(np.float32)
        it.set_tensor(d["index"], to_tensor(x, d))
    clock = time.thread_time if threads == 1 else time.perf_counter
    with pinned(threads):
        for _ in range(b.warmup):
            it.invoke()
        samples = []
        for rnd in range(b.max_rounds):
            for _ in range(b.runs_per_round):
                t0 = clock()
                it.invoke()
                samples.append((clock() - t0) * 1e3)
            if rnd + 1 >= b.min_rounds and _stable(samples, b):
                break
    return summarize(samples)
