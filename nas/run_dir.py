"""A search's run directory: the single source of truth for a search and its resume.

    config.json         every argument, versions, the latency table's metadata
    trials.csv          one row per finished candidate (ok or failed), in finishing order, with the
                        proposals rejected outside the latency window before it (rejected_before)
    reference.csv       the space's reference network trained with the same proxy recipe (one row)
    controller.pt       the controller's state after the first `n_trials` rows (weights_only-loadable)
    pending/<key>.pt    weights of finished candidates not yet promoted or discarded
    best/               arch.json (deployment arch), model.pt (state_dict), model.onnx, trial.json
    pareto.csv, reward.png, pareto.png, summary.md   reports, rewritten at the end of a search
    final/              `nas train` results

Every file is written to a temporary name and moved into place, so a SIGKILL at any point
leaves either the old or the new version. trials.csv is written before controller.pt; on
resume, rows the controller has not seen are replayed into it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch

from search_spaces.atomic import atomic_path
from search_spaces.errors import UserError
from search_spaces.ir import Arch

TRIAL_COLUMNS = ["trial", "key", "arch", "vector", "accuracy", "latency_ms", "macs", "params", "reward",
                 "status", "reason", "seconds", "images_per_s", "train_loss", "node", "rejected_before"]


def write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | Path, doc) -> None:
    write_text(path, json.dumps(doc, indent=2, default=str) + "\n")


def write_csv(path: str | Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def save_deployment(directory: Path, arch: Arch, state_dict: dict) -> None:
    """arch.json (the deployment arch), model.pt (its state_dict) and model.onnx in `directory`.
    Weights trained on `for_proxy(arch, r)` have the same shapes, so they load into `build_model(arch)`."""
    from search_spaces.builder import build_model
    from search_spaces.onnx_export import export_onnx

    model = build_model(arch)
    model.load_state_dict(state_dict)
    write_text(directory / "arch.json", arch.to_json() + "\n")
    export_onnx(model, directory / "model.onnx")
    with atomic_path(directory / "model.pt") as tmp:
        torch.save(model.state_dict(), tmp)


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ---- config --------------------------------------------------------------
    def create(self, config: dict) -> None:
        if (self / "config.json").exists():
            raise UserError(f"{self.path} already holds a search; continue it with --resume {self.path}")
        self.path.mkdir(parents=True, exist_ok=True)
        write_json(self / "config.json", config)

    def config(self) -> dict:
        f = self / "config.json"
        if not f.is_file():
            raise UserError(f"{self.path} is not a search run directory (no config.json)")
        try:
            return json.loads(f.read_text())
        except json.JSONDecodeError as e:
            raise UserError(f"{f} is not valid JSON: {e}") from None

    # ---- trials and controller state ----------------------------------------
    def trials(self) -> pd.DataFrame:
        f = self / "trials.csv"
        if not f.exists():
            return pd.DataFrame(columns=TRIAL_COLUMNS)
        # keys and node ids are hex: "1234e567" must not come back as a float
        text = {c: str for c in ("key", "arch", "vector", "status", "reason", "node")}
        trials = pd.read_csv(f, keep_default_na=False, na_values=[""], dtype=text).astype({"reason": str})
        return trials.reindex(columns=TRIAL_COLUMNS)  # a run from an older version lacks newer columns

    def reference(self) -> pd.DataFrame | None:
        f = self / "reference.csv"
        return pd.read_csv(f, keep_default_na=False, na_values=[""], dtype={"arch": str}) if f.exists() else None

    def record(self, trials: pd.DataFrame, controller_state: dict) -> None:
        """Persist all finished trials, then the controller state that has seen them."""
        write_csv(self / "trials.csv", trials[TRIAL_COLUMNS])
        with atomic_path(self / "controller.pt") as tmp:
            torch.save({"n_trials": len(trials), "controller": controller_state}, tmp)

    def controller_state(self) -> dict | None:
        f = self / "controller.pt"
        return torch.load(f, weights_only=True) if f.exists() else None

    # ---- weights -------------------------------------------------------------
    def pending_weights(self, key: str) -> Path:
        return self / "pending" / f"{key}.pt"

    def promote(self, row: dict, arch: Arch) -> None:
        """Make a finished trial the best: its deployment arch, weights and ONNX go to best/."""
        save_deployment(self / "best", arch, torch.load(self.pending_weights(row["key"]), weights_only=True))
        # written last: best/ describes this trial only once everything else is in place
        write_json(self / "best" / "trial.json",
                   {k: row[k] for k in ("trial", "key", "accuracy", "latency_ms", "reward")})

    def best_trial_key(self) -> str | None:
        f = self / "best" / "trial.json"
        return json.loads(f.read_text())["key"] if f.exists() else None

    def discard_pending(self, keep: str | None = None) -> None:
        """Delete candidates' weights (and half-written files) except those of trial `keep`."""
        for f in (self / "pending").glob("*"):
            if f.name != f"{keep}.pt":
                f.unlink()
