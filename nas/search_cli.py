"""`nas search | show | train`: hardware-aware architecture search and what follows it."""
from __future__ import annotations

import json

from nas.controllers import CONTROLLERS
from nas.device import add_device_argument
from nas.evaluators import EVALUATORS
from nas.reward import EXPONENTS
# new_config and PROXY_DEFAULTS too: tests and experiments read them here
from nas.search_setup import (CPU_SCREEN, OPTIMIZERS, PROXY_DEFAULTS, SCREEN_FINAL_TOP,  # noqa: F401
                              SCREEN_TRIALS, new_config)


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
    p.add_argument("--data", help="digits (the default), cifar10:DIR, imagefolder:DIR or npz:FILE; with --evaluator "
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
    p.add_argument("--optimizer", default="sgd", choices=OPTIMIZERS)
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


def search(args) -> int:
    """`nas search`: `nas.api.search` with the command's arguments, and what it did, printed."""
    from nas.api import search

    names = ("space", "target", "data", "trials", "evaluator", "controller", "reward", "w", "latency_target",
             "latency_window", "train_subset", "resolution", "deploy_resolution", "epochs", "steps", "batch_size",
             "lr", "optimizer", "final_top", "workers", "address", "device", "gpus_per_trial", "cpus_per_trial",
             "seed", "out")
    if args.resume:  # the run's own settings: only --trials may change
        run = search(trials=args.trials, resume=args.resume, address=args.address, progress=not args.quiet)
    else:
        run = search(**{n: getattr(args, n) for n in names}, progress=not args.quiet)
    trials = run.trials
    ok = (trials["status"] == "ok").sum()
    print(f"{len(trials)} trials ({ok} ok) in {run.path}; summary: {run.path / 'summary.md'}")
    if run.config.final_top and ok:
        print_final(run.path, run.final)
    return 0


def print_final(run, results) -> None:
    """The final training's table and its winner, as `nas search --final-top` and `nas train` report them."""
    print(results[["rank", "trial", "val_accuracy", "test_accuracy", "latency_ms", "reward", "dir"]].to_string(
        index=False))
    win = results.loc[results["reward"].idxmax()]
    print(f"the top {len(results)} trained for {win['epochs']:g} epoch(s); winner: trial {win['trial']}, "
          f"validation accuracy {win['val_accuracy']:.3f}, test accuracy {win['test_accuracy']:.3f}, "
          f"now in {run / 'best'} ({run / 'final' / 'winner.json'})")
    vs = json.loads((run / "final" / "winner.json").read_text()).get("versus_reference")
    if vs:
        ref = json.loads((run / "final" / "winner.json").read_text())["reference"]
        print(f"against {ref['name']} trained the same way ({ref['test_accuracy']:.3f} at {ref['latency_ms']:.1f} ms): "
              f"the winner {vs['verdict']} it ({vs['accuracy_gap']:+.3f} at {vs['latency_ratio']:.2f}x its latency; "
              f"McNemar p = {vs['p']:.2g} on {vs['images']} test images)")


def show(args) -> int:
    from nas.api import Run
    from nas.search_report import TOP_COLUMNS, measured_accuracy, versus_best

    run = Run.load(args.run_dir)
    cfg = run.config
    trials = run.trials
    summary = run.path / "summary.md"
    if summary.exists():
        print(summary.read_text())
    print(f"{len(trials)} of {cfg.trials} trials finished; top {args.top} by reward:")
    top = run.top(args.top)
    columns = TOP_COLUMNS + ["arch"]
    if measured_accuracy(cfg):  # a zero-cost quantile has no test split to be tied on
        best = trials.loc[trials["status"] == "ok", "accuracy"].max()  # where the split cannot separate
        top = top.assign(accuracy_vs_best=versus_best(top["accuracy"], best, cfg.val_images))
        columns.insert(-1, "accuracy_vs_best")
    print(top[columns].to_string(index=False))
    winner = run.path / "final" / "winner.json"
    if winner.exists():
        print(f"final training winner: {winner.read_text()}")
    return 0


def train(args) -> int:
    from nas.api import Run
    from nas.device import resolve_device

    resolve_device(args.device)  # a GPU that is not there: said before the run directory is read
    run = Run.load(args.run_dir)
    print_final(run.path, run.train(args.top, args.epochs, device=args.device, progress=not args.quiet))
    return 0
