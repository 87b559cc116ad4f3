"""`nas search --address`: a two-node Ray cluster started on this machine shares the trials, and
its workers hand their results back through Ray: none of them writes into the run directory,
so a cluster without a shared filesystem works."""
import os
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from nas.cli import main
from nas.ray_session import ray_process_env

TINY = ["--evaluator", "train", "--steps", "1", "--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--quiet"]
AUDIT_HOOK = Path(__file__).resolve().parent / "process_audit"


@pytest.fixture
def user_dir(tmp_path):
    """Where the user stands; every Ray process of the cluster logs what it writes there."""
    (tmp_path / "user").mkdir()
    return tmp_path / "user"


@pytest.fixture
def two_node_cluster(monkeypatch, tmp_path, user_dir):
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="nasclu-", dir="/tmp")  # Ray's socket paths must stay short
    monkeypatch.setenv("RAY_TMPDIR", tmp)  # all of Ray's files, the cluster address file included
    for name, value in ray_process_env(local=True).items():  # what `nas search` gives its own Ray
        monkeypatch.setenv(name, value)
    # Ray's processes (not this one, the driver) load the audit hook
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(AUDIT_HOOK), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("AUDIT_LOG", str(tmp_path / "audit.log"))
    monkeypatch.setenv("AUDIT_WATCH_DIR", str(user_dir))
    node = {"num_cpus": 1}
    cluster = Cluster(initialize_head=True, head_node_args=node | {"include_dashboard": False})
    try:
        cluster.add_node(**node)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.timeout(300)
def test_search_spreads_over_both_nodes_and_only_the_driver_writes(two_node_cluster, user_dir, tmp_path,
                                                                   monkeypatch):
    monkeypatch.chdir(user_dir)
    assert main(["search", "--address", two_node_cluster.address, "--workers", "2", "--trials", "4",
                 "--controller", "random", "--out", "rel", *TINY]) == 0
    run = user_dir / "rel"  # relative to where the user stands, not to a worker's directory
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 4 and (trials["status"] == "ok").all()
    assert trials["node"].nunique() == 2, trials["node"].tolist()
    best = trials.loc[trials["reward"].idxmax(), "key"]
    assert (run / "best" / "trial.json").read_text().count(best) == 1
    assert torch.load(run / "best" / "model.pt", weights_only=True)
    audit = tmp_path / "audit.log"
    # no worker wrote under the user's directory, nor reached beyond the loopback
    assert not audit.exists(), audit.read_text()
