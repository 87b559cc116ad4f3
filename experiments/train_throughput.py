"""Benchmark: training throughput on CPU and CUDA, and seconds per search candidate.

For MobileNetV3-Large and -Small at 32x32 on CIFAR-10 (batch 256): training images/s through
`nas.training.train` (the path every command uses: augmentation, mixed precision on CUDA), after
warm-up steps that are not timed. Then the seconds one search candidate takes
(`nas.evaluation.evaluate_candidate`: build, latency lookup, proxy training, BN recalibration,
validation), on the CPU with a small subset, on CUDA for a full CIFAR-10 epoch. On CUDA also
1, 4 and 8 candidates sharing the GPU, one process each (as Ray's fractional GPUs run them),
started together: aggregate images/s = all images trained / wall time from first start to
last end. Plain torch: no Ray needed, so it runs on any GPU machine with torch installed.

Writes experiments/results/train_throughput.{csv,md,png}. Rows that need a GPU say
"not measured" when there is none.

    python experiments/train_throughput.py                         # CPU (+ CUDA when present)
    python experiments/train_throughput.py --device cpu --threads 1 --cpu-steps 3
"""
from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

import pandas as pd
import torch
from matplotlib.figure import Figure

from nas.data import load_data
from nas.device import add_device_argument, describe, describe_line, resolve_device
from nas.evaluation import cached_data, cached_target, evaluate_candidate
from nas.search_report import markdown_table
from nas.training import TrainConfig, build_for_training, train
from search_spaces.errors import UserError
from search_spaces.references import reference
from search_spaces.space import get_space

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
MODELS = ("mobilenet_v3_large", "mobilenet_v3_small")
SHARING = (1, 4, 8)
NOT_MEASURED = "not measured (no CUDA GPU on this machine)"


def images_per_s(model_name: str, data, device: torch.device | str, batch: int, steps: int, warmup: int,
                 threads: int | None = None, ready=lambda: None) -> dict:
    """Training images/s of one reference network through `train()`: warm-up steps untimed, then
    `ready()` (a barrier where processes share a GPU), then the timed steps."""
    model = build_for_training(reference(model_name), data, seed=0)
    cfg = TrainConfig(steps=warmup, batch_size=batch, lr=0.05, seed=0, threads=threads, recalibrate_images=0,
                      device=str(device))
    train(model, data, cfg)  # cuDNN autotuning, allocator growth, first-call overheads
    ready()
    start = time.time()
    r = train(model, data, TrainConfig(**{**cfg.to_dict(), "steps": steps}))
    return {"images": r["steps"] * batch, "seconds": r["seconds"], "images_per_s": r["images_per_s"],
            "start": start, "end": start + r["seconds"]}


def _shared_worker(model_name, data_spec, subset, device, batch, steps, warmup, barrier, out):
    data = load_data(data_spec, resolution=32, train_subset=subset, seed=0).to(device)
    # every process warmed up: the timed part starts together
    out.put(images_per_s(model_name, data, device, batch, steps, warmup, ready=barrier.wait))


def shared_images_per_s(k: int, model_name: str, data_spec: str, subset: int | None, device: torch.device,
                        batch: int, steps: int, warmup: int) -> dict:
    """k processes training at once on one device; aggregate images/s over the common wall time."""
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    barrier, out = ctx.Barrier(k), ctx.Queue()
    procs = [ctx.Process(target=_shared_worker, args=(model_name, data_spec, subset, str(device), batch, steps,
                                                      warmup, barrier, out)) for _ in range(k)]
    for p in procs:
        p.start()
    rows = [out.get() for _ in procs]
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a sharing process failed (exit {p.exitcode})")
    wall = max(r["end"] for r in rows) - min(r["start"] for r in rows)
    images = sum(r["images"] for r in rows)
    return {"images": images, "seconds": wall, "images_per_s": images / wall}


