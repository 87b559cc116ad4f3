"""NAS-Bench-Macro as the fidelity studies and the pipeline read it: each network's table
latency on this machine, the seeded sample of networks a study scores, the latency bands
[BAND_LOW x T, T] (T a percentile of the latency over all networks) where a search decides, and
a network and its images as `--evaluator zc:NAME` scores them.

One module so that every study draws the same sample, cuts the same bands and scores alike.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from nas.benchmarks.nasbench_macro import distinct
from nas.data import Data, load_data
from nas.search_setup import PROXY_DEFAULTS
from results_paths import shown
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy
from search_spaces.space import get_space

LATENCY_CSV = Path(__file__).resolve().parent / "results" / "nasbench_macro_latency.csv"
BAND_PERCENTILES = (25, 50, 75)
BAND_LOW = 0.9  # a band is [BAND_LOW x T, T]
SEED = 0  # the sample's seed (and the studies' scoring seed)


def table_latency() -> pd.Series:
    """`local_cpu_table_ms` of every distinct network, indexed by its code; a one-line error when
    experiments/nasbench_macro_latency.py has not written it for all of them."""
    if not LATENCY_CSV.exists():
        raise UserError(f"{shown(LATENCY_CSV)} not found: run experiments/nasbench_macro_latency.py first")
    latency = pd.read_csv(LATENCY_CSV, dtype={"code": str}).set_index("code")["local_cpu_table_ms"]
    if set(latency.index) != set(distinct().index):
        raise UserError(f"{shown(LATENCY_CSV)} does not hold the {len(distinct())} NAS-Bench-Macro networks: "
                        "run experiments/nasbench_macro_latency.py again")
    return latency


def sample(limit: int | None) -> pd.DataFrame:
    """The distinct networks (their records), or a seeded sample of `limit` of them: the same
    networks in every study."""
    nets = distinct()
    return nets.sample(n=min(limit, len(nets)), random_state=SEED) if limit else nets


def sets_of(accuracy: pd.Series, latency: pd.Series) -> tuple[dict[str, pd.Series], list[str]]:
    """{set name: ground truth of its networks}: all, and each latency band; a line per band."""
    sets, lines = {"all": accuracy}, []
    lat = latency.reindex(accuracy.index)
    for p in BAND_PERCENTILES:
        t = float(np.percentile(latency, p))
        inside = (latency >= BAND_LOW * t) & (latency <= t)
        sets[f"band_p{p}"] = accuracy[(lat >= BAND_LOW * t) & (lat <= t)]
        lines.append(f"- band_p{p}: local_cpu_table_ms in [{BAND_LOW * t:.3f}, {t:.3f}] ms ({inside.sum():,} of the "
                     f"{len(latency):,} networks; {len(sets[f'band_p{p}'])} of those scored here)")
    return sets, lines


def rank_vote(a: pd.Series, b: pd.Series) -> pd.Series:
    """A vote of two scores over the networks both scored: the mean of their rank percentiles.
    Nothing is fitted, so nothing needs holding out (the fidelity study and the pipeline's vote)."""
    both = a.index.intersection(b.index)
    return (a.loc[both].rank(pct=True) + b.loc[both].rank(pct=True)) / 2


def proxy_arch(code: str) -> Arch:
    """A network as the search scores it: its proxy IR (`for_proxy`, 10 classes) at the space's 32 px."""
    space = get_space("nasbench_macro")
    return for_proxy(space.decode([int(c) for c in code]).replace(num_classes=10), space.resolution)


def search_images(data: str, resolution: int) -> Data:
    """The CIFAR-10 training images a search on `data` (`cifar10:DIR`) scores on: its default subset,
    drawn with SEED, normalized as training normalizes them."""
    return load_data(data, resolution=resolution, train_subset=PROXY_DEFAULTS["cifar10"]["train_subset"], seed=SEED)
