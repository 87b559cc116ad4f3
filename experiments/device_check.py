"""GPU device check: one prepared script for the few minutes a borrowed CUDA machine may be lent.

Within a global time limit (default 540 s) it runs, each step as a subprocess with its own timeout
and log: the decoding of the carried compact CIFAR-10, the CUDA-only tests, the training-throughput
benchmark (`experiments/train_throughput.py`: 1, 4 and 8 candidates sharing the GPU), a 4-trial
`nas search` on CIFAR-10 with `--workers 4 --gpus-per-trial 0.25` where Ray is installed, the same
four candidates without Ray (four plain-torch processes sharing the GPU, `nas.evaluation`), and one
`nas supernet train` epoch on CIFAR-10. Every step ends as ok, failed, skipped (with its reason: a
package that is not installed, no time left, ...) or timeout; the figures go to
`<results>/device_check_<device>.{csv,md}` (the device named as torch names it), with the benchmark's
own tables beside them and each step's log in `device_check_<device>_logs/`. Files are written
after every step, atomically, so a check killed from outside still leaves what it measured.

    python experiments/device_check.py --prepare          # here: copy what the device machine needs
    PYTHONPATH=. python experiments/device_check.py --results "$OUT"   # there, with shared_carry/
    python experiments/device_check.py --dry-run --results /tmp/dc     # this CPU, tiny settings

`--prepare` copies into the ignored folder `shared_carry/` the compact CIFAR-10
(`../shared/data/cifar10_compact/`, 40 MB of JPEG mosaics, decoded on the device), the pure-Python
packages the steps use that a bare torch machine may lack (pytest and its dependencies, tqdm: each
is put on the path only where the machine does not have it) and scikit-learn's digits as arrays
(the CUDA tests train on digits). Where matplotlib is missing, a stand-in lets the benchmark write
its tables without drawing its figure; where scikit-learn is missing, a stand-in serves the carried
digits. Both are named in the summary. `--dry-run` runs every step with tiny settings on the CPU
(CIFAR-10 when it is found, else scikit-learn's digits); `--emulate-missing ray,tqdm,...` hides
packages from every step, to rehearse the device machine here.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # `python experiments/device_check.py` without PYTHONPATH
    sys.path.insert(0, str(ROOT))

from search_spaces.atomic import atomic_write  # noqa: E402  (stdlib only: the driver never imports torch)

CARRY = ROOT / "shared_carry"
COMPACT_SOURCE = ROOT.parent / "shared" / "data" / "cifar10_compact"
COMPACT_FILES = ("cifar_train.jpg", "cifar_test.jpg", "labels.npz", "decode.py")
#: pure-Python distributions carried to the device (with their top-level modules), each put on the
#: path only where the device cannot import it
CARRIED_DISTS = {"pytest": ("pytest", "_pytest", "py"), "pluggy": ("pluggy",), "iniconfig": ("iniconfig",),
                 "packaging": ("packaging",), "pygments": ("pygments",), "tqdm": ("tqdm",),
                 "pyyaml": ("yaml",)}  # PyYAML's pure-Python form (latency_tables.pixel reads YAML)
#: packages whose absence a step reports as a reason (skipped), not as a failure
OPTIONAL = ("ray", "optuna", "matplotlib", "tqdm", "yaml", "sklearn", "scipy", "PIL", "pytest", "torchvision",
            "pluggy", "iniconfig", "packaging", "pygments")
PROBED = OPTIONAL + ("torch", "numpy", "pandas", "onnx", "onnxruntime")
DEFAULT_LIMIT, DRY_LIMIT = 540.0, 240.0
RESERVE_S = 8.0  # kept back at the end for the summary
STOP_GRACE_S = 8.0  # a step past its time gets SIGINT and this long to stop (a search stops its Ray)
MIN_BUDGET_S = 15.0  # a step gets at least this much while time is left; under 5 s it is skipped
STEPS = {  # name: (share of the time limit, what it measures)
    "data": (0.04, "decode the carried compact CIFAR-10 into the arrays `cifar10:DIR` reads"),
    "cuda_tests": (0.12, "the tests that run only on CUDA (pytest)"),
    "throughput": (0.36, "experiments/train_throughput.py: images/s, one candidate's epoch, 1/4/8 sharing"),
    "search_ray": (0.16, "`nas search` on CIFAR-10, 4 trials, --workers 4 --gpus-per-trial 0.25 (Ray)"),
    "search_plain": (0.10, "the same 4 candidates without Ray: 4 plain-torch processes sharing the device"),
    "supernet": (0.22, "`nas supernet train`: one epoch on CIFAR-10"),
}
SKIP_CODE = 3  # a worker's exit status for "skipped; the reason is in result.json"


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "unknown"


def write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def copy_file(src: Path, dst: Path) -> None:
    atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


#: an absolute path of a machine, as tests/test_relative_paths.py finds them in committed results
MACHINE_PATH = re.compile(r"(?<![\w./-])/(?:work|home|tmp|root)(?![\w.-])(?:/[^\s'\"`,;:()\[\]]*)?")


def _machine_path(match: re.Match) -> str:
    path = match.group()
    if "site-packages/" in path:
        return "<site-packages>/" + path.split("site-packages/", 1)[1]
    parts = path.strip("/").split("/")
    return "<abs>" if len(parts) == 1 else "<abs>/" + parts[-1]


def write_result(out: Path, **doc) -> None:
    """A worker's answer to the driver: status (ok | skipped | failed), reason, figures, files."""
    write_text(out / "result.json", json.dumps(doc, indent=2, default=str))