def candidate_seconds(data_spec: str, subset: int | None, device: torch.device, batch: int, threads: int | None,
                      sample_seed: int) -> dict:
    """One `nas search` candidate (a fixed mnv3 sample), one epoch of its proxy training."""
    job = dict(space="mnv3", target="pixel_cpu", data=data_spec, resolution=32, deploy_resolution=224,
               train_subset=subset, seed=0, epochs=1.0, steps=None, batch_size=batch, lr=0.05, optimizer="sgd",
               threads=threads, device=str(device), vector=get_space("mnv3").sample(random.Random(sample_seed)))
    # as in a search worker after its first candidate: data (on the device) and latency table loaded
    cached_data(data_spec, 32, subset, 0, str(device))
    cached_target("pixel_cpu")
    row = evaluate_candidate(job)
    if row["status"] != "ok":
        raise RuntimeError(f"candidate failed: {row['reason']}")
    return {"images": (subset or 45000), "seconds": row["seconds"], "images_per_s": row["images_per_s"],
            "accuracy": row["accuracy"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, default=HERE.parents[1] / "shared" / "data",
                   help="holds cifar10_train.npz and cifar10_test.npz")
    add_device_argument(p)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--threads", type=int, default=1, help="CPU threads for the CPU rows")
    p.add_argument("--cpu-steps", type=int, default=5, help="timed training steps per model on the CPU")
    p.add_argument("--gpu-steps", type=int, default=100, help="timed training steps per model (and process) on CUDA")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps before each measurement (CUDA: 10x)")
    p.add_argument("--cpu-subset", type=int, default=1000, help="training images of the CPU candidate")
    p.add_argument("--gpu-subset", type=int, help="training images of the CUDA candidate (default: all 45,000)")
    p.add_argument("--sample-seed", type=int, default=0, help="which mnv3 sample is the candidate")
    a = p.parse_args(argv)

    if not (a.data_dir / "cifar10_train.npz").is_file():
        print(f"skipping: CIFAR-10 arrays not found in {a.data_dir} (cifar10_train.npz, cifar10_test.npz); "
              f"pass --data-dir", file=sys.stderr)
        return
    spec = f"cifar10:{a.data_dir}"
    load_before = os.getloadavg()[0]
    try:
        chosen = resolve_device(a.device)
    except UserError as e:
        print(f"train_throughput: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    devices = [torch.device("cpu")] + ([chosen] if chosen.type == "cuda" else [])
    rows = []

    def add(device, what, model, k, r, note=""):
        info = describe(device) if device is not None else None
        rows.append({"device": info["device"] if info else "cuda", "device_name": info["name"] if info else "",
                     "what": what, "model": model, "candidates": k, "batch": a.batch_size,
                     "threads": a.threads if device is not None and device.type == "cpu" else None,
                     "images": r.get("images"), "seconds": r.get("seconds"),
                     "images_per_s": r.get("images_per_s"), "note": note})
        print(f"{rows[-1]['device']:>7} {what:<22} {model:<20} x{k}: "
              + (f"{r['images_per_s']:.0f} images/s, {r['seconds']:.2f} s" if r else note), flush=True)

    cpu_data = load_data(spec, resolution=32, train_subset=max(a.cpu_subset, 2 * a.batch_size), seed=0)
    for device in devices:
        cuda = device.type == "cuda"
        steps, warmup = (a.gpu_steps, 10 * a.warmup) if cuda else (a.cpu_steps, a.warmup)
        threads = None if cuda else a.threads
        data = load_data(spec, resolution=32, seed=0).to(device) if cuda else cpu_data
        for name in MODELS:
            add(device, "train images/s", name, 1,
                images_per_s(name, data, device, a.batch_size, steps, warmup, threads))
        subset = a.gpu_subset if cuda else a.cpu_subset
        r = candidate_seconds(spec, subset, device, a.batch_size, threads, a.sample_seed)
        add(device, "search candidate", f"mnv3 sample {a.sample_seed}", 1, r,
            f"1 epoch on {subset or 45000} images, val acc {r['accuracy']:.3f}")
        if cuda:
            for k in SHARING:
                add(device, "shared GPU images/s", MODELS[0], k,
                    shared_images_per_s(k, MODELS[0], spec, a.gpu_subset, device, a.batch_size, steps, warmup))
    if chosen.type != "cuda":
        for name in MODELS:
            add(None, "train images/s", name, 1, {}, NOT_MEASURED)
        add(None, "search candidate", f"mnv3 sample {a.sample_seed}", 1, {}, NOT_MEASURED)
        for k in SHARING:
            add(None, "shared GPU images/s", MODELS[0], k, {}, NOT_MEASURED)

    table = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    table.to_csv(RESULTS / "train_throughput.csv", index=False)
    command = "python experiments/train_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:])
    devices_text = "; ".join(describe_line(describe(d)) for d in devices)
    md = ["# Training throughput and seconds per search candidate (CIFAR-10, 32x32)", "",
          f"- Command: `{command.strip()}`", f"- Devices: {devices_text}; {a.threads} CPU thread(s) for the CPU rows",
          f"- Load average of this machine ({os.cpu_count()} cores) before / after: {load_before:.1f} / "
          f"{os.getloadavg()[0]:.1f}: other jobs running at the same time slow the CPU rows down",
          f"- Batch {a.batch_size}; training images/s through `nas.training.train` after untimed warm-up steps "
          f"({a.cpu_steps} timed steps on the CPU, {a.gpu_steps} on CUDA); a search candidate is "
          "`nas.evaluation.evaluate_candidate` (build, latency lookup, one epoch of proxy training, BN "
          "recalibration, validation); shared GPU: that many processes training MobileNetV3-Large at once, "
          "aggregate images/s over the common wall time.",
          "", markdown_table(table.astype(object).where(table.notna(), ""), ".4g"), ""]
    (RESULTS / "train_throughput.md").write_text("\n".join(md))
    print("\n".join(md))

    measured = table.dropna(subset=["images_per_s"])
    measured = measured[measured["what"] != "search candidate"]
    fig = Figure(figsize=(7, 3.6))
    ax = fig.subplots()
    labels = [f"{r.device} {r.model.replace('mobilenet_v3_', 'MNv3-')}" + (f" x{r.candidates}" if
              r.what.startswith("shared") else "") for r in measured.itertuples()]
    ax.barh(labels, measured["images_per_s"], color=["C0" if d == "cpu" else "C2" for d in measured["device"]])
    ax.set(xlabel="training images/s (32x32, batch %d)" % a.batch_size, xscale="log" if len(
        measured["device"].unique()) > 1 else "linear", title="training throughput" + (
        "" if chosen.type == "cuda" else " (CPU only: no GPU here)"))
    for y, v in enumerate(measured["images_per_s"]):
        ax.annotate(f"{v:,.0f}" if math.isfinite(v) else "", (v, y), xytext=(3, -3), textcoords="offset points",
                    fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "train_throughput.png", dpi=110)


if __name__ == "__main__":
    main()
