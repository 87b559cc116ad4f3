"""Ray for one search: started so that no traffic leaves the machine, and recorded in the run
directory so that the next start cleans up after a search killed with SIGKILL.

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

After `kill -9` of a search, Ray's agents (children of the raylet, not bound to the command's
life) live on for minutes and its temp dir forever. `ray.json` in the run directory names the
temp dir and the command's process; the next search on that directory (`--resume`) stops the
Ray processes that still hold files in that temp dir (read from /proc; elsewhere only the
directory is removed) and removes the directory, unless that search is still running.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import signal
import tempfile
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from nas.run_dir import RunDir, write_json
from search_spaces.errors import UserError

#: where Ray's own HTTP requests go: a loopback port, so none of them leaves the machine
LOOPBACK_PROXY = "http://127.0.0.1:9"
LOOPBACK_NAMES = "localhost,127.0.0.1,::1"
#: Ray's files of a local search: a short path, since Ray's socket paths must stay short
TEMP_ROOT, TEMP_PREFIX = "/tmp", "nasray-"


def ray_process_env(local: bool) -> dict[str, str]:
    """Environment for the Ray processes of a search; `local`: a single-node run on this machine."""
    env = {"RAY_USAGE_STATS_ENABLED": "0",
           **dict.fromkeys(("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"), LOOPBACK_PROXY),
           **dict.fromkeys(("no_proxy", "NO_PROXY"), LOOPBACK_NAMES)}
    if local:
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    return env


def _start_time(pid: int) -> str | None:
    """The process's start time (field 22 of /proc/<pid>/stat): with the pid, it names one process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # fields after the command name, which may hold spaces


def leftover_processes(temp_dir: str) -> list[int]:
    """Ray's processes that hold a file in `temp_dir`: a Ray program, or one Ray has renamed `ray::...`."""
    ray_dir = importlib.util.find_spec("ray").submodule_search_locations[0].encode()  # without importing ray
    inside = temp_dir.rstrip("/") + "/"
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if not (argv[0].startswith(b"ray::") or any(a.startswith(ray_dir) for a in argv)):
                continue
            if any(os.readlink(fd).startswith(inside) for fd in (proc / "fd").iterdir()):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to inspect
            continue
    return found


@dataclass(frozen=True)
class RaySessionRecord:
    """What a search's Ray leaves on this machine if the search is killed."""
    temp_dir: str
    pid: int  # the search command
    started: str | None  # its start time, so that a reused pid is not taken for it

    FILE = "ray.json"

    @classmethod
    def load(cls, run: RunDir) -> RaySessionRecord | None:
        f = run / cls.FILE
        if not f.exists():
            return None
        try:
            record = cls(**json.loads(f.read_text()))
        except (ValueError, TypeError) as e:
            raise UserError(f"{f} is damaged ({e}); stop any Ray process of that search, then delete it") from None
        # the directory is deleted on clean-up: never one that a search did not create
        if Path(record.temp_dir).parent != Path(TEMP_ROOT) or not Path(record.temp_dir).name.startswith(TEMP_PREFIX):
            raise UserError(f"{f} names {record.temp_dir!r}, not a search's Ray directory; delete {f}")
        return record

    def save(self, run: RunDir) -> None:
        write_json(run / self.FILE, asdict(self))

    def clean_up(self, run: RunDir) -> None:
        """Stop the Ray processes this session left and remove its temp dir and the record."""
        if self.started is not None and _start_time(self.pid) == self.started:
            raise UserError(f"{run.path} is in use by a running search (pid {self.pid})")
        for pid in leftover_processes(self.temp_dir):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        (run / self.FILE).unlink(missing_ok=True)


@contextmanager
def _environ(values: dict[str, str]):
    """Set `values` in the environment for the block, then put back what was there."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def ray_session(run: RunDir, address: str | None, num_cpus: int):
    """Start a local Ray (files under a short temp dir) or attach to `address`; always shut down.
    First clean up what a killed search on `run` left. The environment is changed for the
    session only (Ray's processes keep what they inherited)."""
    env = ray_process_env(local=not address) | {
        "RAY_AIR_NEW_OUTPUT": os.environ.get("RAY_AIR_NEW_OUTPUT", "0"),  # the legacy reporter honours verbose=0
        # Ray nices its workers to 15; here the trials are the command's main work, and niced
        # they would starve behind any other process on a shared machine
        "RAY_worker_niceness": os.environ.get("RAY_worker_niceness", "0"),
        # OpenMP threads that spin while waiting run ~10x slower when other jobs share the cores
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
    }
    left = RaySessionRecord.load(run)
    if left is not None:
        left.clean_up(run)
    tmp = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=TEMP_ROOT)
    record = RaySessionRecord(tmp, os.getpid(), _start_time(os.getpid()))
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    with _environ(env):
        import ray  # after the environment: ray reads the loopback flag at import

        try:
            record.save(run)
            if address:
                ray.init(address=address, **quiet)
            else:
                ray.init(num_cpus=num_cpus, _temp_dir=tmp, _node_ip_address="127.0.0.1",
                         include_dashboard=False, **quiet)
            yield tmp
        finally:
            ray.shutdown()
            shutil.rmtree(tmp, ignore_errors=True)
            (run / record.FILE).unlink(missing_ok=True)
