"""How a search scores a candidate: one object per kind of evaluator, chosen by `--evaluator SPEC`.

An evaluator is checked once, before anything starts (`check`: one-line errors, returns the
spec as config.json stores it), scores one candidate (`score`: the candidate's model and its
validation accuracy, a fraction), and says for the summary what it did (`describe`). `needs_workers`
says whether its candidates go to Ray Tune's workers (training, supernet scoring) or are scored
in the search's own process (a benchmark lookup: Ray's per-trial overhead would dominate).
Adding one is a class here and an entry in `EVALUATORS`.

- `train`: proxy training of each candidate (`nas.training`).
- `supernet:DIR[@EPOCH]`: the candidate's slice of a trained supernet (`nas.supernet.scoring`),
  with the weights of its last finished epoch or of EPOCH (one it keeps).
- `benchmark:NAME[:mean]`: the accuracy a benchmark's authors measured (`nas.benchmarks`), no
  training; by default one of its training seeds drawn per query, reproducibly from the search's
  seed and the trial, as one real training's noise; `:mean` takes the mean over seeds. A network
  the benchmark has no record of is answered by its surrogate (a model), and trials.csv says which.
- `zc:NAME`: a zero-cost score (`nas.zero_cost`) of the untrained proxy network on a batch of
  the search's training data, as its quantile among random networks of the space (`Calibration`):
  the reward needs a fraction, and a raw score is on no fixed scale and may be negative.
"""
from __future__ import annotations

import math
import zlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nas.benchmarks.benchmark import BENCHMARKS, get_benchmark
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

    def data_seed(self, job: dict) -> int:
        """The seed of the training/validation split a candidate is scored on: the search's."""
        return job["seed"]

    def accuracy_source(self, vector) -> str:
        """Where the accuracy of a candidate's `vector` comes from, when the evaluator can tell
        (a benchmark: its record or its surrogate); "" otherwise. trials.csv's accuracy_source."""
        return ""


class Train(Evaluator):
    prefix, help = "train", "train: each candidate trained for --epochs on --data (the default on a GPU)"

    def check(self, space, num_classes, resolution) -> str:
        if self.argument:
            raise UserError(f"--evaluator train takes no argument, got 'train:{self.argument}'")
        return "train"

    def score(self, job, data, arch):
        raise NotImplementedError("nas.evaluation trains the candidate itself: training also reports loss and speed")

    def describe(self, cfg) -> str:
        return f"{cfg.epochs} epoch(s) per candidate"


class Supernet(Evaluator):
    prefix = "supernet"
    help = ("supernet:DIR[@EPOCH]: the candidate's slice of a supernet trained by `nas supernet train` (its last "
            "epoch, or EPOCH), on its data at its resolution")

    def parts(self) -> tuple[str, int | None]:
        """(the absolute directory, the epoch named after '@' or None for the last finished one)."""
        if not self.argument:
            raise UserError("--evaluator supernet:DIR needs the supernet's directory")
        directory, at, epoch = self.argument.rpartition("@")
        if not at or not directory:  # no '@', or a directory whose name starts with one
            return str(Path(self.argument).resolve()), None
        if not (epoch.isdigit() and int(epoch) >= 1):
            raise UserError(f"--evaluator supernet:{self.argument}: the epoch after '@' must be a positive whole "
                            f"number, got {epoch!r}")
        return str(Path(directory).resolve()), int(epoch)

    def directory(self) -> str:
        return self.parts()[0]

    def data_and_resolution(self, data: str | None, resolution: int | None) -> tuple[str, int]:
        """The search's data spec and proxy resolution: the supernet's. Its slices' weights and
        BatchNorm statistics hold for the images and the size it was trained on, so a --data or
        --resolution the user gave (None: not given) must be those."""
        from nas.data import absolute_spec
        from nas.supernet.directory import SupernetDir

        directory = self.directory()
        cfg = SupernetDir(directory).config()
        if data is not None and absolute_spec(data) != cfg.data:
            raise UserError(f"--data {data} disagrees with supernet {directory}, trained on {cfg.data}; "
                            f"drop --data to use the supernet's")
        if resolution is not None and resolution != cfg.resolution:
            raise UserError(f"--resolution {resolution} disagrees with supernet {directory}, trained at "
                            f"{cfg.resolution}px; drop --resolution to use the supernet's")
        return cfg.data, cfg.resolution

    def check(self, space, num_classes, resolution) -> str:
        from nas.supernet.directory import SupernetDir

        directory, epoch = self.parts()
        _, cfg = SupernetDir(directory).trained(epoch)  # one line without a finished epoch, or without EPOCH's
        if (cfg.space, cfg.num_classes, cfg.resolution) != (space, num_classes, resolution):
            raise UserError(f"supernet {directory} was trained for space {cfg.space}, {cfg.num_classes} classes at "
                            f"{cfg.resolution}px; this search is {space}, {num_classes} classes at {resolution}px")
        return f"supernet:{directory}" + (f"@{epoch}" if epoch else "")

    def score(self, job, data, arch):
        from nas.supernet.scoring import supernet_accuracy
        return supernet_accuracy(*self.parts(), job, data)

    def data_seed(self, job: dict) -> int:
        """The supernet's: its validation images are the ones it held out; a search of another --seed
        would split the training set otherwise, and score on images the supernet trained on."""
        from nas.supernet.directory import SupernetDir
        return SupernetDir(self.directory()).config().seed

    def describe(self, cfg) -> str:
        from nas.supernet.scoring import RECALIBRATE_IMAGES
        return (f"no training per candidate: scored as a slice of the supernet {self.argument} "
                f"after BN recalibration on {RECALIBRATE_IMAGES} images (resolution {cfg.resolution} px and "
                f"data {cfg.data} taken from the supernet)")


