"""Reading a `nas search` run directory: its config and the winner NetAdapt starts from."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from search_spaces.errors import UserError
from search_spaces.ir import Arch

REQUIRED = ("target", "data", "resolution")


@dataclass
class Winner:
    arch: Arch          # deployment architecture (e.g. 224x224)
    state: dict         # state_dict for build_model(arch) (trained on for_proxy(arch, resolution))
    source: Path        # directory it was read from


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


def read_config(run_dir: Path) -> dict:
    if not run_dir.is_dir():
        raise UserError(f"run directory not found: {run_dir}")
    config = read_json(run_dir / "config.json", "run config")
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise UserError(f"{run_dir / 'config.json'} lacks {', '.join(missing)}")
    return config


def winner_dir(run_dir: Path) -> Path:
    """The directory `final/winner.json` names when `nas train` has run, else `best/`."""
    marker = run_dir / "final" / "winner.json"
    if not marker.is_file():
        return run_dir / "best"
    name = read_json(marker, "winner marker").get("dir")
    if not isinstance(name, str):
        raise UserError(f"{marker} names no winner directory (expected a 'dir' field)")
    return run_dir / name


def load_winner(run_dir: Path) -> Winner:
    src = winner_dir(run_dir)
    arch_path, model_path = src / "arch.json", src / "model.pt"
    if not arch_path.is_file() or not model_path.is_file():
        raise UserError(f"{src} needs arch.json and model.pt (has `nas search` finished?)")
    arch = Arch.from_json(arch_path.read_text())
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True)
    except Exception as e:  # a truncated or foreign file: the user should know which one
        raise UserError(f"cannot load weights {model_path}: {e}") from None
    return Winner(arch, state, src)
