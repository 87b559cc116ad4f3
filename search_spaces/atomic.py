"""Atomic file writes (temp file + rename): a reader, or a run resumed after SIGKILL, never
sees half a file. Every package writes its files through here."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path next to `path`; move it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """`write(tmp_path)`, then rename onto `path`."""
    with atomic_path(path) as tmp:
        write(tmp)
