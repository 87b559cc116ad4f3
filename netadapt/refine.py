"""The NetAdapt loop (Yang et al. 2018, as used for MobileNetV3): trim, fine-tune, pick, repeat.

Every iteration must save `step_ratio x` the starting latency (times `step_decay` per
iteration: NetAdapt's decaying schedule; 1.0 is MobileNetV3's constant 0.01|L|), never
going below the budget. Each unit proposes its smallest cut that meets the goal per the
latency table; each proposal is fine-tuned briefly and the one with the best accuracy
(`accuracy`) or the best accuracy change per millisecond saved (`slope`) is kept.
After each iteration the state is written atomically, so a killed run resumes from the
last finished iteration. Training runs on `for_proxy(arch, resolution)`; latency is
always that of the deployment architecture. The starting network is a search run's winner, or a
subnet `nas supernet export` wrote (trained as its supernet was: data and resolution recorded).
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
from tqdm import tqdm

from nas.data import flips, load_data
from nas.device import describe, describe_line
from nas.training import TrainConfig, TrainingDiverged, evaluate, train
from netadapt.proposals import proposals
from nas.run_config import Bound
from nas.run_dir import RunDir, Winner, load_state_dict, read_json, write_text
from nas.supernet.directory import exported_settings
from netadapt.surgery import trim
from search_spaces.atomic import atomic_write
from search_spaces.builder import Net
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy

OBJECTIVES = ("slope", "accuracy")
#: what NetAdapt needs from the run's config.json (the rest of the training recipe has defaults)
NEEDED_FROM_RUN = ("target", "data", "resolution")
STATE_VERSION = 1


@dataclass
class Settings:
    """Everything that decides a refinement's result (a resumed run must use the same)."""

    target: str
    data: str
    resolution: int
    train_subset: int | None = None
    seed: int = 0
    target_latency: float | None = None   # ms; overrides target_ratio
    target_ratio: float = 0.8
    step_ratio: float = 0.01
    step_decay: float = 1.0
    short_term_steps: int = 20
    long_term_epochs: float = 1.0
    objective: str = "slope"
    batch_size: int = 128
    lr: float = 0.01
    optimizer: str = "sgd"
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    flip: bool = True

    def check(self) -> None:
        if self.objective not in OBJECTIVES:
            raise UserError(f"--objective must be one of {', '.join(OBJECTIVES)}, got {self.objective!r}")
        Bound(positive=True).check("--target-latency", self.target_latency)
        Bound(positive=True).check("--lr", self.lr)
        Bound(1).check("--batch-size", self.batch_size)
        if not 0 < self.target_ratio < 1:
            raise UserError(f"--target-ratio must be in (0, 1), got {self.target_ratio}")
        if not 0 < self.step_ratio < 1:
            raise UserError(f"--step-ratio must be in (0, 1), got {self.step_ratio}")
        if not 0 < self.step_decay <= 1:
            raise UserError(f"--step-decay must be in (0, 1], got {self.step_decay}")
        if self.short_term_steps < 0 or self.long_term_epochs < 0:
            raise UserError("--short-term-steps and --long-term-epochs must not be negative")
        Bound(0).check("--long-term-epochs", self.long_term_epochs)

    def train_config(self, seed: int, threads: int | None, steps: int | None = None,
                     epochs: float = 1.0, device: str = "cpu") -> TrainConfig:
        return TrainConfig(epochs=epochs, steps=steps, batch_size=self.batch_size, lr=self.lr,
                           optimizer=self.optimizer, weight_decay=self.weight_decay,
                           label_smoothing=self.label_smoothing, flip=self.flip, seed=seed, threads=threads,
                           device=device)


