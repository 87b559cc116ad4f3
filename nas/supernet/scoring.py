"""Scoring and exporting candidates of a trained supernet: no training, only BatchNorm recalibration.

The supernet's running statistics mix every candidate trained through a layer; a candidate's
own statistics are re-estimated on a few training batches before it is evaluated (the same
recalibration the proxy training ends with) and written back into its slice, so the supernet and
the exported subnet stay the same function.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

from nas.data import Data, flips
from nas.supernet.directory import SupernetConfig, SupernetDir
from nas.supernet.model import Candidate, Supernet
from nas.training import evaluate, recalibrate_bn
from search_spaces.builder import Net
from search_spaces.errors import UserError

RECALIBRATE_IMAGES = 512

EVALUATOR_PREFIX = "supernet:"


@lru_cache(maxsize=1)
def cached_supernet(directory: str) -> tuple[Supernet, SupernetConfig]:
    return SupernetDir(directory).trained()


def evaluator_dir(evaluator: str) -> str | None:
    """The supernet directory of `--evaluator supernet:DIR` (absolute), None for `train`."""
    if evaluator == "train":
        return None
    if not evaluator.startswith(EVALUATOR_PREFIX) or not evaluator[len(EVALUATOR_PREFIX):]:
        raise UserError(f"--evaluator must be 'train' or 'supernet:DIR', got {evaluator!r}")
    return str(Path(evaluator[len(EVALUATOR_PREFIX):]).resolve())


def check_evaluator(evaluator: str, space: str, num_classes: int, resolution: int) -> str:
    """The evaluator with an absolute directory, after checking that its supernet was trained
    for this search (same space, classes and proxy resolution): one line if not."""
    directory = evaluator_dir(evaluator)
    if directory is None:
        return evaluator
    _, cfg = SupernetDir(directory).trained()  # one line when it has no finished epoch yet
    ours = (cfg.space, cfg.num_classes, cfg.resolution)
    if ours != (space, num_classes, resolution):
        raise UserError(f"supernet {directory} was trained for space {cfg.space}, {cfg.num_classes} classes at "
                        f"{cfg.resolution}px; this search is {space}, {num_classes} classes at {resolution}px")
    return EVALUATOR_PREFIX + directory


@torch.no_grad()
def recalibrated_subnet(supernet: Supernet, cand: Candidate, data: Data, flip: bool, seed: int,
                        images: int = RECALIBRATE_IMAGES) -> Net:
    """The candidate as a plain network with BatchNorm statistics of its own (also stored in its
    slice of the supernet)."""
    net = supernet.subnet(cand)
    recalibrate_bn(net, data.train, torch.Generator().manual_seed(seed), flip, images=images)
    state = net.state_dict()
    views = supernet.weights(cand, {k: v.shape for k, v in state.items()})
    for k, v in state.items():
        if "running_" in k:
            views[k].copy_(v)
    return net.eval()


def score(supernet: Supernet, cand: Candidate, data: Data, flip: bool, seed: int) -> tuple[Net, float]:
    """(the recalibrated subnet, its validation accuracy)."""
    net = recalibrated_subnet(supernet, cand, data, flip, seed)
    return net, evaluate(net, data.val)


def supernet_accuracy(job: dict, data: Data) -> tuple[Net, float]:
    """A search job's candidate scored by the supernet of `job["evaluator"]`."""
    supernet, _ = cached_supernet(evaluator_dir(job["evaluator"]))
    return score(supernet, supernet.candidate(job["vector"]), data, flips(job["data"]), job["seed"])
