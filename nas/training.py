"""Proxy training: a standard recipe, deterministic for a given seed.

SGD with Nesterov momentum (or RMSprop), cosine learning-rate schedule, weight decay on
conv/linear weights only, label smoothing, random crop (reflect-free zero padding) and
horizontal flip. channels_last memory format: about 3.5x faster on this CPU.

On CUDA (`TrainConfig.device`) the same recipe runs with bf16 autocast (fp16 with a gradient
scaler on GPUs without bf16), the split copied to the GPU as uint8 and augmented there, and
the loss summed on the device: the host waits for the GPU only every `CUDA_SYNC_EVERY` steps,
to check that the loss is still finite. On the CPU every step is checked, as before.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass

import torch
from torch import nn
from tqdm import tqdm

from nas.data import Data, Split
from nas.device import amp_dtype
from search_spaces.atomic import atomic_path
from search_spaces.errors import UserError
from search_spaces.builder import Net, build_model
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy


#: the share of a one-cycle schedule's steps spent warming up (../shared/gt/README.md's recipe)
ONECYCLE_PCT_START = 0.1

#: on CUDA, steps between the host's checks that the loss is finite (each check waits for the GPU)
CUDA_SYNC_EVERY = 50


#: a checkpointed training writes its state at least this often (and at every epoch's end)
CHECKPOINT_EVERY_S = 120.0


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    epochs: float = 1.0
    steps: int | None = None          # overrides epochs when set
    batch_size: int = 128
    lr: float = 0.05
    optimizer: str = "sgd"            # sgd | rmsprop
    schedule: str = "cosine"          # cosine | onecycle (10% warm-up to lr, then cosine down; under 11 steps: cosine)
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    flip: bool = True                 # off for data where mirroring changes the label (digits)
    seed: int = 0
    threads: int | None = None
    recalibrate_images: int = 1024    # BN statistics re-estimated on this many images; 0 = off
    device: str = "cpu"               # a resolved device (nas.device.resolve_device)

    def to_dict(self) -> dict:
        return asdict(self)


@contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _autocast(device: torch.device):
    dtype = amp_dtype(device)
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def augment(x: torch.Tensor, gen: torch.Generator, flip: bool) -> torch.Tensor:
    """Random crop with padding of 1/8 of the side, and random horizontal flip, per image.
    Runs where `x` is; `gen` must be a generator of that device."""
    n, _, h, w = x.shape
    dev = x.device
    pad = max(1, h // 8)
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=dev)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=dev)
    rows = (dy[:, None] + torch.arange(h, device=dev)[None])[:, None, :, None].expand(n, x.shape[1], h, w + 2 * pad)
    out = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(w, device=dev)[None])[:, None, None, :].expand(n, x.shape[1], h, w)
    out = out.gather(3, cols)
    if flip:
        # torch.where, not boolean-mask indexing: the latter reads the mask's size back to the host
        mask = torch.rand(n, generator=gen, device=dev) < 0.5
        out = torch.where(mask[:, None, None, None], out.flip(3), out)
    return out


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(groups, lr=cfg.lr, alpha=0.9, eps=0.02, momentum=0.9)
    raise ValueError(f"unknown optimizer {cfg.optimizer!r} (sgd or rmsprop)")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, total: int):
    """Per-step learning rate over `total` steps. `onecycle` is the fixed recipe of the reference
    accuracies (../shared/gt/README.md); momentum stays constant, as there."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    if cfg.schedule == "onecycle":
        if ONECYCLE_PCT_START * total > 1:
            return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=total,
                                                       pct_start=ONECYCLE_PCT_START, cycle_momentum=False)
        # Too short to warm up (fewer than 11 steps): torch's OneCycleLR ends its warm-up at step
        # pct_start * total - 1, which is then 0 (10 steps: it divides by zero) or negative (it skips
        # the warm-up and spends the last step, the only one of a 1-step run, at lr / 25e4). Instead:
        # no warm-up, and a cosine from lr down that stays positive on every step taken.
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    raise ValueError(f"unknown schedule {cfg.schedule!r} (cosine or onecycle)")


