"""Where one training step's time goes: a supernet step (sandwich rule) and a searched
candidate's step, part by part, on one device.

The first GPU device check found a CIFAR-10 supernet step of the `mnv3` space at about one
second on an H200 (703 steps an epoch) and a searched candidate at a quarter of
MobileNetV3-Large's images/s. This script times the parts of a step (the candidate's shell
network on the meta device, the slicing of the shared weights, each forward+backward, the
optimizer) with the device synchronized around each, and lists the profiler's top operators,
so that the cause is measured rather than guessed.

    PYTHONPATH=. python experiments/step_profile.py --device auto --results experiments/results
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn as nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from script_main import run_script  # noqa: E402

from nas.device import describe, resolve_device  # noqa: E402
from nas.supernet.model import Supernet, _shell  # noqa: E402
from nas.training import TrainConfig, augment, make_optimizer  # noqa: E402
from search_spaces.space import get_space  # noqa: E402
from search_spaces.atomic import atomic_write  # noqa: E402
from search_spaces.builder import build_model  # noqa: E402
from device_check import slug  # noqa: E402  (the file names of the device check's results)


def timed(device: torch.device, fn, repeats: int) -> float:
    """Median seconds of `fn()` over `repeats` calls, the device synchronized around each."""
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        began = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - began)
    return sorted(times)[len(times) // 2]


def parts(args, device: torch.device) -> tuple[list[dict], str]:
    space = get_space(args.space)
    torch.manual_seed(0)
    rng = random.Random(0)
    model = Supernet(space, 10, args.resolution).to(device).train()
    opt = make_optimizer(model, TrainConfig())
    loss_fn = nn.CrossEntropyLoss()
    images = torch.randint(0, 256, (args.batch, 3, args.resolution, args.resolution), dtype=torch.uint8)
    y = torch.randint(0, 10, (args.batch,), device=device)
    gen = torch.Generator().manual_seed(0)
    x = augment(images, gen, True).float().div(255).to(device).contiguous(memory_format=torch.channels_last)
    largest, smallest = model.extreme(max), model.extreme(min)
    fresh = lambda: model.candidate(space.sample(rng))  # noqa: E731  (a new arch: its shell is not cached)

    def fwd_bwd(cand):
        loss_fn(model(x, cand), y).backward()

    def sandwich():
        opt.zero_grad(set_to_none=True)
        for cand in [largest, smallest, fresh(), fresh()]:
            fwd_bwd(cand)
        opt.step()

    torch.manual_seed(0)
    plain = build_model(fresh().arch).to(device, memory_format=torch.channels_last).train()
    plain_opt = make_optimizer(plain, TrainConfig())

    def plain_step():
        plain_opt.zero_grad(set_to_none=True)
        loss_fn(plain(x), y).backward()
        plain_opt.step()

    def shell_uncached():
        _shell.__wrapped__(fresh().arch)

    def slicing():
        cand = largest
        model.weights(cand, _shell(cand.arch)[1])

    rows = []
    for name, fn, what in [
        ("augment (CPU) + copy to device", lambda: augment(images, gen, True).float().to(device), "data"),
        ("shell of a new candidate (meta device)", shell_uncached, "supernet"),
        ("slice the shared weights (largest)", slicing, "supernet"),
        ("forward+backward largest", lambda: fwd_bwd(largest), "supernet"),
        ("forward+backward smallest", lambda: fwd_bwd(smallest), "supernet"),
        ("forward+backward new random candidate", lambda: fwd_bwd(fresh()), "supernet"),
        ("optimizer step (supernet)", opt.step, "supernet"),
        ("whole sandwich step (4 candidates)", sandwich, "supernet"),
        ("searched candidate: whole step", plain_step, "candidate"),
    ]:
        fn()  # warm-up: cuDNN, allocator, first-call costs
        rows.append({"part": name, "of": what, "ms": 1000 * timed(device, fn, args.repeats)})
    for r in rows:
        r["images_per_s"] = round(args.batch / (r["ms"] / 1000)) if r["part"].startswith(("whole", "searched")) else ""
        r["ms"] = round(r["ms"], 2)
    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        sandwich()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.top)
    return rows, table


def main(args) -> None:
    device = resolve_device(args.device)
    torch.backends.cudnn.enabled = not args.no_cudnn
    torch.set_num_threads(args.threads)
    info = describe(device)
    rows, table = parts(args, device)
    tag = slug(info["name"])
    tag += "_no-cudnn" if args.no_cudnn else ""
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame(rows)
    atomic_write(out / f"step_profile_{tag}.csv", lambda tmp: frame.to_csv(tmp, index=False))
    md = [f"# Where a training step's time goes: {info['name']}", "",
          f"- Device: {info['device']} ({info['name']}), torch {info['torch']}; space {args.space} at "
          f"{args.resolution}px, batch {args.batch}, {args.threads} CPU threads; median of {args.repeats} "
          "repeats, device synchronized around each part",
          f"- Reproduce: `PYTHONPATH=. python experiments/step_profile.py --device {args.device} --space {args.space}"
          f" --resolution {args.resolution} --batch {args.batch}`", "",
          "| part | of | ms | images/s |", "|---|---|---:|---:|"]
    md += [f"| {r['part']} | {r['of']} | {r['ms']} | {r['images_per_s']} |" for r in rows]
    md += ["", f"Profiler, one sandwich step, top {args.top} operators by self CPU time:", "", "```", table, "```", ""]
    atomic_write(out / f"step_profile_{tag}.md", lambda tmp: tmp.write_text("\n".join(md)))
    print("\n".join(md))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--space", default="mnv3")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--top", type=int, default=15)
    p.add_argument("--no-cudnn", action="store_true", help="torch's own convolutions instead of cuDNN's")
    p.add_argument("--results", default="experiments/results")
    return p


if __name__ == "__main__":
    sys.exit(run_script(parser(), main, None, __file__))
