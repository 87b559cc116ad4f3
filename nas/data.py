"""Image data for proxy training: train / validation / test splits held as uint8 tensors.

Specs: `digits` (scikit-learn's bundled 8x8 digits, upsampled; needs no download),
`cifar10:DIR` (DIR holds cifar10_train.npz / cifar10_test.npz as numpy arrays),
`imagefolder:DIR` (DIR/<class>/*.png|jpg, or DIR/train/<class>/... and DIR/test/<class>/...),
`npz:FILE` (one .npz holding x_train, y_train, x_test, y_test: NHWC uint8 images and integer labels;
what `nas.user_data` writes for a user's own torch Dataset).
The validation split is carved from training data; the test split is kept for final reports.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from search_spaces.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp"}
VAL_FRACTION = 0.1  # of the training images


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
    if (t.shape[-1] == resolution and t.shape[-2] == resolution) or not len(t):
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


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _npz(path: str) -> dict[str, np.ndarray]:
    """The arrays of an `npz:FILE` data set, in `NPZ_KEYS` order; a missing file or key, or images that
    are not N x H x W x 3 uint8, is the user's error."""
    f = Path(path)
    if not f.is_file():
        raise UserError(f"npz data not found: {f}")
    try:
        with np.load(f, allow_pickle=False) as doc:
            arrays = {k: doc[k] for k in NPZ_KEYS if k in doc.files}
    except (OSError, ValueError) as e:  # not a zip of arrays, or arrays of Python objects
        raise UserError(f"cannot read npz data {f}: {e}") from None
    missing = [k for k in NPZ_KEYS if k not in arrays]
    if missing:
        raise UserError(f"{f} lacks {', '.join(missing)} (an npz data set holds {', '.join(NPZ_KEYS)})")
    for k in ("x_train", "x_test"):
        x = arrays[k]
        if not (x.dtype == np.uint8 and x.ndim == 4 and x.shape[-1] == 3):
            raise UserError(f"{f}: {k} must be N x H x W x 3 uint8 images, not {x.dtype} of shape {x.shape}")
    return arrays