def source_config(source: Path, target: str | None, data: str | None) -> dict:
    """How the starting network was trained (a run's config.json, or the supernet settings an
    exported subnet records), for `settings_from_config`. An exported subnet's weights and
    BatchNorm statistics hold for its supernet's images, so another --data is refused; it names
    no latency target, so --target is needed."""
    exported = exported_settings(source)
    if exported is None:
        return asdict(RunDir(source).config(needed=NEEDED_FROM_RUN))
    if target is None:
        raise UserError(f"{source} holds a subnet exported from a supernet, which names no latency target: "
                        f"give --target")
    if data is not None and data != exported["data"]:
        raise UserError(f"--data {data} disagrees with the subnet exported to {source}, whose supernet was "
                        f"trained on {exported['data']}; drop --data to use that")
    return exported


def load_start(source: Path) -> Winner:
    """The network a refinement starts from: the subnet exported to `source`, else the winner of
    the run directory `source`."""
    if exported_settings(source) is None:
        return RunDir(source).load_winner()
    arch_path, model_path = source / "arch.json", source / "model.pt"
    if not arch_path.is_file() or not model_path.is_file():
        raise UserError(f"{source} needs arch.json and model.pt (export the subnet again)")
    return Winner(Arch.from_json(arch_path.read_text()), load_state_dict(model_path), source)


def settings_from_config(config: dict, **overrides) -> Settings:
    """`source_config`'s values (data, target, proxy resolution, training recipe) under CLI overrides."""
    known = {f.name for f in fields(Settings)}
    base = {k: v for k, v in config.items()
            if k in known and k not in ("lr", "target_latency") and v is not None}
    base["flip"] = flips(config["data"])
    base.update({k: v for k, v in overrides.items() if v is not None})
    s = Settings(**base)
    s.check()
    return s


def iteration_goal(s: Settings, start_ms: float, done: int, current_ms: float, budget_ms: float) -> float:
    """Latency to save in the iteration after `done` finished ones: step_ratio x start x decay^done,
    but no more than what is left to the budget."""
    return min(s.step_ratio * start_ms * s.step_decay ** done, current_ms - budget_ms)


# ---- files ------------------------------------------------------------------------
def save_json(path: Path, doc: dict) -> None:
    write_text(path, json.dumps(doc, indent=2))


def save_model(path: Path, model: torch.nn.Module) -> None:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}  # loads on any machine
    atomic_write(path, lambda p: torch.save(state, p))


def measured_ms(arch: Arch, table) -> float | None:
    """Median onnxruntime latency of `arch` on this machine (in the table's precision), when the
    target is this machine."""
    if not table.is_local:
        return None
    from latency_tables.measure import Budget, OnnxRuntimeRunner, summarize
    from search_spaces.onnx_export import export_onnx

    runner = OnnxRuntimeRunner(int(table.metadata.get("threads", 1)),
                               Budget(warmup=3, min_rounds=15, max_rounds=60, max_seconds=2.0),
                               precision=table.precision)
    samples = runner.measure([export_onnx(arch)])[0]
    return summarize(samples)["median_ms"]


