"""ci/setup.sh starts dockerd and the local registry as daemons (start_daemon). A daemon must keep
nothing of whoever ran the setup: the shell that started it used to stay behind, waiting on it
with the caller's stdout, so `bash ci/setup.sh all | tail` never ended once the setup had started
the registry (the pipe stayed open for the registry's life)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def session_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])


def test_a_daemon_keeps_no_descriptor_of_the_caller(tmp_path: Path) -> None:
    log, pidfile = tmp_path / "daemon.log", tmp_path / "daemon.pid"
    script = f'source ci/setup.sh; start_daemon "{log}" sleep 60; echo "$!" > "{pidfile}"'
    other_read, other_write = os.pipe()  # a caller's descriptor besides stdout and stderr
    caller = subprocess.Popen(
        ["bash", "-c", script],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        pass_fds=(other_write,),
    )
    os.close(other_write)
    try:
        # End-of-file on both pipes: no process the setup left behind holds either.
        output, _ = caller.communicate(timeout=20)
        assert caller.returncode == 0, output
        assert select.select([other_read], [], [], 10)[0], "the daemon holds the caller's pipe"
        assert os.read(other_read, 1) == b""
        pid = int(pidfile.read_text())
        # The daemon is the same pid once its last exec has run (setsid, sh, then the command).
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0] != b"sleep":
            assert time.monotonic() < deadline, "the daemon never started"
            time.sleep(0.05)
        fds = {int(fd.name): os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()}
        assert fds == {0: "/dev/null", 1: str(log), 2: str(log)}
        assert session_of(pid) == pid
    finally:
        os.close(other_read)
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        caller.kill()
