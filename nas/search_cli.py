"""`nas search | show | train`: hardware-aware architecture search and what follows it."""
from __future__ import annotations

import datetime
import importlib.metadata
import platform
import random
from dataclasses import replace
from pathlib import Path

from nas.controllers import CONTROLLERS
from nas.device import add_device_argument
from nas.evaluators import EVALUATORS
from nas.reward import EXPONENTS
from nas.run_config import RunConfig, absolute_target, check_numbers
from search_spaces.errors import UserError

# Proxy defaults per data set. digits (the default command): measured so that candidates learn
# (mean validation accuracy >= 0.9) and the run, reference included, ends within about 10
# minutes on 2 cores; at 8x8, digits' own size, a step costs about half of one at 16x16 (README).
# cifar10: the best Kendall tau under about 60 s per candidate on 2 cores of the five CPU settings measured by
# experiments/proxy_fidelity.py (setting 5k_e2_r16: tau 0.25 over 21 architectures, 58.6 s).
#: random networks whose median latency is T for a space without a reference network
MEDIAN_SAMPLES = 2000

#: `--evaluator auto` on a CPU: a zero-cost screen of many in-window candidates, then the best few
#: trained (`--final-top`). Measured (README, "Default on a CPU"): NASWOT ranks the 21 mnv3 networks of
#: 18-epoch CIFAR-10 ground truth at Kendall tau 0.50 in 0.6 s per candidate, the best short training
#: at 0.31 in about a minute; on NAS-Bench-Macro it ranks within latency bands at 0.56-0.62, one epoch
#: on 2,000 images at -0.13. On a GPU (or a cluster) a candidate trains in seconds: train stays.
CPU_SCREEN = "zc:naswot"
SCREEN_TRIALS = 200
SCREEN_FINAL_TOP = 5

PROXY_DEFAULTS = {"digits": {"resolution": 8, "epochs": 8.0, "batch_size": 32, "lr": 0.1, "trials": 6},
                  "cifar10": {"resolution": 16, "epochs": 2.0, "batch_size": 64, "lr": 0.1, "trials": 12,
                              "train_subset": 5000},
                  "other": {"resolution": 32, "epochs": 3.0, "batch_size": 64, "lr": 0.05, "trials": 12}}


