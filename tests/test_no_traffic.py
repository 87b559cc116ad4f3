"""A search reaches no address but the loopback, in any of its processes (issue 15, item 8).

Every Python process of the run (the command, Ray's dashboard, agents and workers) loads
tests/process_audit/sitecustomize.py, which logs each connection or name lookup that leaves
the loopback and each socket bound to another address. Where strace is installed and may
trace, it also watches the processes Ray runs that are not Python (GCS, raylet). The search
gets none of Ray's or the proxy settings of the test session: it must set them itself."""
import ipaddress
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
TINY = ["--evaluator", "train", "--steps", "1", "--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--quiet"]
# strace's rendering of an IPv4 or IPv6 socket address
INET_ADDRESS = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6?, "([^"]+)"')


def strace(log: Path) -> list[str]:
    """The strace prefix, if strace is installed and allowed to trace here; else nothing."""
    if shutil.which("strace") is None:
        return []
    if subprocess.run(["strace", "-f", "-o", os.devnull, "true"], capture_output=True).returncode != 0:
        return []
    return ["strace", "-f", "-qq", "-e", "trace=connect,bind,sendto,sendmsg", "-e", "signal=none", "-o", str(log)]


def loopback(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    return (getattr(ip, "ipv4_mapped", None) or ip).is_loopback


def non_loopback(strace_log: str) -> set[str]:
    addresses = {a or b for a, b in INET_ADDRESS.findall(strace_log)}
    return {a for a in addresses if not loopback(a)}


@pytest.mark.timeout(500)
def test_a_search_reaches_nothing_but_the_loopback(tmp_path):
    audit, trace = tmp_path / "audit.log", tmp_path / "strace.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_") and not k.lower().endswith("_proxy")}
    env |= {"PYTHONPATH": os.pathsep.join([str(TESTS / "process_audit"), str(TESTS.parent)]), "AUDIT_LOG": str(audit)}
    proc = subprocess.run([*strace(trace), sys.executable, "-m", "nas.cli", "search", "--out", str(tmp_path / "run"),
                           "--trials", "1", "--controller", "random", *TINY],
                          env=env, capture_output=True, text=True, timeout=450)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "run" / "best" / "model.pt").exists()
    assert not audit.exists(), audit.read_text()
    if trace.exists():
        assert not non_loopback(trace.read_text())