class Benchmark(Evaluator):
    prefix = "benchmark"
    help = ("benchmark:NAME[:mean]: the accuracy a benchmark's authors measured, no training "
            f"({', '.join(BENCHMARKS)}; one seed drawn per query, :mean for the mean; a network the benchmark "
            "did not train: its surrogate's prediction)")
    needs_workers = False

    def __init__(self, argument: str):
        super().__init__(argument)
        self.name, _, self.mode = argument.partition(":")
        self.test_images = get_benchmark(self.name).test_images if self.name in BENCHMARKS else None

    def check(self, space, num_classes, resolution) -> str:
        source = get_benchmark(self.name)
        if self.mode not in ("", "mean"):
            raise UserError(f"--evaluator benchmark:{self.name}:{self.mode}: the only option is ':mean'")
        if space != source.space:
            raise UserError(f"benchmark {self.name} holds networks of space {source.space}; this search is "
                            f"--space {space}")
        return f"benchmark:{self.argument}"

    def score(self, job, data, arch):
        from search_spaces.builder import build_model

        bench = get_benchmark(self.name)
        rng = None  # the mean; else the same search seed and trial draw the same training seed
        if self.mode != "mean":
            rng = np.random.default_rng([job["seed"], zlib.crc32(str(job["key"]).encode())])
        accuracy = bench.answer(bench.code(job["vector"]), rng)
        torch.manual_seed(job["seed"])
        return build_model(arch), accuracy / 100

    def accuracy_source(self, vector) -> str:
        bench = get_benchmark(self.name)
        return bench.accuracy_source(bench.code(vector))

    def describe(self, cfg) -> str:
        bench = get_benchmark(self.name)
        how = f"the mean over {bench.trainings}" if self.mode == "mean" else f"one of {bench.trainings}, drawn"
        rest = f"; a network it did not train: {bench.surrogate} (trials.csv's accuracy_source says which)" \
            if bench.surrogate else ""
        return f"no training: accuracy looked up in {bench.about}, {how}{rest}; best/ holds initialized weights"


#: random networks of the space whose scores calibrate `zc:NAME` (a candidate's quantile among them)
CALIBRATION_NETWORKS = 20


def batch_count(name: str) -> int:
    """Batches score `name` reads: ZiCo's statistic is over batches (its paper uses two), the other
    network scores read one, flops and params none."""
    from nas.zero_cost import get_score

    return 2 if name == "zico" else 1 if get_score(name).needs == "model" else 0