def register(sub) -> None:
    p = sub.add_parser("search", help="hardware-aware architecture search (MnasNet) with Ray Tune")
    p.add_argument("--space", default="mnv3", help="search space (mnv3, mnv3_small)")
    p.add_argument("--target", default="pixel_cpu", help="latency target: pixel_cpu, local_cpu, local_cpu_int8 "
                                                        "(8-bit) or a table file")
    p.add_argument("--controller", default="rl", choices=sorted(CONTROLLERS))
    p.add_argument("--reward", default="soft", choices=list(EXPONENTS))
    p.add_argument("--w", type=float, help="latency exponent for both sides of T (overrides --reward's)")
    p.add_argument("--latency-target", type=float, metavar="MS",
                   help="T in ms (default: the target's latency of the space's reference)")
    p.add_argument("--latency-window", metavar="LO,HI",
                   help="train only candidates with latency in [LO*T, HI*T] (default: 0.85,1.0 for --reward hard, "
                        "0.9,1.1 for soft, 0.5,1.1 for pareto); proposals outside it are rejected untrained")
    p.add_argument("--data", help="digits (the default), cifar10:DIR or imagefolder:DIR; with --evaluator "
                                  "supernet:DIR the supernet's")
    p.add_argument("--train-subset", type=int, metavar="N",
                   help="train on the first N training images (default 5000 for cifar10, else all)")
    p.add_argument("--resolution", type=int,
                   help="proxy training resolution (default 8 for digits, 16 for cifar10, 32 otherwise; with "
                        "--evaluator supernet:DIR the supernet's)")
    p.add_argument("--deploy-resolution", type=int,
                   help="resolution latency is looked up at (default: the space's, 224 for mnv3, 32 for nasbench_macro)")
    p.add_argument("--epochs", type=float,
                   help="proxy training epochs per candidate, and of the --final-top training (default 8 for digits, "
                        "2 for cifar10, 3 otherwise)")
    p.add_argument("--steps", type=int, help="train each candidate for exactly this many steps (quick checks)")
    p.add_argument("--batch-size", type=int, help="default 32 for digits, 64 otherwise")
    p.add_argument("--lr", type=float, help="default 0.1 for digits and cifar10, 0.05 otherwise")
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "rmsprop"])
    p.add_argument("--evaluator", default="auto", metavar="SPEC",
                   help=f"how a candidate is scored: auto (the default: {CPU_SCREEN} when the trials run on this "
                        f"machine's CPU, with --final-top {SCREEN_FINAL_TOP}; train on a GPU or a cluster); "
                        + "; ".join(e.help for e in EVALUATORS.values()))
    p.add_argument("--trials", type=int, help=f"candidates to evaluate (default {SCREEN_TRIALS} for a zero-cost "
                                              "score, else 6 for digits and 12 otherwise; "
                                              "with --resume: continue the search up to this many)")
    p.add_argument("--final-top", type=int, metavar="K",
                   help=f"after the search, train its top K for --epochs and pick the winner as `nas train` does "
                        f"(default {SCREEN_FINAL_TOP} with a zero-cost score, whose candidates have no weights; else 0)")
    p.add_argument("--workers", type=int, default=1, help="trials at once (this machine's threads are split)")
    p.add_argument("--address", help="attach to an existing Ray cluster (e.g. HOST:6379)")
    p.add_argument("--device", default="auto", metavar="DEVICE",
                   help="auto (trials train on GPUs when there are any), cpu or cuda: Ray gives each trial its "
                        "GPU; cuda:N (with --workers 1): every trial trains on GPU N of this machine")
    p.add_argument("--gpus-per-trial", type=float, metavar="F",
                   help="GPUs per trial, fractions allowed (0.25: four trials share a GPU; "
                        "default 1 when the machine or cluster has a GPU, else 0)")
    p.add_argument("--cpus-per-trial", type=int, metavar="N",
                   help="CPUs (torch threads) per trial (default: the CPUs split between --workers)")
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
    add_device_argument(p)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=train)


def _versions() -> dict:
    names = ("hw-nas", "torch", "ray", "optuna", "onnx", "onnxruntime", "numpy", "pandas")
    return {"python": platform.python_version()} | {n: importlib.metadata.version(n) for n in names}


