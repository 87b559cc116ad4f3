"""Timing ONNX models: onnxruntime on this machine, or a user command for another device.

Timing on a shared CPU is noisy: when other processes run, a 16 ms network is preempted
for about half of its wall time while a 0.1 ms op rarely is, so wall-clock medians jump
between levels. With one thread onnxruntime runs the model in the calling thread, so the
runner times that thread's CPU time (`time.thread_time`): on an idle core it equals the
wall time, under load it leaves out the time other processes took. (With more threads
it must use wall time.) Models are also timed in interleaved rounds: every round runs each
model of the batch once in a fresh random order, until each median is stable or its time
budget is spent, so a slow phase hits all models alike instead of biasing a few.
A runner of precision int8 times each model after quantizing it (`latency_tables.quantize`).
"""
from __future__ import annotations

import contextlib
import os
import random
import re
import shlex
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from latency_tables.quantize import check_precision, for_precision
from search_spaces.errors import UserError

STATS = ("mean_ms", "median_ms", "p10_ms", "p90_ms", "std_ms", "count")


def summarize(samples_ms) -> dict:
    """Robust summary of one model's timed runs (the table's statistics columns)."""
    x = np.asarray(samples_ms, dtype=float)
    return {"mean_ms": float(x.mean()), "median_ms": float(np.median(x)),
            "p10_ms": float(np.percentile(x, 10)), "p90_ms": float(np.percentile(x, 90)),
            "std_ms": float(x.std()), "count": int(x.size)}


@contextlib.contextmanager
def pinned(threads: int):
    """Pin this process to `threads` CPUs while timing (where the OS allows it), so the scheduler
    does not move the timed thread between cores mid-run; the old affinity is restored after."""
    if not hasattr(os, "sched_setaffinity"):
        yield
        return
    old = os.sched_getaffinity(0)
    cpus = sorted(old)
    os.sched_setaffinity(0, cpus[-threads:] if threads <= len(cpus) else cpus)
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


@dataclass
class Budget:
    """How long to time each model: warm-up runs, then rounds until the median is stable."""

    warmup: int = 2
    runs_per_round: int = 1       # one run per round: like inside a network, other ops ran in between
    min_rounds: int = 8
    max_rounds: int = 40
    max_seconds: float = 0.12     # timed seconds per model before stopping early
    rel_tol: float = 0.01         # stable: median of the first half within 1% of the median of all

    def __post_init__(self):
        if not 2 <= self.min_rounds <= self.max_rounds:  # the stability check compares two halves
            raise ValueError(f"Budget needs 2 <= min_rounds <= max_rounds, got {self.min_rounds} and {self.max_rounds}")


class OnnxRuntimeRunner:
    """Times models with onnxruntime on this machine: fixed threads, sequential execution."""

    name = "onnxruntime"

    def __init__(self, threads: int = 1, budget: Budget | None = None, seed: int = 0, precision: str = "fp32"):
        import onnxruntime as ort

        if threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        self.ort, self.threads, self.budget = ort, threads, budget or Budget()
        self.precision = check_precision(precision)  # int8: each model is quantized before it is timed
        self.version = ort.__version__
        self.rng = random.Random(seed)
        # one thread: the run happens in this thread, whose CPU time excludes preemption
        self.clock_name = "thread_cpu" if threads == 1 else "wall"
        self.clock = time.thread_time if threads == 1 else time.perf_counter

    def session(self, model):
        so = self.ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = self.ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = self.ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        return self.ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])

    def measure(self, models: list) -> list[list[float]]:
        """Timed samples (ms) of each model, interleaved in rounds."""
        with pinned(self.threads):
            b = self.budget
            runs = []
            for model in [*models, models[-1]]:
                sess = self.session(for_precision(model, self.precision))
                inp = sess.get_inputs()[0]
                feed = {inp.name: np.random.default_rng(0).standard_normal(inp.shape).astype(np.float32)}
                for _ in range(b.warmup):
                    sess.run(None, feed)
                runs.append((sess, feed))
            # The session created last ran 0.11-0.13 ms (2.5%) faster than its twins on an Intel
            # Xeon, and a spare one created after it, kept alive and never timed, removed that.
            _spare = runs.pop()
            samples = [[] for _ in models]
            active = list(range(len(models)))
            clock = self.clock
            for rnd in range(b.max_rounds):
                self.rng.shuffle(active)
                for i in active:
                    sess, feed = runs[i]
                    for _ in range(b.runs_per_round):
                        t0 = clock()
                        sess.run(None, feed)
                        samples[i].append((clock() - t0) * 1e3)
                if rnd + 1 >= b.min_rounds:
                    active = [i for i in active if not self._done(samples[i])]
                if not active:
                    break
            return samples

    def _done(self, x: list[float]) -> bool:
        b = self.budget
        if sum(x) / 1e3 >= b.max_seconds:  # timed seconds spent on this model
            return True
        half, now = np.median(x[:len(x) // 2]), np.median(x)
        return abs(now - half) <= b.rel_tol * now


_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


class CommandRunner:
    """Times models with a user command (a phone over adb, a board over ssh).

    The template gets `{model}` replaced by an ONNX file path and must print the latency in
    milliseconds; the last number it prints is taken. Each model is run `repeats` times,
    interleaved across the batch like the onnxruntime runner.
    """

    name = "command"

    def __init__(self, template: str, repeats: int = 3, timeout: float = 600, seed: int = 0,
                 precision: str = "fp32"):
        if not template or "{model}" not in template:
            raise UserError("--command must contain {model}, the place for the ONNX file path")
        self.template, self.repeats, self.timeout = template, repeats, timeout
        self.precision = check_precision(precision)
        self.rng = random.Random(seed)
        self.version = "command"
        self.clock_name = "reported by the command"

    def run_one(self, path: Path) -> float:
        cmd = self.template.replace("{model}", shlex.quote(str(path)))
        try:
            out = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"latency command timed out after {self.timeout:g} s: {cmd}") from None
        numbers = _NUMBER.findall(out.stdout)
        if out.returncode != 0 or not numbers:
            reason = (out.stderr.strip().splitlines() or ["no output"])[-1]
            raise UserError(f"latency command failed (exit {out.returncode}, {reason!r}): {cmd}")
        return float(numbers[-1])

    def measure(self, models: list) -> list[list[float]]:
        import onnx

        samples = [[] for _ in models]
        with tempfile.TemporaryDirectory(prefix="nas-latency-") as tmp:
            paths = [Path(tmp) / f"op{i}.onnx" for i in range(len(models))]
            for model, path in zip(models, paths):
                onnx.save(for_precision(model, self.precision), path)
            order = list(range(len(models)))
            for _ in range(self.repeats):
                self.rng.shuffle(order)
                for i in order:
                    samples[i].append(self.run_one(paths[i]))
        return samples
