"""`nas arch show|stats|sample|export`: look at, count, sample and export architectures."""
from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd

from nas.device import add_device_argument, resolve_device
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

    p = arch.add_parser("train", help="train one network from scratch with a named recipe; rerun to resume")
    p.add_argument("arch", help=arch_help)
    p.add_argument("--recipe", default="cifar10_18ep",
                   help="cifar10_18ep (default): the shared ground truth's 18-epoch CIFAR-10 recipe")
    p.add_argument("--data", required=True, help="digits, cifar10:DIR or imagefolder:DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="directory of the checkpoint and the trained model (default: one per network, "
                                 "recipe, data and seed in ~/.cache/hw-nas/train)")
    p.add_argument("--epochs", type=float, help="shorten the recipe (the result is then marked as not the recipe)")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    add_device_argument(p)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=train_arch)

    p = arch.add_parser("export", help="write an ONNX file (fresh weights), a trained model quantized to 8 bits, "
                                       "or LiteRT / ExecuTorch files checked against PyTorch")
    p.add_argument("arch", help=arch_help + "; with --int8, --litert or --executorch also a run directory, its "
                                            "best/ or final/ directory, or a directory with arch.json and model.pt")
    p.add_argument("--onnx", metavar="FILE", help="ONNX file (fresh weights; with --int8, the trained model in QDQ int8)")
    p.add_argument("--litert", metavar="FILE",
                   help="LiteRT (TFLite) flatbuffer through litert-torch, float or with --int8 int8; "
                        "needs the deploy extra: pip install -e '.[deploy]'")
    p.add_argument("--executorch", metavar="FILE",
                   help="ExecuTorch program (float, XNNPACK delegate); needs the deploy extra")
    p.add_argument("--int8", action="store_true",
                   help="post-training static quantization (per-channel int8 weights) of a trained model, "
                        "at the data's resolution; --onnx reports its top-1 next to the float model's, "
                        "--litert its agreement with the float model")
    p.add_argument("--calibration-data", metavar="DATA",
                   help="with --int8: digits, cifar10:DIR or imagefolder:DIR; training images calibrate, "
                        "the validation split scores (--litert/--executorch of a trained model: its data, "
                        "default the run's; validation images check the export)")
    p.add_argument("--weights", metavar="FILE", help="with --int8, --litert or --executorch and an architecture: "
                                                     "its trained state_dict")
    p.add_argument("--resolution", type=int, metavar="PX",
                   help="with a trained model: input size it was trained at (default: the run's, else the data's)")
    p.add_argument("--calibration-images", type=int, default=64, metavar="N",
                   help="with --int8: training images that calibrate the activation ranges (default 64)")
    p.add_argument("--check-images", type=int, default=64, metavar="N",
                   help="with --litert/--executorch: images each export is run on and compared with PyTorch "
                        "(default 64; random inputs for an architecture with fresh weights)")
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


def train_arch(args) -> int:
    from nas.recipes import default_out, get_recipe, train_with_recipe
    from nas.run_config import Bound

    recipe = get_recipe(args.recipe)
    arch = load_arch(args.arch)
    Bound(positive=True).check("--epochs", args.epochs)
    Bound(1).check("--threads", args.threads)
    out = Path(args.out) if args.out else default_out(arch, recipe, args.data, args.seed, args.epochs)
    print(f"training with {recipe.name} ({recipe.about}); state in {out}", flush=True)
    r = train_with_recipe(arch, recipe, args.data, out, seed=args.seed, device=resolve_device(args.device),
                          threads=args.threads, epochs=args.epochs, progress=not args.quiet)
    kind = "" if r["is_recipe"] else f" (shortened to {r['epochs']:g} epochs: not the recipe)"
    print(f"test accuracy {r['test_acc']:.4f} on {r['test_images']} images{kind}; "
          f"{r['train_seconds'] / 3600:.2f} h at {r['images_per_s']:.0f} images/s on {r['device']}; "
          f"model in {out}")
    return 0


def export(args) -> int:
    from search_spaces.onnx_export import export_onnx

    files = {"--onnx": args.onnx, "--litert": args.litert, "--executorch": args.executorch}
    if not any(files.values()):
        raise UserError("name a file to write: --onnx, --litert or --executorch FILE")
    for flag, file in files.items():
        if file and Path(file).is_dir():
            raise UserError(f"{flag} {file} is a directory; name the file to write")
    if args.litert or args.executorch:  # before anything is written
        check_deploy(args)
    if args.onnx and args.int8:
        export_int8(args)
    elif args.onnx:
        if args.calibration_data or args.weights:  # the float ONNX export takes fresh weights
            raise UserError("--calibration-data and --weights go with --int8, --litert or --executorch")
        arch = load_arch(args.arch)
        try:
            export_onnx(arch, args.onnx)
        except OSError as e:  # an unwritable or missing place: the user's to fix
            raise UserError(f"cannot write {args.onnx}: {e.strerror or e}") from None
        print(f"wrote {args.onnx}")
    if args.litert or args.executorch:
        export_deploy(args)
    return 0


def check_deploy(args) -> None:
    """--litert / --executorch: the arguments fit, and the deploy extra is installed."""
    from nas.deploy_export import require
    from nas.run_config import BOUNDS

    if args.int8 and args.executorch:
        raise UserError("--int8 goes with --onnx or --litert; the ExecuTorch export is float")
    if args.int8 and not args.calibration_data:
        raise UserError("--int8 needs --calibration-data DATA (digits, cifar10:DIR or imagefolder:DIR)")
    if args.int8 and not (args.weights or Path(args.arch).is_dir()):
        raise UserError("--int8 quantizes a trained model: give a run's best/ or final/ directory, "
                        "or ARCH with --weights FILE")
    BOUNDS["resolution"].check("--resolution", args.resolution)
    for module, flag, file in (("litert_torch", "--litert", args.litert), ("executorch", "--executorch", args.executorch)):
        if file:
            require(module, flag)


def export_deploy(args) -> None:
    """--litert / --executorch: export, run in the runtime, print the check against PyTorch."""
    from nas.data import absolute_spec
    from nas.deploy_export import deploy_network, describe, export_executorch, export_litert

    net = deploy_network(args.arch, args.weights, args.calibration_data and absolute_spec(args.calibration_data),
                         args.resolution, args.check_images, args.calibration_images)
    if args.litert:
        r = export_litert(net.model, args.litert, net.inputs, net.calibration if args.int8 else None)
        print(describe(r, args.litert, net.about))
    if args.executorch:
        r = export_executorch(net.model, args.executorch, net.inputs)
        print(describe(r, args.executorch, net.about))


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
