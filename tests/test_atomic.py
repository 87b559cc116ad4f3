"""Atomic writes: all or nothing, and files shared between people get the umask's mode."""
import os
import stat

import pytest

from search_spaces.atomic import atomic_path, atomic_write


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path, umask, mode):
    old = os.umask(umask)
    try:
        atomic_write(tmp_path / "f.txt", lambda p: p.write_text("x"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == mode


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(f) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert f.read_text() == "old" and os.listdir(tmp_path) == ["f.txt"]
