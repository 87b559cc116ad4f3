"""The training device: resolving --device, CUDA-only paths (skipped without a GPU), device-free
checkpoints, out-of-memory candidates, and the flag end to end."""
import json
import math
import random

import pytest
import torch

from nas.data import load_data
from nas.device import describe, resolve_device
from nas.evaluation import evaluate_candidate
from nas.training import TrainConfig, TrainingDiverged, build_for_training, evaluate, train
from search_spaces.errors import UserError
from search_spaces.references import reference
from search_spaces.space import get_space

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA GPU on this machine")
without_cuda = pytest.mark.skipif(CUDA, reason="checks the behaviour of a machine without CUDA")
TINY = reference("mobilenet_v3_small", 0.5)


def tiny_job(**extra) -> dict:
    return dict(space="mnv3", target="pixel_cpu", data="digits", resolution=16, deploy_resolution=224,
                train_subset=64, seed=0, epochs=1, steps=2, batch_size=32, lr=0.05, optimizer="sgd", threads=1,
                vector=get_space("mnv3").sample(random.Random(0))) | extra


def test_cpu_and_auto_resolve_here():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    info = describe(torch.device("cpu"))
    assert info["device"] == "cpu" and info["torch"] == torch.__version__ and info["amp"] is None


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "gpu", "cuda:-1", ""])
def test_unknown_device_is_a_user_error(spec):
    with pytest.raises(UserError, match="unknown device"):
        resolve_device(spec)


@without_cuda
@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:7"])
def test_cuda_without_cuda_is_a_user_error(spec):
    with pytest.raises(UserError, match="CUDA is not available"):
        resolve_device(spec)


@without_cuda
def test_cuda_n_without_cuda_names_the_gpus_present():
    with pytest.raises(UserError, match=r"^device 'cuda:1': CUDA is not available here .*; GPUs present: none$"):
        resolve_device("cuda:1")


@needs_cuda
def test_cuda_index_beyond_the_devices_is_a_user_error():
    with pytest.raises(UserError, match=r"CUDA device\(s\): cuda:0 \("):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_a_chosen_gpu_is_not_asked_of_ray_and_reaches_the_trial():
    """With cuda:N, Ray assigns no GPU (it would narrow CUDA_VISIBLE_DEVICES to its own pick), and the
    trials' job names cuda:N; auto and cuda still take Ray's GPU."""
    from types import SimpleNamespace

    from nas.search import trial_resources

    cluster = {"CPU": 8, "GPU": 2}
    chosen = SimpleNamespace(workers=1, device="cuda:1", gpus_per_trial=None, cpus_per_trial=None)
    assert trial_resources(chosen, cluster) == ({"cpu": 8, "gpu": 0}, "cuda:1")
    assert trial_resources(chosen, {"CPU": 8}) == ({"cpu": 8, "gpu": 0}, "cuda:1")
    ray_picks = SimpleNamespace(workers=2, device="cuda", gpus_per_trial=None, cpus_per_trial=None)
    assert trial_resources(ray_picks, cluster) == ({"cpu": 4, "gpu": 1}, "cuda")


def test_saved_candidate_weights_are_cpu_tensors_and_load_anywhere(tmp_path):
    row = evaluate_candidate(tiny_job(device="cpu"))
    assert row["status"] == "ok" and row["device"] == "cpu"
    (tmp_path / "w.pt").write_bytes(row["weights"])  # as the search's driver writes them
    state = torch.load(tmp_path / "w.pt", map_location="cpu", weights_only=True)
    assert state and all(t.device.type == "cpu" for t in state.values())
    # map_location decides where the tensors land, whatever device wrote them
    meta = torch.load(tmp_path / "w.pt", map_location="meta", weights_only=True)
    assert all(t.device.type == "meta" for t in meta.values())


