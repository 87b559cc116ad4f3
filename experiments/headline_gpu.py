"""The headline's networks trained with the recipe over several seeds on one GPU (issue 33, item 6).

Reads the networks of the CPU headline (experiments/results/headline.csv: searched, NetAdapt and
MobileNetV3-Large at four widths), trains each with `cifar10_18ep` (nas/recipes.py) for --seeds
seeds, --workers trainings at once sharing the GPU (each its own process: the device check measured
about 22,600 images/s in aggregate with several networks on an H200), seed 0 of every network
before seed 1 of any. Each training checkpoints every two minutes in --work; past --time-limit no
training starts and the running ones are stopped, so a second call continues them. Writes
headline_gpu.{csv,md,png} in --results after every finished training: test accuracy per network,
mean and spread over seeds, with the headline's latencies.

    python experiments/device_check.py --prepare                  # here: the carried CIFAR-10
    python shared_carry/cifar10_compact/decode.py /tmp/c10 && \\
      PYTHONPATH=. python experiments/headline_gpu.py --data cifar10:/tmp/c10 --results "$OUT"   # there
    python experiments/headline_gpu.py --dry-run --results /tmp/hg  # this CPU: tiny settings, the code path

The machine lent may lack packages the project installs (the device check found no ray or optuna):
workers import only nas.recipes and what it needs, with the device check's carried copies on the path.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (ROOT, HERE):
    if str(p) not in sys.path:  # `python experiments/headline_gpu.py` without PYTHONPATH
        sys.path.insert(0, str(p))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from nas.run_dir import write_csv, write_text  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402

#: aggregate training speed of several networks sharing one GPU (experiments/results/device_check_nvidia-h200.md)
AGGREGATE_IMAGES_PER_S = 22_600
CURVE_WIDTHS = (0.5, 0.75, 1.0, 1.25)


def networks(headline_csv: Path) -> pd.DataFrame:
    """(network, arch, pixel_cpu_ms) of the CPU headline; without it, MobileNetV3-Large's width curve."""
    if headline_csv.is_file():
        return pd.read_csv(headline_csv)[["network", "kind", "arch", "pixel_cpu_ms"]]
    from latency_tables import load_target
    from search_spaces.references import reference

    pixel = load_target("pixel_cpu")
    archs = {f"mobilenet_v3_large_x{w:g}": reference("mobilenet_v3_large", w) for w in CURVE_WIDTHS}
    return pd.DataFrame([{"network": n, "kind": "reference (curve)", "arch": a.to_string(),
                          "pixel_cpu_ms": pixel.query_total(a)} for n, a in archs.items()])


def jobs(nets: pd.DataFrame, seeds: int) -> list[tuple[str, str, int]]:
    """(network, arch, seed), seed 0 of every network first: a call cut short still covers them all."""
    return [(n, a, s) for s in range(seeds) for n, a in zip(nets["network"], nets["arch"])]


def worker(arch: str, seed: int, out: str, data: str, device: str, epochs: float | None, batch: int | None) -> None:
    """One training in its own process (so that several share the GPU)."""
    import torch

    from nas.recipes import get_recipe, train_with_recipe
    from search_spaces.ir import Arch

    r = train_with_recipe(Arch.from_string(arch), get_recipe("cifar10_18ep"), data, Path(out), seed=seed,
                          device=torch.device(device), epochs=epochs, batch_size=batch, progress=False,
                          threads=1 if device == "cpu" else None)
    print(json.dumps({"test_acc": r["test_acc"]}))


def results_table(work: Path, todo: list[tuple[str, str, int]]) -> pd.DataFrame:
    rows = []
    for name, _, seed in todo:
        f = work / f"{name}-s{seed}" / "result.json"
        if f.is_file():
            r = json.loads(f.read_text())
            rows.append({"network": name, "seed": seed, "test_acc": r["test_acc"], "train_seconds": r["train_seconds"],
                         "images_per_s": r["images_per_s"], "device": r["device"], "is_recipe": r["is_recipe"]})
    return pd.DataFrame(rows, columns=["network", "seed", "test_acc", "train_seconds", "images_per_s", "device",
                                       "is_recipe"])


