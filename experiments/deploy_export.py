"""Do the reference networks export to the phone runtimes, and do the exports compute what PyTorch does?

Each reference network (search_spaces/references.py), in the form the project trains on
CIFAR-10 (`for_proxy` at 32x32, 10 classes), is exported with `nas.deploy_export` to LiteRT
(.tflite through litert-torch, float32) and ExecuTorch (.pte, XNNPACK delegate, float32), and
each export is run in its own runtime on CIFAR-10 test images (batch 1, normalized with the
training set's statistics) next to PyTorch: the largest absolute difference of the logits, the
largest logit (what the difference is small against) and the share of images whose top-1 class
agrees. Also the export's wall and CPU seconds, the file's size and the ops XNNPACK left to
ExecuTorch's portable kernels.

The weights are the builder's fresh ones, seeded, with BatchNorm statistics estimated on 512
training images (no trained reference network is at hand): the logits then have a real spread,
but top-1 agreement of an untrained network is still a weaker check than a trained one's; the
difference relative to the largest logit says whether the export computes what PyTorch does.

    python experiments/deploy_export.py --data-dir ../shared/data [--images 1000] [--networks a,b]

Needs the deploy extra (pip install -e '.[deploy]'). Writes experiments/results/deploy_export{.csv,.md,.png}.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from nas.data import Split, load_data  # noqa: E402
from nas.deploy_export import export_executorch, export_litert  # noqa: E402
from nas.quantized_export import model_inputs  # noqa: E402
from nas.run_dir import write_csv, write_text  # noqa: E402
from nas.search_report import markdown_table  # noqa: E402
from nas.training import recalibrate_bn  # noqa: E402
from results_paths import shown  # noqa: E402
from script_main import run_script  # noqa: E402
from search_spaces.atomic import atomic_path  # noqa: E402
from search_spaces.builder import build_model  # noqa: E402
from search_spaces.errors import UserError  # noqa: E402
from search_spaces.proxy import for_proxy  # noqa: E402
from search_spaces.references import REFERENCES, reference  # noqa: E402

HERE = Path(__file__).resolve().parent
SEED = 0
RESOLUTION = 32
BN_IMAGES = 512
EXPORTS = {"litert": (export_litert, ".tflite"), "executorch": (export_executorch, ".pte")}


def network(name: str, train: Split) -> torch.nn.Module:
    """The reference in its CIFAR-10 form with fresh seeded weights and BatchNorm statistics
    estimated on training images: untrained, but its activations (and logits) have the scale
    real images give them rather than the default statistics' vanishing ones."""
    torch.manual_seed(SEED)
    model = build_model(for_proxy(reference(name).replace(num_classes=10), RESOLUTION))
    with torch.no_grad():
        recalibrate_bn(model, train, torch.Generator().manual_seed(SEED), flip=False, images=BN_IMAGES)
    return model.eval()


def rows(names: list[str], data, inputs: np.ndarray):
    with tempfile.TemporaryDirectory(prefix="nas-deploy-") as tmp:
        for name in names:
            model = network(name, data.train)
            for fmt, (export, suffix) in EXPORTS.items():
                r = export(model, Path(tmp) / f"{name}{suffix}", inputs)
                left = r.pop("not_delegated", None)
                row = {"network": name, **r, "relative_diff": r["max_abs_diff"] / r["max_abs_logit"]}
                if left is not None:
                    row["not_delegated"] = ", ".join(f"{op} {n}" for op, n in sorted(left.items())) or "none"
                print(row, flush=True)
                yield row


def plot(frame: pd.DataFrame, path: Path) -> None:
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    names = list(dict.fromkeys(frame["network"]))
    x = np.arange(len(names))
    for i, (fmt, g) in enumerate(frame.groupby("format", sort=False)):
        g = g.set_index("network").reindex(names)
        a.bar(x + (i - 0.5) * 0.4, g["export_cpu_seconds"], 0.4, label=fmt)
        b.bar(x + (i - 0.5) * 0.4, g["relative_diff"], 0.4, label=fmt)
    for ax, title in ((a, "export time (CPU seconds)"), (b, "max |logit diff| / max |logit|")):
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
        ax.legend()
    b.set_yscale("log")
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)


def run(args) -> None:
    names = args.networks.split(",") if args.networks else list(REFERENCES)
    unknown = [n for n in names if n not in REFERENCES]
    if unknown:
        raise UserError(f"unknown reference network {', '.join(unknown)}; known: {', '.join(REFERENCES)}")
    data = load_data(f"cifar10:{args.data_dir.resolve()}", resolution=RESOLUTION)
    inputs = model_inputs(data.test, args.images)
    frame = pd.DataFrame(list(rows(names, data, inputs)))
    frame["not_delegated"] = frame["not_delegated"].fillna("-")  # LiteRT has no delegation report
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "deploy_export.csv", frame)
    command = "python experiments/deploy_export.py --data-dir ../shared/data" + (
        f" --images {args.images}" if args.images != 1000 else "") + (f" --networks {args.networks}" if args.networks else "")
    worst = frame.loc[frame["relative_diff"].idxmax()]
    lines = ["# Reference networks exported to LiteRT and ExecuTorch, checked against PyTorch", "",
             f"Reproduce: `{command}` (one thread, pinned to one core of a shared 2-core machine).", "",
             f"{len(names)} reference network(s) in their CIFAR-10 form ({RESOLUTION}x{RESOLUTION}, 10 classes) with "
             f"**fresh weights seeded {SEED}, not trained** (no trained reference network was at hand; BatchNorm "
             f"statistics estimated on {BN_IMAGES} training images so activations have real images' scale), run on "
             f"{len(inputs)} CIFAR-10 test images of {shown(data.name)} (batch 1) in LiteRT's interpreter "
             "(XNNPACK) and ExecuTorch's runtime (XNNPACK delegate) and in PyTorch. An untrained network's top-1 "
             "agreement is a weaker check than a trained one's; `relative_diff` (largest absolute logit "
             "difference over the largest logit) says whether the export computes what PyTorch does. "
             "Wall seconds are inflated by other work on the shared core; CPU seconds are the conversion's own.",
             "", markdown_table(frame, ".3g"), "", "## Reading", "",
             f"- Top-1 agreement: {frame['top1_agreement'].min():.4f} at worst "
             f"({(frame['top1_agreement'] >= 0.995).sum()} of {len(frame)} exports at >= 0.995).",
             f"- Largest relative logit difference: {worst['relative_diff']:.2g} ({worst['network']}, "
             f"{worst['format']}).",
             f"- Export CPU seconds: LiteRT median {frame[frame['format'] == 'litert']['export_cpu_seconds'].median():.1f}, "
             f"ExecuTorch median {frame[frame['format'] == 'executorch']['export_cpu_seconds'].median():.1f}."]
    write_text(args.out / "deploy_export.md", "\n".join(lines) + "\n")
    plot(frame, args.out / "deploy_export.png")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, required=True, help="directory with cifar10_train.npz and cifar10_test.npz")
    ap.add_argument("--images", type=int, default=1000, help="test images each export is checked on")
    ap.add_argument("--networks", help="comma-separated reference names (default: all)")
    ap.add_argument("--out", type=Path, default=HERE / "results")
    return run_script(ap, run, argv, __file__)


if __name__ == "__main__":
    sys.exit(main())