# ---- preparation, here --------------------------------------------------------------------------
def prepare(carry: Path, compact_source: Path | None) -> int:
    import importlib.metadata

    missing = [f for f in COMPACT_FILES if compact_source and not (compact_source / f).is_file()]
    if missing:
        print(f"device_check: error: compact CIFAR-10 not found in {compact_source} (missing {', '.join(missing)}); "
              "pass --compact-source", file=sys.stderr)
        return 2
    for name in COMPACT_FILES if compact_source else ():
        copy_file(compact_source / name, carry / "cifar10_compact" / name)
    manifest = {"compact_cifar10": str(compact_source) if compact_source else None,
                "python": sys.version.split()[0], "dists": {}}
    for dist_name, tops in CARRIED_DISTS.items():
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            print(f"device_check: {dist_name} is not installed here; not carried", file=sys.stderr)
            continue
        target = carry / "pylib" / dist_name
        shutil.rmtree(target, ignore_errors=True)
        for f in dist.files or []:
            parts = Path(f).parts
            if not parts or parts[0] == ".." or "__pycache__" in parts or f.suffix in (".pyc", ".so", ".pyd"):
                continue
            if parts[0].split(".")[0] not in tops and not parts[0].endswith(".dist-info"):
                continue
            src = Path(dist.locate_file(f))
            if src.is_file():
                (target / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, target / f)
        manifest["dists"][dist_name] = dist.version
    try:
        import numpy as np
        from sklearn.datasets import load_digits

        d = load_digits()
        atomic_write(carry / "digits.npz", lambda tmp: np.savez(
            open(tmp, "wb"), images=d.images.astype("uint8"), target=d.target.astype("int64")))
        manifest["digits"] = "scikit-learn's load_digits() (images 0..16, target)"
    except ImportError as e:
        print(f"device_check: digits not carried ({e})", file=sys.stderr)
    write_text(carry / "MANIFEST.json", json.dumps(manifest, indent=2))
    size = sum(f.stat().st_size for f in carry.rglob("*") if f.is_file())
    parts = (["compact CIFAR-10"] if compact_source else []) + [f"{k} {v}" for k, v in manifest["dists"].items()]
    parts += ["digits"] if "digits" in manifest else []
    print(f"prepared {carry} ({size / 2**20:.1f} MiB): {', '.join(parts)}")
    print(f"on the device machine, carrying {carry.relative_to(ROOT) if carry.is_relative_to(ROOT) else carry}:\n"
          f"    PYTHONPATH=. python experiments/device_check.py --results \"$OUT\"")
    return 0


# ---- the environment every step runs in -----------------------------------------------------------
BLOCKER = '''"""Written by experiments/device_check.py --emulate-missing: hides packages, as on a bare machine."""
import importlib.machinery
import os
import sys

_BLOCKED = set(filter(None, os.environ.get("DEVICE_CHECK_BLOCK", "").split(",")))
_ALLOWED = [p for p in os.environ.get("DEVICE_CHECK_ALLOWED", "").split(os.pathsep) if p]


class _Block:
    def find_spec(self, name, path=None, target=None):
        if path is not None or name.partition(".")[0] not in _BLOCKED:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, _ALLOWED) if _ALLOWED else None
        if spec is None:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return spec


sys.meta_path.insert(0, _Block())
'''

MATPLOTLIB_STUB = {
    "__init__.py": '"""Stand-in written by experiments/device_check.py: matplotlib is not installed on this '
                   'machine, so figures are not drawn (tables are written)."""\nDEVICE_CHECK_STUB = True\n'
                   '__version__ = "0 (device_check stand-in)"\n',
    "figure.py": '''"""A figure that accepts every call and draws nothing (matplotlib is not installed)."""


class Figure:
    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        return lambda *args, **kwargs: Figure()

    def __iter__(self):
        return iter(())

    def savefig(self, *args, **kwargs):
        print("device_check: matplotlib stand-in: figure not drawn", flush=True)
''',
}

SKLEARN_STUB = {
    "__init__.py": '"""Stand-in written by experiments/device_check.py: scikit-learn is not installed on this '
                   'machine; only datasets.load_digits, from the carried copy."""\n__version__ = "0 (stand-in)"\n',
    "datasets.py": '''import os
from types import SimpleNamespace

import numpy as np


def load_digits():
    """scikit-learn's digits from shared_carry/digits.npz (written by `device_check.py --prepare`)."""
    d = np.load(os.environ["DEVICE_CHECK_DIGITS"])
    images = d["images"].astype(np.float64)
    return SimpleNamespace(images=images, data=images.reshape(len(images), -1), target=d["target"])
''',
}

SCIPY_STUB = {
    "__init__.py": '"""Stand-in written by experiments/device_check.py: scipy is not installed on this machine. '
                   'Modules that import it at load (latency_tables.model) load; calling it raises."""\n'
                   '__version__ = "0 (device_check stand-in)"\n',
    "optimize.py": 'def nnls(*args, **kwargs):\n    raise ModuleNotFoundError("No module named \'scipy\' (device_check '
                   'stand-in: nnls is not available)", name="scipy")\n',
    "stats.py": 'def kendalltau(*args, **kwargs):\n    raise ModuleNotFoundError("No module named \'scipy\' '
                '(device_check stand-in: kendalltau is not available)", name="scipy")\n',
}

PROBE = """import importlib.util, json, os, platform, sys
found = {}
for name in sys.argv[1].split(","):
    try:
        spec = importlib.util.find_spec(name)
        found[name] = spec.origin or str(spec.submodule_search_locations) if spec else None
    except Exception:
        found[name] = None
info = {"python": platform.python_version(), "executable": sys.executable, "cpus": os.cpu_count(), "packages": found}
try:
    import torch
    info.update(torch=torch.__version__, cuda_build=torch.version.cuda, cuda=torch.cuda.is_available())
    if info["cuda"]:
        p = torch.cuda.get_device_properties(0)
        info.update(device_name=torch.cuda.get_device_name(0), device_count=torch.cuda.device_count(),
                    memory_gib=round(p.total_memory / 2**30, 1), capability=f"{p.major}.{p.minor}",
                    bf16=torch.cuda.is_bf16_supported())
except Exception as e:
    info.update(torch=None, cuda=False, torch_error=f"{type(e).__name__}: {e}")
print(json.dumps(info))
"""


