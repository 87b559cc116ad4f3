"""Named recipes (`nas arch train --recipe`): the shared ground truth's settings, a training that resumes
after a kill to the very weights an uninterrupted run reaches, and one-line errors."""
import json

import pytest
import torch

import nas.training as training
from nas.cli import main as nas
from nas.data import load_data
from nas.recipes import RECIPES, get_recipe, train_with_recipe
from nas.training import TrainConfig, augment, build_for_training, make_optimizer, make_scheduler, train
from search_spaces.errors import UserError
from search_spaces.references import reference

TINY = reference("mobilenet_v3_small", 0.5)


def test_cifar10_18ep_is_the_shared_recipe():
    r = get_recipe("cifar10_18ep")
    c = r.config
    assert (c.epochs, c.batch_size, c.lr, c.optimizer, c.schedule) == (18, 512, 0.4, "sgd", "onecycle")
    assert (c.weight_decay, c.label_smoothing, c.recalibrate_images) == (5e-4, 0.1, 0)
    assert r.resolution == 32 and r.val_fraction == 0  # all 50,000 training images, accuracy on the test split


def test_the_schedule_warms_up_for_a_tenth_then_anneals():
    model = build_for_training(TINY, load_data("digits", resolution=8, train_subset=64))
    cfg = RECIPES["cifar10_18ep"].config
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, 100)
    lrs = []
    for _ in range(100):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    peak = max(range(100), key=lrs.__getitem__)
    assert peak == 9 and lrs[peak] == pytest.approx(0.4)
    assert all(a < b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:])) and lrs[-1] < 0.4 / 1000
    # weight decay on conv and linear weights only
    assert {g["weight_decay"] for g in opt.param_groups if all(p.ndim > 1 for p in g["params"])} == {5e-4}
    assert {g["weight_decay"] for g in opt.param_groups if all(p.ndim <= 1 for p in g["params"])} == {0.0}


def test_augmentation_is_a_padded_crop_and_a_flip():
    x = torch.arange(2 * 3 * 32 * 32, dtype=torch.float32).reshape(2, 3, 32, 32) + 1
    out = augment(x, torch.Generator().manual_seed(0), flip=True)
    assert out.shape == x.shape
    for img, src in zip(out, x):
        # every output pixel is an input pixel of the same channel or the zero padding of 4
        found = False
        for flipped in (src, src.flip(2)):
            padded = torch.nn.functional.pad(flipped, (4, 4, 4, 4))
            for dy in range(9):
                for dx in range(9):
                    found |= torch.equal(padded[:, dy:dy + 32, dx:dx + 32], img)
        assert found


def _weights(model):
    return [t.detach().clone() for t in model.state_dict().values()]


def test_a_killed_training_resumes_to_the_same_weights(tmp_path, monkeypatch):
    data = load_data("digits", resolution=8, train_subset=96)
    cfg = TrainConfig(steps=8, batch_size=32, lr=0.1, schedule="onecycle", weight_decay=5e-4,
                      flip=True, recalibrate_images=0, threads=1)  # 3 steps per epoch: killed mid-epoch
    whole = build_for_training(TINY, data)
    train(whole, data, cfg)

    monkeypatch.setattr(training, "CHECKPOINT_EVERY_S", 0.0)  # a checkpoint after every step
    killed = build_for_training(TINY, data)
    calls = {"n": 0}

    def kill_at_step_5(*_):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt

    hook = killed.register_forward_pre_hook(kill_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(killed, data, cfg, checkpoint=tmp_path / "ckpt.pt")
    hook.remove()
    assert torch.load(tmp_path / "ckpt.pt", weights_only=True)["step"] == 5

    resumed = build_for_training(TINY, data, seed=7)  # other initial weights: the checkpoint must replace them
    result = train(resumed, data, cfg, checkpoint=tmp_path / "ckpt.pt")
    assert result["steps"] == 8
    for a, b in zip(_weights(whole), _weights(resumed)):
        assert torch.equal(a, b)


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    data = load_data("digits", resolution=8, train_subset=64)
    cfg = TrainConfig(steps=2, batch_size=32, recalibrate_images=0)
    train(build_for_training(TINY, data), data, cfg, checkpoint=tmp_path / "c.pt")
    with pytest.raises(UserError, match="another training configuration"):
        train(build_for_training(TINY, data), data, TrainConfig(steps=2, batch_size=32, lr=0.3, recalibrate_images=0),
              checkpoint=tmp_path / "c.pt")


def test_train_with_recipe_writes_a_deployable_result_and_reruns_from_it(tmp_path):
    out = tmp_path / "run"
    r = train_with_recipe(TINY, get_recipe("cifar10_18ep"), "digits", out, epochs=0.1, batch_size=64, progress=False, threads=1)
    assert r["is_recipe"] is False and r["val_acc"] is None and r["train_images"] == 1438  # no validation split
    assert 0 <= r["test_acc"] <= 1 and r["test_images"] == 359
    assert {"arch.json", "model.pt", "model.onnx", "result.json"} <= {p.name for p in out.iterdir()}
    assert not (out / "checkpoint.pt").exists()
    assert train_with_recipe(TINY, get_recipe("cifar10_18ep"), "digits", out, epochs=0.1, batch_size=64, progress=False) == r
    with pytest.raises(UserError, match="holds another training"):
        train_with_recipe(TINY, get_recipe("cifar10_18ep"), "digits", out, seed=1, epochs=0.1, batch_size=64, progress=False)


@pytest.mark.parametrize("argv, message", [
    (["--recipe", "imagenet"], "unknown recipe 'imagenet'"),
    (["--epochs", "0"], "--epochs must be positive"),
    (["--data", "mnist"], "unknown data 'mnist'"),
])
def test_cli_errors_are_one_line(argv, message, capsys, tmp_path):
    base = ["arch", "train", "mobilenet_v3_small", "--data", "digits", "--out", str(tmp_path / "o")]
    assert nas(base + argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_cli_trains_and_reports(tmp_path, capsys):
    assert nas(["arch", "train", "mobilenet_v3_small", "--data", "digits", "--epochs", "0.1", "--threads", "1",
                "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "not the recipe" in out
    assert json.loads((tmp_path / "o" / "result.json").read_text())["recipe"] == "cifar10_18ep"