def _cifar10_files(directory: str) -> list[Path]:
    root = Path(directory)
    files = [root / "cifar10_train.npz", root / "cifar10_test.npz"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise UserError(f"cifar10 data not found: {', '.join(missing)}")
    return files


@contextmanager
def _image(f: Path):
    """The opened image; PIL's errors for a damaged or foreign file (raised on opening, or on
    decoding a truncated one) become the user's error."""
    from PIL import Image

    try:
        with Image.open(f) as im:
            yield im
    except (OSError, SyntaxError, ValueError) as e:
        raise UserError(f"cannot read image {f}: {e}") from None


def _folder_files(root: Path, classes: list[str]) -> list[tuple[Path, int]]:
    files = [(f, label) for label, name in enumerate(classes) for f in sorted((root / name).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise UserError(f"no images found under {root}")
    return files


def _imagefolder_files(directory: str) -> tuple[list, list]:
    """(path, label) pairs of the training and test images, before any is decoded."""
    root = Path(directory)
    if not root.is_dir():
        raise UserError(f"image folder not found: {root}")
    split_dirs = root / "train", root / "test"
    base = split_dirs[0] if split_dirs[0].is_dir() else root
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(classes) < 2:
        raise UserError(f"{base} needs one sub-folder per class (found {len(classes)})")
    if split_dirs[0].is_dir() and split_dirs[1].is_dir():
        return _folder_files(split_dirs[0], classes), _folder_files(split_dirs[1], classes)
    files = _folder_files(root, classes)
    order = np.random.default_rng(0).permutation(len(files))
    n_test = max(1, len(files) // 10)
    return [files[i] for i in order[n_test:]], [files[i] for i in order[:n_test]]


def _read_images(files: list[tuple[Path, int]], resolution: int):
    xs = []
    for f, _ in files:
        with _image(f) as im:
            xs.append(np.asarray(im.convert("RGB").resize((resolution, resolution))))
    return np.stack(xs), np.array([label for _, label in files])


def parse_spec(spec: str) -> tuple[str, str]:
    """(kind, directory) of a data spec; an unknown spec is the user's error."""
    kind, _, arg = spec.partition(":")
    if not ((kind == "digits" and not arg) or (kind in ("cifar10", "imagefolder", "npz") and arg)):
        raise UserError(f"unknown data {spec!r}: use digits, cifar10:DIR, imagefolder:DIR or npz:FILE")
    return kind, arg


def flips(spec: str) -> bool:
    """Whether mirroring is a fair augmentation of this data: not for digits (a mirrored digit
    is another symbol)."""
    return parse_spec(spec)[0] != "digits"


def absolute_spec(spec: str) -> str:
    """The spec with its directory made absolute: trials run in other working directories."""
    kind, arg = parse_spec(spec)
    return f"{kind}:{os.path.abspath(arg)}" if arg else spec


def split_indices(n: int, train_subset: int | None, seed: int, val_fraction: float = VAL_FRACTION):
    """Training and validation indices into the `n` training images (`val_fraction` 0: no
    validation split, every image trains, as a fixed recipe that reports on the test split does)."""
    if train_subset is not None and train_subset < 2:
        raise UserError(f"--train-subset must be at least 2, got {train_subset}")
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, int(round(len(order) * val_fraction))) if val_fraction > 0 else 0
    val_idx, train_idx = order[:n_val], order[n_val:]
    if train_subset is not None:
        train_idx = train_idx[:train_subset]
        # a quick run's validation set shrinks too, but not below 256 images (accuracy noise)
        val_idx = val_idx[:max(256, int(round(train_subset * val_fraction / (1 - val_fraction))))]
    return train_idx, val_idx


@dataclass(frozen=True)
class DataSizes:
    num_classes: int
    train_images: int
    val_images: int


def data_sizes(spec: str = "digits", train_subset: int | None = None, seed: int = 0) -> DataSizes:
    """What `load_data` would hold, from the labels alone: no image is decoded or resized
    (an image folder's files are only checked to be images)."""
    kind, arg = parse_spec(spec)
    if kind == "digits":
        _, y_tr, _, y_te = _digits()
    elif kind == "cifar10":
        train, test = _cifar10_files(arg)
        y_tr, y_te = np.load(train)["y_train"], np.load(test)["y_test"]
    elif kind == "npz":  # the images are read too: checked before a run directory is made
        _, y_tr, _, y_te = _npz(arg).values()
    else:
        train, test = _imagefolder_files(arg)
        for f, _ in train + test:
            with _image(f) as im:
                im.verify()
        y_tr, y_te = np.array([label for _, label in train]), np.array([label for _, label in test])
    train_idx, val_idx = split_indices(len(y_tr), train_subset, seed)
    return DataSizes(_num_classes(y_tr, y_te), len(train_idx), len(val_idx))


def _num_classes(y_tr, y_te) -> int:
    return int(max(y_tr.max(), y_te.max())) + 1


def load_data(spec: str = "digits", resolution: int = 32, train_subset: int | None = None, seed: int = 0,
              val_fraction: float = VAL_FRACTION) -> Data:
    """Load a data set by spec; the validation split (`val_fraction` of the training images, 0 for
    none) is drawn from training data with `seed`."""
    kind, arg = parse_spec(spec)
    if kind == "digits":
        x_tr, y_tr, x_te, y_te = _digits()
    elif kind == "cifar10":
        tr, te = (np.load(f) for f in _cifar10_files(arg))
        x_tr, y_tr, x_te, y_te = tr["x_train"], tr["y_train"], te["x_test"], te["y_test"]
    elif kind == "npz":
        x_tr, y_tr, x_te, y_te = _npz(arg).values()
    else:
        train, test = _imagefolder_files(arg)
        x_tr, y_tr, x_te, y_te = (*_read_images(train, resolution), *_read_images(test, resolution))
    train_idx, val_idx = split_indices(len(x_tr), train_subset, seed, val_fraction)

    def split(x, y, idx=None):
        if idx is not None:
            x, y = x[idx], y[idx]
        return Split(_resize(x, resolution), torch.as_tensor(np.asarray(y), dtype=torch.long))

    train = split(x_tr, y_tr, train_idx)
    xf = train.x.float() / 255
    stats = {"mean": tuple(xf.mean((0, 2, 3)).tolist()), "std": tuple(xf.std((0, 2, 3)).clamp_min(1e-3).tolist())}
    train, val, test = (replace(s, **stats) for s in (train, split(x_tr, y_tr, val_idx), split(x_te, y_te)))
    return Data(spec, train, val, test, _num_classes(y_tr, y_te), resolution)
