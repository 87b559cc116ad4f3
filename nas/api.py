"""The Python API: a search, its results, NetAdapt, latency tables and export, as the CLI does them.

    import nas
    run = nas.search(space="mnv3", target="pixel_cpu", data=my_dataset, trials=200)
    run.winner.arch, run.winner.model, run.winner.latency_ms, run.trials   # trials: a DataFrame
    small = nas.refine(run, target_ratio=0.75)                             # NetAdapt
    nas.latency("pixel_cpu").predict(small.arch)
    nas.export(small.model, "model.onnx")
    run = nas.Run.load("runs/<name>")

The `nas` and `netadapt` commands call these functions: every argument is checked with the same
one-line `UserError` the CLI prints (exit status 2 there, the exception here), a search writes the
same run directory and resumes the same way. `data` may be a spec string (`digits`, `cifar10:DIR`,
`imagefolder:DIR`, `npz:FILE`) or the user's own `torch.utils.data.Dataset`, or a (train, test)
pair of them, which is written once into the run directory (`nas.user_data`).
"""
from __future__ import annotations

import argparse
import datetime
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Union

from nas.search_setup import CPU_SCREEN, SCREEN_FINAL_TOP, SCREEN_TRIALS
from search_spaces.errors import UserError

if TYPE_CHECKING:
    import pandas as pd
    import torch

    from latency_tables import LatencyTable
    from nas.run_config import RunConfig
    from search_spaces.ir import Arch

#: a data spec string, a torch Dataset of (image, label), or a (train, test) pair of Datasets
Data = Union[str, Any, tuple]


@dataclass
class Winner:
    """A trained network a search or a refinement ends with."""

    arch: Arch                 # its deployment architecture (the resolution latency is looked up at)
    model: torch.nn.Module     # `build_model(arch)` holding its trained weights, in eval mode
    latency_ms: float          # predicted by the run's latency table
    accuracy: float            # validation accuracy (a zero-cost evaluator's score for an untrained candidate)
    path: Path                 # the directory with its arch.json, model.pt and model.onnx


@dataclass
class Refined(Winner):
    """What `refine` returns: the trimmed network, and how it compares with where it started."""

    budget_ms: float = 0.0
    within_budget: bool = False
    test_accuracy: float = float("nan")
    result: dict | None = None  # result.json: start and final latency and accuracies, iterations, stop reason


def _winner(directory: Path, arch: Arch, state: dict, latency_ms: float, accuracy: float) -> Winner:
    from search_spaces.builder import build_model

    model = build_model(arch)
    model.load_state_dict(state)
    return Winner(arch, model.eval(), float(latency_ms), float(accuracy), directory)


class Run:
    """A search's run directory (`nas search --out`), read as it is on disk: a finished, a killed or a
    running search alike."""

    def __init__(self, path: str | os.PathLike):
        from nas.run_dir import RunDir

        self._dir = RunDir(path)
        self._dir.config()  # a directory that is not a run: one line, now

    @classmethod
    def load(cls, path: str | os.PathLike) -> Run:
        """The search run in directory `path` (e.g. `runs/mnv3-pixel_cpu-20250101-120000`)."""
        return cls(path)

    @property
    def path(self) -> Path:
        """The run directory (absolute)."""
        return self._dir.path

    @property
    def config(self) -> RunConfig:
        """Every setting of the search, as config.json holds it."""
        return self._dir.config()

    @property
    def trials(self) -> pd.DataFrame:
        """One row per finished candidate (trials.csv): arch, accuracy, latency_ms, macs, params,
        reward, status, ..."""
        return self._dir.trials()

    @property
    def final(self) -> pd.DataFrame | None:
        """The final training's table (final/results.csv: the top candidates trained longer), if any."""
        import pandas as pd

        f = self._dir / "final" / "results.csv"
        return pd.read_csv(f) if f.is_file() else None

    @property
    def winner(self) -> Winner:
        """The final training's winner when there was one (`final_top`, `Run.train`), else the best
        candidate of the search: its architecture, network, latency and validation accuracy."""
        from nas.run_dir import read_json

        w = self._dir.load_winner()
        if w.source == self._dir / "best":
            trial = read_json(self._dir / "best" / "trial.json", "best trial")
            return _winner(w.source, w.arch, w.state, trial["latency_ms"], trial["accuracy"])
        chosen = read_json(self._dir / "final" / "winner.json", "winner marker")
        return _winner(w.source, w.arch, w.state, chosen["latency_ms"], chosen["val_accuracy"])

    def top(self, k: int = 10) -> pd.DataFrame:
        """The `k` best distinct successful candidates by reward (what `nas show` lists)."""
        from nas.final_training import top_candidates

        return top_candidates(self.trials, k)

    def train(self, top: int = 3, epochs: float | None = None, device: str = "auto",
              progress: bool = True) -> pd.DataFrame:
        """Train the `top` (default 3) best candidates for `epochs` (default 10x the search's) on
        `device` (auto: a GPU when there is one), test them and mark the winner (`nas train`);
        returns the table final/results.csv holds."""
        from nas.device import resolve_device
        from nas.final_training import train_top

        epochs = 10 * self.config.epochs if epochs is None else epochs
        return train_top(self._dir, top, epochs, device=resolve_device(device), progress=progress)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r})"


