"""Accel-NASBench: 5,125 networks of MnasNet's factorized space over EfficientNet-B0's skeleton,
trained on ImageNet and timed end to end on six accelerators (Ahmad et al., "Accel-NASBench:
Sustainable Benchmarking for Accelerator-Aware NAS", 2024).

Source: public repository afzalxo/Accel-NASBench, commit 42603572d530310e6bac7191d00cf45625a6b197,
file anb_dataset/anb_dataset_jsons.tar.gz; Apache License 2.0 (data/LICENSE-accel_nasbench.txt).
The packaged data/accel_nasbench.csv.gz is derived by experiments/derive_accel_nasbench.py.

A network's code gives per stage its expansion, kernel, layers and SE ("s" on, "n" off), stages
joined by "-": e1k3l1s-e6k3l2s-... (space `accel_nasbench`, its decision vectors one to one).
Accuracies are ImageNet top-1 (%) after the authors' 16-epoch proxified training, one seed; 13
networks were trained twice. The records answer for their networks; a surrogate fitted on them
(`Surrogate`, a gradient-boosted model: its predictions are a model's, not measurements)
answers for the other ~1e11.
"""
from __future__ import annotations

import functools
import re
from importlib import resources

import numpy as np
import pandas as pd

from nas.benchmarks.benchmark import Benchmark, Device
from search_spaces.counting import count_many
from search_spaces.errors import UserError
from search_spaces.space import get_space

SPACE = get_space("accel_nasbench")
DATA_FILE = "accel_nasbench.csv.gz"
RECORDS = 5138
DEVICES = (
    Device("zcu102", "latency_zcu102", "ms",
           "end-to-end INT8 latency, Xilinx ZCU102 (Vitis-AI 2.5 DPUCZDX8G B4096), batch 1"),
    Device("vck190", "latency_vck190", "ms",
           "end-to-end INT8 latency, Xilinx VCK190 (Vitis-AI 2.5 DPUCVDX8G), batch 6 (its minimum)"),
    Device("a100", "throughput_a100", "images/s", "throughput, NVIDIA A100, large batch"),
    Device("rtx3090", "throughput_3090", "images/s", "throughput, NVIDIA RTX 3090, large batch"),
    Device("tpuv2", "throughput_tpuv2", "images/s", "throughput, Google TPUv2, large batch"),
    Device("tpuv3", "throughput_tpuv3", "images/s", "throughput, Google TPUv3, large batch"),
)
#: the packaged file's columns: the record, its code, accuracies, counts and the six devices' timings
COLUMNS = ["record", "code", "val_top1", "val_top5", "params_m", "macs_m", *(d.column for d in DEVICES)]
#: the benchmark's expansion of each op of the space
EXPANSION = {"dwsep": 1, "mbconv4": 4, "mbconv6": 6}
_STAGE = re.compile(r"^e([146])k([35])l([1-4])([sn])$")


def check_code(code) -> str:
    """`code` itself if it names a network of the space, else a UserError saying why not."""
    stages = code.split("-") if isinstance(code, str) else []
    if len(stages) != len(SPACE.stages) or not all(_STAGE.match(s) for s in stages):
        raise UserError(f"Accel-NASBench code {code!r}: expected {len(SPACE.stages)} stages like e6k3l2s "
                        f"(expansion 1/4/6, kernel 3/5, layers, s/n for SE) joined by '-'")
    for s, stage in enumerate(stages):
        depths = SPACE.stage_options(s)["depth"]
        if int(_STAGE.match(stage)[3]) not in depths:
            raise UserError(f"Accel-NASBench code {code!r}: stage {s} has {min(depths)}-{max(depths)} layers")
    return code


def code(vector) -> str:
    """The code of a decision vector of space `accel_nasbench`."""
    vector = SPACE.check(vector)
    parts = []
    for s in range(len(SPACE.stages)):
        c = SPACE.stage_choice(s, vector[SPACE.position(s, "op"):])
        parts.append(f"e{EXPANSION[c.op]}k{c.kernel}l{c.depth}{'s' if c.se else 'n'}")
    return "-".join(parts)


def vector(code_: str) -> list[int]:
    """The decision vector of a code (`code`'s inverse)."""
    out = []
    for s, stage in enumerate(check_code(code_).split("-")):
        e, k, l, se = _STAGE.match(stage).groups()
        options = SPACE.stage_options(s)
        value = {"op": {v: o for o, v in EXPANSION.items()}[int(e)], "kernel": int(k), "se": options["se"][se == "s"],
                 "depth": int(l)}
        out += [choices.index(value[name]) if name in value else 0 for name, choices in options.items()]
    return out


@functools.lru_cache(maxsize=1)
def records() -> pd.DataFrame:
    """Every record (5,138), indexed by code (13 codes twice: the networks trained twice), in the
    source's order: record, val_top1, val_top5, params_m, macs_m and the devices' columns."""
    with (resources.files(__package__) / "data" / DATA_FILE).open("rb") as f:
        return pd.read_csv(f, compression="gzip").set_index("code")


