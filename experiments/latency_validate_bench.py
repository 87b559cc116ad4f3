"""Benchmark: validate the local_cpu table on random networks timed end to end.

Prints and saves experiments/results/latency_validation{.csv,_summary.csv,.png} and
latency_validation.md (RMSE, RMSPE, share within +-5% / +-10%, Kendall's tau).
Run `experiments/latency_build_bench.py` first (it builds the local_cpu table).

    python experiments/latency_validate_bench.py [--samples 100] [--space mnv3]
"""
from __future__ import annotations

import argparse
from pathlib import Path

from latency_tables.measure import OnnxRuntimeRunner
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
    args = ap.parse_args()
    table = open_table(local_cpu_path(args.threads))
    stats, df = validate_table(table, get_space(args.space), OnnxRuntimeRunner(args.threads), args.samples,
                               args.seed, RESULTS)
    term = table.metadata["network_term"]
    lines = ["# local_cpu table validation", "",
             f"{args.samples} random `{args.space}` networks at {table.metadata['resolution']}x"
             f"{table.metadata['resolution']}, {args.threads} thread(s), onnxruntime "
             f"{table.metadata['runtime_version']}, {table.metadata['cpu']}.",
             f"Prediction = sum over ops of (scale x op ms + c x op input elements + m x op MACs) + offset, the "
             f"end-to-end term fitted on {term.get('networks')} other networks: scale {term['scale']:.3f}, "
             f"c {term['per_input_melem_ms']:+.3f} ms per M elements, m {term.get('per_mmac_ms', 0.0):+.5f} ms per "
             f"M MACs, offset {term['offset_ms']:+.3f} ms.",
             "Timing clock: the calling thread's CPU time (1 thread), see latency_tables/measure.py.", "",
             "| metric | value |", "| --- | --- |"]
    lines += [f"| {k} | {v:.4g} |" for k, v in stats.items()]
    lines += ["", f"Measured range {df.measured_ms.min():.2f}-{df.measured_ms.max():.2f} ms."]
    (RESULTS / "latency_validation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
