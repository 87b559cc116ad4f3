"""Fidelity of supernet scoring: does a trained supernet rank architectures as full training does?

Scores every architecture of the ground-truth table (CIFAR-10, 18 epochs of real training each)
that the supernet's space can express, with the supernet's slice after BatchNorm recalibration
(exactly what `nas search --evaluator supernet:DIR` does), and reports Kendall's tau against
`test_acc_18ep`, the number of architectures left out (reference networks whose layers differ
within a stage lie outside the space) and the seconds per candidate.
Writes <results>/supernet_fidelity.{csv,md,png}.

    nas supernet train --space mnv3 --data cifar10:../shared/data --epochs 30 --out runs/supernet-cifar10
    python experiments/supernet_fidelity.py --supernet runs/supernet-cifar10
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure
from scipy.stats import kendalltau

from nas.data import load_data
from nas.run_dir import write_csv, write_text
from nas.supernet.directory import SupernetDir
from nas.supernet.scoring import score
from nas.supernet.training import flips
from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError
from search_spaces.ir import Arch

HERE = Path(__file__).resolve().parent
GT = HERE.parents[1] / "shared" / "gt" / "cifar10_18ep.csv"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", required=True, help="a trained supernet directory (nas supernet train)")
    ap.add_argument("--gt", default=str(GT), help="ground-truth CSV (name, test_acc_18ep, arch)")
    ap.add_argument("--results", default=str(HERE / "results"), help="directory for the CSV, Markdown and plot")
    a = ap.parse_args(argv)

    sdir = SupernetDir(a.supernet)
    supernet, cfg = sdir.trained()
    space = supernet.space
    data = load_data(cfg.data, resolution=cfg.resolution, train_subset=cfg.train_subset, seed=cfg.seed)
    rows = []
    for gt in pd.read_csv(a.gt).itertuples():
        row = {"name": gt.name, "test_acc_18ep": gt.test_acc_18ep, "supernet_acc": float("nan"), "seconds": 0.0}
        try:
            arch = Arch.from_string(gt.arch).replace(resolution=space.resolution, num_classes=space.num_classes)
            vector = space.encode(arch)
        except UserError as e:
            rows.append(row | {"status": f"left out: {e}"})
            continue
        start = time.perf_counter()
        _, row["supernet_acc"] = score(supernet, supernet.candidate(vector), data, flips(cfg.data), cfg.seed)
        rows.append(row | {"seconds": time.perf_counter() - start, "status": "scored"})
        print(f"{gt.name}: supernet {row['supernet_acc']:.4f}, 18 epochs {gt.test_acc_18ep:.4f}")
    frame = pd.DataFrame(rows)
    scored = frame[frame["status"] == "scored"]
    tau = kendalltau(scored["supernet_acc"], scored["test_acc_18ep"]).statistic if len(scored) > 1 else float("nan")
    per_candidate = scored["seconds"].mean() if len(scored) else float("nan")

    out = Path(a.results)
    write_csv(out / "supernet_fidelity.csv", frame)
    epochs = pd.read_csv(sdir / "epochs.csv")
    lines = [
        "# Supernet fidelity",
        "",
        f"Supernet `{sdir.path}`: space {cfg.space}, data `{cfg.data}` at {cfg.resolution}px, "
        f"{len(epochs)} epochs ({epochs['seconds'].mean():.0f} s/epoch on {cfg.device}), "
        f"{cfg.random_candidates} random candidates per step.",
        "",
        f"- Kendall's tau vs `test_acc_18ep`: **{tau:.3f}** over {len(scored)} architectures",
        f"- left out (not in the space): {len(frame) - len(scored)} of {len(frame)}",
        f"- seconds per candidate (BN recalibration + validation): {per_candidate:.2f}",
        "",
        "| name | test_acc_18ep | supernet_acc | seconds | status |",
        "| --- | ---: | ---: | ---: | --- |",
    ] + [f"| {r.name} | {r.test_acc_18ep:.4f} | {r.supernet_acc:.4f} | {r.seconds:.2f} | {r.status} |"
         for r in frame.itertuples()]
    write_text(out / "supernet_fidelity.md", "\n".join(lines) + "\n")

    fig = Figure(figsize=(5, 4))
    ax = fig.subplots()
    ax.scatter(scored["supernet_acc"], scored["test_acc_18ep"])
    ax.set(xlabel="supernet slice accuracy (recalibrated BN)", ylabel="test accuracy after 18 epochs",
           title=f"Kendall tau {tau:.3f} ({len(scored)} architectures)")
    fig.tight_layout()
    atomic_write(out / "supernet_fidelity.png", lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    print(f"tau {tau:.3f} over {len(scored)} ({len(frame) - len(scored)} left out); {per_candidate:.2f} s/candidate; "
          f"results in {out}")


if __name__ == "__main__":
    main()
