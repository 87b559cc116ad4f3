"""`nas supernet train | export`: a weight-sharing supernet over a search space (see nas/supernet)."""
from __future__ import annotations

from nas.device import add_device_argument
from nas.supernet.directory import SAMPLING
from nas.supernet.model import SHARING
from search_spaces.errors import UserError


def register(sub) -> None:
    p = sub.add_parser("supernet", help="weight-sharing supernet: train it, export a candidate")
    cmds = p.add_subparsers(dest="supernet_command", required=True)  # the parser's own class: one-line errors

    t = cmds.add_parser("train", help="train a supernet (sandwich rule, in-place distillation)")
    t.add_argument("--space", default="mnv3", help="search space (mnv3, mnv3_small)")
    t.add_argument("--data", default="digits", help="digits, cifar10:DIR or imagefolder:DIR")
    t.add_argument("--train-subset", type=int, metavar="N", help="train on the first N training images")
    t.add_argument("--resolution", type=int, help="training resolution (default 16 for digits, 32 otherwise)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--optimizer", default="sgd", choices=["sgd", "rmsprop"])
    t.add_argument("--random-candidates", type=int, default=2,
                   help="random candidates per sandwich step besides the largest and the smallest")
    t.add_argument("--sharing", default="ofa", choices=SHARING,
                   help="ofa: a layer's expansions and kernels of one block kind are slices of one weight set "
                        "(Once-for-All, default); spos: each op of a layer has its own (single-path one-shot)")
    t.add_argument("--sampling", choices=SAMPLING,
                   help="sandwich: the largest, the smallest and --random-candidates random candidates per step, "
                        "distilled from the largest (default with --sharing ofa); uniform: one random candidate "
                        "per step on the labels (default with --sharing spos)")
    t.add_argument("--seed", type=int, default=0)
    add_device_argument(t)
    t.add_argument("--out", help="supernet directory (new)")
    t.add_argument("--resume", metavar="SUPERNET_DIR", help="continue a killed training (its own settings)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=train)

    e = cmds.add_parser("export", help="a candidate as a stand-alone model (arch.json, model.pt, model.onnx)")
    e.add_argument("supernet_dir")
    e.add_argument("arch", help="a reference name, IR JSON file or IR string that lies in the supernet's space")
    e.add_argument("--out", required=True, help="directory for arch.json, model.pt and model.onnx")
    e.set_defaults(func=export)


def train(args) -> int:
    from nas.data import absolute_spec, data_sizes
    from nas.supernet.directory import SupernetConfig, SupernetDir
    from nas.device import resolve_device
    from nas.supernet.training import train_supernet

    if args.resume:
        sdir = SupernetDir(args.resume)
        resolve_device(sdir.config().device)
    else:
        if not args.out:
            raise UserError("give --out DIR for a new supernet, or --resume DIR")
        data = absolute_spec(args.data)
        resolution = args.resolution if args.resolution is not None else 16 if args.data == "digits" else 32
        resolve_device(args.device)
        config = SupernetConfig(
            space=args.space, data=data, num_classes=data_sizes(data, train_subset=args.train_subset,
                                                                   seed=args.seed).num_classes,
            resolution=resolution, train_subset=args.train_subset, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, optimizer=args.optimizer, random_candidates=args.random_candidates, seed=args.seed,
            device=args.device, sharing=args.sharing,
            sampling=args.sampling or ("uniform" if args.sharing == "spos" else "sandwich"))
        sdir = SupernetDir(args.out)
        sdir.create(config)
    history = train_supernet(sdir, progress=not args.quiet)
    last = history[-1] if history else {}
    print(f"supernet {sdir.path} ({sdir.config().sharing} sharing, {sdir.config().sampling} sampling): "
          f"{len(history)} epochs, "
          f"last loss {last.get('loss', float('nan')):.4f}, "
          f"{last.get('seconds', float('nan')):.1f} s/epoch")
    return 0


def export(args) -> int:
    from pathlib import Path

    from nas.data import load_data
    from nas.run_dir import save_deployment, write_json
    from nas.supernet.directory import EXPORTED_SETTINGS, SupernetDir
    from nas.supernet.scoring import score
    from nas.data import flips
    from search_spaces.references import load_arch

    supernet, cfg = SupernetDir(args.supernet_dir).trained()
    space = supernet.space
    arch = load_arch(args.arch)
    vector = space.encode(arch.replace(resolution=space.resolution, num_classes=space.num_classes))
    data = load_data(cfg.data, resolution=cfg.resolution, train_subset=cfg.train_subset, seed=cfg.seed)
    net, accuracy = score(supernet, supernet.candidate(vector), data, flips(cfg.data), cfg.seed)
    out = Path(args.out).resolve()
    deployment = space.decode(vector).replace(num_classes=cfg.num_classes)
    save_deployment(out, deployment, net.state_dict())
    write_json(out / "supernet.json", {"supernet": str(SupernetDir(args.supernet_dir).path), "vector": vector,
                                       "val_accuracy": accuracy, "sharing": cfg.sharing}
               | {k: getattr(cfg, k) for k in EXPORTED_SETTINGS})
    print(f"exported to {out} (validation accuracy {accuracy:.4f} with recalibrated BatchNorm, "
          f"{cfg.sharing} sharing)")
    return 0
