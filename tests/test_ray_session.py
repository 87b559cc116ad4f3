"""Clean-up after a killed search: only Ray's processes of the recorded directory are stopped,
never a running search's, never a directory the search did not create."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from nas.ray_session import TEMP_PREFIX, TEMP_ROOT, RaySessionRecord, _start_time, leftover_processes
from nas.run_dir import RunDir
from search_spaces.errors import UserError

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads processes from /proc")


def holding_a_file(directory: str, argv0: str) -> subprocess.Popen:
    """A process named `argv0` that keeps a file in `directory` open."""
    proc = subprocess.Popen([argv0, "-c", "import sys, time; f = open(sys.argv[1], 'w'); print(flush=True); "
                             "time.sleep(60)", os.path.join(directory, "log")], executable=sys.executable,
                            stdout=subprocess.PIPE, text=True)
    proc.stdout.readline()  # the file is open
    return proc


def test_clean_up_stops_ray_processes_of_the_directory_only(tmp_path):
    run = RunDir(tmp_path)
    temp_dir = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=TEMP_ROOT)
    ray_proc, other = holding_a_file(temp_dir, "ray::RuntimeEnvAgent"), holding_a_file(temp_dir, "tail")
    try:
        assert leftover_processes(temp_dir) == [ray_proc.pid]
        RaySessionRecord(temp_dir, 2 ** 22 + 1, "1").save(run)  # its search: no longer running
        RaySessionRecord.load(run).clean_up(run)
        assert ray_proc.wait(timeout=10) == -9 and other.poll() is None
        assert not os.path.exists(temp_dir) and RaySessionRecord.load(run) is None
    finally:
        for p in (ray_proc, other):
            p.kill()
            p.wait()


def test_a_running_search_is_left_alone(tmp_path):
    run = RunDir(tmp_path)
    temp_dir = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=TEMP_ROOT)
    try:
        RaySessionRecord(temp_dir, os.getpid(), _start_time(os.getpid())).save(run)
        with pytest.raises(UserError, match=f"in use by a running search \\(pid {os.getpid()}\\)"):
            RaySessionRecord.load(run).clean_up(run)
        assert os.path.isdir(temp_dir)
    finally:
        os.rmdir(temp_dir)


@pytest.mark.parametrize("text, message", [
    ('{"temp_dir": "/", "pid": 1, "started": "1"}', "not a search's Ray directory"),
    ('{"temp_dir": "/tmp/nasray-x/../..", "pid": 1, "started": "1"}', "not a search's Ray directory"),
    ('{"temp_dir": "/tmp/nasray-x"', "damaged"),
    ('{"dir": "/tmp/nasray-x"}', "damaged"),
])
def test_a_damaged_record_is_one_line(tmp_path, text, message):
    (tmp_path / RaySessionRecord.FILE).write_text(text)
    with pytest.raises(UserError, match=message):
        RaySessionRecord.load(RunDir(tmp_path))
