"""Ray for one search: started so that no traffic leaves the machine.

What Ray does on its own, found in its source (ray 2.60), and what stops it:
- usage statistics: `RAY_USAGE_STATS_ENABLED=0`.
- the dashboard process starts on every head node, with `include_dashboard=False` too, and there
  runs its usage module (`UsageStatsHead`) whatever the setting above: it asks the cloud metadata
  servers (169.254.169.254, metadata.google.internal) which cloud it is on, and on a cluster not
  started by `ray.init` it posts a "disabled" notice to usage-stats.ray.io. No setting turns this
  off; both go through `requests`, which honours the proxy variables, so Ray's processes get a
  proxy on the loopback address (the discard port) and reach nothing else; the loopback itself is
  exempt (`no_proxy`). Ray's gRPC ignores proxy variables (`RAY_grpc_enable_http_proxy` is off).
- TPU detection asks GCE metadata through `requests` too (only where TPU devices exist): covered.
- the node address: Ray finds it by routing towards a public address and binds its servers to
  all interfaces; `RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0` (read when `ray` is imported, and by every
  Ray process at its start) makes a local run use and bind 127.0.0.1 only.
Every Ray process inherits these from the process that starts it (`ray.init` here, `ray start`
or `ray.cluster_utils.Cluster` for a cluster): `ray_process_env` is the one list of them.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from unittest import mock

#: where Ray's own HTTP requests go: a loopback port, so none of them leaves the machine
LOOPBACK_PROXY = "http://127.0.0.1:9"
LOOPBACK_NAMES = "localhost,127.0.0.1,::1"


def ray_process_env(local: bool) -> dict[str, str]:
    """Environment for the Ray processes of a search; `local`: a single-node run on this machine."""
    env = {"RAY_USAGE_STATS_ENABLED": "0"}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = LOOPBACK_PROXY
    for name in ("no_proxy", "NO_PROXY"):
        env[name] = LOOPBACK_NAMES
    if local:
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


@contextmanager
def ray_session(address: str | None, num_cpus: int):
    """Start a local Ray (files under a short temp dir) or attach to `address`; always shut down.
    The environment is changed for the session only (Ray's processes keep what they inherited)."""
    env = ray_process_env(local=not address) | {
        "RAY_AIR_NEW_OUTPUT": os.environ.get("RAY_AIR_NEW_OUTPUT", "0"),  # the legacy reporter honours verbose=0
        # Ray nices its workers to 15; here the trials are the command's main work, and niced
        # they would starve behind any other process on a shared machine
        "RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0"),
        # OpenMP threads that spin while waiting run ~10x slower when other jobs share the cores
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }
    tmp = tempfile.mkdtemp(prefix="nasray-", dir="/tmp")
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    with mock.patch.dict(os.environ, env):
        import ray  # after the environment: ray reads the loopback flag at import

        try:
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(num_cpus=num_cpus, _temp_dir=tmp, _node_ip_address="127.0.0.1",
                         include_dashboard=False, **quiet)
            yield tmp
        finally:
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
