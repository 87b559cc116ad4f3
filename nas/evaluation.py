"""Evaluating one candidate: latency, MACs and params of its deployment arch, then real proxy training
(or another evaluator's score without training, see `nas.evaluators`).

`evaluate_candidate(job)` is plain Python (tests call it directly); `trainable` wraps it for Ray
Tune. A candidate that raises or diverges comes back with status "failed" and the reason,
so one bad architecture never stops a search; one that runs out of GPU memory says so and
gives the memory back. Data sets (on the training device, as uint8) and latency tables are
cached per worker process: with `reuse_actors=True` a worker loads them once.
"""
from __future__ import annotations

import io
import math
import time
from functools import lru_cache

import torch

from latency_tables import load_target
from nas.data import flips, load_data
from nas.device import resolve_device
from nas.evaluators import Train, evaluator
from nas.training import TrainConfig, build_for_training, train
from search_spaces.counting import count
from search_spaces.ir import Arch
from search_spaces.space import get_space

#: the keys of a run's config that a worker needs to evaluate a candidate
JOB_KEYS = ("space", "target", "data", "resolution", "deploy_resolution", "train_subset", "seed",
            "epochs", "steps", "batch_size", "lr", "optimizer", "threads", "evaluator")


@lru_cache(maxsize=2)
def cached_data(spec: str, resolution: int, train_subset: int | None, seed: int, device: str = "cpu"):
    if device != "cpu":  # one copy per worker on its GPU, made from the cached CPU copy
        return cached_data(spec, resolution, train_subset, seed).to(device)
    return load_data(spec, resolution=resolution, train_subset=train_subset, seed=seed)


cached_target = lru_cache(maxsize=2)(load_target)


def deployment_arch(space_name: str, vector, num_classes: int, deploy_resolution: int) -> Arch:
    """The candidate as it would ship: decoded from the space at the deployment resolution."""
    return get_space(space_name).decode(vector).replace(num_classes=num_classes, resolution=deploy_resolution)


def train_config(job: dict, epochs: float | None = None) -> TrainConfig:
    """`job["device"]` (default auto) is resolved here, in the process that trains."""
    return TrainConfig(epochs=epochs if epochs is not None else job["epochs"], steps=job.get("steps"),
                       batch_size=job["batch_size"], lr=job["lr"], optimizer=job["optimizer"],
                       flip=flips(job["data"]),
                       seed=job["seed"], threads=job["threads"],
                       device=str(resolve_device(job.get("device", "auto"))))


def cpu_state_dict(model: torch.nn.Module) -> dict:
    """Weights as CPU tensors: a file written on a GPU machine loads anywhere."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def failure_reason(e: BaseException) -> str:
    """One line for trials.csv."""
    prefix = "out of GPU memory: " if isinstance(e, torch.OutOfMemoryError) else ""
    return f"{prefix}{type(e).__name__}: {e}".splitlines()[0][:300]


def evaluate_candidate(job: dict) -> dict:
    """Measure and train `job["vector"]` (or the deployment arch string `job["arch"]`). A trained
    candidate's row carries its weights (`weights`, a state_dict as `torch.save` writes it): the
    worker never writes into the run directory, which may not even exist on its node."""
    start = time.perf_counter()
    scorer = evaluator(job.get("evaluator", "train"))  # checked before the search started
    data_key = (job["data"], job["resolution"], job["train_subset"], scorer.data_seed(job))
    data = cached_data(*data_key)
    arch = (Arch.from_string(job["arch"]) if job.get("arch")  # the run's reference network
            else deployment_arch(job["space"], job["vector"], data.num_classes, job["deploy_resolution"]))
    sizes = count(arch)
    row = {"arch": arch.to_string(), "latency_ms": cached_target(job["target"]).query_total(arch),
           "macs": sizes["macs"], "params": sizes["params"], "accuracy": math.nan,
           "train_loss": math.nan, "images_per_s": math.nan, "status": "ok", "reason": "", "device": ""}
    model = None
    try:
        cfg = train_config(job)  # a GPU asked for but absent on this node fails this trial only
        row["device"] = cfg.device
        if isinstance(scorer, Train):
            model = build_for_training(arch, data, seed=job["seed"])
            result = train(model, cached_data(*data_key, cfg.device), cfg)
            row.update(accuracy=result["val_acc"], train_loss=result["train_loss"],
                       images_per_s=result["images_per_s"])
        else:  # no training, so no loss or speed
            model, row["accuracy"] = scorer.score(job, data, arch)
        buffer = io.BytesIO()
        torch.save(cpu_state_dict(model), buffer)
        row["weights"] = buffer.getvalue()
    except Exception as e:  # any failure of one candidate is a result, not a crash of the search
        row.update(status="failed", reason=failure_reason(e))
    # the model, its optimizer and the exception's frames are gone now: give their memory back
    # so that the worker's next candidate starts with the whole GPU
    model = None
    if row["device"].startswith("cuda"):
        torch.cuda.empty_cache()
    row["seconds"] = time.perf_counter() - start
    return row


def trainable(config: dict) -> None:
    """Ray Tune function trainable: one report per candidate; its weights travel with it (through
    Ray's object store) to the driver, where `TrialWeights` takes them out."""
    import ray
    from ray import tune

    row = evaluate_candidate(config)
    row["node"] = ray.get_runtime_context().get_node_id()[:8]
    tune.report(row)