def _run_path(space: str, target: str) -> Path:
    """`runs/<space>-<target>-<timestamp>`, the default run directory."""
    from search_spaces.space import get_space

    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{get_space(space).name}-{Path(target).stem}-{stamp}"


def _resume(path: str | os.PathLike, trials: int | None):
    from nas.run_dir import RunDir

    run = RunDir(path)
    config = run.config()  # a directory that is not a run: one line, before Ray starts
    done = len(run.trials())  # so is a damaged trials.csv
    run.controller_state()  # and a damaged controller state
    if trials is not None and trials != config.trials:  # the user extends the search
        if trials < done:
            raise UserError(f"--trials {trials} is fewer than the {done} trials {run.path} has finished")
        run.save_config(replace(config, trials=trials))
    return run


def _new_run(args: argparse.Namespace, data: Data):
    """Check every argument, write the user's Dataset (if any) and config.json into the new run directory."""
    from nas.run_dir import RunDir
    from nas.search_setup import new_config
    from nas.user_data import DATA_FILE, is_dataset, write_dataset

    if args.out:
        RunDir(args.out).check_new()
    if not is_dataset(data):
        args.data = data
        config = new_config(args)
        run = RunDir(args.out or _run_path(config.space, config.target))
    else:  # the run directory first: the data set is written into it before the settings are checked
        run = RunDir(args.out or _run_path(args.space, args.target))
        run.check_new()
        made = not run.path.exists()
        args.data = write_dataset(data, run / DATA_FILE)
        try:
            config = new_config(args)
        except UserError:
            (run / DATA_FILE).unlink()
            if made:
                run.path.rmdir()
            raise
    run.create(config)
    return run


