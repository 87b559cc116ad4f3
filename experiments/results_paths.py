"""Paths as committed results name them: relative to the repository, never the machine's.

A result written on one machine is read on others, so it must not name /work/..., /home/... or
the worktree it ran in: a file in the repository is `latency_tables/data/pixel_cpu_mnv3.csv`, the
shared directory next to it `../shared/gt/cifar10_18ep.csv`, and a data spec `cifar10:/abs/dir`
keeps its kind (`cifar10:../shared/data`). Names that are not absolute paths (`digits`,
`local_cpu`) stay as they are. tests/test_relative_paths.py scans experiments/results/ for
absolute paths.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def shown(spec) -> str:
    """`spec` (a path, or a data spec KIND:PATH) with an absolute path made relative to the repository."""
    text = str(spec)
    kind, sep, rest = text.partition(":")
    if sep and not os.path.isabs(text) and os.path.isabs(rest):  # KIND:PATH
        return f"{kind}:{shown(rest)}"
    if not os.path.isabs(text):
        return text
    home = Path.home()
    if Path(text).is_relative_to(home) and not REPO.is_relative_to(home):
        # the user cache, where long jobs keep their state: the same on every machine as ~/...
        return "~/" + Path(text).relative_to(home).as_posix()
    try:
        return Path(os.path.relpath(text, REPO)).as_posix()
    except ValueError:  # on another drive (Windows): there is no relative path, the name has to do
        return Path(text).name


def experiment_state(name: str) -> Path:
    """Where a long experiment keeps its state: the user cache (respects XDG_CACHE_HOME), outside
    the work tree, so a killed run, or a later session on the same machine, continues it."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hw-nas" / "experiments" / name
