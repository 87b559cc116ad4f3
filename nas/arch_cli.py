"""`nas arch show|stats|sample|export`: look at, count, sample and export architectures."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd

from search_spaces.counting import count, layer_counts
from search_spaces.errors import UserError
from search_spaces.references import load_arch
from search_spaces.space import get_space


def register(sub) -> None:
    arch = sub.add_parser("arch", help="inspect, sample and export architectures").add_subparsers(
        dest="arch_command", required=True)
    arch_help = "a reference name, an IR JSON file, or an IR string"

    p = arch.add_parser("show", help="table of layers with shapes, params and MACs")
    p.add_argument("arch", help=arch_help)
    p.set_defaults(func=show)

    p = arch.add_parser("stats", help="total params and MACs")
    p.add_argument("arch", help=arch_help)
    p.add_argument("--json", action="store_true", help='print {"params": ..., "macs": ...}')
    p.set_defaults(func=stats)

    p = arch.add_parser("sample", help="print random architectures of a space as IR strings")
    p.add_argument("--space", default="mnv3")
    p.add_argument("--n", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=sample)

    p = arch.add_parser("export", help="write an ONNX file (fresh weights), or a trained model quantized to 8 bits")
    p.add_argument("arch", help=arch_help + "; with --int8 also a run directory, its best/ or final/ "
                                            "directory, or a directory with arch.json and model.pt")
    p.add_argument("--onnx", required=True, metavar="FILE")
    p.add_argument("--int8", action="store_true",
                   help="post-training static quantization (QDQ, per-channel int8 weights) of a trained model, "
                        "at the data's resolution; reports its top-1 next to the float model's")
    p.add_argument("--calibration-data", metavar="DATA",
                   help="with --int8: digits, cifar10:DIR or imagefolder:DIR; training images calibrate, "
                        "the validation split scores")
    p.add_argument("--weights", metavar="FILE", help="with --int8 and an architecture: its trained state_dict")
    p.add_argument("--resolution", type=int, metavar="PX",
                   help="with --int8: input size the model was trained at (default: the run's, else the data's)")
    p.add_argument("--calibration-images", type=int, default=64, metavar="N",
                   help="with --int8: training images that calibrate the activation ranges (default 64)")
    p.set_defaults(func=export)


def layer_table(arch) -> pd.DataFrame:
    rows = [{"layer": r.name, "kind": r.kind, "in": "x".join(map(str, r.in_shape)),
             "out": "x".join(map(str, r.out_shape)), "params": r.params, "macs": r.macs}
            for r in layer_counts(arch)]
    return pd.DataFrame(rows)


def show(args) -> int:
    arch = load_arch(args.arch)
    table = layer_table(arch)
    print(arch.name or arch.to_string())
    print(table.to_string(index=False))
    total = count(arch)
    print(f"total: {total['params']:,} params, {total['macs'] / 1e6:.1f}M MACs at {arch.resolution}x{arch.resolution}")
    return 0


def stats(args) -> int:
    total = count(load_arch(args.arch))
    if args.json:
        print(json.dumps(total))
    else:
        print(f"params {total['params']:,}  MACs {total['macs']:,}")
    return 0


def sample(args) -> int:
    if args.n < 1:
        raise UserError("--n must be at least 1")
    space = get_space(args.space)
    rng = random.Random(args.seed)
    for _ in range(args.n):
        print(space.decode(space.sample(rng)).to_string())
    return 0


def export(args) -> int:
    from search_spaces.onnx_export import export_onnx

    if Path(args.onnx).is_dir():
        raise UserError(f"--onnx {args.onnx} is a directory; name the file to write")
    if args.int8:
        return export_int8(args)
    if args.calibration_data or args.weights:
        raise UserError("--calibration-data and --weights go with --int8")
    arch = load_arch(args.arch)
    try:
        export_onnx(arch, args.onnx)
    except OSError as e:  # an unwritable or missing place: the user's to fix
        raise UserError(f"cannot write {args.onnx}: {e.strerror or e}") from None
    print(f"wrote {args.onnx}")
    return 0


def export_int8(args) -> int:
    from nas.data import absolute_spec
    from nas.quantized_export import export_int8 as quantized, trained_model
    from nas.run_config import BOUNDS

    if not args.calibration_data:
        raise UserError("--int8 needs --calibration-data DATA (digits, cifar10:DIR or imagefolder:DIR)")
    BOUNDS["resolution"].check("--resolution", args.resolution)
    r = quantized(trained_model(args.arch, args.weights), absolute_spec(args.calibration_data), args.onnx,
                  args.resolution, args.calibration_images)
    g = r["graph"]
    print(f"wrote {args.onnx}: int8 (QDQ, per-channel weights), {r['resolution']}x{r['resolution']} inputs, "
          f"{r['int8_mb']:.2f} MB (float {r['float_mb']:.2f} MB), calibrated on {r['calibration_images']} training images")
    print(f"top-1 on the validation split of {args.calibration_data} ({r['val_images']} images, onnxruntime): "
          f"float {r['float_top1']:.4f}, int8 {r['int8_top1']:.4f} ({r['int8_top1'] - r['float_top1']:+.4f})")
    print("integer kernels: " + (", ".join(f"{t} {n}" for t, n in g["int8"].most_common()) or "none"))
    if g["float"]:
        print("stay float (between DequantizeLinear and QuantizeLinear): "
              + ", ".join(f"{t} {n}" for t, n in g["float"].most_common())
              + f"; conversions: {sum(g['conversion'].values())} nodes")
    return 0