def search(space: str = "mnv3", target: str = "pixel_cpu", data: Data | None = None, trials: int | None = None, *,
           evaluator: str = "auto", controller: str = "rl", reward: str = "soft", w: float | None = None,
           latency_target: float | None = None, latency_window: str | None = None,
           train_subset: int | None = None, resolution: int | None = None, deploy_resolution: int | None = None,
           epochs: float | None = None, steps: int | None = None, batch_size: int | None = None,
           lr: float | None = None, optimizer: str = "sgd", final_top: int | None = None, workers: int = 1,
           address: str | None = None, device: str = "auto", gpus_per_trial: float | None = None,
           cpus_per_trial: int | None = None, seed: int = 0, out: str | os.PathLike | None = None,
           resume: str | os.PathLike | Run | None = None, progress: bool = True) -> Run:
    """Hardware-aware architecture search (MnasNet's reward, Ray Tune trials): `nas search`.

    Args:
        space: search space: "mnv3" (default), "mnv3_small", "nasbench_macro" or "accel_nasbench".
        target: latency target: "pixel_cpu" (default, shipped), "local_cpu", "local_cpu_int8" (this
            machine, float or 8-bit), an Accel-NASBench device ("zcu102", "vck190", "a100", "rtx3090",
            "tpuv2", "tpuv3"; tables of `accel_nasbench`) or a table file (.csv, e.g. from `build_table`).
        data: the images candidates train on: a spec ("digits", the default; "cifar10:DIR",
            "imagefolder:DIR", "npz:FILE"), or a torch Dataset of (image, label) items (images
            C x H x W, uint8 or float in [0, 1], 1 or 3 channels, one size; integer labels), or a
            (train, test) pair of them. A Dataset is written once to <out>/data.npz; a single one
            gives 10% of its items to the test split. The validation split (10%) comes from training.
        trials: candidates to evaluate (default {screen_trials} for a zero-cost evaluator, else 6 for digits and
            12 otherwise; with `resume`: continue the search up to this many).
        evaluator: how a candidate is scored: "auto" (default: "{cpu_screen}" when the trials run on this
            machine's CPU, with final_top {screen_top}; "train" on a GPU or a cluster), "train", "zc:NAME",
            "supernet:DIR" or a benchmark (see `nas search --help`).
        controller: "rl" (default, MnasNet's), "evolution", "random", "tpe" or "nsga2" (Optuna's).
        reward: "soft" (default), "hard" or "pareto" (MnasNet's latency exponents).
        w: latency exponent for both sides of the target (default: the reward's).
        latency_target: T in ms (default: the target's latency of the space's reference network, or
            the median of random networks for a space without one).
        latency_window: "LO,HI": train only candidates with latency in [LO*T, HI*T] (default
            0.85,1.0 for hard, 0.9,1.1 for soft, 0.5,1.1 for pareto).
        train_subset: train on the first N training images (default 5000 for cifar10, else all).
        resolution: proxy training resolution (default 8 for digits, 16 for cifar10, else 32).
        deploy_resolution: resolution latency is looked up at (default the space's: 224 for mnv3).
        epochs: proxy training epochs per candidate and of the final training (default 8 for digits,
            2 for cifar10, 3 otherwise).
        steps: train each candidate for exactly this many steps instead (quick checks; default None).
        batch_size: default 32 for digits, 64 otherwise.
        lr: learning rate (default 0.1 for digits and cifar10, 0.05 otherwise).
        optimizer: "sgd" (default) or "rmsprop".
        final_top: after the search, train its top K for `epochs` and pick the winner as
            `Run.train` does (default {screen_top} with a zero-cost evaluator, else 0).
        workers: trials at once (default 1; this machine's threads are split between them).
        address: attach to an existing Ray cluster ("HOST:6379"; default None: a local one).
        device: "auto" (default: trials train on GPUs when there are any), "cpu", "cuda" or "cuda:N".
        gpus_per_trial: GPUs per trial, fractions allowed (default 1 with a GPU, else 0).
        cpus_per_trial: CPUs (torch threads) per trial (default: the CPUs split between workers).
        seed: seed of the controller, the splits and the training (default 0).
        out: run directory (default runs/<space>-<target>-<timestamp>); it must not hold a search.
        resume: a run directory (or Run) to continue with its own settings; only `trials` may change.
        progress: show progress bars (default True).

    Returns:
        the `Run`: `.winner`, `.trials`, `.final`, `.path`.

    Raises:
        UserError: for any bad argument, before anything runs (the CLI's one-line messages).
    """
    from nas.device import resolve_device
    from nas.final_training import train_top
    from nas.search import run_search
    from nas.user_data import is_dataset

    if resume is not None:
        if data is not None:
            raise UserError("a resumed search keeps its own data: drop data")
        run = _resume(resume.path if isinstance(resume, Run) else resume, trials)
    else:
        if data is not None and not isinstance(data, str) and not is_dataset(data):
            raise UserError(f"data must be a spec string, a torch Dataset or a (train, test) pair of them, "
                            f"not {type(data).__name__}")
        args = argparse.Namespace(
            space=space, target=target, controller=controller, reward=reward, w=w, latency_target=latency_target,
            latency_window=latency_window, data=None, train_subset=train_subset, resolution=resolution,
            deploy_resolution=deploy_resolution, epochs=epochs, steps=steps, batch_size=batch_size, lr=lr,
            optimizer=optimizer, evaluator=evaluator, trials=trials, final_top=final_top, workers=workers,
            address=address, device=device, gpus_per_trial=gpus_per_trial, cpus_per_trial=cpus_per_trial,
            seed=seed, out=out and str(out))
        run = _new_run(args, data)
    config = run.config()
    trials_done = run_search(run, address=address, progress=progress)
    if config.final_top and (trials_done["status"] == "ok").any():
        # the trials' device, here: on a cluster (address) they ran elsewhere, the final training runs on this machine
        train_top(run, config.final_top, config.epochs, device=resolve_device("auto" if address else config.device),
                  progress=progress)
    return Run(run.path)


