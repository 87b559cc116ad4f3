"""Image data for proxy training: train / validation / test splits held as uint8 tensors.

Specs: `digits` (scikit-learn's bundled 8x8 digits, upsampled; needs no download),
`cifar10:DIR` (DIR holds cifar10_train.npz / cifar10_test.npz as numpy arrays),
`imagefolder:DIR` (DIR/<class>/*.png|jpg, or DIR/train/<class>/... and DIR/test/<class>/...).
The validation split is carved from training data; the test split is kept for final reports.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search_spaces.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}


@lru_cache(maxsize=16)
def _channel_stats(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """Made once per device: building it every step would copy to the GPU and wait for it each time."""
    return torch.tensor(values, device=device).view(1, -1, 1, 1)


@dataclass
class Split:
    x: torch.Tensor  # uint8, N x C x H x W
    y: torch.Tensor  # int64, N
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)  # the training set's per-channel statistics
    std: tuple[float, ...] = (0.25, 0.25, 0.25)

    def __len__(self) -> int:
        return len(self.y)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 batch -> float batch (channels_last) with the training set's statistics."""
        mean, std = _channel_stats(self.mean, x.device), _channel_stats(self.std, x.device)
        return ((x.float() / 255 - mean) / std).contiguous(memory_format=torch.channels_last)

    def to(self, device: torch.device | str) -> Split:
        """The split on `device`, still uint8 (a quarter of float32's memory); itself if already there."""
        if self.x.device == torch.device(device):
            return self
        return replace(self, x=self.x.to(device), y=self.y.to(device))


@dataclass
class Data:
    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    resolution: int

    def to(self, device: torch.device | str) -> Data:
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))


def _resize(x: np.ndarray, resolution: int) -> torch.Tensor:
    """NHWC uint8 -> NCHW uint8 at resolution x resolution (bilinear)."""
    t = torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2)
    if t.shape[-1] == resolution and t.shape[-2] == resolution:
        return t.contiguous()
    out = [F.interpolate(t[i:i + 2048].float(), size=(resolution, resolution), mode="bilinear",
                         align_corners=False, antialias=True).round().clamp(0, 255).to(torch.uint8)
           for i in range(0, len(t), 2048)]
    return torch.cat(out)


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images / 16.0 * 255).round().astype(np.uint8)[..., None].repeat(3, axis=3)
    rng = np.random.default_rng(0)  # a fixed train/test split, independent of the search seed
    order = rng.permutation(len(x))
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    return x[train], d.target[train], x[test], d.target[test]


def _cifar10(directory: str):
    root = Path(directory)
    files = [root / "cifar10_train.npz", root / "cifar10_test.npz"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"cifar10 data not found: {', '.join(missing)}")
    tr, te = np.load(files[0]), np.load(files[1])
    return tr["x_train"], tr["y_train"], te["x_test"], te["y_test"]


def _read_folder(root: Path, classes: list[str], resolution: int):
    from PIL import Image

    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted((root / name).iterdir()):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                with Image.open(f) as im:
                    xs.append(np.asarray(im.convert("RGB").resize((resolution, resolution))))
                ys.append(label)
    if not xs:
        raise UserError(f"no images found under {root}")
    return np.stack(xs), np.array(ys)


def _imagefolder(directory: str, resolution: int):
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    split_dirs = root / "train", root / "test"
    base = split_dirs[0] if split_dirs[0].is_dir() else root
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"{base} needs one sub-folder per class (found {len(classes)})")
    if split_dirs[0].is_dir() and split_dirs[1].is_dir():
        return (*_read_folder(split_dirs[0], classes, resolution),
                *_read_folder(split_dirs[1], classes, resolution))
    x, y = _read_folder(root, classes, resolution)
    order = np.random.default_rng(0).permutation(len(x))
    n_test = max(1, len(x) // 10)
    return x[order[n_test:]], y[order[n_test:]], x[order[:n_test]], y[order[:n_test]]


def load_data(spec: str = "digits", resolution: int = 32, train_subset: int | None = None,
              val_fraction: float = 0.1, seed: int = 0) -> Data:
    """Load a data set by spec; the validation split is drawn from training data with `seed`."""
    kind, _, arg = spec.partition(":")
    if kind == "digits" and not arg:
        x_tr, y_tr, x_te, y_te = _digits()
    elif kind == "cifar10" and arg:
        x_tr, y_tr, x_te, y_te = _cifar10(arg)
    elif kind == "imagefolder" and arg:
        x_tr, y_tr, x_te, y_te = _imagefolder(arg, resolution)
    else:
        raise UserError(f"unknown data {spec!r}: use digits, cifar10:DIR or imagefolder:DIR")
    if not 0 < val_fraction < 1:
        raise UserError(f"validation fraction must be in (0, 1), got {val_fraction}")
    if train_subset is not None and train_subset < 2:
        raise UserError(f"--train-subset must be at least 2, got {train_subset}")

    order = np.random.default_rng(seed).permutation(len(x_tr))
    n_val = max(1, int(round(len(order) * val_fraction)))
    val_idx, train_idx = order[:n_val], order[n_val:]
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
        # a quick run's validation set shrinks too, but not below 256 images (accuracy noise)
        val_idx = val_idx[:max(256, int(round(train_subset * val_fraction / (1 - val_fraction))))]

    def split(x, y, idx=None):
        if idx is not None:
            x, y = x[idx], y[idx]
        return Split(_resize(x, resolution), torch.as_tensor(np.asarray(y), dtype=torch.long))

    train = split(x_tr, y_tr, train_idx)
    xf = train.x.float() / 255
    stats = {"mean": tuple(xf.mean((0, 2, 3)).tolist()), "std": tuple(xf.std((0, 2, 3)).clamp_min(1e-3).tolist())}
    train, val, test = (replace(s, **stats) for s in (train, split(x_tr, y_tr, val_idx), split(x_te, y_te)))
    num_classes = int(max(y_tr.max(), y_te.max())) + 1
    return Data(spec, train, val, test, num_classes, resolution)
