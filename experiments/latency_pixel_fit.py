"""Generator of the shipped `pixel_cpu` target: fit the Pixel 1 per-op model, write its table.

Reads the published tables in ../shared/latency_data/ (never copied into the repo), fits
`latency_tables.pixel.fit_pixel`, reports the leave-one-out error over the 72 Pixel 1
entries, fits the in-network costs and the end-to-end scale on published whole-network Pixel 1
latencies (`latency_tables.pixel_networks.calibrates`: MobileNetV2 at 96 and 224 px, every
width; MobileNetV2 1.0 75 ms and ProxylessNAS-mobile 78 ms; `experiments/pixel_cpu_scaling.py`
validates it on the rest), and writes
  latency_tables/data/pixel_cpu_model.json   (coefficients + provenance)
  latency_tables/data/pixel_cpu_mnv3.csv     (every mnv3 op at 224, source=model)
  experiments/results/latency_pixel_fit.{md,csv,png}

    python experiments/latency_pixel_fit.py [--shared ../shared]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from latency_tables.ops import arch_ops
from latency_tables.pixel import MODEL_FILE, TABLE_FILE, fit_in_network, fit_pixel, pixel_table
from latency_tables.pixel_networks import calibrates, published_networks
from search_spaces.references import REFERENCES, reference
from search_spaces.space import get_space

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", default=str(ROOT.parent / "shared"))
    args = ap.parse_args()
    data = Path(args.shared) / "latency_data"
    standalone, report = fit_pixel(data / "proxylessnas_pixel1" / "mobile_trim.yaml",
                                   sorted((data / "ofa_note10").glob("*_lookup_table.yaml")))
    sums = {n: float(standalone.predict([op for _, op in arch_ops(reference(n))]).sum()) for n in REFERENCES}

    # in a network: element and conv-weight costs and the end-to-end scale, fitted on whole networks
    calibration = [n for n in published_networks() if calibrates(n)]
    model, term = fit_in_network(standalone, [(n.arch, n.ms) for n in calibration])
    term["fitted_on"] = (f"{len(calibration)} published Pixel 1 TF-Lite latencies: MobileNetV2 at 96 and 224 px "
                         "(widths 0.35-1.4), MobileNetV2 1.0 75 ms, ProxylessNAS-mobile 78 ms "
                         "(latency_tables/data/pixel1_networks.csv)")
    scale = term["scale"]

    table = pixel_table(model, get_space("mnv3"))
    table.metadata["network_term"] = term
    table.metadata["provenance"] = ("per-op model fitted by experiments/latency_pixel_fit.py; every row is a model "
                                    "estimate, not a measurement")
    MODEL_FILE.parent.mkdir(parents=True, exist_ok=True)
    MODEL_FILE.write_text(json.dumps({**model.to_dict(), "network_term": term}, indent=2) + "\n")
    table.save(TABLE_FILE)
    n_ops = len(table)

    loo = pd.DataFrame({"entry": report["keys"], "measured_ms": report["measured_ms"],
                        "fit_ms": report["fit_ms"], "loo_rel_err": report["loo_rel_err"]})
    RESULTS.mkdir(parents=True, exist_ok=True)
    loo.to_csv(RESULTS / "latency_pixel_fit.csv", index=False)
    refs = {n: table.query_total(reference(n)) for n in REFERENCES}
    lines = ["# pixel_cpu: Pixel 1 per-op model", "",
             f"Fitted on {len(loo)} Pixel 1 entries; h-swish/SE relative cost from OFA Note10; the in-network "
             f"element and conv-weight costs and the scale on {len(calibration)} published whole networks "
             "(validated in `experiments/results/pixel_cpu_scaling.md`).", "",
             "| metric | value |", "| --- | --- |",
             f"| leave-one-out mean abs error | {np.abs(loo.loo_rel_err).mean():.1%} |",
             f"| leave-one-out median abs error | {np.median(np.abs(loo.loo_rel_err)):.1%} |",
             f"| leave-one-out max abs error | {np.abs(loo.loo_rel_err).max():.1%} |",
             f"| leave-one-out within 10% | {np.mean(np.abs(loo.loo_rel_err) <= 0.1):.0%} |",
             f"| Note10 fit leave-one-out mean abs error | {model.provenance['note10_loo_mean_abs_pct']:.1f}% |",
             f"| end-to-end scale (summed ops -> published) | {scale:.3f} |",
             f"| in-network element cost shift (ms per M elements) | "
             f"{model.coef['mem_melems'] - standalone.coef['mem_melems']:+.3f} |",
             f"| conv-weight cost at any input size (ms per M weights, before the scale) | "
             f"{model.coef['conv_mweights']:.3f} |",
             f"| ops in generated mnv3 table | {n_ops} |", "",
             "| reference at 224 | summed standalone ops (ms) | predicted (ms) | published Pixel 1 (ms) |",
             "| --- | --- | --- | --- |"]
    papers = {n.arch.name: n.ms for n in published_networks(("papers",))}
    for n, v in refs.items():
        lines.append(f"| {n} | {sums[n]:.1f} | {v:.1f} | {papers.get(n, '')} |")
    lines += ["", "Coefficients (ms per million MACs / elements / weights, per op part; standalone: the fit "
              "on the per-op table, in network: after the whole-network fit):", "",
              "| feature | Pixel 1 standalone | Pixel 1 in network | Note10 (relative costs) |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {standalone.coef.get(k, 0.0):.4g} | {model.coef[k]:.4g} | {model.relative.get(k, 0.0):.4g} |"
              for k in model.coef]
    (RESULTS / "latency_pixel_fit.md").write_text("\n".join(lines) + "\n")

    fig = Figure(figsize=(5, 5))
    ax = fig.subplots()
    loo_pred = loo.measured_ms * (1 + loo.loo_rel_err)
    ax.scatter(loo.measured_ms, loo_pred, s=12)
    hi = max(loo.measured_ms.max(), loo_pred.max())
    ax.plot([0, hi], [0, hi], "k-", lw=0.8)
    ax.set(xlabel="published Pixel 1 latency (ms)", ylabel="leave-one-out prediction (ms)",
           title=f"Pixel 1 op model: LOO mean |err| {np.abs(loo.loo_rel_err).mean():.1%}")
    fig.tight_layout()
    fig.savefig(RESULTS / "latency_pixel_fit.png", dpi=120)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
