"""`nas latency build|validate|predict|import|show|plan|time|fit`: latency tables from the command line."""
from __future__ import annotations

import json
from pathlib import Path

from latency_tables.quantize import PRECISIONS, precision_suffix
from search_spaces.errors import UserError


def register(sub) -> None:
    lat = sub.add_parser("latency", help="build, validate and query per-op latency tables").add_subparsers(
        dest="latency_command", required=True)

    def runner_args(p):
        p.add_argument("--threads", type=int, default=1, metavar="N", help="onnxruntime intra-op threads (default 1)")
        p.add_argument("--runner", choices=("onnxruntime", "command"), default="onnxruntime")
        p.add_argument("--command", metavar="TEMPLATE",
                       help="for --runner command: shell command with {model} (an ONNX file) that prints ms")
        p.add_argument("--repeats", type=int, default=3, metavar="N",
                       help="for --runner command: runs of the command per op, interleaved (default 3)")

    p = lat.add_parser("build", help="time every op of a search space on this device")
    p.add_argument("--space", default="mnv3")
    p.add_argument("--device", required=True, help="device name stored in the table (local_cpu: this machine's cache)")
    p.add_argument("--resolution", type=int, default=None, metavar="PX", help="input size (default: the space's)")
    p.add_argument("--out", metavar="FILE", help="table file (default: local_cpu cache or latency_DEVICE_SPACE_rRES.csv)")
    p.add_argument("--calibrate", type=int, default=None, metavar="N",
                   help="networks timed whole to fit the end-to-end term (default 40)")
    p.add_argument("--recalibrate", action="store_true", help="fit the end-to-end term again on a finished table")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="fp32, or int8: time each op (and network) statically quantized with onnxruntime "
                        "(local_cpu int8: the local_cpu_int8 target)")
    runner_args(p)
    p.set_defaults(func=build)

    p = lat.add_parser("validate", help="time random networks end to end and compare with a table")
    p.add_argument("--table", required=True, help="target name (local_cpu, local_cpu_int8, pixel_cpu) or table file")
    p.add_argument("--space", default=None, help="search space (default: the table's)")
    p.add_argument("--samples", type=int, default=100, metavar="N")
    p.add_argument("--seed", type=int, default=12345)
    p.add_argument("--out", metavar="DIR", help="write latency_validation.csv and .png here")
    runner_args(p)
    p.set_defaults(func=validate)

    p = lat.add_parser("predict", help="latency of one architecture, per layer")
    p.add_argument("arch", help="a reference name, an IR JSON file, or an IR string")
    p.add_argument("--target", default="pixel_cpu", help="pixel_cpu, local_cpu, local_cpu_int8 or a table file")
    p.add_argument("--json", action="store_true", help='print {"latency_ms": ...}')
    p.set_defaults(func=predict)

    p = lat.add_parser("import", help="convert published latency YAML tables into a table file")
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", required=True, choices=("ofa", "proxylessnas"))
    p.add_argument("--out", required=True, metavar="TABLE")
    p.add_argument("--device", default=None, help="device name stored in the table")
    p.set_defaults(func=import_)

    p = lat.add_parser("show", help="a table's metadata: machine, runtime, threads, precision, terms, fit")
    p.add_argument("table", help="pixel_cpu, local_cpu, local_cpu_int8 or a table file")
    p.set_defaults(func=show)

    p = lat.add_parser("plan", help="choose networks to time whole for `nas latency fit` (greedy D-optimal)")
    p.add_argument("--space", default="mnv3")
    p.add_argument("--n", type=int, required=True, metavar="N", help="networks to time")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", metavar="FILE", help="write the IR strings here, one a line (default: print them)")
    p.set_defaults(func=plan)

    p = lat.add_parser("time", help="time networks whole on a device, writing the CSV `nas latency fit` reads")
    p.add_argument("archs", nargs="+", metavar="ARCHS",
                   help="a file of IR strings (one a line, as `plan` writes), a reference name or an IR string")
    p.add_argument("--out", required=True, metavar="CSV", help="timings file (columns arch, measured_ms)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    runner_args(p)
    p.set_defaults(func=time_)

    p = lat.add_parser("fit", help="a latency table fitted from whole-network timings")
    p.add_argument("--space", required=True)
    p.add_argument("--timings", required=True, metavar="CSV", help="columns arch (IR string) and measured_ms")
    p.add_argument("--prior", default="features", metavar="TABLE",
                   help="another device's table (target name or file, rescaled per op kind), features "
                        "(MACs and memory traffic, the default) or none")
    p.add_argument("--device", default=None, help="device name stored in the table (default: the timings file's name)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32", help="what the networks were timed in")
    p.add_argument("--out", required=True, metavar="TABLE", help="table file (use it as --target TABLE.csv)")
    p.set_defaults(func=fit)


def _runner(args, precision: str):
    from latency_tables.measure import CommandRunner, OnnxRuntimeRunner

    if args.runner == "command" and not args.command:
        raise UserError("--runner command needs --command TEMPLATE (with {model})")
    if args.repeats < 1:
        raise UserError("--repeats must be at least 1")
    if args.runner == "command":
        return CommandRunner(args.command, args.repeats, precision=precision)
    return OnnxRuntimeRunner(args.threads, precision=precision)


def build(args) -> int:
    from latency_tables.build import CALIBRATION_NETWORKS, build_table
    from latency_tables.targets import local_cpu_path
    from search_spaces.space import get_space

    space = get_space(args.space)
    r = args.resolution or space.resolution
    if r < 32:
        raise UserError(f"--resolution must be at least 32, got {r}")
    calibrate = CALIBRATION_NETWORKS if args.calibrate is None else args.calibrate
    if calibrate < 0:
        raise UserError("--calibrate must be 0 or more")
    if args.device == "local_cpu" and args.runner != "onnxruntime":
        raise UserError("device local_cpu is this machine: use --runner onnxruntime")
    suffix = precision_suffix(args.precision)
    out = args.out or (local_cpu_path(args.threads, args.precision) if args.device == "local_cpu"
                       else Path(f"latency_{args.device}{suffix}_{space.name}_r{r}.csv"))
    table = build_table(space, args.device, out, _runner(args, args.precision), resolution=r, calibrate=calibrate,
                        recalibrate=args.recalibrate)
    term = table.term_at(r)
    print(f"wrote {out}: {len(table)} {table.precision} ops; end-to-end term: scale {term['scale']:.3f}, "
          f"{term['per_input_melem_ms']:+.3f} ms per M input elements, {term['per_mmac_ms']:+.5f} ms per M MACs, "
          f"offset {term['offset_ms']:+.3f} ms")
    return 0


def validate(args) -> int:
    from latency_tables.targets import load_target
    from latency_tables.validate import validate_table
    from search_spaces.space import get_space

    if args.samples < 2:
        raise UserError("--samples must be at least 2")
    table = load_target(args.table)
    space = get_space(args.space or table.metadata.get("space") or "mnv3")
    if args.runner == "onnxruntime" and not table.is_local:
        raise UserError(f"table of device {table.metadata.get('device')!r} was not measured on this machine: "
                        f"time its networks with --runner command --command TEMPLATE")
    if args.runner == "onnxruntime" and args.threads != table.metadata.get("threads"):
        raise UserError(f"the table was measured with {table.metadata.get('threads')} thread(s); use the same --threads")
    # whole networks are timed in the table's precision (int8: each one quantized, like its ops)
    stats, _ = validate_table(table, space, _runner(args, table.precision), args.samples, args.seed, args.out)
    print(f"{stats['n']} networks, absolute: RMSE {stats['rmse_ms']:.3f} ms, RMSPE {stats['rmspe_pct']:.2f}%, "
          f"within 5% {stats['within_5pct']:.0%}, within 10% {stats['within_10pct']:.0%}, "
          f"Kendall tau {stats['kendall_tau']:.3f}")
    if "anchor_speed" in stats:
        print(f"relative to the table's {stats['anchor_networks']} reference networks (timed {stats['anchor_speed']:.3f}x "
              f"their calibration times now): RMSPE {stats['anchor_rmspe_pct']:.2f}%, within 5% "
              f"{stats['anchor_within_5pct']:.0%}, within 10% {stats['anchor_within_10pct']:.0%}")
    return 0


def predict(args) -> int:
    from latency_tables.targets import load_target
    from search_spaces.references import load_arch

    arch = load_arch(args.arch)
    table = load_target(args.target)
    layers = table.per_layer(arch)
    total = float(layers["ms"].sum())
    if args.json:
        print(json.dumps({"latency_ms": round(total, 4)}))
    else:
        print(layers.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        print(f"total: {total:.3f} ms on {table.metadata.get('device')}")
    return 0


def import_(args) -> int:
    from latency_tables.published import import_tables

    table = import_tables(args.files, args.format, args.device)
    table.save(args.out)
    print(f"wrote {args.out}: {len(table)} ops from {len(args.files)} file(s)")
    return 0


def show(args) -> int:
    from latency_tables.pixel import TABLE_FILE
    from latency_tables.provenance import describe
    from latency_tables.table import LatencyTable
    from latency_tables.targets import LOCAL_CPU, local_cpu_path

    path = TABLE_FILE if args.table == "pixel_cpu" else (
        local_cpu_path(precision=LOCAL_CPU[args.table]) if args.table in LOCAL_CPU else Path(args.table))
    if args.table in LOCAL_CPU and not Path(path).exists():
        raise UserError(f"no {args.table} table on this machine yet ({path}): `nas latency build --device local_cpu` "
                        f"makes one")
    print(f"table: {path}")
    print("\n".join(describe(LatencyTable.load(path))))
    return 0


def plan(args) -> int:
    from latency_tables.plan import plan_networks
    from search_spaces.space import get_space

    space = get_space(args.space)
    lines = [space.decode(v).to_string() for v in plan_networks(space, args.n, args.seed)]
    if args.out:
        from search_spaces.atomic import atomic_write

        atomic_write(args.out, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
        print(f"wrote {args.out}: {len(lines)} {space.name} networks to time (`nas latency time {args.out} ...`)")
    else:
        print("\n".join(lines))
    return 0


def time_(args) -> int:
    from latency_tables.timings import read_archs, time_networks, write_timings

    archs = read_archs(args.archs)
    timings = time_networks(archs, _runner(args, args.precision))
    write_timings(args.out, timings)
    print(f"wrote {args.out}: {len(timings)} networks timed whole, median {timings['measured_ms'].median():.3f} ms")
    return 0


def fit(args) -> int:
    from latency_tables.fit import PRIORS, fit_table
    from latency_tables.targets import load_target
    from latency_tables.timings import read_timings
    from search_spaces.space import get_space

    space = get_space(args.space)
    archs, ms = read_timings(args.timings)
    prior = args.prior if args.prior in PRIORS else load_target(args.prior)
    table = fit_table(space, archs, ms, prior=prior, device=args.device or Path(args.timings).stem,
                      precision=args.precision)
    table.save(args.out)
    info, cv = table.metadata["fit"], table.metadata["fit"]["cv"]
    print(f"wrote {args.out}: {len(table)} ops of {space.name} fitted on {info['timings']} networks "
          f"({info['unknowns']} unknowns, prior {info['prior']}, decided by the {info['determined_by']})")
    print("cross-validated: " + (f"{cv['within_10pct']:.0%} within 10%, RMSPE {cv['rmspe_pct']:.1f}%, Kendall tau "
                                 f"{cv['kendall_tau']:.3f}, Spearman {cv['spearman_rho']:.3f} ({cv['folds']} folds)"
                                 if cv else "too few networks"))
    return 0
