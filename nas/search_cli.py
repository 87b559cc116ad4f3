"""`nas search | show | train`: hardware-aware architecture search and what follows it."""
from __future__ import annotations

import datetime
import importlib.metadata
import platform
from pathlib import Path

from nas.controllers import CONTROLLERS
from nas.reward import EXPONENTS
from search_spaces.errors import UserError

# Proxy defaults per data set. digits (the default command): measured so that candidates learn
# (mean validation accuracy >= 0.9) and the run, reference included, ends within about 10
# minutes on 2 cores; at 8x8, digits' own size, a step costs about half of one at 16x16 (README).
PROXY_DEFAULTS = {"digits": {"resolution": 8, "epochs": 8.0, "batch_size": 32, "lr": 0.1, "trials": 8},
                  "other": {"resolution": 32, "epochs": 3.0, "batch_size": 64, "lr": 0.05, "trials": 12}}


def register(sub) -> None:
    p = sub.add_parser("search", help="hardware-aware architecture search (MnasNet) with Ray Tune")
    p.add_argument("--space", default="mnv3", help="search space (mnv3, mnv3_small)")
    p.add_argument("--target", default="pixel_cpu", help="latency target: pixel_cpu, local_cpu or a table file")
    p.add_argument("--controller", default="rl", choices=sorted(CONTROLLERS))
    p.add_argument("--reward", default="soft", choices=list(EXPONENTS))
    p.add_argument("--w", type=float, help="latency exponent for both sides of T (overrides --reward's)")
    p.add_argument("--latency-target", type=float, metavar="MS",
                   help="T in ms (default: the target's latency of the space's reference)")
    p.add_argument("--latency-window", metavar="LO,HI",
                   help="train only candidates with latency in [LO*T, HI*T] (default: 0.85,1.0 for --reward hard, "
                        "0.9,1.1 for soft, 0.5,1.1 for pareto); proposals outside it are rejected untrained")
    p.add_argument("--data", default="digits", help="digits, cifar10:DIR or imagefolder:DIR")
    p.add_argument("--train-subset", type=int, metavar="N", help="train on the first N training images")
    p.add_argument("--resolution", type=int, help="proxy training resolution (default 8 for digits, 32 otherwise)")
    p.add_argument("--deploy-resolution", type=int, default=224, help="resolution latency is looked up at")
    p.add_argument("--epochs", type=float,
                   help="proxy training epochs per candidate (default 8 for digits, 3 otherwise)")
    p.add_argument("--steps", type=int, help="train each candidate for exactly this many steps (quick checks)")
    p.add_argument("--batch-size", type=int, help="default 32 for digits, 64 otherwise")
    p.add_argument("--lr", type=float, help="default 0.1 for digits, 0.05 otherwise")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "rmsprop"])
    p.add_argument("--trials", type=int, help="candidates to evaluate (default 8 for digits, 12 otherwise)")
    p.add_argument("--workers", type=int, default=1, help="trials at once (this machine's threads are split)")
    p.add_argument("--address", help="attach to an existing Ray cluster (e.g. HOST:6379)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="run directory (default runs/<space>-<target>-<timestamp>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a killed or finished search (its own settings)")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.set_defaults(func=search)

    p = sub.add_parser("show", help="summary and top candidates of a search run")
    p.add_argument("run_dir")
    p.add_argument("--top", type=int, default=10)
    p.set_defaults(func=show)

    p = sub.add_parser("train", help="train a search's top candidates longer and pick the winner")
    p.add_argument("run_dir")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--epochs", type=float, help="training epochs (default: 10x the search's)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=train)


def _versions() -> dict:
    names = ("hw-nas", "torch", "ray", "optuna", "onnx", "onnxruntime", "numpy", "pandas")
    return {"python": platform.python_version()} | {n: importlib.metadata.version(n) for n in names}


def new_config(args) -> dict:
    """Validate every argument (bad ones raise UserError before Ray starts) and build config.json."""
    from latency_tables import load_target
    from nas.controllers import make_controller
    from nas.data import load_data
    from nas.latency_window import LatencyWindow
    from nas.reward import Reward
    from search_spaces.references import reference
    from search_spaces.space import get_space

    for name, value in PROXY_DEFAULTS["digits" if args.data == "digits" else "other"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name in ("trials", "workers", "resolution", "deploy_resolution", "batch_size", "steps"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UserError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.epochs <= 0:
        raise UserError(f"--epochs must be positive, got {args.epochs}")
    space = get_space(args.space)
    table = load_target(args.target)
    target = args.target if args.target in ("pixel_cpu", "local_cpu") else str(Path(args.target).resolve())
    data = load_data(args.data, resolution=args.resolution, train_subset=args.train_subset, seed=args.seed)
    if args.latency_target is None:
        ref = reference(space.reference).replace(num_classes=data.num_classes, resolution=args.deploy_resolution)
        latency_target, source = table.query_total(ref), f"{space.reference} on {args.target}"
    else:
        latency_target, source = args.latency_target, "--latency-target"
    reward = Reward(args.reward, latency_target, args.w)
    window = LatencyWindow.parse(args.latency_window, args.reward, latency_target)
    share = window.reachable_share(space, table, data.num_classes, args.deploy_resolution, seed=args.seed)
    make_controller(args.controller, space, seed=args.seed, n_objectives=reward.n_objectives)
    return {"space": space.name, "reference": space.reference, "target": target, "controller": args.controller,
            "reward": args.reward, "w": args.w, "exponents": list(reward.exponents()),
            "latency_target_ms": latency_target, "latency_target_from": source,
            "latency_window": [window.lo, window.hi], "latency_window_ms": list(window.bounds_ms),
            "latency_window_share": share, "train_reference": True,
            "data": args.data, "num_classes": data.num_classes, "resolution": args.resolution,
            "deploy_resolution": args.deploy_resolution, "train_subset": args.train_subset,
            "train_images": len(data.train), "val_images": len(data.val), "seed": args.seed,
            "epochs": args.epochs, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
            "optimizer": args.optimizer, "trials": args.trials, "workers": args.workers,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "versions": _versions(), "latency_table": table.metadata}


def search(args) -> int:
    from nas.run_dir import RunDir
    from nas.search import run_search

    if args.resume:
        run = RunDir(args.resume)
        run.config()  # a directory that is not a run: one line, before Ray starts
    else:
        config = new_config(args)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run = RunDir(args.out or Path("runs") / f"{config['space']}-{Path(config['target']).stem}-{stamp}")
        run.create(config)
    trials = run_search(run, address=args.address, progress=not args.quiet)
    ok = (trials["status"] == "ok").sum()
    print(f"{len(trials)} trials ({ok} ok) in {run.path}; summary: {run / 'summary.md'}")
    return 0


def show(args) -> int:
    from nas.final_training import top_candidates
    from nas.run_dir import RunDir
    from nas.search_report import TOP_COLUMNS, versus_best

    run = RunDir(args.run_dir)
    cfg = run.config()
    summary = run / "summary.md"
    if summary.exists():
        print(summary.read_text())
    trials = run.trials()
    print(f"{len(trials)} of {cfg['trials']} trials finished; top {args.top} by reward:")
    top = top_candidates(trials, args.top)
    best = trials.loc[trials["status"] == "ok", "accuracy"].max()  # the ranking says where the split cannot separate
    top = top.assign(accuracy_vs_best=versus_best(top["accuracy"], best, cfg["val_images"]))
    print(top[TOP_COLUMNS + ["accuracy_vs_best", "arch"]].to_string(index=False))
    winner = run / "final" / "winner.json"
    if winner.exists():
        print(f"final training winner: {winner.read_text()}")
    return 0


def train(args) -> int:
    from nas.final_training import train_top
    from nas.run_dir import RunDir

    run = RunDir(args.run_dir)
    epochs = args.epochs if args.epochs is not None else 10 * run.config()["epochs"]
    results = train_top(run, args.top, epochs, progress=not args.quiet)
    print(results[["rank", "trial", "test_accuracy", "latency_ms", "reward", "dir"]].to_string(index=False))
    print(f"winner: {run / 'final' / 'winner.json'}")
    return 0
