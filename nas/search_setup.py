"""A new search's settings: every argument checked (bad ones raise UserError before anything starts),
the per-data defaults filled in, and the RunConfig that becomes config.json. `nas.api.search` builds
it from its arguments, `nas search` through that; both take the arguments as `nas search` names them.
"""
from __future__ import annotations

import datetime
import importlib.metadata
import platform
import random

from nas.run_config import RunConfig, absolute_target, check_numbers
from search_spaces.errors import UserError

# Proxy defaults per data set. digits (the default command): measured so that candidates learn
# (mean validation accuracy >= 0.9) and the run, reference included, ends within about 10
# minutes on 2 cores; at 8x8, digits' own size, a step costs about half of one at 16x16 (experiments/README.md).
# cifar10: the best Kendall tau under about 60 s per candidate on 2 cores of the five CPU settings measured by
# experiments/proxy_fidelity.py (setting 5k_e2_r16: tau 0.25 over 21 architectures, 58.6 s).
#: random networks whose median latency is T for a space without a reference network
MEDIAN_SAMPLES = 2000

#: `--evaluator auto` on a CPU: a zero-cost screen of many in-window candidates, then the best few
#: trained (`--final-top`). Measured (experiments/README.md, "Default on a CPU"): NASWOT ranks the 21 mnv3 networks of
#: 18-epoch CIFAR-10 ground truth at Kendall tau 0.50 in 0.6 s per candidate, the best short training
#: at 0.31 in about a minute; on NAS-Bench-Macro it ranks within latency bands at 0.56-0.62, one epoch
#: on 2,000 images at -0.13. On a GPU (or a cluster) a candidate trains in seconds: train stays.
CPU_SCREEN = "zc:naswot"
SCREEN_TRIALS = 200
SCREEN_FINAL_TOP = 3

OPTIMIZERS = ("sgd", "rmsprop")

PROXY_DEFAULTS = {"digits": {"resolution": 8, "epochs": 8.0, "batch_size": 32, "lr": 0.1, "trials": 6},
                  "cifar10": {"resolution": 16, "epochs": 2.0, "batch_size": 64, "lr": 0.1, "trials": 12,
                              "train_subset": 5000},
                  "other": {"resolution": 32, "epochs": 3.0, "batch_size": 64, "lr": 0.05, "trials": 12}}


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

    if args.optimizer not in OPTIMIZERS:  # argparse checks the command's; the API's come here
        raise UserError(f"argument --optimizer: invalid choice: {args.optimizer!r} (choose from "
                        f"{', '.join(map(repr, OPTIMIZERS))})")
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