def build_for_training(arch: Arch, data: Data, seed: int = 0) -> Net:
    """The proxy network for `arch` on `data` (its classes, its resolution), seeded init."""
    torch.manual_seed(seed)
    return build_model(for_proxy(arch.replace(num_classes=data.num_classes), data.resolution))


def train(model: nn.Module, data: Data, cfg: TrainConfig, split: Split | None = None,
          checkpoint: Path | None = None, progress: bool = False) -> dict:
    """Train in place on `split` (default: data.train), moving `model` to `cfg.device`;
    return val accuracy (NaN when `data.val` is empty), loss and speed.

    With `checkpoint`, the whole state (weights, optimizer, schedule, random generators, the epoch's
    order) is written there atomically every `CHECKPOINT_EVERY_S` seconds and at each epoch's end,
    and a call that finds the file continues from it: a run killed anywhere and resumed ends with
    the weights an uninterrupted run gives (on the same device and thread count)."""
    device = torch.device(cfg.device)
    split = (split or data.train).to(device)  # no copy when the data already lives there
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick the fastest kernels
    with _threads(cfg.threads):
        torch.manual_seed(cfg.seed)
        gen = torch.Generator(device=device).manual_seed(cfg.seed)
        model.to(device, memory_format=torch.channels_last).train()
        n = len(split)
        bs = min(cfg.batch_size, n)
        per_epoch = max(1, n // bs)
        total = cfg.steps if cfg.steps is not None else max(1, math.ceil(cfg.epochs * per_epoch))
        opt = make_optimizer(model, cfg)
        sched = make_scheduler(opt, cfg, total)
        scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype(device) == torch.float16)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        check_every = CUDA_SYNC_EVERY if cuda else 1
        # float64 sum of the float32 losses: the same number the CPU path's Python-float sum gave
        loss_sum = torch.zeros((), dtype=torch.float64, device=device)
        run = _Progress(model, opt, sched, scaler, gen, checkpoint, cfg)
        step, seen, elapsed, order = run.restore(loss_sum)
        start = time.perf_counter() - elapsed
        bar = tqdm(total=total, initial=step, desc="training", unit="step", disable=not progress, leave=False)
        while step < total:
            if order is None:
                order = torch.randperm(n, generator=gen, device=device)
            for i in range(step % per_epoch, per_epoch):
                if step >= total:
                    break
                idx = order[i * bs:(i + 1) * bs]
                x = split.normalize(augment(split.x[idx], gen, cfg.flip))
                with _autocast(device):
                    loss = loss_fn(model(x), split.y[idx])
                loss_sum += loss.detach()
                if (step + 1) % check_every == 0 or step + 1 == total:
                    _check_finite(loss_sum, loss, step, check_every)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                step += 1
                seen += len(idx)
                bar.update()
                epoch_end = step % per_epoch == 0
                run.maybe_save(step, seen, time.perf_counter() - start, loss_sum, None if epoch_end else order,
                               force=epoch_end or step == total)
            order = None
        bar.close()
        if cfg.recalibrate_images:
            recalibrate_bn(model, split, gen, cfg.flip, images=cfg.recalibrate_images)
        if cuda:
            torch.cuda.synchronize(device)  # the clock stops when the GPU's queued work is done
        seconds = time.perf_counter() - start
        val_acc = evaluate(model, data.val) if len(data.val) else float("nan")
    return {"val_acc": val_acc, "train_loss": loss_sum.item() / max(1, step), "steps": step,
            "seconds": seconds, "images_per_s": seen / max(seconds, 1e-9)}