search.__doc__ = search.__doc__.format(screen_trials=SCREEN_TRIALS, screen_top=SCREEN_FINAL_TOP, cpu_screen=CPU_SCREEN)


def refine(run: Run | str | os.PathLike, target_ratio: float | None = None, *, target_latency: float | None = None,
           target: str | None = None, data: Data | None = None, train_subset: int | None = None,
           step_ratio: float | None = None, step_decay: float | None = None, short_term_steps: int | None = None,
           long_term_epochs: float | None = None, objective: str | None = None, batch_size: int | None = None,
           lr: float | None = None, out: str | os.PathLike | None = None, device: str = "auto",
           threads: int | None = None, progress: bool = True) -> Refined:
    """NetAdapt: trim a search winner's channels until the latency table meets a budget (`netadapt refine`).

    Starts from the run's winner (final/winner.json when a final training ran, else best/), or from
    the subnet `nas supernet export` wrote to a directory. Rerun the same call to resume a killed one.

    Args:
        run: a `Run`, a run directory, or the directory of an exported subnet.
        target_ratio: budget as a fraction of the winner's latency (default 0.8).
        target_latency: budget in ms instead (default None; not with target_ratio).
        target: latency target (default: the run's; needed for an exported subnet).
        data: fine-tuning data, a spec or a Dataset as in `search` (default: the run's).
        train_subset: training images (default: the run's).
        step_ratio: latency cut per iteration, as a fraction of the starting latency (default 0.01).
        step_decay: multiply the cut by this every iteration (default 1: a constant cut).
        short_term_steps: fine-tuning steps per proposal (default 20).
        long_term_epochs: final fine-tuning epochs (default 1).
        objective: "slope" (default: best accuracy change per ms saved) or "accuracy".
        batch_size: fine-tuning batch size (default: the run's, else 128).
        lr: fine-tuning learning rate (default 0.01).
        out: output directory (default <run>/netadapt).
        device: "auto" (default), "cpu", "cuda" or "cuda:N".
        threads: torch threads (default: torch's).
        progress: show progress bars (default True).

    Returns:
        a `Refined` (a `Winner` with budget_ms, within_budget, test_accuracy and the full result).
        A refinement that could not meet the budget returns with within_budget False.
    """
    import torch

    from nas.data import absolute_spec
    from nas.device import resolve_device
    from nas.run_config import absolute_target
    from nas.run_dir import load_state_dict
    from nas.user_data import DATA_FILE, is_dataset, write_dataset
    from netadapt.outputs import write_outputs
    from netadapt.refine import Refiner, settings_from_config, source_config
    from search_spaces.ir import Arch

    if target_ratio is not None and target_latency is not None:
        raise UserError("argument --target-ratio: not allowed with argument --target-latency")
    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    resolved = resolve_device(device)
    source = Path(os.path.abspath(run.path if isinstance(run, Run) else run))  # every path absolute from here on
    out = Path(os.path.abspath(out)) if out else source / "netadapt"
    target = target and absolute_target(target)

    def check_out() -> None:
        if out.exists() and not out.is_dir():
            raise UserError(f"--out {out} is a file, not a directory")

    if is_dataset(data):
        source_config(source, target, None)  # a missing run or subnet is said before the data is written
        check_out()
        data = write_dataset(data, out / DATA_FILE)
    data = data and absolute_spec(data)
    settings = settings_from_config(
        source_config(source, target, data), target=target, data=data, train_subset=train_subset,
        target_latency=target_latency, target_ratio=target_ratio, step_ratio=step_ratio, step_decay=step_decay,
        short_term_steps=short_term_steps, long_term_epochs=long_term_epochs, objective=objective,
        batch_size=batch_size, lr=lr)
    check_out()
    state, model = Refiner(source, settings, out, threads=threads, device=resolved, progress=progress).run()
    r = write_outputs(state, model, source, out)
    arch = Arch.from_json((out / "arch.json").read_text())
    w = _winner(out, arch, load_state_dict(out / "model.pt"), r["final_ms"], r["final_val_acc"])
    return Refined(**vars(w), budget_ms=r["budget_ms"], within_budget=r["within_budget"],
                   test_accuracy=r["final_test_acc"], result=r)


