"""Supernet training: the sandwich rule with in-place distillation (BigNAS / Once-for-All), or
uniform single-path sampling (SPOS).

`sandwich`: each step trains the largest candidate on the labels, then the smallest and a few
random ones on the largest's soft predictions (KL divergence), all gradients summed before one
optimizer step. The largest bounds what every slice can do and the smallest is the slice most
starved of updates, so both are trained every step. `uniform` (Guo et al., single-path one-shot):
each step trains one candidate drawn uniformly on the labels, so every op of a layer is trained
equally often (under the sandwich rule, an op that is neither the largest nor the smallest, such as
NAS-Bench-Macro's e3k3, is trained by the random candidates alone); a step costs a quarter of a
sandwich step with two random candidates. Channels are re-sorted by importance at the start of
each epoch so that narrow slices keep the filters that matter most. Optimizer, augmentation and
schedule are the proxy training's (`nas.training`), and the same under either weight sharing
(`--sharing`: only which weights a choice reads differs). State is saved after every epoch, so a
killed training resumes at the last finished epoch and ends as an uninterrupted one would.
"""
from __future__ import annotations

import math
import random
import time

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nas.data import flips, load_data
from nas.supernet.directory import SupernetDir
from nas.supernet.elastic import sort_channels
from nas.device import resolve_device
from nas.training import TrainConfig, TrainingDiverged, augment, make_optimizer


def train_supernet(sdir: SupernetDir, progress: bool = True) -> list[dict]:
    """Train the supernet of `sdir` to its configured epochs, from its last saved state if any;
    return the per-epoch history (loss, seconds)."""
    cfg = sdir.config()
    device = resolve_device(cfg.device)
    data = load_data(cfg.data, resolution=cfg.resolution, train_subset=cfg.train_subset, seed=cfg.seed)
    split = data.train
    torch.manual_seed(cfg.seed)
    model = sdir.model(cfg).to(device).train()
    space = model.space
    opt = make_optimizer(model, TrainConfig(lr=cfg.lr, optimizer=cfg.optimizer))
    bs = min(cfg.batch_size, len(split))
    per_epoch = max(1, len(split) // bs)
    total = cfg.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    gen, rng = torch.Generator().manual_seed(cfg.seed), random.Random(cfg.seed)
    start, history = 0, []
    state = sdir.state()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["rng"]["torch"])
        torch.set_rng_state(state["rng"]["global"])
        rng.setstate(state["rng"]["python"])  # torch.save keeps getstate()'s tuples
        start, history = state["epoch"], state["history"]
    largest, smallest = model.extreme(max), model.extreme(min)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=TrainConfig.label_smoothing)
    bar = tqdm(total=total, initial=start * per_epoch, unit="step", desc="supernet", disable=not progress,
               dynamic_ncols=True)
    for epoch in range(start, cfg.epochs):
        began, loss_sum = time.perf_counter(), 0.0
        sort_channels(model, model.channel_sets(), opt)
        order = torch.randperm(len(split), generator=gen)
        for i in range(per_epoch):
            idx = order[i * bs:(i + 1) * bs]
            x = split.normalize(augment(split.x[idx], gen, flips(cfg.data))).to(device)
            y = split.y[idx].to(device)
            opt.zero_grad(set_to_none=True)
            if cfg.sampling == "uniform":
                loss = loss_fn(model(x, model.candidate(space.sample(rng))), y)
                loss.backward()
            else:
                logits = model(x, largest)
                loss = loss_fn(logits, y)
                loss.backward()
                soft = logits.detach().softmax(1)
                for cand in [smallest] + [model.candidate(space.sample(rng)) for _ in range(cfg.random_candidates)]:
                    distill = F.kl_div(model(x, cand).log_softmax(1), soft, reduction="batchmean")
                    distill.backward()
                    loss = loss + distill.detach()
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"supernet loss is {loss.item()} in epoch {epoch + 1}")
            opt.step()
            sched.step()
            loss_sum += loss.item()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        history.append({"epoch": epoch + 1, "loss": loss_sum / per_epoch, "seconds": time.perf_counter() - began})
        sdir.save_state({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                         "epoch": epoch + 1, "history": history,
                         "rng": {"torch": gen.get_state(), "global": torch.get_rng_state(), "python": rng.getstate()}},
                        history)
    bar.close()
    return history