def new_config(args) -> RunConfig:
    """Validate every argument (bad ones raise UserError before Ray starts) and build config.json."""
    from latency_tables import load_target
    from nas.controllers import make_controller
    from nas.data import absolute_spec, data_sizes
    from nas.latency_window import LatencyWindow
    from nas.reward import Reward
    import numpy as np

    from nas.evaluators import Supernet, ZeroCost, evaluator
    from search_spaces.references import reference
    from search_spaces.space import get_space

    scorer = evaluator(default_evaluator(args))
    if isinstance(scorer, Supernet):  # before the per-data defaults: the supernet's data chooses them
        args.data, args.resolution = scorer.data_and_resolution(args.data, args.resolution)
    elif args.data is None:
        args.data = "digits"
    kind = args.data.split(":", 1)[0]
    if isinstance(scorer, ZeroCost):  # a screen: many candidates, the best few trained after it
        args.trials = SCREEN_TRIALS if args.trials is None else args.trials
        args.final_top = SCREEN_FINAL_TOP if args.final_top is None else args.final_top
    for name, value in PROXY_DEFAULTS[kind if kind in PROXY_DEFAULTS else "other"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    check_numbers(vars(args) | {"latency_target_ms": args.latency_target})
    devices = search_devices(args)
    space = get_space(args.space)
    if args.deploy_resolution is None:
        args.deploy_resolution = space.resolution
    table = load_target(args.target)
    data = absolute_spec(args.data)
    sizes = data_sizes(data, train_subset=args.train_subset, seed=args.seed)
    if args.latency_target is None and space.reference is None:  # a space of no published network
        deployed = space.deployed(sizes.num_classes, args.deploy_resolution)
        rng = random.Random(args.seed)
        latency_target = float(np.median(table.predict_many(
            np.array([space.sample(rng) for _ in range(MEDIAN_SAMPLES)]), space=deployed)))
        source = f"median of {MEDIAN_SAMPLES} random {space.name} networks on {args.target}"
    elif args.latency_target is None:
        ref = reference(space.reference).replace(num_classes=sizes.num_classes, resolution=args.deploy_resolution)
        latency_target, source = table.query_total(ref), f"{space.reference} on {args.target}"
    else:
        latency_target, source = args.latency_target, "--latency-target"
    reward = Reward(args.reward, latency_target, args.w)
    window = LatencyWindow.parse(args.latency_window, args.reward, latency_target)
    share = window.reachable_share(space, table, sizes.num_classes, args.deploy_resolution, seed=args.seed)
    evaluator_spec = scorer.check(space.name, sizes.num_classes, args.resolution)
    make_controller(args.controller, space, seed=args.seed, n_objectives=reward.n_objectives)
    return RunConfig(
        space=space.name, reference=space.reference or "", target=absolute_target(args.target),
        controller=args.controller, reward=args.reward, w=args.w, exponents=list(reward.exponents()),
        latency_target_ms=latency_target, latency_target_from=source, data=data,
        num_classes=sizes.num_classes, resolution=args.resolution, deploy_resolution=args.deploy_resolution,
        train_subset=args.train_subset, train_images=sizes.train_images,
        val_images=scorer.test_images or sizes.val_images,
        seed=args.seed, epochs=args.epochs, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        optimizer=args.optimizer, trials=args.trials, final_top=args.final_top or 0, workers=args.workers,
        created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        versions=_versions(), latency_table=table.metadata, **devices,
        latency_window=[window.lo, window.hi], latency_window_ms=list(window.bounds_ms),
        latency_window_share=share, evaluator=evaluator_spec,
        # a supernet or a benchmark scores only the space's candidates
        train_reference=evaluator_spec == "train" and space.reference is not None)


def default_evaluator(args) -> str:
    """`--evaluator`, with `auto` resolved: a zero-cost screen when the trials run on this machine's
    CPU (see CPU_SCREEN), proxy training when they run on a GPU or on a cluster's nodes."""
    import torch

    spec = args.evaluator.strip()
    if spec != "auto":
        return spec
    device = args.device.strip().lower()  # checked later, by search_devices
    on_gpu = args.address or device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    return "train" if on_gpu else CPU_SCREEN


def search_devices(args) -> dict:
    """--device, --gpus-per-trial and --cpus-per-trial checked, and the device described for config.json.

    With `auto` or `cuda` a trial trains on the GPU Ray assigns to it. `cuda:N` picks GPU N of
    this machine for a search that runs one trial at a time (`--workers 1`): the trials then ask
    Ray for no GPU, so Ray leaves CUDA_VISIBLE_DEVICES as this command had it, and each trial
    trains on cuda:N, numbered as here (`nas.search.trial_resources`). Refused with more workers
    (they would share that GPU behind Ray's scheduling: `--device cuda` spreads them over the
    GPUs), with `--address` (the trials run on other nodes) and with --gpus-per-trial (Ray assigns
    no GPU). On a cluster (`--address`) the GPUs are on other nodes: each trial checks its own."""
    from nas.device import describe, resolve_device

    device = args.device.strip().lower()
    if device.startswith("cuda:"):
        if args.workers > 1:
            raise UserError(f"--device {args.device} trains every trial on that one GPU, which --workers "
                            f"{args.workers} would share outside Ray's scheduling; use --workers 1, or "
                            f"--device cuda to let Ray give each trial a GPU")
        if args.address:
            raise UserError(f"--device {args.device} names a GPU of this machine, but with --address the "
                            f"trials run on the cluster's nodes; use --device cuda")
        if args.gpus_per_trial is not None:
            raise UserError(f"--device {args.device} with --gpus-per-trial: the trial uses that GPU, Ray "
                            f"assigns none; drop --gpus-per-trial")
    here = resolve_device("auto" if args.address and device == "cuda" else device)
    if here.type == "cuda" and device.startswith("cuda:"):
        device = str(here)  # as torch writes it: cuda:01 -> cuda:1
    gpus = args.gpus_per_trial
    if gpus is not None and (gpus < 0 or (gpus > 1 and not float(gpus).is_integer())):
        raise UserError(f"--gpus-per-trial must be a fraction in [0, 1] or a whole number, got {gpus:g}")
    if gpus and device == "cpu":
        raise UserError(f"--gpus-per-trial {gpus:g} with --device cpu: drop one of them")
    if gpus == 0 and device == "cuda":
        raise UserError("--device cuda with --gpus-per-trial 0: a trial without a GPU cannot train on one")
    return {"device": device, "gpus_per_trial": gpus, "cpus_per_trial": args.cpus_per_trial,
            "device_info": None if args.address else describe(here)}


def search(args) -> int:
    from nas.run_dir import RunDir
    from nas.search import run_search

    if args.resume:
        run = RunDir(args.resume)
        config = run.config()  # a directory that is not a run: one line, before Ray starts
        done = len(run.trials())  # so is a damaged trials.csv
        run.controller_state()  # and a damaged controller state
        if args.trials is not None and args.trials != config.trials:  # the user extends the search
            if args.trials < done:
                raise UserError(f"--trials {args.trials} is fewer than the {done} trials {run.path} has finished")
            run.save_config(replace(config, trials=args.trials))
    else:
        if args.out:
            RunDir(args.out).check_new()
        config = new_config(args)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run = RunDir(args.out or Path("runs") / f"{config.space}-{Path(config.target).stem}-{stamp}")
        run.create(config)
    trials = run_search(run, address=args.address, progress=not args.quiet)
    ok = (trials["status"] == "ok").sum()
    print(f"{len(trials)} trials ({ok} ok) in {run.path}; summary: {run / 'summary.md'}")
    if config.final_top and ok:
        from nas.device import resolve_device
        from nas.final_training import train_top

        # the trials' device, here: on a cluster (--address) they ran elsewhere, the final training runs on this machine
        device = resolve_device("auto" if args.address else config.device)
        print_final(run, train_top(run, config.final_top, config.epochs, device=device, progress=not args.quiet))
    return 0


def print_final(run, results) -> None:
    """The final training's table and its winner, as `nas search --final-top` and `nas train` report them."""
    print(results[["rank", "trial", "val_accuracy", "test_accuracy", "latency_ms", "reward", "dir"]].to_string(
        index=False))
    win = results.loc[results["reward"].idxmax()]
    print(f"the top {len(results)} trained for {win['epochs']:g} epoch(s); winner: trial {win['trial']}, "
          f"validation accuracy {win['val_accuracy']:.3f}, test accuracy {win['test_accuracy']:.3f} "
          f"({run / 'final' / 'winner.json'})")


def show(args) -> int:
    from nas.final_training import top_candidates
    from nas.run_dir import RunDir
    from nas.search_report import TOP_COLUMNS, measured_accuracy, versus_best

    run = RunDir(args.run_dir)
    cfg = run.config()
    trials = run.trials()
    summary = run / "summary.md"
    if summary.exists():
        print(summary.read_text())
    print(f"{len(trials)} of {cfg.trials} trials finished; top {args.top} by reward:")
    top = top_candidates(trials, args.top)
    columns = TOP_COLUMNS + ["arch"]
    if measured_accuracy(cfg):  # a zero-cost quantile has no test split to be tied on
        best = trials.loc[trials["status"] == "ok", "accuracy"].max()  # where the split cannot separate
        top = top.assign(accuracy_vs_best=versus_best(top["accuracy"], best, cfg.val_images))
        columns.insert(-1, "accuracy_vs_best")
    print(top[columns].to_string(index=False))
    winner = run / "final" / "winner.json"
    if winner.exists():
        print(f"final training winner: {winner.read_text()}")
    return 0


def train(args) -> int:
    from nas.device import resolve_device
    from nas.final_training import train_top
    from nas.run_dir import RunDir

    device = resolve_device(args.device)
    run = RunDir(args.run_dir)
    epochs = args.epochs if args.epochs is not None else 10 * run.config().epochs
    print_final(run, train_top(run, args.top, epochs, device=device, progress=not args.quiet))
    return 0
