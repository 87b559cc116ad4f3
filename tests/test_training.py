"""Proxy data and the training recipe: splits, errors, determinism, divergence, real learning."""
from pathlib import Path

import numpy as np
import pytest
import torch

from nas.data import data_sizes, load_data
from nas.training import TrainConfig, TrainingDiverged, build_for_training, evaluate, make_scheduler, train
from search_spaces.errors import UserError
from search_spaces.references import reference

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TINY = reference("mobilenet_v3_small", 0.5)


def test_digits_splits_are_disjoint_and_sized():
    data = load_data("digits", resolution=16, seed=3)
    assert data.num_classes == 10 and data.train.x.shape[1:] == (3, 16, 16)
    assert data.train.x.dtype == torch.uint8
    assert len(data.train) + len(data.val) + len(data.test) == 1797
    # the test split does not depend on the search seed; the validation split does
    other = load_data("digits", resolution=16, seed=4)
    assert torch.equal(data.test.x, other.test.x)
    assert not torch.equal(data.val.x, other.val.x)
    flat = lambda s: {bytes(row) for row in s.x.reshape(len(s), -1).numpy()}  # noqa: E731
    assert not flat(data.val) & flat(data.test)


def test_train_subset():
    data = load_data("digits", resolution=16, train_subset=100)
    assert len(data.train) == 100 and len(data.val) == 144  # validation keeps its full size here


@pytest.mark.parametrize("spec, message", [
    ("mnist", "unknown data"), ("cifar10:/nonexistent", "cifar10 data not found"),
    ("imagefolder:/nonexistent", "image folder not found"), ("cifar10", "unknown data"),
])
def test_bad_specs(spec, message):
    with pytest.raises(UserError, match=message):
        load_data(spec)


def test_imagefolder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(tmp_path / c / f"{i}.png")
    data = load_data(f"imagefolder:{tmp_path}", resolution=16)
    assert data.num_classes == 2 and len(data.train) + len(data.val) + len(data.test) == 20
    assert data.train.x.shape[1:] == (3, 16, 16)
    sizes = data_sizes(f"imagefolder:{tmp_path}")  # what a search records, without decoding images
    assert (sizes.num_classes, sizes.train_images, sizes.val_images) == (2, len(data.train), len(data.val))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_image_is_one_line(tmp_path, capsys, damage):
    from PIL import Image

    from nas.cli import main

    for c in ("cat", "dog"):
        (tmp_path / c).mkdir()
        for i in range(3):
            Image.new("RGB", (20, 20), (i, 0, 0)).save(tmp_path / c / f"{i}.png")
    bad = tmp_path / "dog" / "1.png"
    bad.write_bytes(b"not an image" if damage == "garbage" else bad.read_bytes()[:60])
    with pytest.raises(UserError, match="cannot read image .*dog/1.png"):
        load_data(f"imagefolder:{tmp_path}", resolution=16)
    assert main(["search", "--data", f"imagefolder:{tmp_path}", "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert "cannot read image" in err and len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.skipif(not (SHARED / "cifar10_train.npz").exists(), reason="shared CIFAR-10 arrays not present")
def test_cifar10_subset():
    data = load_data(f"cifar10:{SHARED}", resolution=32, train_subset=500)
    assert len(data.train) == 500 and len(data.test) == 10000 and data.num_classes == 10
    assert abs(data.train.mean[0] - 0.49) < 0.05


def test_training_is_deterministic_and_learns():
    data = load_data("digits", resolution=16, train_subset=600)
    cfg = TrainConfig(steps=40, batch_size=64, lr=0.01, optimizer="rmsprop", flip=False, seed=1)
    first = build_for_training(TINY, data, seed=1)
    before = evaluate(first, data.val)
    r1 = train(first, data, cfg)
    r2 = train(build_for_training(TINY, data, seed=1), data, cfg)
    assert r1["train_loss"] == r2["train_loss"] and r1["val_acc"] == r2["val_acc"]
    assert r1["steps"] == 40
    # ten balanced classes: chance is 0.1; 40 real steps must do clearly better than the untrained net
    assert r1["val_acc"] > max(0.3, before + 0.15)
    assert r1["val_acc"] == evaluate(first, data.val)


def test_onecycle_warms_up_to_lr_then_anneals():
    """The fixed recipe's schedule: 10% of the steps up to lr, then down to nearly nothing."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4, momentum=0.9)
    sched = make_scheduler(opt, TrainConfig(lr=0.4, schedule="onecycle"), 100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] < 0.4 / 10 and max(lrs) == pytest.approx(0.4) and lrs.index(max(lrs)) == 9
    assert lrs[50] < lrs[20] and opt.param_groups[0]["lr"] < 0.4 / 1000
    assert opt.param_groups[0]["momentum"] == 0.9  # constant, as in the reference recipe
    with pytest.raises(ValueError, match="schedule"):
        make_scheduler(opt, TrainConfig(schedule="step"), 100)


@pytest.mark.parametrize("total", [1, 2, 3, 9, 10, 11])
def test_onecycle_of_a_few_steps_has_a_finite_positive_lr_on_every_step(total):
    """torch's OneCycleLR divides by zero at 10 steps and spends a 1-step run at lr / 25e4."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.4, momentum=0.9)
    sched = make_scheduler(opt, TrainConfig(lr=0.4, schedule="onecycle"), total)
    lrs = []
    for _ in range(total):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert all(np.isfinite(lr) and 0 < lr <= 0.4 for lr in lrs)
    if total <= 10:  # too short to warm up: every step takes a real share of lr, the first all of it
        assert lrs[0] == pytest.approx(0.4) and min(lrs) > 0.4 / 100


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_onecycle_training_of_a_few_steps_runs(steps):
    data = load_data("digits", resolution=8, train_subset=64)
    model = build_for_training(TINY, data)
    before = [p.detach().clone() for p in model.parameters()]
    result = train(model, data, TrainConfig(steps=steps, batch_size=32, lr=0.05, schedule="onecycle",
                                            flip=False, recalibrate_images=0))
    assert result["steps"] == steps and np.isfinite(result["train_loss"]) and 0 <= result["val_acc"] <= 1
    assert any(not torch.equal(a, b.cpu()) for a, b in zip(before, model.parameters()))  # the lr moved them


def test_divergence_is_reported():
    data = load_data("digits", resolution=16, train_subset=64)
    model = build_for_training(TINY, data)
    with pytest.raises(TrainingDiverged):
        train(model, data, TrainConfig(steps=5, batch_size=32, lr=1e30))
