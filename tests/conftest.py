"""Suite-wide settings."""
import os

# Every Ray process the tests start (head, worker nodes, drivers) binds to 127.0.0.1: with
# this flag off, Ray's node-address lookup returns the loopback address instead of the
# machine's network address. Set before anything imports ray, since ray reads it at import.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
# One thread everywhere (this process, subprocesses, Ray workers): on a 2-core machine an
# OpenMP team of 2 slows down 30x or more as soon as any other process wants a core.
os.environ["OMP_NUM_THREADS"] = "1"
# No usage reporting. (Ray's dashboard still probes cloud metadata addresses with it off:
# nas/ray_session.py's environment stops that, and tests/test_no_traffic.py checks it.)
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"

import torch  # noqa: E402

torch.set_num_threads(1)

import pytest  # noqa: E402


@pytest.fixture
def killed_after_one_epoch(monkeypatch):
    """Runs `nas ARGV` killed (KeyboardInterrupt) right after its supernet's first epoch is saved,
    as a kill between epochs would; returns its exit code. Saving is normal again afterwards."""
    from nas.cli import main
    from nas.supernet.directory import SupernetDir

    save = SupernetDir.save_state

    def save_then_die(self, state, history):
        save(self, state, history)
        raise KeyboardInterrupt

    def run(argv) -> int:
        monkeypatch.setattr(SupernetDir, "save_state", save_then_die)
        try:
            return main(argv)
        finally:
            monkeypatch.setattr(SupernetDir, "save_state", save)
    return run
