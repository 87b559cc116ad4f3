"""Whole networks timed end to end with onnxruntime on this machine, shared by the experiments.

All networks are timed in the same interleaved rounds, so a burst of load from other jobs hits
them alike and their ratios stay meaningful on a shared machine."""
from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager

from latency_tables.measure import Budget, OnnxRuntimeRunner, summarize
from search_spaces.ir import Arch
from search_spaces.onnx_export import export_onnx

#: enough rounds for a stable median of a 224x224 network on a busy 2-core machine
THOROUGH = Budget(warmup=5, min_rounds=40, max_rounds=200, max_seconds=8.0)


def measure_end_to_end(archs: list[Arch], threads: int, budget: Budget = THOROUGH) -> list[dict]:
    """Per network: median, p10, p90 (ms) and the number of timed runs (`latency_tables.measure.summarize`)."""
    runner = OnnxRuntimeRunner(threads, budget)
    return [summarize(s) for s in runner.measure([export_onnx(a) for a in archs])]


@contextmanager
def busy_processes(n: int):
    """`n` processes spinning on the CPU while the body runs: the load a timing must survive."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()
