"""NAS-Bench-Macro: 6,561 CIFAR-10 networks of MobileNetV2 blocks, each trained from scratch
three times (Su et al., "Prioritized Architecture Sampling with Monte-Carlo Tree Search",
CVPR 2021).

Source: public repository xiusu/NAS-Bench-Macro, commit 61a2bfc2ca0dce04d0997e6cf498047c27d6acf2,
file data/nas-bench-macro_cifar10.json; Apache License 2.0 (data/LICENSE-nasbench_macro.txt).
The packaged data/nasbench_macro_cifar10.csv.gz is derived from it by
experiments/derive_nasbench_macro.py (data/README.md says how).

An architecture is 8 characters, one per searchable layer, in 3 stages of 2, 3 and 3 layers:
"0" identity (in a stage's first layer, stride 2, a 1x1 conv + BN), "1" MBConv expansion 3
kernel 3, "2" MBConv expansion 6 kernel 5. Accuracies are CIFAR-10 test accuracies in percent.
"""
from __future__ import annotations

import functools
from importlib import resources

import numpy as np
import pandas as pd

from nas.benchmarks.benchmark import Benchmark
from search_spaces.errors import UserError

CODE_LENGTH = 8
STAGES = (2, 3, 3)  # layers per stage
CHOICES = "012"
SEEDS = (0, 1, 2)
DATA_FILE = "nasbench_macro_cifar10.csv.gz"


def check_code(code) -> str:
    """`code` itself if it is 8 characters of 0/1/2, else a UserError naming it."""
    if not (isinstance(code, str) and len(code) == CODE_LENGTH and set(code) <= set(CHOICES)):
        raise UserError(f"NAS-Bench-Macro code {code!r}: expected {CODE_LENGTH} characters of 0, 1 or 2")
    return code


def canonical(code: str) -> str:
    """The code of the same network in canonical form. Identity layers after a stage's first
    do nothing, so per stage only the first layer and the order of the other non-identity
    blocks matter: keep the first, then those blocks, padded with "0" to the stage's length
    ("101" -> "110"; "010" stays). The 6,561 codes hold 3,969 networks."""
    check_code(code)
    out, start = [], 0
    for n in STAGES:
        stage = code[start:start + n]
        out.append((stage[0] + stage[1:].replace("0", "")).ljust(n, "0"))
        start += n
    return "".join(out)


@functools.lru_cache(maxsize=1)
def records() -> pd.DataFrame:
    """Every code's record, indexed by code: acc_seed0..2 (one training each), mean_acc, std,
    params, flops. Read from the package; the floats read back exactly as the source wrote them."""
    with (resources.files(__package__) / "data" / DATA_FILE).open("rb") as f:
        return pd.read_csv(f, compression="gzip", dtype={"code": str}).set_index("code")


def accuracy(code: str, seed: int | None = None) -> float:
    """Test accuracy (percent) of `code`: the mean over the three trainings when `seed` is
    None, else that of training `seed` (0, 1 or 2)."""
    if seed is not None and seed not in SEEDS:
        raise UserError(f"NAS-Bench-Macro seed {seed!r}: expected None, 0, 1 or 2")
    return float(records().at[check_code(code), "mean_acc" if seed is None else f"acc_seed{seed}"])


def draw(code: str, rng: np.random.Generator) -> float:
    """The accuracy of one of the three trainings, picked uniformly by `rng`: what one real
    training of `code` would report, noise included."""
    return accuracy(code, int(rng.integers(len(SEEDS))))


def distinct() -> pd.DataFrame:
    """The records of the 3,969 distinct networks (canonical codes only)."""
    table = records()
    return table[[canonical(c) == c for c in table.index]]


def answer(code: str, rng: np.random.Generator | None) -> float:
    """`Benchmark.answer`: the mean over the three trainings, or one drawn by `rng`."""
    return accuracy(code) if rng is None else draw(code, rng)


BENCHMARK = Benchmark(
    name="nasbench_macro",
    title="NAS-Bench-Macro (Su et al., CVPR 2021)",
    space="nasbench_macro",
    about="NAS-Bench-Macro (CIFAR-10, 50 epochs, 3 seeds, by the benchmark's authors)",
    accuracy="mean_acc",
    accuracy_means="CIFAR-10 test accuracy (%), the mean over 3 trainings from scratch",
    trainings="its 3 training seeds",
    test_images=10_000,
    source="xiusu/NAS-Bench-Macro at 61a2bfc2ca0dce04d0997e6cf498047c27d6acf2, data/nas-bench-macro_cifar10.json",
    license="Apache-2.0 (nas/benchmarks/data/LICENSE-nasbench_macro.txt)",
    records=records,
    distinct=distinct,
    code=lambda vector: "".join(map(str, vector)),
    answer=answer,
)