def report(nets: pd.DataFrame, runs: pd.DataFrame, results: Path, name: str, label: str, command: str) -> None:
    from matplotlib.figure import Figure

    from nas.search_report import markdown_table
    from search_spaces.atomic import atomic_path

    write_csv(results / f"{name}_runs.csv", runs)
    acc = runs.groupby("network")["test_acc"].agg(["mean", "std", "count"]).rename(
        columns={"mean": "test_acc_mean", "std": "test_acc_std", "count": "seeds"}).reset_index()
    table = nets.merge(acc, on="network", how="left").drop(columns="arch")
    write_csv(results / f"{name}.csv", table)
    write_text(results / f"{name}.md", "\n".join([
        f"# {label}The headline's networks, recipe `cifar10_18ep`, several seeds on one GPU", "",
        f"- {len(runs)} trainings finished on {', '.join(sorted(set(runs['device']))) or '-'}; "
        f"test accuracy mean and standard deviation over seeds", f"- Reproduce: `{command}`", "",
        markdown_table(table), ""]))
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for kind, group in table.dropna(subset=["test_acc_mean"]).groupby("kind"):
        ax.errorbar(group["pixel_cpu_ms"], group["test_acc_mean"], yerr=group["test_acc_std"].fillna(0), fmt="o",
                    capsize=3, label=kind)
    ax.set(xlabel="pixel_cpu latency, ms (224x224, 1,000 classes)", ylabel="test accuracy (mean ± std over seeds)",
           title=f"{label}headline networks over seeds")
    ax.legend(fontsize=8)
    with atomic_path(results / f"{name}.png") as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def run(a) -> int:
    nets = networks(a.networks)
    todo = jobs(nets, a.seeds)
    dry = a.dry_run
    device = "cpu" if dry else "cuda"
    epochs, batch = (0.05, 32) if dry else (None, None)
    data = a.data or ("digits" if dry else None)
    if data is None:
        raise UserError("--data cifar10:DIR is needed (decode the carried CIFAR-10 first, see --help)")
    images = len(todo) * 18 * 50_000
    print(f"{len(nets)} networks x {a.seeds} seeds = {len(todo)} trainings, {images / 1e6:.1f}M images: about "
          f"{images / AGGREGATE_IMAGES_PER_S / 60:.0f} min at {AGGREGATE_IMAGES_PER_S:,} images/s on one GPU"
          + (" (dry run: tiny settings on this CPU)" if dry else ""), flush=True)
    work = a.work.resolve()
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    start, running, queue = time.monotonic(), {}, list(todo)
    name, label = "headline_gpu" + ("_dry_run" if dry else ""), "DRY RUN (tiny settings, CPU): " if dry else ""
    command = "python experiments/headline_gpu.py " + ("--dry-run" if dry else "--data cifar10:DIR --results DIR")
    a.results.mkdir(parents=True, exist_ok=True)
    try:
        while queue or running:
            out_of_time = time.monotonic() - start > a.time_limit
            while queue and len(running) < a.workers and not out_of_time:
                net, arch, seed = queue.pop(0)
                out = work / f"{net}-s{seed}"
                if (out / "result.json").is_file():
                    continue
                out.mkdir(parents=True, exist_ok=True)
                log = open(out / "log.txt", "ab")
                argv = [sys.executable, __file__, "_worker", arch, str(seed), str(out), data, device,
                        str(epochs or ""), str(batch or "")]
                running[net, seed] = (subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                       stdin=subprocess.DEVNULL), log)
            if out_of_time and running:
                print(f"time limit {a.time_limit:.0f} s: stopping {len(running)} trainings (checkpointed; rerun "
                      "to continue)", flush=True)
                for proc, _ in running.values():
                    proc.send_signal(signal.SIGINT)
            for key, (proc, log) in list(running.items()):
                if proc.poll() is not None or out_of_time:
                    code = proc.wait()
                    log.close()
                    del running[key]
                    print(f"  {key[0]} seed {key[1]}: {'done' if code == 0 else f'exit {code}, see its log.txt'} "
                          f"({time.monotonic() - start:.0f} s)", flush=True)
                    report(nets, results_table(work, todo), a.results, name, label, command)
            if out_of_time:
                break
            time.sleep(1)
    finally:
        for proc, log in running.values():
            proc.kill()
            log.close()
    runs = results_table(work, todo)
    report(nets, runs, a.results, name, label, command)
    print(f"{len(runs)} of {len(todo)} trainings done; {a.results / (name + '.md')}", flush=True)
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_worker"]:
        arch, seed, out, data, device, epochs, batch = argv[1:]
        worker(arch, int(seed), out, data, device, float(epochs) if epochs else None, int(batch) if batch else None)
        return 0
    from script_main import run_script

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="cifar10:DIR (the decoded carried copy); --dry-run: digits")
    p.add_argument("--networks", type=Path, default=HERE / "results" / "headline.csv",
                   help="the CPU headline's table (default experiments/results/headline.csv; without it, "
                        "MobileNetV3-Large's width curve)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--workers", type=int, default=8, help="trainings at once on the GPU")
    p.add_argument("--time-limit", type=float, default=540, help="seconds after which no training starts")
    p.add_argument("--work", type=Path, default=ROOT / "shared_carry" / "headline_gpu",
                   help="checkpoints and results per training (default: shared_carry/headline_gpu, kept between "
                        "calls on a warm device machine)")
    p.add_argument("--results", type=Path, default=HERE / "results")
    p.add_argument("--dry-run", action="store_true", help="the whole code path on this CPU with tiny settings")
    return run_script(p, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
