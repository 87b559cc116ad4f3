"""The Python API (`import nas`) on a made-up Dataset of 3 classes: search, load, resume, refine,
predict, export; bad arguments are the CLI's one-line errors."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch.utils.data import Dataset

import nas
from nas.cli import main
from search_spaces.builder import Net
from search_spaces.ir import Arch

N, SIZE = 45, 12
#: a search small enough for seconds: NAS-Bench-Macro's small space (no reference network to train beside
#: the winner), an IR-only zero-cost score (no Ray), one candidate trained briefly
TINY = dict(space="nasbench_macro", trials=2, evaluator="zc:params", final_top=1, epochs=0.5, batch_size=16,
            resolution=16, device="cpu", progress=False)


class Blobs(Dataset):
    """N random C x H x W float images in [0, 1]; class k is brighter in channel k (learnable)."""

    def __init__(self, n=N, size=SIZE, channels=3, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % 3
        self.images = torch.rand(n, channels, size, size, generator=g) * 0.5
        for i, k in enumerate(self.labels.tolist()):
            self.images[i, k % channels] += 0.5

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return nas.search(data=Blobs(), out=tmp_path_factory.mktemp("api") / "run", **TINY)


def test_search_on_a_dataset_writes_it_once_and_finds_a_winner(run):
    data = np.load(run.path / "data.npz")
    assert run.config.data == f"npz:{run.path / 'data.npz'}" and run.config.num_classes == 3
    x = np.concatenate([data["x_train"], data["x_test"]])
    y = np.concatenate([data["y_train"], data["y_test"]])
    assert x.shape == (N, SIZE, SIZE, 3) and x.dtype == np.uint8 and 0 < len(data["x_test"]) < N // 5
    ds = Blobs()  # every item, as uint8 H x W x C, exactly once
    expected = sorted((np.round(ds[i][0].numpy().transpose(1, 2, 0) * 255).astype(np.uint8).tobytes(), ds[i][1])
                      for i in range(N))
    assert sorted((xi.tobytes(), int(yi)) for xi, yi in zip(x, y)) == expected
    assert run.config.train_images + run.config.val_images == len(data["x_train"])

    assert len(run.trials) == 2 and set(run.trials["status"]) == {"ok"}
    w = run.winner
    assert isinstance(w.arch, Arch) and isinstance(w.model, Net) and w.arch.num_classes == 3
    assert w.latency_ms == pytest.approx(nas.latency("pixel_cpu").predict(w.arch))
    final = run.final
    assert len(final) == 1 and w.accuracy == pytest.approx(final["val_accuracy"].iloc[0])
    with torch.no_grad():  # the trained weights, at the deployment resolution
        assert w.model(torch.rand(2, 3, w.arch.resolution, w.arch.resolution)).shape == (2, 3)


def test_load_and_resume_a_run(run, tmp_path):
    loaded = nas.Run.load(run.path)
    assert loaded.winner.arch == run.winner.arch and loaded.trials.equals(run.trials)
    assert nas.search(resume=run.path, trials=3, progress=False).trials["trial"].tolist() == [0, 1, 2]
    with pytest.raises(nas.UserError, match="not a search run directory"):
        nas.Run.load(tmp_path)


def test_refine_predict_and_export(run, tmp_path):
    small = nas.refine(run, target_ratio=0.9, step_ratio=0.1, short_term_steps=1, long_term_epochs=0.1,
                       out=tmp_path / "netadapt", threads=1, progress=False)
    result = json.loads((tmp_path / "netadapt" / "result.json").read_text())
    assert small.within_budget and small.latency_ms <= small.budget_ms == pytest.approx(result["budget_ms"])
    assert small.latency_ms == pytest.approx(nas.latency(run.config.target).predict(small.model))
    assert small.latency_ms < run.winner.latency_ms and small.arch.to_string() == result["arch"]

    path = nas.export(small, tmp_path / "small.onnx")
    r = small.arch.resolution
    x = np.random.default_rng(0).random((1, 3, r, r), dtype=np.float32)
    session = ort.InferenceSession(str(path))
    with torch.no_grad():
        expected = small.model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(session.run(None, {session.get_inputs()[0].name: x})[0], expected,
                               rtol=1e-3, atol=1e-3)
    assert nas.export("mobilenet_v3_large", tmp_path / "fresh.onnx").stat().st_size > 0
    with pytest.raises(nas.UserError, match="format follows the suffix"):
        nas.export(small.model, tmp_path / "small.tf")


@pytest.mark.parametrize("suffix, package", [(".tflite", "litert_torch"), (".pte", "executorch")])
def test_export_to_the_phone_runtimes(suffix, package, tmp_path, capsys):
    pytest.importorskip(package, reason="the [deploy] extra is not installed (CI installs it)")
    path = nas.export("mobilenet_v3_small", tmp_path / f"small{suffix}")
    assert path.stat().st_size > 0
    assert "top-1 agreement" in capsys.readouterr().out  # the check ran and was printed


def test_predict_agrees_with_the_command_line(capsys):
    assert main(["latency", "predict", "mobilenet_v3_large", "--json"]) == 0
    out = capsys.readouterr().out
    assert nas.latency("pixel_cpu").predict("mobilenet_v3_large") == pytest.approx(
        json.loads(out)["latency_ms"], abs=1e-4)


@pytest.mark.parametrize("kwargs, argv", [
    ({"final_top": -1}, ["--final-top", "-1"]),
    ({"latency_target": float("nan")}, ["--latency-target", "nan"]),
    ({"optimizer": "adam"}, ["--optimizer", "adam"]),
])
def test_a_bad_argument_is_the_command_lines_error(kwargs, argv, tmp_path, capsys):
    assert main(["search", "--out", str(tmp_path / "cli"), *argv]) == 2
    cli_error = capsys.readouterr().err.strip()
    with pytest.raises(nas.UserError) as api_error:
        nas.search(out=tmp_path / "api", data=Blobs(), **kwargs)
    assert cli_error == f"nas: error: {api_error.value}" and "\n" not in cli_error
    assert not (tmp_path / "api").exists()  # nothing left behind, not even the data


@pytest.mark.parametrize("data, message", [
    ([(torch.rand(3, 8, 8), 0), (torch.rand(3, 9, 8), 1)], "item 1: image of 9x8 pixels, item 0's is 8x8"),
    ([(torch.rand(4, 8, 8), 0)] * 3, "expected C x H x W with 1 or 3 channels"),
    ([(torch.rand(3, 8, 8) - 0.5, 0)] * 3, "give them in [0, 1], before any normalisation"),
    ([(torch.rand(3, 8, 8), 0.5)] * 3, "is not a non-negative integer class index"),
    ([(torch.rand(3, 8, 8),)] * 3, "not an (image, label) pair"),
    ([], "dataset is empty"),
])
def test_a_bad_dataset_is_one_line(data, message, tmp_path):
    with pytest.raises(nas.UserError) as e:
        nas.search(out=tmp_path / "run", data=data, **TINY)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_a_grey_train_test_pair_becomes_three_channels(tmp_path):
    from nas.data import load_data
    from nas.user_data import write_dataset

    spec = write_dataset((Blobs(30, channels=1), Blobs(9, channels=1, seed=1)), tmp_path / "grey.npz")
    data = load_data(spec, resolution=SIZE)
    assert data.train.x.shape[1] == 3 and len(data.test) == 9 and data.num_classes == 3
    assert torch.equal(data.train.x[:, 0], data.train.x[:, 2])  # the one channel, repeated


def test_an_npz_spec_of_the_wrong_kind_is_one_line(tmp_path):
    f = tmp_path / "floats.npz"
    np.savez(f, x_train=np.zeros((4, 8, 8, 3), np.float32), y_train=np.zeros(4, int),
             x_test=np.zeros((2, 8, 8, 3), np.float32), y_test=np.zeros(2, int))
    with pytest.raises(nas.UserError, match="x_train must be N x H x W x 3 uint8 images, not float32"):
        nas.search(out=tmp_path / "run", data=f"npz:{f}", **TINY)
    np.savez(f, x_train=np.zeros((4, 8, 8, 3), np.uint8))
    with pytest.raises(nas.UserError, match="lacks y_train, x_test, y_test"):
        nas.search(out=tmp_path / "run", data=f"npz:{f}", **TINY)
