"""A benchmark as one declaration: its space, its records, what its accuracy and its devices
measure, where it comes from and under which license; and the registry of benchmarks by name.

Each benchmark module of this package declares one `Benchmark` named `BENCHMARK`; `get_benchmark`
imports it on first use (a benchmark's records load pandas, and a surrogate scikit-learn), so
code that serves any benchmark (the `benchmark:NAME` evaluator, a study's `--benchmark NAME`)
reads the declaration and never the module.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from search_spaces.errors import UserError

#: benchmark name -> the module of this package that declares it
BENCHMARKS = {"nasbench_macro": "nas.benchmarks.nasbench_macro", "accel_nasbench": "nas.benchmarks.accel_nasbench"}

#: where an accuracy came from: the benchmark's own training of that network, or a model fitted on them
SOURCES = ("record", "surrogate")


@dataclass(frozen=True)
class Device:
    """A device the benchmark's authors timed whole networks on: records column `column` holds
    `unit` ("ms" per image, or "images/s"), measured as `measures` says."""

    name: str
    column: str
    unit: str
    measures: str

    def ms_per_image(self, records: pd.DataFrame) -> pd.Series:
        """The column as a cost in ms per image (a throughput inverted); NaN where not measured."""
        values = records[self.column].astype(float)
        return values if self.unit == "ms" else 1000.0 / values


@dataclass(frozen=True)
class Benchmark:
    """One benchmark: `records()` every record (index: the record's code), `distinct()` one row per
    network, `code(vector)` the code of a decision vector of `space`, `answer(code, rng)` its
    accuracy in percent: the mean over its trainings when `rng` is None, else one training's drawn
    by `rng` (what one real training would report); a network without a record is answered by
    the benchmark's `surrogate`, if it has one (`accuracy_source` says which)."""

    name: str
    title: str            # the benchmark and its paper
    space: str            # the search space its networks form (`search_spaces.space.SPACES`)
    about: str            # how its accuracies were measured, for a search's summary
    accuracy: str         # the column of `distinct()` holding the accuracy in percent
    accuracy_means: str   # what that accuracy is
    trainings: str        # how many trainings each network had ("its 3 training seeds")
    test_images: int      # images each accuracy was measured on (the summary's statistical resolution)
    source: str           # repository, commit and file
    license: str          # the license and the packaged copy of its text
    records: Callable[[], pd.DataFrame]
    distinct: Callable[[], pd.DataFrame]
    code: Callable[[Sequence[int]], str]
    answer: Callable[[str, np.random.Generator | None], float]
    devices: tuple[Device, ...] = ()
    surrogate: str | None = None  # what answers a network without a record, if anything does

    def accuracy_source(self, code: str) -> str:
        """Where `answer(code, ...)` comes from: one of `SOURCES`."""
        return "record" if code in self.records().index else "surrogate"

    def device(self, name: str) -> Device:
        for d in self.devices:
            if d.name == name:
                return d
        raise UserError(f"benchmark {self.name} timed no device {name!r} "
                        f"(known: {', '.join(d.name for d in self.devices) or 'none'})")


def get_benchmark(name: str) -> Benchmark:
    """The declaration of benchmark `name`; UserError naming the known ones if there is none."""
    if name not in BENCHMARKS:
        raise UserError(f"unknown benchmark {name!r} (known: {', '.join(BENCHMARKS)})")
    return importlib.import_module(BENCHMARKS[name]).BENCHMARK