class Latency:
    """A latency target's table, as a predictor of whole networks."""

    def __init__(self, table: LatencyTable):
        self.table = table  # the per-op table (latency_tables.LatencyTable): metadata, per-op rows

    def predict(self, arch: Arch | str | torch.nn.Module | Winner) -> float:
        """Predicted latency in ms of `arch`: an Arch, a network nas built (or a `Winner`), a reference
        name ("mobilenet_v3_large"), an IR string or an IR JSON file. Ops the table lacks are measured
        (local_cpu) or modelled as the table's metadata allows."""
        return self.table.query_total(_arch(arch))

    def per_layer(self, arch: Arch | str | torch.nn.Module | Winner) -> pd.DataFrame:
        """One row per op of `arch` with its latency (`nas latency predict`)."""
        return self.table.per_layer(_arch(arch))

    def __repr__(self) -> str:
        return f"Latency(device={self.table.metadata.get('device')!r}, ops={len(self.table)})"


def _arch(arch) -> Arch:
    from search_spaces.ir import Arch
    from search_spaces.references import load_arch

    arch = getattr(arch, "model", arch)  # a Winner
    arch = getattr(arch, "arch", arch)   # a network nas built
    if isinstance(arch, Arch):
        return arch
    if isinstance(arch, (str, os.PathLike)):
        return load_arch(str(arch))
    raise UserError(f"not an architecture: {type(arch).__name__} (give an Arch, a network nas built, "
                    f"a reference name, an IR string or an IR JSON file)")


def latency(target: str = "pixel_cpu") -> Latency:
    """The latency predictor of `target`: "pixel_cpu" (default, shipped), "local_cpu",
    "local_cpu_int8" (this machine, measured on first use) or a table file (.csv)."""
    from latency_tables import load_target

    return Latency(load_target(str(target)))