def test_out_of_gpu_memory_is_a_failed_candidate_with_that_reason(monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB\nmore detail")

    monkeypatch.setattr("nas.evaluation.train", oom)
    row = evaluate_candidate(tiny_job(device="cpu"))
    assert row["status"] == "failed"
    assert row["reason"] == "out of GPU memory: OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB"
    assert row["latency_ms"] > 0 and math.isnan(row["accuracy"])


@without_cuda
def test_a_trial_asking_for_cuda_on_a_node_without_it_fails_alone():
    row = evaluate_candidate(tiny_job(device="cuda"))
    assert row["status"] == "failed" and "CUDA is not available" in row["reason"]
    assert row["latency_ms"] > 0


@needs_cuda
def test_one_tiny_trial_on_cuda(tmp_path):
    row = evaluate_candidate(tiny_job(device="cuda", steps=3))
    assert row["status"] == "ok", row["reason"]
    assert row["device"].startswith("cuda") and 0 <= row["accuracy"] <= 1 and math.isfinite(row["train_loss"])
    (tmp_path / "w.pt").write_bytes(row["weights"])  # as the search's driver writes them
    # written on the GPU, read on the CPU
    state = torch.load(tmp_path / "w.pt", map_location="cpu", weights_only=True)
    assert all(t.device.type == "cpu" for t in state.values())
    # and the reverse: CPU weights onto the GPU
    on_gpu = torch.load(tmp_path / "w.pt", map_location="cuda", weights_only=True)
    assert all(t.is_cuda for t in on_gpu.values())


@needs_cuda
def test_cuda_training_learns_and_detects_divergence():
    data = load_data("digits", resolution=16, train_subset=600)
    cfg = TrainConfig(steps=40, batch_size=64, lr=0.01, optimizer="rmsprop", flip=False, seed=1, device="cuda")
    model = build_for_training(TINY, data, seed=1)
    before = evaluate(model, data.val)
    r1 = train(model, data, cfg)
    assert next(model.parameters()).is_cuda
    assert r1["val_acc"] > max(0.3, before + 0.15) and r1["val_acc"] == evaluate(model, data.val)
    with pytest.raises(TrainingDiverged):
        train(build_for_training(TINY, data), data, TrainConfig(steps=5, batch_size=32, lr=1e30, device="cuda"))


# ---- the flag on every command ---------------------------------------------------------
TINY_SEARCH = ["--evaluator", "train", "--steps", "1", "--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--quiet",
               "--controller", "random"]


@pytest.mark.parametrize("argv, message", [
    (["search", "--device", "tpu"], "unknown device"),
    (["search", "--device", "cuda:1", "--workers", "2"], "use --workers 1, or --device cuda"),
    (["search", "--device", "cuda:0", "--address", "127.0.0.1:1"], "trials run on the cluster's nodes"),
    (["search", "--device", "cuda:0", "--gpus-per-trial", "1"], "drop --gpus-per-trial"),
    *([(["search", "--device", "cuda:1"], "GPUs present: none")] if not CUDA else []),
    (["search", "--gpus-per-trial", "0.5", "--device", "cpu"], "drop one of them"),
    (["search", "--gpus-per-trial", "1.5"], "fraction in [0, 1]"),
    (["search", "--cpus-per-trial", "0"], "at least 1"),
    *([(["search", "--device", "cuda"], "CUDA is not available")] if not CUDA else []),
])
def test_bad_device_flags_are_one_line_and_status_2(argv, message, capsys, tmp_path):
    from nas.cli import main

    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


@without_cuda
def test_cuda_on_train_and_refine_without_cuda_is_one_line(capsys, tmp_path):
    from nas.cli import main as nas_main
    from netadapt.cli import main as netadapt_main

    assert nas_main(["train", str(tmp_path), "--device", "cuda"]) == 2
    assert netadapt_main(["refine", str(tmp_path), "--device", "cuda:0", "--no-progress"]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all("CUDA is not available" in line for line in lines)


@needs_cuda
def test_search_on_a_chosen_gpu_trains_there_and_records_it(tmp_path):
    from nas.cli import main

    run, chosen = tmp_path / "run", f"cuda:{torch.cuda.device_count() - 1}"  # the last: not the default one
    assert main(["search", "--device", chosen, "--trials", "1", "--out", str(run), *TINY_SEARCH]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["device"] == chosen and cfg["device_info"]["device"] == chosen
    header, row = (run / "trials.csv").read_text().splitlines()
    assert header.endswith(",device") and row.endswith(f",{chosen}") and ",ok," in row


def test_search_with_device_cpu_records_it(tmp_path):
    from nas.cli import main

    run = tmp_path / "run"
    assert main(["search", "--device", "cpu", "--trials", "1", "--cpus-per-trial", "1", "--out", str(run),
                 *TINY_SEARCH]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["device"] == "cpu" and cfg["gpus_per_trial"] is None and cfg["cpus_per_trial"] == 1
    assert cfg["device_info"]["device"] == "cpu" and cfg["device_info"]["torch"] == torch.__version__
    assert "- device `cpu`: cpu (" in (run / "summary.md").read_text()
    assert (run / "trials.csv").read_text().count("\n") == 2 and ",ok," in (run / "trials.csv").read_text()
    assert (run / "trials.csv").read_text().splitlines()[0].endswith(",device") and \
        (run / "trials.csv").read_text().splitlines()[1].endswith(",cpu")  # the device the trial trained on