# ---- the loop -----------------------------------------------------------------------
class Refiner:
    """One refinement of `load_start(run_dir)` into `out`; `run()` resumes if `out` has state."""

    def __init__(self, run_dir: Path, settings: Settings, out: Path, threads: int | None = None,
                 log=None, progress: bool = True, device: torch.device = torch.device("cpu")):
        """`device` is not a setting: a run may resume on another device."""
        from latency_tables import load_target
        from latency_tables.smooth import anchored

        self.run_dir, self.s, self.out, self.threads = Path(run_dir), settings, Path(out), threads
        self.device = device
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.progress = progress
        self.state_path = self.out / "state" / "state.json"
        self.table = load_target(settings.target)
        if self.table.is_local:  # a cut's ops: scaled from measured ones, not timed anew (latency_tables/smooth.py)
            self.table = anchored(self.table)
        self.data = load_data(settings.data, settings.resolution, settings.train_subset,
                              seed=settings.seed).to(device)  # on a GPU: copied there once

    # -- state --
    def _proxy(self, arch: Arch) -> Arch:
        return for_proxy(arch, self.s.resolution)

    def _save(self, state: dict, model: Net, name: str) -> None:
        """Model file first, then the state that names it (the commit point), then old models go."""
        save_model(self.out / "state" / name, model)
        state["model"] = name
        save_json(self.state_path, state)
        for old in (self.out / "state").glob("*.pt"):
            if old.name != name:
                old.unlink()

    def _load(self) -> tuple[dict, Net] | None:
        if not self.state_path.is_file():
            return None
        state = read_json(self.state_path, "refine state")
        if state.get("version") != STATE_VERSION:
            raise UserError(f"{self.state_path}: unknown state version {state.get('version')!r}")
        diff = {k: (v, state["settings"].get(k)) for k, v in asdict(self.s).items() if state["settings"].get(k) != v}
        if diff:
            what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (new, old) in diff.items())
            raise UserError(f"{self.out} holds a refinement with other settings ({what}); "
                            f"use the same settings to resume it, or another --out")
        model = Net(self._proxy(Arch.from_dict(state["arch"])))
        model.load_state_dict(torch.load(self.out / "state" / state["model"], map_location="cpu", weights_only=True))
        return state, model.to(self.device)

    def _start(self) -> tuple[dict, Net]:
        winner = load_start(self.run_dir)
        if winner.arch.num_classes != self.data.num_classes:
            raise UserError(f"winner has {winner.arch.num_classes} classes, data {self.s.data!r} has "
                            f"{self.data.num_classes}")
        model = Net(self._proxy(winner.arch))
        try:
            model.load_state_dict(winner.state)
        except RuntimeError as e:  # torch lists every mismatch over many lines
            raise UserError(f"the weights in {winner.source / 'model.pt'} do not fit its arch.json: "
                            f"{' '.join(str(e).split())[:300]}") from None
        model.to(self.device)
        start_ms = self.table.query_total(winner.arch)
        budget = self.s.target_latency if self.s.target_latency is not None else self.s.target_ratio * start_ms
        val = evaluate(model, self.data.val)
        row = {"iteration": 0, "proposal": "start", "kind": "", "channels": "", "goal_ms": None,
               "predicted_ms": start_ms, "saving_ms": 0.0, "measured_ms": measured_ms(winner.arch, self.table),
               "acc_before_ft": val, "acc_after_ft": val, "proposals": 0, "seconds": 0.0}
        state = {"version": STATE_VERSION, "settings": asdict(self.s), "source": str(winner.source),
                 "start_arch": winner.arch.to_dict(), "start_ms": start_ms, "budget_ms": budget,
                 "start_test_acc": evaluate(model, self.data.test),
                 "iteration": 0, "arch": winner.arch.to_dict(), "latency_ms": start_ms, "val_acc": val,
                 "history": [row], "proposals": [], "phase": "trim", "stop": None}
        self.log(f"start: {start_ms:.3f} ms on {self.s.target} (budget {budget:.3f} ms), val acc {val:.4f}")
        self._save(state, model, "iter_0000.pt")
        return state, model

    # -- one iteration --
    def goal_ms(self, state: dict) -> float:
        return iteration_goal(self.s, state["start_ms"], state["iteration"], state["latency_ms"], state["budget_ms"])

    def iterate(self, state: dict, model: Net) -> tuple[dict, Net] | None:
        """Run iteration `state["iteration"] + 1`; None when no unit can meet the goal."""
        t0 = time.perf_counter()
        k, arch, current = state["iteration"] + 1, Arch.from_dict(state["arch"]), state["latency_ms"]
        goal = self.goal_ms(state)
        props = proposals(arch, self.table, goal, current)
        if not props:
            return None
        best, rows = None, []
        bar = tqdm(props, desc=f"iteration {k}: goal {goal:.3f} ms", unit="proposal",
                   disable=not self.progress, leave=False)
        for p in bar:
            net = trim(model, p.unit, p.width).to(self.device)
            before = evaluate(net, self.data.val)
            try:
                after = train(net, self.data, self.s.train_config(self.s.seed + k, self.threads,
                                                                   steps=self.s.short_term_steps,
                                                                   device=str(self.device)))["val_acc"]
            except TrainingDiverged as e:
                self.log(f"iteration {k}: {p.unit.name} diverged during fine-tuning ({e}); skipped")
                continue
            slope = (after - state["val_acc"]) / (current - p.latency_ms)
            score = slope if self.s.objective == "slope" else after
            rows.append({"iteration": k, "proposal": p.unit.name, "channels": p.channels,
                         "predicted_ms": p.latency_ms, "acc_before_ft": before, "acc_after_ft": after,
                         "slope": slope, "chosen": False})
            if best is None or score > best[0]:
                best = (score, p, net, before, after, len(rows) - 1)
        if best is None:
            raise UserError(f"iteration {k}: every proposal diverged during fine-tuning (lower --lr?)")
        _, p, net, before, after, i = best
        rows[i]["chosen"] = True
        state["history"].append({
            "iteration": k, "proposal": p.unit.name, "kind": p.unit.kind, "channels": p.channels,
            "goal_ms": goal, "predicted_ms": p.latency_ms, "saving_ms": current - p.latency_ms,
            "measured_ms": measured_ms(p.arch, self.table), "acc_before_ft": before, "acc_after_ft": after,
            "proposals": len(rows), "seconds": time.perf_counter() - t0})
        state["proposals"] += rows
        state.update(iteration=k, arch=p.arch.to_dict(), latency_ms=p.latency_ms, val_acc=after)
        self.log(f"iteration {k}: {p.unit.name} {p.channels} -> {p.latency_ms:.3f} ms "
                 f"(goal -{goal:.3f}), val acc {before:.4f} -> {after:.4f} after fine-tuning, "
                 f"{len(rows)} proposals, {state['history'][-1]['seconds']:.0f} s")
        self._save(state, net, f"iter_{k:04d}.pt")
        return state, net

    # -- the whole run --
    def run(self) -> tuple[dict, Net]:
        loaded = self._load()
        if loaded:
            state, model = loaded
            self.log(f"resuming {self.out}: {state['iteration']} finished iteration(s), phase {state['phase']}")
        else:
            state, model = self._start()
        state["device"] = describe_line(describe(self.device))  # this run's; a resumed run may use another
        while state["phase"] == "trim":
            if state["latency_ms"] <= state["budget_ms"] + 1e-9:
                state.update(phase="long_term", stop="budget met")
            else:
                step = self.iterate(state, model)
                if step is None:
                    state.update(phase="long_term", stop=(
                        f"no unit can be trimmed to save {self.goal_ms(state):.3f} ms: stopped at "
                        f"{state['latency_ms']:.3f} ms, above the budget of {state['budget_ms']:.3f} ms"))
                    self.log(f"netadapt: {state['stop']}")
                else:
                    state, model = step
            if state["phase"] != "trim":
                save_json(self.state_path, state)
        if state["phase"] == "long_term":
            state, model = self.long_term(state, model)
        return state, model

    def long_term(self, state: dict, model: Net) -> tuple[dict, Net]:
        before = after = state["val_acc"]
        if self.s.long_term_epochs > 0:
            self.log(f"long-term fine-tuning for {self.s.long_term_epochs:g} epoch(s)")
            cfg = self.s.train_config(self.s.seed, self.threads, epochs=self.s.long_term_epochs, device=str(self.device))
            after = train(model, self.data, cfg)["val_acc"]
        state.update(phase="done", final_val_acc=after, val_acc_before_long_term=before,
                     final_test_acc=evaluate(model, self.data.test),
                     final_measured_ms=measured_ms(Arch.from_dict(state["arch"]), self.table))
        self._save(state, model, "final.pt")
        return state, model
