"""A supernet directory: supernet.json (its settings), state.pt (weights, optimizer, epoch, RNG;
rewritten atomically after every epoch), weights_epochN.pt (the weights alone after epochs 1, 2,
4, 8, ...: how ranking fidelity grows with training is measured on them) and epochs.csv (loss and
seconds per epoch). Also the record `nas supernet export` leaves beside an exported subnet (its
own supernet.json)."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import torch

from nas.run_config import check_numbers
from nas.run_dir import load_state_dict, load_tensors, read_json, write_csv, write_json
from nas.supernet.model import SHARING, Supernet
from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError
from search_spaces.space import get_space

#: what an exported subnet's supernet.json records of its supernet's settings: the images and the
#: size its weights (and recalibrated BatchNorm statistics) hold for, which NetAdapt fine-tunes on
EXPORTED_SETTINGS = ("data", "resolution", "train_subset", "seed")
#: which candidates a training step trains (nas.supernet.training says how and why)
SAMPLING = ("sandwich", "uniform")


@dataclass(frozen=True)
class SupernetConfig:
    space: str
    data: str                      # absolute data spec
    num_classes: int
    resolution: int
    train_subset: int | None
    epochs: int
    batch_size: int = 64
    lr: float = 0.05
    optimizer: str = "sgd"
    random_candidates: int = 2     # per step, besides the largest and the smallest (sandwich rule)
    seed: int = 0
    device: str = "cpu"
    sharing: str = "ofa"           # which choices share weights (nas.supernet.model); older supernets: ofa
    sampling: str = "sandwich"     # which candidates a step trains (nas.supernet.training); older supernets: sandwich

    def __post_init__(self):
        check_numbers(asdict(self))
        get_space(self.space)
        if self.sharing not in SHARING:
            raise UserError(f"--sharing must be one of {', '.join(SHARING)}, got {self.sharing!r}")
        if self.sampling not in SAMPLING:
            raise UserError(f"--sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}")
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int):
            raise UserError(f"--epochs must be a whole number for a supernet, got {self.epochs!r}")
        if isinstance(self.random_candidates, bool) or not isinstance(self.random_candidates, int) \
                or not 0 <= self.random_candidates <= 64:
            raise UserError(f"--random-candidates must be a whole number from 0 to 64, got {self.random_candidates!r}")


class EpochNotKept(UserError):
    """The weights of an epoch are not kept: never snapshotted, or the last finished epoch of a
    training that has moved past it since `saved_epochs()` listed it."""


class SupernetDir:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def create(self, config: SupernetConfig) -> None:
        if (self / "supernet.json").exists():
            raise UserError(f"{self.path} already holds a supernet (continue it with --resume)")
        write_json(self / "supernet.json", asdict(config))

    def config(self) -> SupernetConfig:
        doc = read_json(self / "supernet.json", "supernet settings")
        try:  # a missing or unknown key is a TypeError
            return SupernetConfig(**doc)
        except TypeError as e:
            raise UserError(f"{self / 'supernet.json'} is not a supernet's settings file ({e})") from None

    def model(self, config: SupernetConfig) -> Supernet:
        return Supernet(get_space(config.space), config.num_classes, config.resolution, config.sharing)

    def state(self) -> dict | None:
        """The last saved state, None before the first epoch has finished."""
        path = self / "state.pt"
        return load_tensors(path, "supernet state") if path.exists() else None

    def trained(self, epoch: int | None = None) -> tuple[Supernet, SupernetConfig]:
        """The supernet with its weights (on the CPU), for scoring and export: those of the last
        finished epoch, or of `epoch` (one of `saved_epochs()`)."""
        config = self.config()
        if epoch is not None and self.snapshot(epoch).exists():
            weights = load_state_dict(self.snapshot(epoch))
        else:
            state = self.state()
            if state is None:
                raise UserError(f"{self.path} has no finished epoch yet (state.pt is missing)")
            if epoch not in (None, state["epoch"]):
                raise EpochNotKept(f"{self.path} keeps no weights of epoch {epoch} "
                                   f"(it keeps epochs {', '.join(map(str, self.saved_epochs()))})")
            weights = state["model"]
        model = self.model(config)
        model.load_state_dict(weights)
        return model.eval(), config

    def snapshot(self, epoch: int) -> Path:
        return self / f"weights_epoch{epoch}.pt"

    def saved_epochs(self) -> list[int]:
        """The epochs `trained(epoch)` can load: the snapshots and the last finished one."""
        state = self.state()
        names = (f.stem.removeprefix("weights_epoch") for f in self.path.glob("weights_epoch*.pt"))
        kept = {int(n) for n in names if n.isdigit()}
        return sorted(kept | ({state["epoch"]} if state is not None else set()))

    def save_state(self, state: dict, history: list[dict]) -> None:
        """After an epoch: its weights alone when the epoch is a power of two, then the state. In
        this order, a kill between the two repeats the epoch, which writes the same snapshot again."""
        epoch = state["epoch"]
        if epoch & (epoch - 1) == 0:
            atomic_write(self.snapshot(epoch), lambda tmp: torch.save(state["model"], tmp))
        atomic_write(self / "state.pt", lambda tmp: torch.save(state, tmp))
        write_csv(self / "epochs.csv", pd.DataFrame(history))


def exported_settings(directory: str | Path) -> dict | None:
    """The supernet settings (`EXPORTED_SETTINGS`) recorded with a subnet `nas supernet export`
    wrote to `directory`; None when `directory` holds no exported subnet."""
    f = Path(directory) / "supernet.json"
    if not f.is_file():
        return None
    doc = read_json(f, "exported subnet's record")
    if "vector" not in doc:  # a supernet's own settings: its directory holds no subnet
        return None
    missing = [k for k in EXPORTED_SETTINGS if k not in doc]
    if missing:
        raise UserError(f"{f} lacks {', '.join(missing)} (exported by an older version); export the subnet "
                        f"again with `nas supernet export`")
    settings = {k: doc[k] for k in EXPORTED_SETTINGS}
    check_numbers(settings)
    return settings
