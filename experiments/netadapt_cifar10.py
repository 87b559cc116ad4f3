"""Benchmark: `netadapt refine` a CIFAR-10 winner to 0.8x its latency; latency and accuracy
before and after.

With --run-dir, refines a real `nas search --data cifar10:...` run directory. Without it,
makes a stand-in (said so in the results): a fixed sample of the search space trained
briefly on CIFAR-10, written in the run-directory layout under experiments/runs/.
Latency: the target's table (what NetAdapt optimises), the pixel_cpu table for reference when the
target is another, and onnxruntime on this machine (interleaved rounds, median). Accuracy: real training.
Writes experiments/results/netadapt_cifar10_<target>.{csv,md,png} and ..._history.csv.

    python experiments/netadapt_cifar10.py --target pixel_cpu   # stand-in winner
    python experiments/netadapt_cifar10.py --target local_cpu   # same winner, this machine's table
    python experiments/netadapt_cifar10.py --run-dir runs/mnv3-pixel_cpu-...
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
from pathlib import Path

import pandas as pd
import torch

from latency_tables import load_target
from nas.data import load_data
from nas.device import add_device_argument, resolve_device
from nas.run_dir import save_deployment, write_json
from nas.search_report import markdown_table
from nas.training import TrainConfig, train
from netadapt.cli import main as netadapt
from netadapt.outputs import plot
from onnx_latency import measure_end_to_end
from search_spaces.builder import Net
from search_spaces.counting import count
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy
from search_spaces.space import get_space

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
CIFAR = HERE.parents[1] / "shared" / "data"


def stand_in_run(work: Path, a) -> Path:
    """A run directory like `nas search` writes, holding a briefly trained space sample."""
    run = work / "run"
    if (run / "best" / "model.pt").is_file():
        return run
    space = get_space(a.space)
    arch = space.decode(space.sample(random.Random(a.sample_seed))).replace(num_classes=10, name=None)
    data_spec = f"cifar10:{CIFAR}"
    data = load_data(data_spec, a.resolution, a.train_subset, seed=0)
    torch.manual_seed(0)
    net = Net(for_proxy(arch, a.resolution))
    cfg = TrainConfig(epochs=a.pretrain_epochs, batch_size=a.batch_size, lr=0.02, optimizer="rmsprop",
                      seed=0, threads=a.threads, device=str(resolve_device(a.device)))
    print(f"stand-in winner: {a.space} sample seed {a.sample_seed}, training {a.pretrain_epochs:g} epoch(s) "
          f"on {len(data.train)} CIFAR-10 images at {a.resolution}x{a.resolution}")
    r = train(net, data, cfg)
    print(f"  val acc {r['val_acc']:.4f} after {r['seconds']:.0f} s ({r['images_per_s']:.0f} images/s)")
    config = {"space": a.space, "target": a.target, "data": data_spec, "resolution": a.resolution,
              "deploy_resolution": 224, "train_subset": a.train_subset, "seed": 0, "optimizer": "rmsprop",
              "batch_size": a.batch_size, "stand_in": f"sample seed {a.sample_seed} of {a.space}, "
                                                      f"trained {a.pretrain_epochs:g} epochs, no search"}
    write_json(run / "config.json", config)
    save_deployment(run / "best", arch, net.state_dict())
    return run


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, help="a real CIFAR-10 search run directory")
    p.add_argument("--target", default="pixel_cpu")
    p.add_argument("--space", default="mnv3_small")
    p.add_argument("--sample-seed", type=int, default=5)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--train-subset", type=int, default=5000)
    p.add_argument("--pretrain-epochs", type=float, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--step-ratio", type=float, default=0.05)
    p.add_argument("--short-term-steps", type=int, default=5)
    p.add_argument("--long-term-epochs", type=float, default=1)
    p.add_argument("--threads", type=int, default=1)
    add_device_argument(p)
    p.add_argument("--work", type=Path, default=HERE / "runs" / "netadapt_cifar10")
    a = p.parse_args(argv)

    torch.set_num_threads(a.threads)
    run = a.run_dir or stand_in_run(a.work, a)
    suffix = "_search" if a.run_dir else ""  # a real search winner's results sit beside the stand-in's
    out = a.work / f"refined_{a.target}{suffix}"
    name = f"netadapt_cifar10_{a.target}{suffix}"
    code = netadapt(["refine", str(run), "--target", a.target, "--target-ratio", "0.8",
                     "--step-ratio", str(a.step_ratio), "--short-term-steps", str(a.short_term_steps),
                     "--long-term-epochs", str(a.long_term_epochs), "--threads", str(a.threads), "--device", a.device, "--out", str(out)])
    if code not in (0, 1):
        raise SystemExit(code)

    state = json.loads((out / "state" / "state.json").read_text())
    result = json.loads((out / "result.json").read_text())
    before, after = Arch.from_dict(state["start_arch"]), Arch.from_json((out / "arch.json").read_text())
    measured = measure_end_to_end([before, after], a.threads)
    pixel = load_target("pixel_cpu")
    config = json.loads((run / "config.json").read_text())
    rows, with_pixel = [], a.target != "pixel_cpu"
    for stage, arch, ms, val, test, m in (
            ("winner", before, result["start_ms"], result["start_val_acc"], result["start_test_acc"], measured[0]),
            ("netadapt", after, result["final_ms"], result["final_val_acc"], result["final_test_acc"], measured[1])):
        rows.append({"stage": stage, "params": count(arch)["params"], "macs_m": count(arch)["macs"] / 1e6,
                     f"{a.target}_table_ms": ms,
                     **({"pixel_cpu_table_ms": pixel.query_total(arch)} if with_pixel else {}),
                     "measured_median_ms": m["median_ms"], "measured_p10_ms": m["p10_ms"],
                     "measured_p90_ms": m["p90_ms"], "measured_runs": m["count"],
                     "val_acc": val, "test_acc": test, "arch": arch.to_string()})
    df = pd.DataFrame(rows)
    RESULTS.mkdir(exist_ok=True)
    df.to_csv(RESULTS / f"{name}.csv", index=False)
    shutil.copyfile(out / "history.csv", RESULTS / f"{name}_history.csv")
    plot(state, RESULTS / f"{name}.png")

    h = pd.read_csv(out / "history.csv")
    secs = h["seconds"].sum()
    provenance = (f"stand-in winner (no search run directory was available): {config['stand_in']}"
                  if "stand_in" in config else f"search run directory `{run}`")
    s = state["settings"]
    md = [f"# NetAdapt on a CIFAR-10 winner, budget 0.8x on `{a.target}`", "",
          f"- Winner: {provenance}; proxy training at {s['resolution']}x{s['resolution']} on "
          f"{s['train_subset']} CIFAR-10 training images, validation {result['start_val_acc']:.4f} on a held-out "
          f"split of the training data, test on the 10,000 CIFAR-10 test images.",
          f"- `netadapt refine --target {a.target} --target-ratio 0.8 --step-ratio {a.step_ratio} "
          f"--short-term-steps {a.short_term_steps} --long-term-epochs {a.long_term_epochs:g}` "
          f"(batch {s['batch_size']}, {s['optimizer']}, lr {s['lr']}, objective {s['objective']}, "
          f"{a.threads} thread(s)): {result['iterations']} iterations, {secs:.0f} s; stop: {result['stop']}.",
          f"- Latency at 224x224: the `{a.target}` table (what NetAdapt optimises; "
          + ("a per-op model fitted to published Pixel 1 measurements, not a phone measurement"
             if a.target == "pixel_cpu" else "this machine's per-op table; missing ops are measured on the spot")
          + ")" + (", the `pixel_cpu` table for reference" if with_pixel else "")
          + f"; and the whole network measured here with onnxruntime ({a.threads} thread, both networks "
          f"timed in the same interleaved rounds, median). This machine was shared with other jobs while "
          f"measuring, so the measured numbers carry that noise (p10/p90 in the CSV).", "",
          markdown_table(df.drop(columns=["arch"])), "",
          f"Latency ratio after/before: table {rows[1][f'{a.target}_table_ms'] / rows[0][f'{a.target}_table_ms']:.3f}, "
          f"measured here {rows[1]['measured_median_ms'] / rows[0]['measured_median_ms']:.3f}"
          + (f", pixel_cpu {rows[1]['pixel_cpu_table_ms'] / rows[0]['pixel_cpu_table_ms']:.3f}" if with_pixel else "")
          + ".", "",
          "## Iterations", "", markdown_table(h.astype(object).where(h.notna(), "")), "",
          f"Architectures: before `{before.to_string()}`; after `{after.to_string()}`.", ""]
    (RESULTS / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