def build_table(device: str, out: str | os.PathLike | None = None, *, space: str = "mnv3",
                command: str | None = None, repeats: int = 3, threads: int = 1, resolution: int | None = None,
                calibrate: int = 40, precision: str = "fp32", progress: bool = True) -> Latency:
    """Time every op of `space` on a device into a table file (`nas latency build`); resumes a
    killed build of the same file. Search for the device with `search(target=<the file>)`.

    Args:
        device: the device's name, stored in the table ("local_cpu": this machine's cached table).
        out: table file (default latency_<device>_<space>_r<resolution>.csv, or the local_cpu cache).
        space: search space whose ops are timed (default "mnv3").
        command: how to time a model on the device: a command with {model} (an ONNX file path) that
            prints milliseconds, e.g. "adb shell /data/local/tmp/time {model}" (default None: time
            with onnxruntime on this machine).
        repeats: runs of `command` per op, interleaved (default 3).
        threads: onnxruntime intra-op threads, without `command` (default 1).
        resolution: input size (default the space's; at least 32).
        calibrate: networks timed whole to fit the end-to-end term (default 40; 0: none).
        precision: "fp32" (default) or "int8" (each op statically quantized with onnxruntime).
        progress: show progress bars (default True).
    """
    from latency_tables.build import build_table as build
    from latency_tables.measure import CommandRunner, OnnxRuntimeRunner
    from latency_tables.quantize import precision_suffix
    from latency_tables.targets import local_cpu_path
    from search_spaces.space import get_space

    s = get_space(space)
    r = resolution or s.resolution
    if r < 32:
        raise UserError(f"--resolution must be at least 32, got {r}")
    if calibrate < 0:
        raise UserError("--calibrate must be 0 or more")
    if repeats < 1:
        raise UserError("--repeats must be at least 1")
    if device == "local_cpu" and command is not None:
        raise UserError("device local_cpu is this machine: use --runner onnxruntime")
    runner = (CommandRunner(command, repeats, precision=precision) if command is not None
              else OnnxRuntimeRunner(threads, precision=precision))
    path = out or (local_cpu_path(threads, precision) if device == "local_cpu"
                   else Path(f"latency_{device}{precision_suffix(precision)}_{s.name}_r{r}.csv"))
    return Latency(build(s, device, path, runner, resolution=r, calibrate=calibrate, progress=progress))


#: export formats by file suffix: a function (network or Arch, path) -> None; the runtimes of
#: `nas.deploy_export` register theirs here as they land
EXPORTERS: dict[str, Callable[[Any, Path], None]] = {}


def _export_onnx(model, path: Path) -> None:
    from search_spaces.onnx_export import export_onnx

    export_onnx(model, path)


def _runtime_exporter(name: str) -> Callable[[Any, Path], None]:
    """A phone runtime's exporter (`nas.deploy_export`, the `[deploy]` extra): the network (an Arch
    gets fresh weights, seed 0) in float at its own resolution, checked against PyTorch on 8
    random images, the check printed as `nas arch export` prints it."""
    def export(model, path: Path) -> None:
        import numpy as np
        import torch

        from nas import deploy_export
        from search_spaces.builder import build_model

        if not isinstance(model, torch.nn.Module):
            torch.manual_seed(0)
            model = build_model(model)
        r = model.arch.resolution
        inputs = np.random.default_rng(0).standard_normal((8, model.arch.in_channels, r, r)).astype(np.float32)
        result = getattr(deploy_export, f"export_{name}")(model, path, inputs)
        print(deploy_export.describe(result, path, "8 random images"))
    return export


EXPORTERS[".onnx"] = _export_onnx
EXPORTERS[".tflite"] = _runtime_exporter("litert")    # LiteRT (TensorFlow Lite)
EXPORTERS[".pte"] = _runtime_exporter("executorch")   # ExecuTorch, XNNPACK delegate


def export(model_or_arch: torch.nn.Module | Arch | Winner | str, path: str | os.PathLike) -> Path:
    """Write a network for deployment; the format follows `path`'s suffix: ".onnx" (ONNX),
    ".tflite" (LiteRT) or ".pte" (ExecuTorch with XNNPACK; these two need `pip install -e
    '.[deploy]'` and print their check against PyTorch). The network keeps its weights; an Arch or
    an IR string gets fresh ones. Returns the path written."""
    from search_spaces.builder import Net
    from search_spaces.ir import Arch

    path = Path(path)
    exporter = EXPORTERS.get(path.suffix.lower())
    if exporter is None:
        raise UserError(f"cannot export to {path}: the format follows the suffix, one of {', '.join(EXPORTERS)}")
    model = getattr(model_or_arch, "model", model_or_arch)  # a Winner
    if isinstance(model, str):
        model = _arch(model)
    if not isinstance(model, (Net, Arch)):
        raise UserError(f"cannot export a {type(model).__name__}: give a network nas built (a Winner's model), "
                        f"an Arch or an IR string")
    exporter(model, path)
    return path
