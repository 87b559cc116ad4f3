"""A search's run directory: the single source of truth for a search and its resume.

    config.json         every argument, versions, the latency table's metadata
    trials.csv          one row per finished candidate (ok or failed), in finishing order, with the
                        proposals rejected outside the latency window before it (rejected_before)
    reference.csv       the space's reference network trained with the same proxy recipe (one row)
    controller.pt       the controller's state after the first `n_trials` rows (weights_only-loadable)
    pending/<key>.pt    weights of a new best trial, written by the command (workers send them through Ray)
    ray.json            the running search's Ray temp dir and pid, for cleaning up after a kill -9
    best/               arch.json (deployment arch), model.pt (state_dict), model.onnx, trial.json
    pareto.csv, reward.png, pareto.png, summary.md   reports, rewritten at the end of a search
    final/              `nas train` results

Every file is written to a temporary name and moved into place, so a SIGKILL at any point
leaves either the old or the new version. trials.csv is written before controller.pt; on
resume, rows the controller has not seen are replayed into it. NetAdapt reads its starting
point here too (`load_winner`).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from nas.run_config import RunConfig
from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError
from search_spaces.ir import Arch

TRIAL_COLUMNS = ["trial", "key", "arch", "vector", "accuracy",
                 "accuracy_source",  # a benchmark's record or its surrogate (`Evaluator.accuracy_source`)
                 "latency_ms", "macs", "params", "reward", "status", "reason", "seconds", "images_per_s",
                 "train_loss", "node", "rejected_before",
                 "device"]  # the device the trial trained on (cpu, cuda:N)
#: columns later versions added: a trials.csv of an older run lacks some of them
LATER_COLUMNS = {"accuracy_source", "rejected_before", "device"}


STATUSES = ("ok", "failed")


def load_tensors(path: str | Path, what: str):
    """`torch.load(weights_only=True)`; a damaged file, or one holding Python objects other than
    tensors (refused: unpickling them could run code), is one line naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except Exception as e:  # torch raises several types; its advice to drop weights_only is not for users
        reason = re.search(r"WeightsUnpickler error: (.+?)(?:\n\n|$)", str(e), re.S)
        detail = reason.group(1).strip() if reason else (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise UserError(f"cannot load {what} {path}: {detail}") from None


def load_state_dict(path: str | Path) -> dict:
    """A model.pt: `load_tensors`, and a mapping of parameter names to tensors, or a one-line error."""
    state = load_tensors(path, "weights")
    if not (isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values())):
        raise UserError(f"{path} is not a state_dict (a mapping of parameter names to tensors)")
    return state


def _parse_trials(f: Path, text: str) -> pd.DataFrame:
    """trials.csv's rows from `text`, or a UserError naming the first damaged line. to_csv ends
    every row with a newline and writes every field, so a row without either is damaged."""
    # keys and node ids are hex: "1234e567" must not come back as a float
    as_text = {c: str for c in ("key", "arch", "vector", "status", "reason", "node", "device", "accuracy_source")}
    try:
        trials = pd.read_csv(io.StringIO(text), keep_default_na=False, na_values=[""], dtype=as_text)
    except (pd.errors.ParserError, ValueError) as e:
        raise UserError(f"{f} is damaged ({' '.join(str(e).split())}); repair or delete it") from None
    columns = list(trials.columns)
    if columns != [c for c in TRIAL_COLUMNS if c in columns] or not set(TRIAL_COLUMNS) - set(columns) <= LATER_COLUMNS:
        raise UserError(f"{f} is damaged: its header is not {','.join(TRIAL_COLUMNS)}")
    fields = [len(row) for row in csv.reader(io.StringIO(text)) if row][1:]  # pandas skips blank lines too
    if len(fields) != len(trials):
        raise UserError(f"{f} is damaged (its rows do not parse as CSV); repair or delete it")
    bad = ((np.array(fields, dtype=int) != len(trials.columns))  # a field lost, or a row cut short
           | ~trials["status"].isin(STATUSES).to_numpy() | trials[["key", "arch"]].isna().any(axis=1).to_numpy()
           | (trials["trial"].to_numpy() != np.arange(len(trials)))
           | ~trials["vector"].map(_is_json_list).astype(bool).to_numpy()
           | ((trials["status"] == "ok") & trials[["accuracy", "latency_ms"]].isna().any(axis=1)).to_numpy())
    if not text.endswith("\n") and len(bad):  # cut inside its last field
        bad[-1] = True
    if bad.any():
        raise UserError(f"{f} is damaged at line {bad.argmax() + 2}; repair or delete it")
    return trials.astype({"reason": str}).reindex(columns=TRIAL_COLUMNS)


def _is_json_list(text) -> bool:
    try:
        return isinstance(json.loads(text), list)
    except (TypeError, ValueError):
        return False


