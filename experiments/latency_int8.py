"""Benchmark: float vs 8-bit (onnxruntime static quantization) latency of the reference networks on
this CPU, what stays float in the quantized graphs and what it costs, and the top-1 change of one
briefly trained CIFAR-10 network.

Latency: each reference at 224x224, 1000 classes, exported as the latency tables export it and,
for int8, quantized as `nas latency build --precision int8` quantizes (latency_tables/quantize.py);
timed with onnxruntime at 1 thread in interleaved rounds on the thread's CPU time, like a table's
end-to-end networks (latency_tables/build.py). Also the sum of the network's standalone ops
timed the same way (what a table sums before its end-to-end term). What stays float: node
types of the optimized int8 graph, and their share of the run time from onnxruntime's per-node
profile. Accuracy: one network trained with the project's training code on a CIFAR-10 subset,
exported and scored as `nas arch export --int8` does (float and int8 with onnxruntime, validation
and test splits). Writes experiments/results/latency_int8{.csv,_accuracy.csv,.md,.png}.

    python experiments/latency_int8.py --data-dir ../shared/data     # ~10 min on a quiet 2-core machine
    python experiments/latency_int8.py --no-train                     # latency only
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from latency_tables.build import NETWORK_BUDGET, measure_ops
from latency_tables.measure import Budget, OnnxRuntimeRunner
from latency_tables.ops import arch_ops
from latency_tables.quantize import graph_report, quantize
from nas.data import load_data
from nas.quantized_export import Trained, model_inputs, onnx_top1, proxy_network
from nas.run_dir import save_deployment
from nas.search_report import markdown_table
from nas.training import TrainConfig, build_for_training, evaluate, train
from search_spaces.counting import count
from search_spaces.onnx_export import export_onnx
from search_spaces.references import REFERENCES

RESULTS = Path(__file__).resolve().parent / "results"
OP_BUDGET = Budget(warmup=2, min_rounds=8, max_rounds=30, max_seconds=0.3)


def node_ms_by_type(model, runs: int = 20) -> collections.Counter:
    """ms per run spent in each node type (per node the median over runs), from onnxruntime's per-node
    profile (1 thread, wall time)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="nas-int8-prof-") as tmp:
        so = ort.SessionOptions()
        so.intra_op_num_threads = so.inter_op_num_threads = 1
        so.log_severity_level = 3
        so.enable_profiling = True
        so.profile_file_prefix = os.path.join(tmp, "p")
        sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        inp = sess.get_inputs()[0]
        for _ in range(runs + 1):
            sess.run(None, {inp.name: np.zeros(inp.shape, np.float32)})
        events = json.loads(Path(sess.end_profiling()).read_text())
    first = min((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    warm = first["ts"] + first["dur"]  # the first run allocates: left out
    per_node = collections.defaultdict(list)  # one duration per run; the median drops runs that were preempted
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time") and e["ts"] >= warm:
            per_node[(e["name"], e["args"]["op_name"])].append(e["dur"] / 1e3)
    ms = collections.Counter()
    for (_, op_type), durations in per_node.items():
        ms[op_type] += float(np.median(durations))
    return ms


def latency_rows(threads: int) -> list[dict]:
    archs = [f() for f in REFERENCES.values()]
    floats = [export_onnx(a) for a in archs]
    variants = {"fp32": floats, "int8": [quantize(m) for m in floats],
                "int8_float_hard": [quantize(m, integer_hard=False) for m in floats]}
    rows = [{"network": a.name, "params": count(a)["params"], "macs_M": count(a)["macs"] / 1e6} for a in archs]
    started = time.time()
    # all variants in the same interleaved rounds; the runner times them as given (already quantized)
    samples = iter(OnnxRuntimeRunner(threads, NETWORK_BUDGET).measure([m for ms in variants.values() for m in ms]))
    for name in variants:
        for row in rows:
            row[f"{name}_ms"] = float(np.median(next(samples)))
    for precision in ("fp32", "int8"):
        runner = OnnxRuntimeRunner(threads, OP_BUDGET, precision=precision)
        for row, a in zip(rows, archs):
            ops = [op for _, op in arch_ops(a)]
            row[f"{precision}_ops_sum_ms"] = sum(r["median_ms"] for r in measure_ops(ops, runner))
    print(f"timed in {time.time() - started:.0f} s", flush=True)
    for i, row in enumerate(rows):
        row["speedup"] = row["fp32_ms"] / row["int8_ms"]
        for name in ("int8", "int8_float_hard"):
            report = graph_report(variants[name][i])
            prof = node_ms_by_type(variants[name][i])
            total = sum(prof.values())
            row.update({f"{name}_kernels": sum(report["int8"].values()),
                        f"{name}_float_nodes": json.dumps(dict(report["float"].most_common())),
                        f"{name}_float_pct": 100 * sum(prof[t] for t in report["float"]) / total,
                        f"{name}_qdq_pct": 100 * sum(prof[t] for t in report["conversion"]) / total})
        print(row, flush=True)
    return rows


def accuracy_row(args) -> dict:
    """Train `args.network` briefly on CIFAR-10 (cached in --work), then score float and int8."""
    ref = REFERENCES[args.network]().replace(num_classes=10)
    data = load_data(f"cifar10:{args.data_dir}", resolution=args.resolution, train_subset=args.train_images, seed=0)
    work = Path(args.work) / f"{args.network}_r{args.resolution}_n{args.train_images}_e{args.epochs:g}"
    if not (work / "train_seconds.txt").exists():
        started = time.time()
        model = build_for_training(ref, data)
        train(model, data, TrainConfig(epochs=args.epochs, batch_size=64, lr=0.05, threads=args.threads))
        save_deployment(work, ref, model.state_dict())
        (work / "train_seconds.txt").write_text(f"{time.time() - started:.1f}\n")  # written last: training done
    train_s = float((work / "train_seconds.txt").read_text())
    state = torch.load(work / "model.pt", map_location="cpu", weights_only=True)
    net = proxy_network(Trained(ref, state, None), data)
    float_model = export_onnx(net)
    calibration = list(model_inputs(data.train, 64)[:, None])
    models = {"float": float_model, "int8": quantize(float_model, calibration),
              "int8_float_hard": quantize(float_model, calibration, integer_hard=False)}
    row = {"network": args.network, "data": "cifar10", "resolution": args.resolution,
           "train_images": len(data.train), "epochs": args.epochs, "train_seconds": train_s,
           "calibration_images": 64, "torch_val_top1": evaluate(net, data.val)}
    for split in ("val", "test"):
        for name, model in models.items():
            row[f"{name}_{split}_top1"] = onnx_top1(model, getattr(data, split))
        row[f"{split}_images"] = len(getattr(data, split))
    print(row, flush=True)
    return row


def plot(df: pd.DataFrame, path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    x = np.arange(len(df))
    ax.bar(x - 0.27, df["fp32_ms"], 0.27, label="float32")
    ax.bar(x, df["int8_ms"], 0.27, label="int8 (QDQ, per-channel, integer-only)")
    ax.bar(x + 0.27, df["int8_float_hard_ms"], 0.27, label="int8, h-swish / hard-sigmoid float")
    for i, r in df.reset_index(drop=True).iterrows():
        ax.text(i, r["int8_ms"], f"{r['speedup']:.2f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, df["network"], rotation=20, fontsize=8)
    ax.set(ylabel="end-to-end ms (onnxruntime, 1 thread, CPU time)", title="float vs 8-bit on this CPU, 224x224",
           ylim=(0, 1.45 * df[["fp32_ms", "int8_ms", "int8_float_hard_ms"]].max().max()))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", help="holds cifar10_train.npz and cifar10_test.npz (needed unless --no-train)")
    ap.add_argument("--network", default="mobilenet_v3_small", choices=sorted(REFERENCES))
    ap.add_argument("--resolution", type=int, default=32)
    ap.add_argument("--train-images", type=int, default=4000)
    ap.add_argument("--epochs", type=float, default=3.0)
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "latency_int8"),
                    help="where trained networks are kept, one folder per setting (a rerun skips training)")
    ap.add_argument("--no-train", action="store_true")
    args = ap.parse_args()
    if not args.no_train and not args.data_dir:
        ap.error("--data-dir DIR is needed to train the accuracy network (or --no-train)")
    torch.set_num_threads(args.threads)
    load = [os.getloadavg()[0]]
    lat = pd.DataFrame(latency_rows(args.threads))
    load.append(os.getloadavg()[0])
    RESULTS.mkdir(exist_ok=True)
    lat.to_csv(RESULTS / "latency_int8.csv", index=False, float_format="%.4g")
    plot(lat, RESULTS / "latency_int8.png")
    acc = None if args.no_train else pd.DataFrame([accuracy_row(args)])
    load.append(os.getloadavg()[0])
    if acc is not None:
        acc.to_csv(RESULTS / "latency_int8_accuracy.csv", index=False, float_format="%.4g")
    import onnxruntime

    shown = lat[["network", "macs_M", "fp32_ms", "int8_ms", "int8_float_hard_ms", "speedup", "fp32_ops_sum_ms",
                 "int8_ops_sum_ms", "int8_kernels", "int8_float_pct", "int8_qdq_pct", "int8_float_hard_float_pct",
                 "int8_float_hard_qdq_pct"]]
    lines = ["# Float vs 8-bit inference on this CPU", "",
             f"onnxruntime {onnxruntime.__version__}, {args.threads} thread(s), thread CPU time, median of "
             f"interleaved rounds (all variants in the same rounds), 224x224, 1000 classes; {os.cpu_count()} cores, "
             f"1-minute load average {' -> '.join(f'{v:.1f}' for v in load)} (start, after latency, end).",
             "int8: onnxruntime static quantization as `nas latency build --precision int8` does it (QDQ, "
             "per-channel int8 weights, uint8 activations, min/max calibrated on 4 random inputs; h-swish and "
             "hard-sigmoid spelled with Mul/Add/Clip so that they run on integers). int8_float_hard: the same "
             "without that rewrite, so that h-swish and hard-sigmoid run float between DequantizeLinear and "
             "QuantizeLinear (onnxruntime's CPU provider has no integer kernel for them).", "",
             markdown_table(shown, ".3g"), "",
             "`*_ops_sum_ms`: the network's ops timed standalone and summed (what a table sums before its "
             "end-to-end term). `*_float_pct` / `*_qdq_pct`: share of the int8 run time (onnxruntime per-node "
             "profile, per node the median over 20 runs) in nodes that run float, and in QuantizeLinear/"
             "DequantizeLinear. `int8_kernels`: integer kernels (QLinear*, QGemm) in the optimized graph.", "",
             "Nodes that run float (optimized graph):", ""]
    for name in ("int8", "int8_float_hard"):
        lines += [f"- {name}: " + "; ".join(f"{r.network} " + (", ".join(f"{t} {n}" for t, n in json.loads(
            getattr(r, f"{name}_float_nodes")).items()) or "none") for r in lat.itertuples())]
    if acc is not None:
        a = acc.iloc[0]
        lines += ["", "## Accuracy", "",
                  f"{a.network} trained {a.epochs:g} epochs on {a.train_images} CIFAR-10 images at "
                  f"{a.resolution}x{a.resolution} with the project's training code ({a.train_seconds:.0f} s), "
                  f"quantized with {a.calibration_images} training images as calibration; every model run with "
                  f"onnxruntime (torch's own validation top-1: {a.torch_val_top1:.4f}):", "",
                  "| split | images | float top-1 | int8 top-1 | change | int8_float_hard top-1 | change |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        lines += [f"| {s} | {a[f'{s}_images']} | {a[f'float_{s}_top1']:.4f} | {a[f'int8_{s}_top1']:.4f} | "
                  f"{a[f'int8_{s}_top1'] - a[f'float_{s}_top1']:+.4f} | {a[f'int8_float_hard_{s}_top1']:.4f} | "
                  f"{a[f'int8_float_hard_{s}_top1'] - a[f'float_{s}_top1']:+.4f} |" for s in ("val", "test")]
    (RESULTS / "latency_int8.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
