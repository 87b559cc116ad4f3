"""Named training recipes: one fixed way of training a network from scratch, so that accuracies
measured on different days, devices and networks can be compared.

`cifar10_18ep` is the recipe of the shared ground truth (`../shared/gt/README.md`): the proxy
network at 32 px, all training images (no validation split), 18 epochs, batch 512, SGD with
Nesterov momentum 0.9, one-cycle schedule peaking at lr 0.4 (10% warm-up), weight decay 5e-4 on
conv and linear weights only, label smoothing 0.1, random crop (zero padding 4) and horizontal
flip, per-channel normalisation with the training set's statistics, channels_last; bf16 autocast
on a GPU (float32 on a CPU, where autocast is slower). Accuracy is top-1 on the test split.

`train_with_recipe` checkpoints into its output directory (every two minutes and at each epoch's
end) and a second call with the same arguments continues where the first stopped.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from nas.data import absolute_spec, flips, load_data
from nas.device import describe, describe_line
from nas.run_dir import save_deployment, write_json
from nas.training import TrainConfig, build_for_training, evaluate, train
from search_spaces.errors import UserError
from search_spaces.ir import Arch


@dataclass(frozen=True)
class Recipe:
    """A fixed training: the optimisation (`config`, its seed and device set per run), the input
    resolution, and the share of training images held out for validation (0: none)."""

    name: str
    about: str
    config: TrainConfig
    resolution: int = 32
    val_fraction: float = 0.0


RECIPES = {r.name: r for r in (
    Recipe("cifar10_18ep", "the shared ground truth's recipe (../shared/gt/README.md): 18 epochs, batch 512, "
                           "one-cycle lr 0.4, all training images, test accuracy",
           TrainConfig(epochs=18, batch_size=512, lr=0.4, optimizer="sgd", schedule="onecycle", weight_decay=5e-4,
                       label_smoothing=0.1, recalibrate_images=0)),
)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UserError(f"unknown recipe {name!r}: choose from {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


def default_out(arch: Arch, recipe: Recipe, data: str, seed: int = 0, epochs: float | None = None,
                batch_size: int | None = None) -> Path:
    """A directory in the user cache, one per (network, recipe, data, seed, shortened length): any
    command training the same network the same way finds it, and resumes or reuses it."""
    import hashlib

    text = (f"{arch.to_string()}|{recipe.name}|{absolute_spec(data)}|{seed}" + (f"|{epochs:g}" if epochs else "")
            + (f"|b{batch_size}" if batch_size else ""))
    key = hashlib.sha1(text.encode()).hexdigest()[:12]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "hw-nas" / "train" / f"{recipe.name}-s{seed}-{key}"


def train_with_recipe(arch: Arch, recipe: Recipe, data: str, out: Path, seed: int = 0,
                      device: torch.device = torch.device("cpu"), threads: int | None = None,
                      epochs: float | None = None, batch_size: int | None = None, progress: bool = True) -> dict:
    """Train `arch` from scratch with `recipe` on `data` (a --data spec), resuming from `out`;
    write out/result.json (test accuracy and the run's facts) and the deployable model, and return
    the result. `epochs` and `batch_size` change the recipe (for quick checks; the result then says it
    is not the recipe)."""
    out = Path(out)
    data = absolute_spec(data)
    cfg = replace(recipe.config, seed=seed, device=str(device), threads=threads, flip=flips(data),
                  **({"epochs": epochs} if epochs is not None else {}),
                  **({"batch_size": batch_size} if batch_size is not None else {}))
    done = out / "result.json"
    job = {"arch": arch.to_string(), "recipe": recipe.name, "data": data, "seed": seed, "epochs": cfg.epochs,
           "batch_size": cfg.batch_size}
    if done.exists():
        result = json.loads(done.read_text())
        if {k: result.get(k) for k in job} != job:
            raise UserError(f"{out} holds another training ({result.get('recipe')} of another network, data, seed "
                            f"or length); choose another --out")
        return result
    loaded = load_data(data, resolution=recipe.resolution, seed=seed, val_fraction=recipe.val_fraction).to(device)
    model = build_for_training(arch, loaded, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "job.json", job)
    start = time.perf_counter()
    r = train(model, loaded, cfg, checkpoint=out / "checkpoint.pt", progress=progress)
    result = job | {"test_acc": evaluate(model, loaded.test), "val_acc": None if math.isnan(r["val_acc"]) else r["val_acc"], "train_loss": r["train_loss"],
                    "steps": r["steps"], "train_seconds": r["seconds"], "images_per_s": r["images_per_s"],
                    "train_images": len(loaded.train), "test_images": len(loaded.test),
                    "is_recipe": (cfg.epochs, cfg.batch_size) == (recipe.config.epochs, recipe.config.batch_size),
                    "device": describe_line(describe(device)), "threads": threads or torch.get_num_threads(),
                    "last_session_seconds": time.perf_counter() - start}
    save_deployment(out, arch.replace(num_classes=loaded.num_classes), {k: v.cpu() for k, v in model.state_dict().items()})
    write_json(done, result)
    (out / "checkpoint.pt").unlink(missing_ok=True)
    return result
