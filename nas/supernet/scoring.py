"""Scoring and exporting candidates of a trained supernet: no training, only BatchNorm recalibration.

The supernet's running statistics mix every candidate trained through a layer; a candidate's
own statistics are re-estimated on a few training batches before it is evaluated (the same
recalibration the proxy training ends with) and written back into its slice, so the supernet and
the exported subnet stay the same function.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from nas.data import Data, flips
from nas.supernet.directory import SupernetConfig, SupernetDir
from nas.supernet.model import Candidate, Supernet
from nas.training import evaluate, recalibrate_bn
from search_spaces.builder import Net

RECALIBRATE_IMAGES = 512

@lru_cache(maxsize=1)
def cached_supernet(directory: str, epoch: int | None = None) -> tuple[Supernet, SupernetConfig]:
    return SupernetDir(directory).trained(epoch)


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


def supernet_accuracy(directory: str, epoch: int | None, job: dict, data: Data) -> tuple[Net, float]:
    """A search job's candidate scored by the supernet in `directory` (absolute), with the weights of
    `epoch` (None: its last finished one)."""
    supernet, _ = cached_supernet(directory, epoch)
    return score(supernet, supernet.candidate(job["vector"]), data, flips(job["data"]), job["seed"])
