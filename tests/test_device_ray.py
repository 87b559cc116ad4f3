"""Ray Tune with logical GPUs on this CPU machine: the fractions a search asks for are what Ray
schedules, and a trial given a (logical) GPU without CUDA trains on the CPU."""
import json
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from nas.cli import main
from nas.ray_session import ray_process_env

TINY = ["--evaluator", "train", "--steps", "1", "--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--quiet",
        "--controller", "random"]


@pytest.fixture(scope="module")
def gpu_cluster():
    """A one-node Ray cluster with 8 CPUs and one logical GPU, bound to 127.0.0.1."""
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="nasgpu-", dir="/tmp")  # Ray's socket paths must stay short
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_TMPDIR", tmp)
    for name, value in ray_process_env(local=True).items():  # what `nas search` gives its own Ray
        mp.setenv(name, value)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 8, "num_gpus": 1, "include_dashboard": False})
    try:
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
        mp.undo()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.timeout(400)
def test_quarter_gpus_run_four_at_once_and_fall_back_to_the_cpu(gpu_cluster, tmp_path):
    import ray
    from ray import tune

    from nas.search import trial_resources

    def probe(config):
        """Record when this trial ran, the GPU Ray gave it and the device `auto` resolves to; wait (up to a
        minute) until four trials have started, so trials that may run together do."""
        import os

        import ray
        from ray import tune

        from nas.device import resolve_device

        marks = Path(config["dir"])
        start = time.time()
        (marks / f"{config['i']}.start").touch()
        deadline = start + 60
        while len(list(marks.glob("*.start"))) < 4 and time.time() < deadline:
            time.sleep(0.1)
        tune.report({"start": start, "end": time.time(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                     "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "device": str(resolve_device("auto"))})

    ray.init(address=gpu_cluster.address, log_to_driver=False)
    try:
        cfg = SimpleNamespace(workers=8, device="auto", gpus_per_trial=0.25, cpus_per_trial=1)
        resources, device = trial_resources(cfg, ray.cluster_resources())
        assert resources == {"cpu": 1, "gpu": 0.25} and device == "auto"
        grid = tune.Tuner(tune.with_resources(probe, resources),
                          param_space={"i": tune.grid_search(list(range(5))), "dir": str(tmp_path)},
                          run_config=tune.RunConfig(storage_path=str(tmp_path / "tune"), verbose=0)).fit()
        rows = grid.get_dataframe()
    finally:
        ray.shutdown()
    assert len(rows) == 5
    # 8 CPUs would allow 5 at once; the GPU quarters allow 4
    events = sorted([(t, 1) for t in rows["start"]] + [(t, -1) for t in rows["end"]])
    running = peak = 0
    for _, change in events:
        running += change
        peak = max(peak, running)
    assert peak == 4
    assert all(ids == ["0"] for ids in rows["gpu_ids"]) and set(rows["visible"]) == {"0"}
    assert set(rows["device"]) == {"cpu"}  # auto, with Ray's GPU but no CUDA: the CPU


@pytest.mark.timeout(400)
def test_search_asks_for_gpu_fractions_and_trials_fall_back(gpu_cluster, tmp_path):
    run = tmp_path / "run"
    assert main(["search", "--address", gpu_cluster.address, "--workers", "2", "--trials", "2",
                 "--gpus-per-trial", "0.5", "--cpus-per-trial", "1", "--out", str(run), *TINY]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["device"] == "auto" and cfg["gpus_per_trial"] == 0.5 and cfg["cpus_per_trial"] == 1
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 2 and (trials["status"] == "ok").all()