class Env:
    """PYTHONPATH and variables for every step: the repo, carried packages the machine lacks, the
    stand-ins, and (rehearsal only) the blocker of --emulate-missing."""

    def __init__(self, work: Path, carry: Path, block: list[str], dry: bool):
        self.work, self.carry, self.block, self.dry = work, carry, block, dry
        self.notes: list[str] = []
        self.digits = carry / "digits.npz"
        self.paths = [str(ROOT)]
        self.allowed: list[str] = []
        if block:
            blocker = work / "blocker"
            write_text(blocker / "sitecustomize.py", BLOCKER)
            self.paths.insert(0, str(blocker))
            self.notes.append(f"rehearsal: packages hidden from every step (--emulate-missing): {', '.join(block)}")
        self.info = self.probe()
        have = self.info["packages"]
        for dist, tops in CARRIED_DISTS.items():
            where = carry / "pylib" / dist
            if not have.get(tops[0]) and where.is_dir():
                self.add(where)
                self.notes.append(f"{dist}: not installed here, the copy carried in {where}")
        self.stubs: list[str] = []
        if not have.get("matplotlib"):
            self.add(self.stub("matplotlib", MATPLOTLIB_STUB))
            self.stubs.append("matplotlib")
            self.notes.append("matplotlib: not installed; a stand-in lets the benchmark write its tables (no PNG)")
        if not have.get("scipy"):
            self.add(self.stub("scipy", SCIPY_STUB))
            self.stubs.append("scipy")
            self.notes.append("scipy: not installed; a stand-in lets latency_tables import (its nnls and kendalltau, "
                              "used only to fit and validate tables, raise)")
        if not have.get("sklearn") and self.digits.is_file():
            self.add(self.stub("sklearn", SKLEARN_STUB))
            self.stubs.append("sklearn")
            self.notes.append(f"scikit-learn: not installed; a stand-in serves the carried digits ({self.digits.name})")
        if self.allowed:
            self.info = self.probe()  # what the steps see

    def stub(self, package: str, files: dict) -> Path:
        where = self.work / "stubs" / package
        for name, text in files.items():
            write_text(where / package / name, text)
        return where

    def add(self, path: Path) -> None:
        self.paths.append(str(path))
        self.allowed.append(str(path))

    def environ(self) -> dict:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(self.paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["DEVICE_CHECK_BLOCK"] = ",".join(self.block)
        env["DEVICE_CHECK_ALLOWED"] = os.pathsep.join(self.allowed)
        env["DEVICE_CHECK_DIGITS"] = str(self.digits)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        env["RAY_USAGE_STATS_ENABLED"] = "0"
        if self.dry:
            env["OMP_NUM_THREADS"] = "1"  # a shared 2-core machine: no OpenMP teams
        return env

    def probe(self) -> dict:
        done = subprocess.run([sys.executable, "-c", PROBE, ",".join(PROBED)], capture_output=True, text=True,
                              env=self.environ(), timeout=120)
        if done.returncode:
            raise SystemExit(f"device_check: cannot probe this machine: {done.stderr.strip()[-500:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def has(self, package: str) -> bool:
        return bool(self.info["packages"].get(package))


# ---- running one step -------------------------------------------------------------------------------
class Stop(Exception):
    """SIGTERM / SIGINT to the check itself."""


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def run_process(argv: list[str], log: Path, timeout: float, env: dict) -> tuple[int | None, float]:
    """Run `argv` in its own process group with its output to `log`; (exit status, or None when it did
    not end in time; seconds). STOP_GRACE_S before `timeout` (or on Stop) the group gets SIGINT (a
    search stops its Ray cleanly), then SIGKILL."""
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with open(log, "ab") as out:
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        try:  # stopped early enough that its SIGINT grace still ends within `timeout`
            rc = proc.wait(timeout=timeout - STOP_GRACE_S if timeout > 2 * STOP_GRACE_S else timeout / 2)
        except (subprocess.TimeoutExpired, Stop) as e:
            _stop_group(proc)
            if isinstance(e, Stop):
                raise
            rc = None
    return rc, time.monotonic() - start


def _stop_group(proc: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGINT, STOP_GRACE_S), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            if sig == signal.SIGINT:  # the leader is gone; its helpers may not be
                os.killpg(proc.pid, signal.SIGKILL)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def missing_package(log: Path) -> str | None:
    """The optional package whose ImportError ended a step, from its log."""
    text = log.read_text(errors="replace") if log.is_file() else ""
    for name in reversed(re.findall(r"No module named '([\w.]+)'", text)):
        if name.split(".")[0] in OPTIONAL:
            return name.split(".")[0]
    return None


def last_line(log: Path) -> str:
    text = log.read_text(errors="replace") if log.is_file() else ""
    lines = [line.strip() for line in re.split(r"[\r\n]", text) if line.strip()]
    return lines[-1][:300] if lines else "no output"


class Check:
    def __init__(self, a):
        self.a, self.dry = a, a.dry_run
        self.start_wall = datetime.now(timezone.utc)
        self.start = time.monotonic()
        self.deadline = self.start + a.time_limit
        self.results = Path(a.results).resolve()
        self.work = Path(tempfile.mkdtemp(prefix="device_check-"))
        try:
            self.env = Env(self.work, Path(a.carry).resolve(),
                           [p for p in (a.emulate_missing or "").split(",") if p], self.dry)
        except BaseException:
            shutil.rmtree(self.work, ignore_errors=True)
            raise
        info = self.env.info
        self.cuda = bool(info.get("cuda"))
        self.device = info.get("device_name") if self.cuda else ("cpu-dry-run" if self.dry else "cpu")
        self.slug = slug(self.device)
        self.logs = self.results / f"device_check_{self.slug}_logs"
        self.data_dir: Path | None = None
        self.data_source = "none"
        self.rows: list[dict] = []
        self.figures: dict[str, str] = {}
        self.selected = [s.strip() for s in a.steps.split(",")] if a.steps else list(STEPS)
        unknown = set(self.selected) - set(STEPS)
        if unknown:
            raise SystemExit(f"device_check: unknown step(s) {', '.join(sorted(unknown))}: {', '.join(STEPS)}")

    # -- bookkeeping
    def remaining(self) -> float:
        return self.deadline - time.monotonic() - RESERVE_S

    def budget(self, name: str, pending: list[str]) -> float:
        """The step's share of the time left (shares of the steps still to run), at least MIN_BUDGET_S."""
        weights = {s: STEPS[s][0] for s in pending}
        left = self.remaining()
        return min(left, max(left * weights[name] / sum(weights.values()), MIN_BUDGET_S))

    def scrub(self, text: str) -> str:
        """`text` without this machine's paths: results are read elsewhere (tests/test_relative_paths.py)."""
        names = [(self.data_dir, "$DATA"), (self.work, "$TMP"), (Path(sys.executable), "python"),
                 (self.env.carry, "$CARRY" if not self.env.carry.is_relative_to(ROOT) else None),
                 (self.results, "$RESULTS" if not self.results.is_relative_to(ROOT) else None),
                 (ROOT, "."), (ROOT.parent, "..")]
        for path, name in names:
            if path is not None and name is not None:
                text = text.replace(f"{path}/", "" if name == "." else f"{name}/")
                text = re.sub(re.escape(str(path)) + r"(?![\w.-])", lambda m, name=name: name, text)
        return MACHINE_PATH.sub(_machine_path, text)

    def publish(self, src: Path, dst: Path) -> None:
        """A file into the results, its text without this machine's paths."""
        data = src.read_bytes()
        if b"\0" in data:
            copy_file(src, dst)
        else:
            write_text(dst, self.scrub(data.decode("utf-8", errors="replace")))

    def record(self, step: str, status: str, seconds: float, budget: float, reason: str = "", figures: str = "",
               command: str = "", log: str = "") -> None:
        reason, figures, command = self.scrub(reason), self.scrub(figures), self.scrub(command)
        row = {"device": self.device, "step": step, "status": status, "seconds": round(seconds, 1),
               "budget_s": round(budget, 1), "reason": reason, "figures": figures, "command": command, "log": log}
        if log and (self.logs / log).is_file():  # written as the step ran; now without this machine's paths
            self.publish(self.logs / log, self.logs / log)
        self.rows.append(row)
        print(f"[{step}] {status} in {seconds:.1f} s (budget {budget:.0f} s)" + (f": {reason}" if reason else "")
              + (f"\n    {figures}" if figures else ""), flush=True)
        self.write_summary()

    def py(self, *args) -> list[str]:
        return [sys.executable, *map(str, args)]

    def nas(self, *args) -> list[str]:
        """`nas ARGS`: shown as `python -m nas.cli ARGS`, run through the worker that leaves out the command
        groups that cannot import here (see worker_nas)."""
        return self.me("_worker", "nas", *args)

    def me(self, *args) -> list[str]:
        return self.py(Path(__file__).resolve(), *args)

    def shown(self, argv: list[str]) -> str:
        """A command as someone reruns it: python, repo-relative paths, $DATA for the decoded arrays, $TMP."""
        argv = [str(a) for a in argv]
        if argv[1:4] == [str(Path(__file__).resolve()), "_worker", "nas"]:
            argv = [argv[0], "-m", "nas.cli", *argv[4:]]
        return self.scrub(shlex.join(["python", *argv[1:]]))

    def run_step(self, name: str, argv: list[str], budget: float, out: Path | None = None):
        """(status, reason, seconds, log) of one subprocess; a worker's result.json refines ok/skipped."""
        log = self.logs / f"{name}.log"
        rc, seconds = run_process(argv, log, budget, self.env.environ())
        doc = json.loads((out / "result.json").read_text()) if out and (out / "result.json").is_file() else {}
        if rc is None:
            return "timeout", f"ran past its {budget:.0f} s budget: {last_line(log)}", seconds, log, doc
        if rc == 0:
            return doc.get("status", "ok"), doc.get("reason", ""), seconds, log, doc
        if rc == SKIP_CODE and doc.get("status") == "skipped":
            return "skipped", doc.get("reason", ""), seconds, log, doc
        package = missing_package(log)
        if package:
            return "skipped", f"needs {package}, which is not installed on this machine", seconds, log, doc
        return "failed", f"exit {rc}: {last_line(log)}", seconds, log, doc

    # -- the run
    def run(self) -> int:
        self.logs.mkdir(parents=True, exist_ok=True)
        print(f"device check on {self.device} ({'dry run, ' if self.dry else ''}limit {self.a.time_limit:.0f} s); "
              f"results in {self.results}", flush=True)
        for note in self.env.notes:
            print(f"  {note}", flush=True)
        preskip = self.preskip()
        pending = [s for s in STEPS if s not in preskip]
        self.current, self.current_start = None, time.monotonic()
        try:
            for name in STEPS:
                self.current, self.current_start = name, time.monotonic()
                if name in preskip:
                    self.record(name, "skipped", 0, 0, preskip[name])
                    continue
                budget = self.budget(name, pending)
                pending.remove(name)
                if budget < 5:
                    self.record(name, "skipped", 0, max(budget, 0), "no time left before the check's own limit "
                                f"({self.a.time_limit:.0f} s)")
                    continue
                getattr(self, f"step_{name}")(budget)
        except Stop as e:
            done = {r["step"] for r in self.rows}
            for name in STEPS:
                if name not in done:
                    now = name == self.current
                    self.record(name, "timeout" if now else "skipped",
                                time.monotonic() - self.current_start if now else 0, 0,
                                f"the check itself was stopped ({e})")
            return 143
        finally:
            shutil.rmtree(self.work, ignore_errors=True)
        total = time.monotonic() - self.start
        print(f"device check finished in {total:.1f} s: {self.results / f'device_check_{self.slug}.md'}")
        return 0

    def preskip(self) -> dict:
        """Steps known to be skipped before anything runs (their time goes to the others)."""
        skip = {name: "not selected (--steps)" for name in STEPS if name not in self.selected}
        lacking = [p for p in ("ray", "optuna") if not self.env.has(p)]
        if "search_ray" not in skip and lacking:
            skip["search_ray"] = f"needs {' and '.join(lacking)} (nas.controllers imports optuna), not installed on " \
                                 "this machine; search_plain trains the same kind of candidates with plain torch"
        if "supernet" not in skip and not self.env.has("tqdm"):
            skip["supernet"] = "needs tqdm (nas.supernet.training imports it), not installed and not carried " \
                               "(run --prepare)"
        return skip

    def need_data(self, name: str, budget: float) -> bool:
        if self.data_dir is None:
            self.record(name, "skipped", 0, budget, "no training data (the data step did not produce any)")
            return False
        return True

    # -- steps
    def step_data(self, budget: float) -> None:
        out = self.work / "data"
        out.mkdir(parents=True)
        candidates = [self.env.carry / "cifar10_compact", COMPACT_SOURCE]
        compact = next((c for c in candidates if (c / "decode.py").is_file() and (c / "cifar_train.jpg").is_file()),
                       None)
        tries = []
        if compact is not None:
            tries.append((f"CIFAR-10 decoded from {compact} (decode.py)", self.py(compact / "decode.py", out)))
            tries.append((f"CIFAR-10 decoded from {compact} (torchvision)",
                          self.me("_worker", "decode-torchvision", compact, out)))
        if self.dry:
            tries.append(("scikit-learn's digits at 32x32 in the CIFAR-10 layout (CIFAR-10 not available)",
                          self.me("_worker", "digits", out)))
        tries.append(("random pixels in CIFAR-10's layout and size (CIFAR-10 could not be decoded): images/s and "
                      "seconds hold, accuracies mean nothing", self.me("_worker", "synthetic", out,
                                                                       "--small" if self.dry else "--full")))
        end = time.monotonic() + budget
        reasons, total = [], 0.0
        for what, argv in tries:
            status, reason, seconds, log, doc = self.run_step("data", argv, max(end - time.monotonic(), 1))
            total += seconds
            if status == "ok" and (out / "cifar10_train.npz").is_file() and (out / "cifar10_test.npz").is_file():
                self.data_dir, self.data_source = out, what.replace(str(ROOT) + "/", "")
                note = "; ".join(reasons)
                figures = f"{self.data_source}; {doc.get('figures', '')}".strip("; ")
                self.record("data", "ok", total, budget, f"fell back after: {note}" if note else "", figures,
                            self.shown(argv), log.name)
                return
            reasons.append(reason)
            if status == "timeout":
                break
        self.record("data", "failed", total, budget, " | ".join(reasons), command="", log="data.log")

    def step_cuda_tests(self, budget: float) -> None:
        out = self.work / "cuda_tests"
        out.mkdir()
        argv = self.me("_worker", "cuda-tests", out)
        status, reason, seconds, log, doc = self.run_step("cuda_tests", argv, budget, out)
        self.record("cuda_tests", status, seconds, budget, reason, doc.get("figures", ""),
                    doc.get("command") or self.shown(argv), log.name)

    def step_throughput(self, budget: float) -> None:
        if not self.need_data("throughput", budget):
            return
        out = self.work / "throughput"
        out.mkdir()
        if self.dry:
            args = ["--device", "cpu", "--threads", "1", "--batch-size", "16", "--cpu-steps", "1", "--warmup", "1",
                    "--cpu-subset", "32", "--gpu-steps", "1"]
        else:  # the CPU rows only as a reference point: one step, a few hundred images
            threads = max(1, min(8, (self.env.info.get("cpus") or 1)))
            args = ["--device", "auto", "--threads", str(threads), "--cpu-steps", "1", "--cpu-subset", "256"]
        args = ["--data-dir", str(self.data_dir), *args]
        argv = self.me("_worker", "throughput", out, *args)
        status, reason, seconds, log, doc = self.run_step("throughput", argv, budget, out)
        figures, copied = [], []
        for suffix in ("csv", "md", "png"):
            src = out / f"train_throughput.{suffix}"
            if src.is_file():
                dst = self.results / f"train_throughput_{self.slug}.{suffix}"
                self.publish(src, dst)
                copied.append(dst.name)
        table = out / "train_throughput.csv"
        if table.is_file():
            for row in csv.DictReader(table.open()):
                if row.get("images_per_s"):
                    figures.append(f"{row['device']} {row['what']} {row['model']} x{row['candidates']}: "
                                   f"{float(row['images_per_s']):,.0f} images/s, {float(row['seconds']):.2f} s"
                                   + (f" ({row['note']})" if row.get("note") else ""))
        else:  # cut short: the rows it printed before the limit
            text = log.read_text(errors="replace")
            figures = [" ".join(m.split()) for m in re.findall(r"^\s*(?:cpu|cuda\S*)\s+.*images/s.*$", text, re.M)]
        if copied:
            figures.append("files: " + ", ".join(copied))
        self.record("throughput", status, seconds, budget, reason, "; ".join(figures),
                    self.shown(self.py(HERE / "train_throughput.py", *args)), log.name)

    def search_settings(self) -> list[str]:
        if self.dry:
            return ["--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--steps", "1"]
        return []  # the CIFAR-10 proxy defaults of `nas search` (5,000 images, 16x16, 2 epochs)

    def step_search_ray(self, budget: float) -> None:
        if not self.need_data("search_ray", budget):
            return
        run_dir = self.work / "search_run"
        argv = self.nas("search", "--space", "mnv3", "--target", "pixel_cpu", "--evaluator", "train",
                        "--data", f"cifar10:{self.data_dir}", "--trials", 2 if self.dry else 4, "--quiet",
                        "--out", run_dir,
                        *(["--device", "cpu", "--workers", "2", "--cpus-per-trial", "1"] if self.dry else
                         ["--device", "auto", "--workers", "4", "--gpus-per-trial", "0.25" if self.cuda else "0"]),
                       *self.search_settings())
        status, reason, seconds, log, _ = self.run_step("search_ray", argv, budget)
        if (run_dir / "ray.json").is_file():  # stopped before its own clean-up: Ray's helpers outlive it
            run_process(self.me("_worker", "ray-cleanup", run_dir), log, 60, self.env.environ())
        figures = []
        trials = run_dir / "trials.csv"
        if trials.is_file():
            rows = list(csv.DictReader(trials.open()))
            done = [r for r in rows if r.get("status") == "ok"]
            secs = [float(r["seconds"]) for r in done if r.get("seconds")]
            accs = [float(r["accuracy"]) for r in done if r.get("accuracy")]
            figures.append(f"{len(done)}/{len(rows)} trials ok in {seconds:.0f} s wall"
                           + (f"; seconds per trial {min(secs):.1f}-{max(secs):.1f}" if secs else "")
                           + (f"; validation accuracy {min(accs):.3f}-{max(accs):.3f}" if accs else ""))
            self.publish(trials, self.results / f"search_{self.slug}_trials.csv")
            figures.append(f"files: search_{self.slug}_trials.csv")
            if (run_dir / "summary.md").is_file():
                self.publish(run_dir / "summary.md", self.results / f"search_{self.slug}_summary.md")
                figures[-1] += f", search_{self.slug}_summary.md"
        if status == "ok" and not trials.is_file():
            status, reason = "failed", "the search wrote no trials.csv"
        self.record("search_ray", status, seconds, budget, reason, "; ".join(figures), self.shown(argv), log.name)

    def step_search_plain(self, budget: float) -> None:
        if not self.need_data("search_plain", budget):
            return
        out = self.work / "search_plain"
        out.mkdir()
        threads = 1 if self.dry else max(1, (self.env.info.get("cpus") or 4) // 4)
        argv = self.me("_worker", "search-plain", out, "--data-dir", self.data_dir,
                       "--candidates", 2 if self.dry else 4,
                       "--device", "cpu" if self.dry else "auto", "--threads", threads,
                       *self.search_settings())
        status, reason, seconds, log, doc = self.run_step("search_plain", argv, budget, out)
        figures = doc.get("figures", "")
        if (out / "candidates.csv").is_file():
            self.publish(out / "candidates.csv", self.results / f"search_plain_{self.slug}.csv")
            figures += f"; files: search_plain_{self.slug}.csv"
        self.record("search_plain", status, seconds, budget, reason, figures, self.shown(argv), log.name)

    def step_supernet(self, budget: float) -> None:
        if not self.need_data("supernet", budget):
            return
        sdir = self.work / "supernet"
        argv = self.nas("supernet", "train", "--space", "mnv3", "--data", f"cifar10:{self.data_dir}",
                        "--epochs", "1", "--out", sdir,
                       *(["--device", "cpu", "--train-subset", "64", "--batch-size", "32"] if self.dry
                         else ["--device", "auto"]))
        status, reason, seconds, log, _ = self.run_step("supernet", argv, budget)
        figures = []
        epochs = sdir / "epochs.csv"
        if epochs.is_file():
            for row in csv.DictReader(epochs.open()):
                figures.append(", ".join(f"{k} {float(v):.4g}" if re.fullmatch(r"[-+.\deE]+", v or "x") else
                                         f"{k} {v}" for k, v in row.items()))
            self.publish(epochs, self.results / f"supernet_epoch_{self.slug}.csv")
            figures.append(f"files: supernet_epoch_{self.slug}.csv")
        else:  # cut short: the progress bar's last state says how far it got and how fast
            bars = re.findall(r"supernet:\s*\d+%\|[^|]*\|\s*(\d+)/(\d+) \[([^\]]+)\]", log.read_text(errors="replace"))
            if bars:
                done, total, timing = bars[-1]
                figures.append(f"progress when stopped: {done}/{total} steps [{timing}]")
        if status == "ok" and not epochs.is_file():
            status, reason = "failed", "no epochs.csv after training"
        self.record("supernet", status, seconds, budget, reason, "; ".join(figures), self.shown(argv), log.name)

    # -- the summary
    def write_summary(self) -> None:
        fields = ["device", "step", "status", "seconds", "budget_s", "reason", "figures", "command", "log"]

        def write_csv(tmp: Path) -> None:
            with open(tmp, "w", newline="") as f:
                w = csv.DictWriter(f, fieldnames=fields)
                w.writeheader()
                w.writerows(self.rows)

        atomic_write(self.results / f"device_check_{self.slug}.csv", write_csv)
        info = self.env.info
        hw = (f"{info['device_name']} ({info.get('memory_gib')} GiB, compute capability {info.get('capability')}, "
              f"bf16 {'yes' if info.get('bf16') else 'no'}, {info.get('device_count')} device(s))" if self.cuda
              else "no CUDA device: CPU only" + (" (dry run: tiny settings, checks the code path only)"
                                                 if self.dry else ""))
        command = self.scrub("PYTHONPATH=. python experiments/device_check.py " + " ".join(
            shlex.quote(a) for a in self.a.argv))
        missing = sorted(p for p in OPTIONAL if not info["packages"].get(p))
        md = [f"# Device check: {self.device}", "",
              f"- Device: {hw}",
              f"- Software: Python {info['python']}, torch {info.get('torch')} (CUDA build {info.get('cuda_build')}), "
              f"{info.get('cpus')} CPUs; not importable: {', '.join(missing) or 'none'}",
              f"- Started {self.start_wall:%Y-%m-%d %H:%M:%S} UTC, time limit {self.a.time_limit:.0f} s"
              + (" (dry run)" if self.dry else ""),
              f"- Reproduce: `{command.strip()}` (from the repository root; prepare the carried folder here with "
              "`python experiments/device_check.py --prepare`)",
              f"- Data: {self.scrub(self.data_source)}" + (
                  "; `$DATA` below is the folder of its arrays" + (
                      " (`python shared_carry/cifar10_compact/decode.py $DATA`)" if "decode.py" in self.data_source
                      else "") + ", `$TMP` the check's temporary folder" if self.data_dir else ""),
              *[f"- {self.scrub(note)}" for note in self.env.notes],
              f"- Logs: `{self.logs.name}/`", "",
              "| step | status | seconds | budget s | reason |", "|---|---|---:|---:|---|"]
        if not self.results.is_relative_to(ROOT):
            md.insert(md.index(f"- Logs: `{self.logs.name}/`"), "- `$RESULTS`: the folder these files were written to")
        for r in self.rows:
            md.append(f"| {r['step']} | {r['status']} | {r['seconds']} | {r['budget_s']} | "
                      f"{r['reason'].replace('|', '/')} |")
        md.append("")
        for r in self.rows:
            md += [f"## {r['step']}: {r['status']}", "", STEPS[r["step"]][1] + ".", ""]
            if r["command"]:
                md += ["    " + r["command"], ""]
            if r["figures"]:
                md += [f"- {part}" for part in r["figures"].split("; ")] + [""]
        write_text(self.results / f"device_check_{self.slug}.md", "\n".join(md))


# ---- workers: the parts that run inside a step's subprocess --------------------------------------
def _tiles(m, n: int):
    cols = m.shape[1] // 32
    return m.reshape(m.shape[0] // 32, 32, cols, 32, 3).transpose(0, 2, 1, 3, 4).reshape(-1, 32, 32, 3)[:n]


def worker_decode_torchvision(compact: str, out: str) -> int:
    import numpy as np
    import torchvision.io as tio

    compact, out = Path(compact), Path(out)
    labels = np.load(compact / "labels.npz")
    for split, n in (("train", 50000), ("test", 10000)):
        m = tio.decode_jpeg(tio.read_file(str(compact / f"cifar_{split}.jpg"))).permute(1, 2, 0).numpy()
        np.savez(out / f"cifar10_{split}.npz", **{f"x_{split}": _tiles(m, n), f"y_{split}": labels[f"y_{split}"]})
    write_result(out, status="ok", figures="decoded with torchvision.io")
    return 0


def _save_layout(out: Path, x_tr, y_tr, x_te, y_te, what: str) -> int:
    import numpy as np

    np.savez(out / "cifar10_train.npz", x_train=x_tr, y_train=y_tr)
    np.savez(out / "cifar10_test.npz", x_test=x_te, y_test=y_te)
    write_result(out, status="ok", figures=f"{what}: {len(y_tr)} training and {len(y_te)} test images, 32x32x3")
    return 0


def worker_digits(out: str) -> int:
    import numpy as np

    try:
        from sklearn.datasets import load_digits

        d = load_digits()
        images, target = d.images, d.target
    except ImportError:
        carried = Path(os.environ.get("DEVICE_CHECK_DIGITS", ""))
        if not carried.is_file():
            write_result(Path(out), status="skipped", reason="no scikit-learn and no carried digits.npz")
            return SKIP_CODE
        d = np.load(carried)
        images, target = d["images"], d["target"]
    x = (np.asarray(images, dtype=np.float64) / 16 * 255).round().astype(np.uint8)
    x = x.repeat(4, axis=1).repeat(4, axis=2)[..., None].repeat(3, axis=3)  # 8x8 -> 32x32, grey as RGB
    order = np.random.default_rng(0).permutation(len(x))
    n_test = len(x) // 5
    te, tr = order[:n_test], order[n_test:]
    y = np.asarray(target).astype(np.uint8)
    return _save_layout(Path(out), x[tr], y[tr], x[te], y[te], "digits")


def worker_synthetic(out: str, size: str) -> int:
    import numpy as np

    rng = np.random.default_rng(0)
    n_tr, n_te = (50000, 10000) if size == "--full" else (2000, 500)
    return _save_layout(Path(out), rng.integers(0, 256, (n_tr, 32, 32, 3), dtype=np.uint8),
                        rng.integers(0, 10, n_tr).astype(np.uint8),
                        rng.integers(0, 256, (n_te, 32, 32, 3), dtype=np.uint8),
                        rng.integers(0, 10, n_te).astype(np.uint8), "random pixels")


def cuda_test_files() -> list[str]:
    """Test files holding a CUDA skip marker (`pytest.mark.skipif(not CUDA, ...)`)."""
    marker = re.compile(r"skipif\([^\n]*cuda", re.I)
    return sorted(str(p.relative_to(ROOT)) for p in (ROOT / "tests").glob("test_*.py") if marker.search(p.read_text()))


class _OnlyCudaTests:
    """pytest plugin: keeps the tests that a machine without CUDA skips, i.e. those with a skipif whose
    reason names CUDA and whose condition is `not torch.cuda.is_available()`."""

    def __init__(self, cuda: bool):
        self.cuda, self.kept, self.outcomes, self.skips = cuda, [], {}, []

    def needs_cuda(self, item) -> bool:
        for mark in item.iter_markers("skipif"):
            cond = mark.args[0] if mark.args else mark.kwargs.get("condition")
            if "cuda" in str(mark.kwargs.get("reason", "")).lower() and isinstance(cond, bool) and cond == (
                    not self.cuda):
                return True
        return False

    def pytest_collection_modifyitems(self, session, config, items):
        keep = [i for i in items if self.needs_cuda(i)]
        drop = [i for i in items if not self.needs_cuda(i)]
        items[:] = keep
        if drop:
            config.hook.pytest_deselected(items=drop)
        self.kept = [i.nodeid for i in keep]

    def pytest_runtest_logreport(self, report):
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            self.outcomes[report.nodeid] = report.outcome
            if report.outcome == "skipped" and isinstance(report.longrepr, tuple):
                self.skips.append(str(report.longrepr[2]).removeprefix("Skipped: "))


def worker_cuda_tests(out: str) -> int:
    out = Path(out)
    try:
        import pytest
    except ImportError as e:
        write_result(out, status="skipped", reason=f"pytest does not import here ({e}); run --prepare to carry it")
        return SKIP_CODE
    import torch

    files = cuda_test_files()
    if not files:
        write_result(out, status="skipped", reason="no test file has a CUDA skip marker")
        return SKIP_CODE
    plugin = _OnlyCudaTests(torch.cuda.is_available())
    rc = pytest.main([*files, "-q", "-rs", "--durations=0", "-p", "no:cacheprovider", "-o", "addopts="], plugins=[plugin])
    counts = {k: list(plugin.outcomes.values()).count(k) for k in ("passed", "failed", "skipped")}
    summary = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "none ran"
    command = "python -m pytest -q " + " ".join(shlex.quote(n) for n in plugin.kept)
    figures = f"{len(plugin.kept)} CUDA tests: {summary}"
    if counts["failed"] or rc not in (0, 5):
        write_result(out, status="failed", reason=f"pytest exit {int(rc)}: {summary}", figures=figures,
                     command=command)
        return 1
    if not counts["passed"]:
        reasons = sorted(set(plugin.skips)) or ["no CUDA test collected"]
        write_result(out, status="skipped", reason=f"{summary}: {'; '.join(reasons)}", figures=figures,
                     command=command)
        return SKIP_CODE
    write_result(out, status="ok", figures=figures, command=command)
    return 0


def worker_throughput(out: str, *args: str) -> int:
    """experiments/train_throughput.py as it is, writing its files into `out`."""
    sys.path.insert(0, str(HERE))
    import train_throughput

    train_throughput.RESULTS = Path(out)
    train_throughput.main(list(args))
    if not (Path(out) / "train_throughput.csv").is_file():
        write_result(Path(out), status="failed", reason="the benchmark wrote no table")
        return 1
    return 0


def _plain_candidate(job: dict, queue) -> None:
    """One search candidate in its own process, as a Ray trial would run it (weights dropped)."""
    import time as _time

    from nas.evaluation import evaluate_candidate

    start = _time.time()
    row = evaluate_candidate(job)
    row.pop("weights", None)
    row.update(start=start, end=_time.time(), pid=os.getpid())
    queue.put(row)


def proxy_defaults() -> dict:
    """`nas search`'s proxy settings per data set; read from its source where it cannot import (no Optuna)."""
    try:
        from nas.search_setup import PROXY_DEFAULTS
    except ImportError:
        import ast

        tree = ast.parse((ROOT / "nas" / "search_setup.py").read_text())
        node = next(n for n in tree.body if isinstance(n, ast.Assign) and any(
            getattr(t, "id", None) == "PROXY_DEFAULTS" for t in n.targets))
        return ast.literal_eval(node.value)
    return PROXY_DEFAULTS


def worker_search_plain(out: str, *argv: str) -> int:
    """`--candidates` in-window candidates of mnv3 for pixel_cpu, each trained by
    `nas.evaluation.evaluate_candidate` (the function a search trial calls) in its own process, all at once:
    the plain-torch equivalent of `nas search --workers N --gpus-per-trial 1/N`."""
    import multiprocessing as mp
    import random

    p = argparse.ArgumentParser()
    p.add_argument("--data-dir", required=True)
    p.add_argument("--candidates", type=int, default=4)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-subset", type=int)
    p.add_argument("--resolution", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int)
    a = p.parse_args(argv)
    out = Path(out)

    from latency_tables import load_target
    from nas.evaluation import deployment_arch
    from nas.latency_window import DEFAULT_WINDOWS
    from search_spaces.references import reference
    from search_spaces.space import get_space

    proxy = proxy_defaults()["cifar10"]
    table, space = load_target("pixel_cpu"), get_space("mnv3")
    t_ms = table.query_total(reference(space.reference).replace(num_classes=10, resolution=224))
    lo, hi = (f * t_ms for f in DEFAULT_WINDOWS["soft"])
    rng, vectors, tried = random.Random(0), [], 0
    while len(vectors) < a.candidates and tried < 20000:  # as the search's window screens proposals
        tried += 1
        v = space.sample(rng)
        if lo <= table.query_total(deployment_arch("mnv3", v, 10, 224)) <= hi:
            vectors.append(v)
    job = dict(space="mnv3", target="pixel_cpu", data=f"cifar10:{os.path.abspath(a.data_dir)}",
               resolution=a.resolution or proxy["resolution"], deploy_resolution=224,
               train_subset=a.train_subset or proxy["train_subset"], seed=0,
               epochs=proxy["epochs"], steps=a.steps, batch_size=a.batch_size or proxy["batch_size"],
               lr=proxy["lr"], optimizer="sgd", threads=a.threads, device=a.device)
    ctx = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    queue = ctx.Queue()
    start = time.time()
    procs = [ctx.Process(target=_plain_candidate, args=(job | {"vector": v}, queue)) for v in vectors]
    for proc in procs:
        proc.start()
    rows = []
    for _ in procs:
        rows.append(queue.get())
        print(f"candidate {len(rows)}: {rows[-1]['status']} {rows[-1]['seconds']:.1f} s, acc "
              f"{rows[-1]['accuracy']:.3f}, {rows[-1]['latency_ms']:.1f} ms {rows[-1]['reason']}", flush=True)
    for proc in procs:
        proc.join()
    wall = time.time() - start
    fields = ["arch", "status", "reason", "device", "accuracy", "latency_ms", "macs", "params", "train_loss",
              "images_per_s", "seconds"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    w.writeheader()
    w.writerows(rows)
    write_text(out / "candidates.csv", buf.getvalue())
    ok = [r for r in rows if r["status"] == "ok"]
    train_images = job["train_subset"] if job["steps"] is None else job["steps"] * job["batch_size"]
    figures = (f"{len(ok)}/{len(rows)} candidates ok ({job['train_subset']} images, {job['resolution']}px, "
               f"{job['steps'] or job['epochs']} {'steps' if job['steps'] else 'epochs'}, batch {job['batch_size']}, "
               f"T = {t_ms:.2f} ms, window {lo:.1f}-{hi:.1f} ms) on {rows[0]['device'] if rows else a.device}, "
               f"all at once: {wall:.1f} s wall")
    if ok:
        secs = [r["seconds"] for r in ok]
        figures += (f"; seconds per candidate {min(secs):.1f}-{max(secs):.1f} (data load and latency lookup "
                    f"included); validation accuracy {min(r['accuracy'] for r in ok):.3f}-"
                    f"{max(r['accuracy'] for r in ok):.3f}; training images/s per candidate "
                    f"{min(r['images_per_s'] for r in ok):,.0f}-{max(r['images_per_s'] for r in ok):,.0f}")
        if job["steps"] is None:
            figures += f"; about {len(ok) * train_images * job['epochs'] / wall:,.0f} images/s together"
    status = "ok" if len(ok) == len(rows) == a.candidates else "failed"
    write_result(out, status=status, figures=figures,
                 reason="" if status == "ok" else "; ".join(sorted({r["reason"] for r in rows if r["reason"]}))
                 or f"{len(vectors)} in-window candidates found")
    return 0 if status == "ok" else 1


def worker_nas(*argv: str) -> int:
    """`nas ARGS` (nas.cli) with only the command groups this machine can import: without Optuna,
    `nas.search_cli` does not import (nas.controllers imports it), which would stop every command."""
    import importlib

    from nas import cli

    try:
        parser = cli.build_parser()
    except ImportError:
        parser = cli._Parser(prog="nas", description="Hardware-aware neural architecture search.")
        sub = parser.add_subparsers(dest="command", required=True, parser_class=cli._Parser)
        for module in cli.COMMAND_GROUPS:
            try:
                importlib.import_module(module).register(sub)
            except ImportError as e:
                print(f"device_check: nas command group {module} left out: {type(e).__name__}: {e}", flush=True)
    return cli.run(parser, list(argv))


def worker_ray_cleanup(run_dir: str) -> int:
    """Stop the Ray processes a killed search left and remove its Ray temp dir (nas.ray_session's own
    clean-up, as `nas search --resume` does it)."""
    from nas.ray_session import RaySessionRecord
    from nas.run_dir import RunDir

    run = RunDir(run_dir)
    record = RaySessionRecord.load(run)
    if record is not None:
        record.clean_up(run)
        print(f"device_check: stopped the Ray processes left in {record.temp_dir}", flush=True)
    return 0


WORKERS = {"nas": worker_nas, "ray-cleanup": worker_ray_cleanup, "decode-torchvision": worker_decode_torchvision,
           "digits": worker_digits, "synthetic": worker_synthetic, "cuda-tests": worker_cuda_tests,
           "throughput": worker_throughput, "search-plain": worker_search_plain}


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        return WORKERS[argv[1]](*argv[2:]) or 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--prepare", action="store_true", help="copy what the device machine needs into --carry")
    p.add_argument("--carry", default=str(CARRY), help="the carried folder (default shared_carry/, ignored by git)")
    p.add_argument("--compact-source", default=str(COMPACT_SOURCE),
                   help="compact CIFAR-10 to carry (--prepare; '' carries none)")
    p.add_argument("--dry-run", action="store_true", help="every step with tiny settings on the CPU")
    p.add_argument("--results", help="where the figures go (default experiments/results; a dry run: a new temp dir)")
    p.add_argument("--time-limit", type=float, help=f"seconds for the whole check (default {DEFAULT_LIMIT:.0f}, "
                   f"dry run {DRY_LIMIT:.0f})")
    p.add_argument("--steps", help=f"a comma-separated subset of: {', '.join(STEPS)}")
    p.add_argument("--emulate-missing", metavar="PKGS", help="hide these packages from every step (a rehearsal)")
    a = p.parse_args(argv)
    if a.prepare:
        return prepare(Path(a.carry).resolve(), Path(a.compact_source).resolve() if a.compact_source else None)
    a.time_limit = a.time_limit or (DRY_LIMIT if a.dry_run else DEFAULT_LIMIT)
    if a.results is None:  # a dry run never overwrites the committed figures
        a.results = tempfile.mkdtemp(prefix="device_check_dry-") if a.dry_run else str(HERE / "results")
    a.argv = argv
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _raise_stop)
    check = Check(a)
    if not check.cuda and not a.dry_run:
        print("device_check: no CUDA device here: the full settings will mostly time out on a CPU "
              "(use --dry-run to check the script)", file=sys.stderr)
    return check.run()


if __name__ == "__main__":
    sys.exit(main())
