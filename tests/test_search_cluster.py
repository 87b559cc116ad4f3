"""`nas search --address`: a two-node Ray cluster started on this machine shares the trials."""
import shutil
import tempfile

import pandas as pd
import pytest

from nas.cli import main
from nas.ray_session import ray_process_env

TINY = ["--steps", "1", "--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--quiet"]


@pytest.fixture
def two_node_cluster(monkeypatch):
    from ray.cluster_utils import Cluster

    tmp = tempfile.mkdtemp(prefix="nasclu-", dir="/tmp")  # Ray's socket paths must stay short
    monkeypatch.setenv("RAY_TMPDIR", tmp)  # all of Ray's files, the cluster address file included
    for name, value in ray_process_env(local=True).items():  # what `nas search` gives its own Ray
        monkeypatch.setenv(name, value)
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
def test_search_spreads_over_both_nodes(two_node_cluster, tmp_path):
    run = tmp_path / "run"
    assert main(["search", "--address", two_node_cluster.address, "--workers", "2", "--trials", "4",
                 "--controller", "random", "--out", str(run), *TINY]) == 0
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 4 and (trials["status"] == "ok").all()
    assert trials["node"].nunique() == 2, trials["node"].tolist()
