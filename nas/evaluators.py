"""How a search scores a candidate: one object per kind of evaluator, chosen by `--evaluator SPEC`.

An evaluator is checked once, before anything starts (`check`: one-line errors, returns the
spec as config.json stores it), scores one candidate (`score`: the candidate's model and its
validation accuracy, a fraction), and says for the summary what it did (`describe`). `needs_workers`
says whether its candidates go to Ray Tune's workers (training, supernet scoring) or are scored
in the search's own process (a benchmark lookup: Ray's per-trial overhead would dominate).
Adding one is a class here and an entry in `EVALUATORS`.

- `train`: proxy training of each candidate (`nas.training`).
- `supernet:DIR`: the candidate's slice of a trained supernet (`nas.supernet.scoring`).
- `benchmark:NAME[:mean]`: the accuracy a benchmark's authors measured (`nas.benchmarks`), no
  training; by default one of its training seeds drawn per query, reproducibly from the search's
  seed and the trial, as one real training's noise; `:mean` takes the mean over seeds.
"""
from __future__ import annotations

import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from search_spaces.errors import UserError
from search_spaces.ir import Arch


class Evaluator(ABC):
    prefix: str          # the spec's first word
    help: str            # one line for `nas search --help`
    needs_workers = True
    #: images the accuracy was measured on, when not the search's validation split (the summary's
    #: statistical resolution reads it)
    test_images: int | None = None

    def __init__(self, argument: str):
        self.argument = argument

    @abstractmethod
    def check(self, space: str, num_classes: int, resolution: int) -> str:
        """UserError (one line) unless this evaluator can score the search's candidates; the spec to store."""

    @abstractmethod
    def score(self, job: dict, data, arch: Arch) -> tuple[torch.nn.Module, float]:
        """(the candidate's model, its accuracy as a fraction) for a job of `nas.evaluation`."""

    @abstractmethod
    def describe(self, cfg) -> str:
        """How a candidate got its accuracy, for the summary."""


class Train(Evaluator):
    prefix, help = "train", "train: each candidate trained for --epochs on --data (the default)"

    def check(self, space, num_classes, resolution) -> str:
        if self.argument:
            raise UserError(f"--evaluator train takes no argument, got 'train:{self.argument}'")
        return "train"

    def score(self, job, data, arch):
        raise NotImplementedError("nas.evaluation trains the candidate itself: training also reports loss and speed")

    def describe(self, cfg) -> str:
        return f"{cfg.epochs} epoch(s) per candidate"


class Supernet(Evaluator):
    prefix, help = "supernet", "supernet:DIR: the candidate's slice of a supernet trained by `nas supernet train`"

    def check(self, space, num_classes, resolution) -> str:
        from nas.supernet.directory import SupernetDir

        if not self.argument:
            raise UserError("--evaluator supernet:DIR needs the supernet's directory")
        directory = str(Path(self.argument).resolve())
        _, cfg = SupernetDir(directory).trained()  # one line when it has no finished epoch yet
        if (cfg.space, cfg.num_classes, cfg.resolution) != (space, num_classes, resolution):
            raise UserError(f"supernet {directory} was trained for space {cfg.space}, {cfg.num_classes} classes at "
                            f"{cfg.resolution}px; this search is {space}, {num_classes} classes at {resolution}px")
        return f"supernet:{directory}"

    def score(self, job, data, arch):
        from nas.supernet.scoring import supernet_accuracy
        return supernet_accuracy(job, data)

    def describe(self, cfg) -> str:
        from nas.supernet.scoring import RECALIBRATE_IMAGES
        return (f"no training per candidate: scored as a slice of the supernet {self.argument} "
                f"after BN recalibration on {RECALIBRATE_IMAGES} images")


@dataclass(frozen=True)
class BenchmarkSource:
    space: str
    test_images: int
    about: str


#: benchmarks by name: the space their networks form and how they were trained and tested
BENCHMARKS = {"nasbench_macro": BenchmarkSource(
    "nasbench_macro", 10_000, "NAS-Bench-Macro (CIFAR-10, 50 epochs, 3 seeds, by the benchmark's authors)")}


class Benchmark(Evaluator):
    prefix = "benchmark"
    help = ("benchmark:NAME[:mean]: the accuracy a benchmark's authors measured, no training "
            f"({', '.join(BENCHMARKS)}; one seed drawn per query, :mean for the mean)")
    needs_workers = False

    def __init__(self, argument: str):
        super().__init__(argument)
        self.name, _, self.mode = argument.partition(":")
        self.test_images = BENCHMARKS[self.name].test_images if self.name in BENCHMARKS else None

    def check(self, space, num_classes, resolution) -> str:
        if self.name not in BENCHMARKS:
            raise UserError(f"unknown benchmark {self.name!r} (known: {', '.join(BENCHMARKS)})")
        if self.mode not in ("", "mean"):
            raise UserError(f"--evaluator benchmark:{self.name}:{self.mode}: the only option is ':mean'")
        source = BENCHMARKS[self.name]
        if space != source.space:
            raise UserError(f"benchmark {self.name} holds networks of space {source.space}; this search is "
                            f"--space {space}")
        return f"benchmark:{self.argument}"

    def score(self, job, data, arch):
        from nas.benchmarks import nasbench_macro
        from search_spaces.builder import build_model

        code = "".join(map(str, job["vector"]))
        if self.mode == "mean":
            accuracy = nasbench_macro.accuracy(code)
        else:  # the same search seed and trial draw the same training seed
            rng = np.random.default_rng([job["seed"], zlib.crc32(str(job["key"]).encode())])
            accuracy = nasbench_macro.draw(code, rng)
        torch.manual_seed(job["seed"])
        return build_model(arch), accuracy / 100

    def describe(self, cfg) -> str:
        how = "the mean over its 3 training seeds" if self.mode == "mean" else "one of its 3 training seeds, drawn"
        return (f"no training: accuracy looked up in {BENCHMARKS[self.name].about}, {how}; "
                f"best/ holds initialized weights")


EVALUATORS = {cls.prefix: cls for cls in (Train, Supernet, Benchmark)}


def evaluator(spec: str) -> Evaluator:
    """The evaluator of `--evaluator SPEC` (not yet checked against a search: see `Evaluator.check`)."""
    if not isinstance(spec, str):
        raise UserError(f"evaluator must be a string, got {spec!r}")
    prefix, _, argument = spec.partition(":")
    if prefix not in EVALUATORS:
        raise UserError(f"unknown evaluator {spec!r} (known: {', '.join(e.help.split(':')[0] for e in EVALUATORS.values())}"
                        f"; see nas search --help)")
    return EVALUATORS[prefix](argument)