def read_json(path: Path, what: str) -> dict:
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except (OSError, json.JSONDecodeError) as e:
        raise UserError(f"{what} {path} is not readable JSON ({e})") from None
    if not isinstance(doc, dict):
        raise UserError(f"{what} {path} must hold a JSON object")
    return doc


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def write_json(path: str | Path, doc) -> None:
    write_text(path, json.dumps(doc, indent=2, default=str) + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def save_deployment(directory: Path, arch: Arch, state_dict: dict) -> None:
    """arch.json (the deployment arch), model.pt (its state_dict) and model.onnx in `directory`.
    Weights trained on `for_proxy(arch, r)` have the same shapes, so they load into `build_model(arch)`."""
    from search_spaces.builder import build_model
    from search_spaces.onnx_export import export_onnx

    model = build_model(arch)
    model.load_state_dict(state_dict)
    write_text(directory / "arch.json", arch.to_json() + "\n")
    export_onnx(model, directory / "model.onnx")
    atomic_write(directory / "model.pt", lambda tmp: torch.save(model.state_dict(), tmp))


@dataclass
class Winner:
    arch: Arch          # deployment architecture (e.g. 224x224)
    state: dict         # state_dict for build_model(arch) (trained on for_proxy(arch, resolution))
    source: Path        # directory it was read from


class RunDir:
    def __init__(self, path: str | Path):
        # absolute: Ray runs trials in other working directories
        self.path = Path(os.path.abspath(path))
        self._reported_torn: set[Path] = set()  # trials.csv files whose torn last row was reported

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- config --------------------------------------------------------------
    def check_new(self) -> None:
        """A new search may go here: nothing, or a directory without a search."""
        if self.path.exists() and not self.path.is_dir():
            raise UserError(f"--out {self.path} is a file, not a directory")
        if (self / "config.json").exists():
            raise UserError(f"{self.path} already holds a search; continue it with --resume {self.path}")

    def create(self, config: RunConfig) -> None:
        self.check_new()
        self.path.mkdir(parents=True, exist_ok=True)
        self.save_config(config)

    def save_config(self, config: RunConfig) -> None:
        write_text(self / "config.json", config.to_json())

    def config(self, needed: tuple[str, ...] | None = None) -> RunConfig:
        if not self.path.is_dir():
            raise UserError(f"run directory not found: {self.path}")
        f = self / "config.json"
        if not f.is_file():
            raise UserError(f"{self.path} is not a search run directory (no config.json)")
        return RunConfig.from_json(f.read_text(), str(f), needed)

    # ---- trials and controller state ----------------------------------------
    def trials(self) -> pd.DataFrame:
        """Finished trials. The writer replaces the file atomically, but a copy, a sync or a full
        disk can still cut it short, and only at its end: a damaged last row (cut short, with or
        without a final newline) is dropped, said once on stderr, and its trial runs again on
        resume (SearchSession rebuilds a controller that saw it). Damage anywhere else is one
        line (UserError) naming the file and the line."""
        f = self / "trials.csv"
        if not f.exists():
            return pd.DataFrame(columns=TRIAL_COLUMNS)
        text = f.read_text()
        if "\n" not in text:  # empty, or its header cut short: no row was complete
            return pd.DataFrame(columns=TRIAL_COLUMNS)
        try:
            return _parse_trials(f, text)
        except UserError as damaged:
            head = text.rstrip("\n").rpartition("\n")[0]  # the header and every row but the last
            try:
                trials = _parse_trials(f, head + "\n") if head else None
            except UserError:
                trials = None
            if trials is None:  # damage before the last row (or in the header)
                raise damaged from None
        if f not in self._reported_torn:  # once per command: trials() is read more than once
            self._reported_torn.add(f)
            print(f"warning: {f}: its last row (line {len(trials) + 2}) is cut short; dropped, "
                  f"so a resumed search runs that trial again", file=sys.stderr, flush=True)
        return trials

    def reference(self) -> pd.DataFrame | None:
        f = self / "reference.csv"
        return pd.read_csv(f, keep_default_na=False, na_values=[""], dtype={"arch": str}) if f.exists() else None

    def record(self, trials: pd.DataFrame, controller_state: dict) -> None:
        """Persist all finished trials, then the controller state that has seen them."""
        write_csv(self / "trials.csv", trials[TRIAL_COLUMNS])
        state = {"n_trials": len(trials), "controller": controller_state}
        atomic_write(self / "controller.pt", lambda tmp: torch.save(state, tmp))

    def controller_state(self) -> dict | None:
        f = self / "controller.pt"
        if not f.exists():
            return None
        state = load_tensors(f, "controller state")
        if not (isinstance(state, dict) and isinstance(state.get("n_trials"), int)
                and isinstance(state.get("controller"), dict)):
            raise UserError(f"{f} is not a controller state; delete it to rebuild the controller from trials.csv")
        return state

    # ---- weights -------------------------------------------------------------
    def pending_weights(self, key: str) -> Path:
        return self / "pending" / f"{key}.pt"

    def promote(self, row: dict, arch: Arch) -> None:
        """Make a finished trial the best: its deployment arch, weights and ONNX go to best/."""
        save_deployment(self / "best", arch, torch.load(self.pending_weights(row["key"]), map_location="cpu",
                                                             weights_only=True))
        # written last: best/ describes this trial only once everything else is in place
        write_json(self / "best" / "trial.json",
                   {k: row[k] for k in ("trial", "key", "accuracy", "latency_ms", "reward")})

    def best_trial_key(self) -> str | None:
        f = self / "best" / "trial.json"
        return json.loads(f.read_text())["key"] if f.exists() else None

    def discard_pending(self) -> None:
        """Delete candidates' weights (and half-written files)."""
        for f in (self / "pending").glob("*"):
            f.unlink()

    # ---- the winner NetAdapt starts from --------------------------------------
    def winner_dir(self) -> Path:
        """The directory `final/winner.json` names when `nas train` has run, else `best/`."""
        marker = self / "final" / "winner.json"
        if not marker.is_file():
            return self / "best"
        name = read_json(marker, "winner marker").get("dir")
        if not isinstance(name, str):
            raise UserError(f"{marker} names no winner directory (expected a 'dir' field)")
        return self / name

    def load_winner(self) -> Winner:
        src = self.winner_dir()
        arch_path, model_path = src / "arch.json", src / "model.pt"
        if not arch_path.is_file() or not model_path.is_file():
            raise UserError(f"{src} needs arch.json and model.pt (has `nas search` finished?)")
        arch = Arch.from_json(arch_path.read_text())
        return Winner(arch, load_state_dict(model_path), src)