class _Progress:
    """A training's resumable state in one file: written atomically, read back with
    `weights_only=True` (tensors and plain numbers only)."""

    def __init__(self, model, opt, sched, scaler, gen, path: Path | None, cfg: TrainConfig):
        self.parts = {"model": model, "opt": opt, "sched": sched, "scaler": scaler}
        self.gen, self.path, self.cfg = gen, Path(path) if path else None, cfg
        self.last = time.monotonic()

    def restore(self, loss_sum: torch.Tensor):
        """(step, images seen, seconds spent, the current epoch's order or None) of the saved state."""
        if self.path is None or not self.path.exists():
            return 0, 0, 0.0, None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"cannot resume from {self.path}: {str(e).splitlines()[0]} (delete it to start over)") \
                from None
        if state["config"] != _fingerprint(self.cfg):
            raise UserError(f"{self.path} was written by another training configuration "
                            f"({state['config']}); delete it to start over")
        for name, part in self.parts.items():
            part.load_state_dict(state[name])
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        loss_sum.fill_(float(state["loss_sum"]))
        order = state["order"]
        return int(state["step"]), int(state["seen"]), float(state["seconds"]), \
            None if order is None else order.to(loss_sum.device)

    def maybe_save(self, step: int, seen: int, seconds: float, loss_sum: torch.Tensor, order, force: bool) -> None:
        if self.path is None or not (force or time.monotonic() - self.last >= CHECKPOINT_EVERY_S):
            return
        state = {name: part.state_dict() for name, part in self.parts.items()} | {
            "gen": self.gen.get_state(), "torch_rng": torch.get_rng_state(), "loss_sum": float(loss_sum),
            "order": None if order is None else order.cpu(), "step": step, "seen": seen, "seconds": seconds,
            "config": _fingerprint(self.cfg)}
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)
        self.last = time.monotonic()


def _fingerprint(cfg: TrainConfig) -> str:
    """The settings a resumed training must share with the one that wrote the checkpoint."""
    d = cfg.to_dict()
    d.pop("threads", None)
    return repr(sorted(d.items()))


def _check_finite(loss_sum: torch.Tensor, loss: torch.Tensor, step: int, every: int) -> None:
    """A non-finite loss makes the running sum non-finite, so one check covers `every` steps."""
    if not torch.isfinite(loss_sum):
        where = f"at step {step}" if every == 1 else f"by step {step}"
        raise TrainingDiverged(f"loss is {loss.item()} {where}")


@torch.no_grad()
def recalibrate_bn(model: nn.Module, split: Split, gen: torch.Generator, flip: bool,
                   images: int = 1024, batch_size: int = 256) -> None:
    """Re-estimate BatchNorm statistics with the final weights.

    After a short proxy training the running averages lag far behind the weights, and
    eval-mode accuracy then ranks architectures by how fast their statistics settled.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    if not bns:
        return
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the batches below
    model.train()
    device = split.x.device
    order = torch.randperm(len(split), generator=gen, device=device)[:images]
    for i in range(0, len(order), batch_size):
        idx = order[i:i + batch_size]
        if len(idx) > 1:
            with _autocast(device):
                model(split.normalize(augment(split.x[idx], gen, flip)))
    for bn, m in zip(bns, saved):
        bn.momentum = m


@torch.no_grad()
def correct(model: nn.Module, split: Split, batch_size: int = 500) -> torch.Tensor:
    """Per image of `split`, whether `model`'s top-1 prediction is right (a bool CPU tensor): two
    models scored on the same images are compared image by image (a paired test)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    split = split.to(device)
    hits = []
    for i in range(0, len(split), batch_size):
        with _autocast(device):
            logits = model(split.normalize(split.x[i:i + batch_size]))
        hits.append(logits.argmax(1) == split.y[i:i + batch_size])
    model.train(was_training)
    return torch.cat(hits).cpu() if hits else torch.zeros(0, dtype=torch.bool)


def evaluate(model: nn.Module, split: Split, batch_size: int = 500) -> float:
    """Top-1 accuracy of `model` on `split`, in [0, 1], computed on the model's device."""
    return correct(model, split, batch_size).sum().item() / max(1, len(split))
