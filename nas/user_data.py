"""A user's own `torch.utils.data.Dataset` as a data spec: written once into the run directory.

A search's candidates are evaluated in Ray worker processes, and every later command (resume,
`nas train`, NetAdapt) reads the data back from the run's config.json, which holds a spec string.
So a Dataset, or a (train, test) pair of them, is materialised once as uint8 arrays in an
`npz:FILE` (`nas.data`): from then on the validation split, the normalisation with the training
set's statistics and the proxy resolution work as for the built-in data sets.

Items are (image, label) pairs. An image is a tensor or array of shape C x H x W (or H x W), with
1 channel (repeated to 3) or 3, either uint8 (0-255) or floating point in [0, 1] (before any
normalisation: the search normalises), or a PIL image; every image has the same shape. A label is
a non-negative integer.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError

#: the file a run directory keeps a user's Dataset in
DATA_FILE = "data.npz"
#: of a single Dataset's images held out as its test split (drawn with seed 0, as an image folder's)
TEST_FRACTION = 0.1


def is_dataset(data: Any) -> bool:
    """Whether `data` is a Dataset (anything indexable with a length: a list of items will do) or a
    (train, test) pair of them, rather than a data spec string."""
    return data is not None and not isinstance(data, str) and _indexable(data)


def is_pair(data: Any) -> bool:
    """A (train, test) tuple of two Datasets, not a Dataset of two (image, label) tuples."""
    return isinstance(data, tuple) and len(data) == 2 and all(_indexable(d) and not isinstance(d, tuple) for d in data)


def _indexable(d: Any) -> bool:
    return not isinstance(d, (str, bytes)) and hasattr(d, "__len__") and hasattr(d, "__getitem__")


def _image(image: Any, where: str) -> np.ndarray:
    """One image as H x W x 3 uint8."""
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image
        return np.asarray(image.convert("RGB"))
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise UserError(f"{where}: the image is a {type(image).__name__}, not a tensor, an array or a PIL image")
    x = image[None] if image.ndim == 2 else image
    if x.ndim != 3 or x.shape[0] not in (1, 3):
        raise UserError(f"{where}: image of shape {tuple(image.shape)}; expected C x H x W with 1 or 3 channels")
    if x.dtype == np.uint8:
        pass
    elif np.issubdtype(x.dtype, np.floating):
        lo, hi = float(x.min()), float(x.max())
        if not (np.isfinite(lo) and np.isfinite(hi) and lo >= 0 and hi <= 1):
            raise UserError(f"{where}: float image values range {lo:g}..{hi:g}; give them in [0, 1], before any "
                            f"normalisation (the search normalises with the training set's statistics)")
        x = np.round(x * 255).astype(np.uint8)
    else:
        raise UserError(f"{where}: images must be uint8 or floating point in [0, 1], got {x.dtype}")
    return np.repeat(x, 3, axis=0).transpose(1, 2, 0) if x.shape[0] == 1 else x.transpose(1, 2, 0)


def _label(label: Any, where: str) -> int:
    if hasattr(label, "item") and getattr(label, "ndim", 0) == 0:  # a 0-d tensor or numpy scalar
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or label < 0:
        raise UserError(f"{where}: the label {label!r} is not a non-negative integer class index")
    return int(label)


def dataset_arrays(dataset: Sequence, what: str = "dataset") -> tuple[np.ndarray, np.ndarray]:
    """(images N x H x W x 3 uint8, labels N int64) of a map-style Dataset, checked item by item."""
    if not len(dataset):
        raise UserError(f"{what} is empty")
    xs, ys = None, np.empty(len(dataset), dtype=np.int64)
    for i in range(len(dataset)):
        where = f"{what} item {i}"
        item = dataset[i]
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise UserError(f"{where} is a {type(item).__name__}, not an (image, label) pair")
        x = _image(item[0], where)
        if xs is None:
            xs = np.empty((len(dataset), *x.shape), dtype=np.uint8)
        elif x.shape != xs.shape[1:]:
            raise UserError(f"{where}: image of {x.shape[0]}x{x.shape[1]} pixels, item 0's is "
                            f"{xs.shape[1]}x{xs.shape[2]}; images must all be of one size (resize them in the Dataset)")
        xs[i], ys[i] = x, _label(item[1], where)
    return xs, ys


def write_dataset(data: Any, path: str | Path) -> str:
    """Write a Dataset, or a (train, test) pair, to the .npz `path`; returns its `npz:` spec. A single
    Dataset's test split is `TEST_FRACTION` of its items; the validation split is drawn later, from
    the training images, as for every data set."""
    if is_pair(data):
        (x_tr, y_tr), (x_te, y_te) = dataset_arrays(data[0], "train dataset"), dataset_arrays(data[1], "test dataset")
        if x_tr.shape[1:] != x_te.shape[1:]:
            raise UserError(f"train images are {x_tr.shape[1]}x{x_tr.shape[2]} pixels, test images "
                            f"{x_te.shape[1]}x{x_te.shape[2]}: they must be of one size")
    else:
        x, y = dataset_arrays(data)
        if len(x) < 3:
            raise UserError(f"dataset has {len(x)} item(s): at least 3 are needed for training, validation and "
                            f"test splits")
        order = np.random.default_rng(0).permutation(len(x))
        n_test = max(1, int(round(len(x) * TEST_FRACTION)))
        (x_te, y_te), (x_tr, y_tr) = (x[order[:n_test]], y[order[:n_test]]), (x[order[n_test:]], y[order[n_test:]])
    path = Path(path).resolve()

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would append .npz to the temporary name
            np.savez(f, x_train=x_tr, y_train=y_tr, x_test=x_te, y_test=y_te)
    atomic_write(path, save)
    return f"npz:{path}"