def score_batches(data, name: str, batch_size: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The training images score `name` reads, drawn with `seed`, normalized as training normalizes them."""
    split = data.train
    order = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))
    order = order[:batch_count(name) * batch_size]
    return [(split.normalize(split.x[i]), split.y[i]) for i in order.split(batch_size)]


@dataclass(frozen=True)
class Calibration:
    """A logistic CDF fitted to asinh(score) of random networks of the space by its median and
    interquartile range (a logistic's IQR is 2 ln 3 scales): a score's estimated quantile among
    them, in (0, 1) and rank-preserving, what the reward's ACC x (LAT/T)^w needs of an accuracy.
    asinh because synflow spans orders of magnitude between networks (a product over layers)
    and jacob_cov is negative: log-like for large |score|, linear near 0."""
    center: float
    scale: float

    @classmethod
    def fit(cls, scores: np.ndarray, name: str) -> Calibration:
        finite = np.arcsinh(scores[np.isfinite(scores)])
        q1, center, q3 = np.percentile(finite, [25, 50, 75]) if len(finite) else (np.nan,) * 3
        if not q3 > q1:
            raise ValueError(f"{name} cannot rank this space's networks: {len(finite)} of {len(scores)} random "
                             f"networks have a finite score, their quartiles are equal")
        return cls(float(center), float((q3 - q1) / (2 * np.log(3))))

    def quantile(self, score: float) -> float:
        from scipy.special import expit
        return float(expit((np.arcsinh(score) - self.center) / self.scale))


_calibrations: dict[tuple, Calibration] = {}  # per process: a search's candidates share one


class ZeroCost(Evaluator):
    prefix = "zc"
    help = ("zc:NAME: a zero-cost score of the untrained candidate, no training (see nas.zero_cost; "
            "the accuracy column holds its quantile among random networks)")
    # a score takes about a second on a small network: a Ray trial's overhead would be as much
    needs_workers = False

    def check(self, space, num_classes, resolution) -> str:
        from nas.zero_cost import SCORES

        if self.argument not in SCORES:
            raise UserError(f"unknown zero-cost score {self.argument!r} (known: {', '.join(SCORES)})")
        return f"zc:{self.argument}"

    def raw(self, job: dict, data, arch: Arch) -> tuple[torch.nn.Module, float]:
        """(the proxy network training would start from, its score at initialization)."""
        from nas.training import build_for_training
        from nas.zero_cost import get_score
        from search_spaces.proxy import for_proxy

        score = get_score(self.argument)
        model = build_for_training(arch, data, seed=job["seed"])
        if score.needs == "arch":
            return model, score(for_proxy(arch.replace(num_classes=data.num_classes), data.resolution))
        return model, score(model, score_batches(data, self.argument, job["batch_size"], job["seed"]),
                            data.num_classes)

    def calibration(self, job: dict, data) -> Calibration:
        """Of `CALIBRATION_NETWORKS` networks drawn with the search's seed: a resumed search maps
        scores as before."""
        import random

        from search_spaces.space import get_space

        key = (self.argument, job["space"], job["data"], job["resolution"], job["train_subset"], job["seed"],
               job["batch_size"])
        if key not in _calibrations:
            space, rng = get_space(job["space"]), random.Random(job["seed"])
            scores = [self.raw(job, data, space.decode(space.sample(rng)))[1] for _ in range(CALIBRATION_NETWORKS)]
            _calibrations[key] = Calibration.fit(np.array(scores), self.argument)
        return _calibrations[key]

    def score(self, job, data, arch):
        model, value = self.raw(job, data, arch)
        if not math.isfinite(value):  # a failed trial that says why, not a quantile of 0 or 1
            raise ValueError(f"{self.argument} score is {value}")
        return model, self.calibration(job, data).quantile(value)

    def describe(self, cfg) -> str:
        n = batch_count(self.argument)
        read = (f"at initialization (seed {cfg.seed}) on {n} batch(es) of {cfg.batch_size} training images "
                f"at {cfg.resolution}px" if n else f"read from the proxy network's IR at {cfg.resolution}px")
        return (f"no training: zero-cost score {self.argument} {read}; the accuracy column holds not an accuracy "
                f"but the score's estimated quantile among {CALIBRATION_NETWORKS} random {cfg.space} networks "
                f"(a logistic fit to asinh of their scores); best/ holds initialized weights")


EVALUATORS = {cls.prefix: cls for cls in (Train, Supernet, Benchmark, ZeroCost)}


def evaluator(spec: str) -> Evaluator:
    """The evaluator of `--evaluator SPEC` (not yet checked against a search: see `Evaluator.check`)."""
    if not isinstance(spec, str):
        raise UserError(f"evaluator must be a string, got {spec!r}")
    prefix, _, argument = spec.partition(":")
    if prefix not in EVALUATORS:
        raise UserError(f"unknown evaluator {spec!r} (known: {', '.join(e.help.split(':')[0] for e in EVALUATORS.values())}"
                        f"; see nas search --help)")
    return EVALUATORS[prefix](argument)
