"""Atomic file writes (temp file + rename): a reader, or a run resumed after SIGKILL, never
sees half a file. Every package writes its files through here."""
from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; move it onto `path` only if the block succeeds.
    The file gets the mode the umask gives (tables and runs are shared between people and
    nodes), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """`write(tmp_path)`, then rename onto `path`."""
    with atomic_path(path) as tmp:
        write(tmp)
