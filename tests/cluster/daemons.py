"""What /proc shows about the daemons testbed/cluster.sh and testbed/node.sh start
(testbed/lib.sh start_daemon): each in a session of its own, stdin from /dev/null, stdout and
stderr to its log, and no other descriptor it did not open itself. A daemon that inherited the
scripts' lock descriptor held the lock for as long as it lived (issue 13: every later
`node.sh up` waited 900 s and failed)."""

from __future__ import annotations

import os
from pathlib import Path

# O_CLOEXEC in /proc/PID/fdinfo/FD "flags" (octal). Go (every daemon here) opens all its files,
# pipes and sockets close-on-exec; what a shell script leaves to a child never has it.
O_CLOEXEC = 0o2000000


def recorded_daemons(state: Path) -> dict[str, int]:
    """name -> pid for every daemon the script recorded in STATE/run/NAME.pid."""
    return {
        pidfile.stem: int(pidfile.read_text().strip())
        for pidfile in sorted((state / "run").glob("*.pid"))
    }


def inherited_descriptor_problems(name: str, pid: int, state: Path) -> list[str]:
    """Everything about `pid`'s descriptors and session that start_daemon should have prevented."""
    problems = []
    fd_dir = Path(f"/proc/{pid}/fd")
    targets = {int(fd.name): os.readlink(fd) for fd in fd_dir.iterdir()}
    log = str(state / "logs" / f"{name}.log")
    if targets.get(0) != "/dev/null":
        problems.append(f"{name}: stdin is {targets.get(0)}, not /dev/null")
    for fd in (1, 2):
        if targets.get(fd) != log:
            problems.append(f"{name}: fd {fd} is {targets.get(fd)}, not {log}")
    for fd, target in sorted(targets.items()):
        if target.endswith(".lock") or target.endswith(".users"):
            problems.append(f"{name}: fd {fd} holds the lock file {target}")
        if fd > 2 and not _close_on_exec(pid, fd):
            problems.append(f"{name}: fd {fd} ({target}) was inherited (no O_CLOEXEC)")
    session = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    if session != pid:
        problems.append(f"{name}: runs in session {session}, not a session of its own")
    return problems


def _close_on_exec(pid: int, fd: int) -> bool:
    try:
        info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
    except FileNotFoundError:
        return True  # closed meanwhile: a descriptor the daemon itself opened and closed
    flags = next(line.split()[1] for line in info.splitlines() if line.startswith("flags:"))
    return bool(int(flags, 8) & O_CLOEXEC)