@functools.lru_cache(maxsize=1)
def distinct() -> pd.DataFrame:
    """One row per network (5,125), indexed by code: the means of its records' columns, its
    `trainings` (1 or 2) and `val_top1_spread` (largest minus smallest val_top1: a seed's noise)."""
    table = records().drop(columns="record")
    by = table.groupby(level=0, sort=False)
    out = by.mean()
    out["trainings"] = by.size()
    out["val_top1_spread"] = by["val_top1"].max() - by["val_top1"].min()
    return out


def device_costs(table: pd.DataFrame | None = None) -> pd.DataFrame:
    """Each device's cost in ms per image (`Device.ms_per_image`) for the rows of `table`
    (default: `distinct()`), one column per device name."""
    table = distinct() if table is None else table
    return pd.DataFrame({d.name: d.ms_per_image(table) for d in DEVICES}, index=table.index)


def stage_values(vectors) -> np.ndarray:
    """(N, stages, 4): each stage's expansion, kernel, layers and SE (0/1) of decision vectors."""
    v = SPACE.check_many(vectors)
    ds = SPACE.decisions()
    out = np.zeros((len(v), len(SPACE.stages), 4))
    for s in range(len(SPACE.stages)):
        for j, name in enumerate(("op", "kernel", "depth", "se")):
            p = SPACE.position(s, name)
            values = [EXPANSION[c] if name == "op" else float(bool(c)) if name == "se" else c for c in ds[p].choices]
            out[:, s, j] = np.asarray(values, dtype=float)[v[:, p]]
    return out


def features(vectors) -> np.ndarray:
    """What the surrogate reads of a network: per stage its expansion, kernel, layers and SE, with
    the products that grow with its cost (expansion x layers, kernel^2 x expansion x layers, SE x
    layers), its total layers, and the log of its parameters and multiply-adds."""
    stages = stage_values(vectors)
    e, k, l, se = (stages[:, :, i] for i in range(4))
    sizes = count_many(SPACE, vectors)
    return np.column_stack([stages.reshape(len(stages), -1), e * l, k * k * e * l, se * l, l.sum(1),
                            np.log(sizes["params"]), np.log(sizes["macs"])])


class Surrogate:
    """Accuracy of any network of the space, predicted by scikit-learn's histogram gradient boosting
    on `features`: seeded and deterministic, fitted in a few seconds on one core (nothing is stored:
    it is refitted in each process that needs it, never loaded from a file)."""

    SETTINGS = dict(max_iter=1000, learning_rate=0.05, max_depth=3, max_leaf_nodes=None, early_stopping=False)

    def __init__(self, vectors, accuracies, seed: int = 0):
        from sklearn.ensemble import HistGradientBoostingRegressor

        self.model = HistGradientBoostingRegressor(random_state=seed, **self.SETTINGS)
        self.model.fit(features(vectors), np.asarray(accuracies, dtype=float))

    def predict(self, vectors) -> np.ndarray:
        return self.model.predict(features(vectors))


@functools.lru_cache(maxsize=1)
def surrogate() -> Surrogate:
    """The surrogate fitted on every network's mean val_top1."""
    table = distinct()
    return Surrogate([vector(c) for c in table.index], table["val_top1"])


def answer(code_: str, rng: np.random.Generator | None) -> float:
    """`Benchmark.answer`: a record's val_top1 (the mean of a network trained twice, or one of the
    two drawn by `rng`), else the surrogate's prediction."""
    table = records()
    if code_ not in table.index:
        return float(surrogate().predict([vector(code_)])[0])
    trained = table.loc[[code_], "val_top1"].to_numpy()
    return float(trained.mean() if rng is None else trained[rng.integers(len(trained))])


BENCHMARK = Benchmark(
    name="accel_nasbench",
    title="Accel-NASBench (Ahmad et al., 2024)",
    space="accel_nasbench",
    about="Accel-NASBench (ImageNet, the authors' 16-epoch proxified training, by the benchmark's authors)",
    accuracy="val_top1",
    accuracy_means="ImageNet top-1 validation accuracy (%) after the 16-epoch proxified training, one seed "
                   "(the mean of two for 13 networks)",
    trainings="its trainings (two for 13 networks, one for the rest)",
    test_images=50_000,
    source="afzalxo/Accel-NASBench at 42603572d530310e6bac7191d00cf45625a6b197, anb_dataset/anb_dataset_jsons.tar.gz",
    license="Apache-2.0 (nas/benchmarks/data/LICENSE-accel_nasbench.txt)",
    records=records,
    distinct=distinct,
    code=code,
    answer=answer,
    devices=DEVICES,
    surrogate="a gradient-boosted surrogate fitted on the 5,125 records' val_top1 (a model's prediction, no seed "
              "noise; its held-out Kendall tau: experiments/results/accel_nasbench_surrogate.md)",
)
