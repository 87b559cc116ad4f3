"""Benchmark: validate the local_cpu table on random networks timed end to end.

Prints and saves experiments/results/latency_validation{.csv,_summary.csv,.png} and
latency_validation.md (RMSE, RMSPE, share within +-5% / +-10%, Kendall's tau); with
`--precision int8`, the same of the local_cpu_int8 table against whole quantized networks, as
latency_validation_int8*. Build the table first (`experiments/latency_build_bench.py`, or
`nas latency build --device local_cpu --precision int8`).

    python experiments/latency_validate_bench.py [--samples 100] [--space mnv3] [--precision int8]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from latency_tables.measure import OnnxRuntimeRunner
from latency_tables.quantize import PRECISIONS, precision_suffix
from latency_tables.targets import local_cpu_path, open_table
from latency_tables.validate import validate_table
from search_spaces.space import get_space

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=100)
    ap.add_argument("--space", default="mnv3")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--precision", choices=PRECISIONS, default="fp32")
    args = ap.parse_args()
    table = open_table(local_cpu_path(args.threads, args.precision))
    stem = "latency_validation" + precision_suffix(args.precision)
    stats, df = validate_table(table, get_space(args.space), OnnxRuntimeRunner(args.threads, precision=args.precision),
                               args.samples, args.seed, RESULTS, stem)
    term = table.metadata["network_term"]
    quantized = "" if args.precision == "fp32" else (
        ", every op and network statically quantized (QDQ, per-channel int8 weights; latency_tables/quantize.py)")
    lines = [f"# local_cpu table validation ({args.precision})", "",
             f"{args.samples} random `{args.space}` networks at {table.metadata['resolution']}x"
             f"{table.metadata['resolution']}, {args.threads} thread(s), onnxruntime "
             f"{table.metadata['runtime_version']}, {table.metadata['cpu']}{quantized}.",
             f"Prediction = sum over ops of (scale x op ms + c x op input elements + m x op MACs) + offset, the "
             f"end-to-end term fitted on {term.get('networks')} other networks: scale {term['scale']:.3f}, "
             f"c {term['per_input_melem_ms']:+.3f} ms per M elements, m {term.get('per_mmac_ms', 0.0):+.5f} ms per "
             f"M MACs, offset {term['offset_ms']:+.3f} ms.",
             "Timing clock: the calling thread's CPU time (1 thread), see latency_tables/measure.py.", "",
             "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4g} |" for k, v in stats.items()]
    lines += ["", f"Measured range {df.measured_ms.min():.2f}-{df.measured_ms.max():.2f} ms."]
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
