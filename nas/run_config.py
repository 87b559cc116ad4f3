"""A search run's configuration: every setting, checked once, as written to config.json.

`nas search` builds it from the command line, every later command (resume, show, train,
NetAdapt) reads it back from the run directory; a number that would waste or corrupt a run
(NaN, infinite, out of range) is refused on the way in, whichever way it comes.
"""
from __future__ import annotations

import json
import math
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path

from latency_tables.targets import TARGETS as BUILTIN_TARGETS
from search_spaces.errors import UserError

MAX_RESOLUTION = 2048  # a 2048x2048 proxy batch already needs GBs per layer


@dataclass(frozen=True)
class Bound:
    """Finite and within [low, high]; `positive`: above 0 (a real-valued setting)."""

    low: float = -math.inf
    high: float = math.inf
    positive: bool = False

    def check(self, flag: str, value) -> None:
        if value is None:
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise UserError(f"{flag} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise UserError(f"{flag} must be a finite number, got {value}")
        if self.positive and value <= 0:
            raise UserError(f"{flag} must be positive, got {value}")
        if value < self.low:
            raise UserError(f"{flag} must be at least {self.low}, got {value}")
        if value > self.high:
            raise UserError(f"{flag} must be at most {self.high}, got {value}")


#: the numeric settings and their ranges (None may mean "not set" where the field allows it)
BOUNDS = {
    "trials": Bound(1), "final_top": Bound(0), "workers": Bound(1), "cpus_per_trial": Bound(1), "batch_size": Bound(1), "steps": Bound(1),
    "resolution": Bound(1, MAX_RESOLUTION), "deploy_resolution": Bound(1, MAX_RESOLUTION),
    "train_subset": Bound(2), "seed": Bound(0, 2**32 - 1),
    "epochs": Bound(positive=True), "lr": Bound(positive=True),
    # |w| <= 10 keeps (LAT/T)^w finite for any latency ratio a table can produce
    "w": Bound(-10, 10), "latency_target_ms": Bound(positive=True),
}


def check_numbers(values: dict) -> None:
    """Raise UserError for the first setting in `values` outside its range."""
    for name, bound in BOUNDS.items():
        if name in values:
            flag = "--latency-target" if name == "latency_target_ms" else "--" + name.replace("_", "-")
            bound.check(flag, values[name])


def absolute_target(name: str) -> str:
    """A built-in target's name, or the absolute path of a table file."""
    return name if name in BUILTIN_TARGETS else str(Path(name).resolve())


@dataclass(frozen=True)
class RunConfig:
    space: str
    reference: str
    target: str
    controller: str
    reward: str
    w: float | None
    exponents: list
    latency_target_ms: float
    latency_target_from: str
    data: str
    num_classes: int
    resolution: int
    deploy_resolution: int
    train_subset: int | None
    train_images: int
    val_images: int
    seed: int
    epochs: float
    steps: int | None
    batch_size: int
    lr: float
    optimizer: str
    trials: int
    workers: int
    created: str
    versions: dict
    latency_table: dict
    # added after the first release: config.json files written before them lack the keys
    device: str = "cpu"  # runs made before --device existed trained on the CPU
    gpus_per_trial: float | None = None
    cpus_per_trial: int | None = None
    device_info: dict | None = None
    # runs made before the latency window trained every proposal, and no reference
    latency_window: list | None = None  # [LO, HI], fractions of T
    latency_window_ms: list | None = None
    latency_window_share: float | None = None  # of random networks of the space inside the window
    train_reference: bool = False
    evaluator: str = "train"  # a spec of nas.evaluators, as checked (supernet:DIR with DIR absolute)
    final_top: int = 0  # candidates `nas search` trains for --epochs after the search (nas.final_training)

    def __post_init__(self):
        check_numbers(asdict(self))
        if not isinstance(self.evaluator, str) or not self.evaluator:  # its meaning: nas.evaluators, on use
            raise UserError(f"evaluator must be a spec such as 'train', got {self.evaluator!r}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str, needed: tuple[str, ...] | None = None) -> RunConfig:
        """Read config.json; a document of another shape is one line naming the file. Keys outside
        `needed` (default: all without a default) may be absent and read as None: NetAdapt starts
        from run directories that only say how their winner was trained."""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise UserError(f"{source} is not valid JSON: {e}") from None
        if not isinstance(doc, dict):
            raise UserError(f"{source} must hold a JSON object, not {type(doc).__name__}")
        required = [f.name for f in fields(cls) if f.default is MISSING]
        optional = [f.name for f in fields(cls) if f.default is not MISSING]
        missing = [n for n in (required if needed is None else needed) if n not in doc]
        if missing:
            raise UserError(f"{source} lacks {', '.join(missing)}")
        return cls(**{n: doc.get(n) for n in required}, **{n: doc[n] for n in optional if n in doc})
