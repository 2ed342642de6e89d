"""Bringing the offline cluster (testbed/cluster.sh) and the real node (testbed/node.sh) up for a
test session and down after it, from a cold machine or a warm one.

A session leaves the machine as it found it: it takes down only what it started, and only when
no other session still uses it. Each session holds a shared flock on a stack's `users` file for as
long as it uses the stack; the last one out gets the exclusive lock and runs `down`. A stack a
session started carries a marker beside its state directory (written before `up`, so a failed
`up` is cleaned up too; removed after `down`), so a stack started by a session that was not the
last user is still taken down by the last one.
RMP_KEEP_CLUSTER=1 keeps everything up (for a developer re-running one test).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from cluster.kube import REPO_ROOT, run

CACHE = REPO_ROOT / ".cache"
LOCK_WAIT_SECONDS = 900


@dataclass(frozen=True)
class Stack:
    """One of the scripts that start daemons: its state directory and its users' lock file."""

    script: Path
    state: Path

    @property
    def users(self) -> Path:
        return self.state.with_name(self.state.name + ".users")

    @property
    def started_marker(self) -> Path:
        return self.state.with_name(self.state.name + ".started-by-pytest")

    def healthy(self) -> bool:
        return run("bash", str(self.script), "status", check=False, timeout=120).returncode == 0

    def down(self) -> None:
        run("bash", str(self.script), "down", timeout=600)


TESTBED = REPO_ROOT / "testbed"
CLUSTER = Stack(TESTBED / "cluster.sh", Path(os.environ.get("RMP_CLUSTER_DIR", CACHE / "cluster")))
NODE = Stack(TESTBED / "node.sh", Path(os.environ.get("RMP_NODE_DIR", CACHE / "node")))


def _lock(path: Path, mode: int, wait: float) -> IO[str] | None:
    """An open file holding flock `mode` on `path`, or None when not granted within `wait` s."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a")
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(handle, mode | fcntl.LOCK_NB)
            return handle
        except BlockingIOError:
            if time.monotonic() >= deadline:
                handle.close()
                return None
            time.sleep(0.5)


@contextmanager
def in_use(up_script: Path, stacks: tuple[Stack, ...]) -> Iterator[str]:
    """Runs `up_script up` while holding every stack as a user; yields the admin kubeconfig.
    `stacks` are in teardown order (the node before the cluster it registers with)."""
    holds = []
    for stack in stacks:
        hold = _lock(stack.users, fcntl.LOCK_SH, LOCK_WAIT_SECONDS)
        assert hold is not None, f"{stack.users} stayed locked for {LOCK_WAIT_SECONDS}s"
        holds.append(hold)
    try:
        for stack in stacks:
            if not stack.healthy():
                stack.started_marker.touch()
        run("bash", str(up_script), "up", timeout=3600)
        exported = run("bash", str(up_script), "env").stdout.strip()
        yield exported.removeprefix("export KUBECONFIG=")
    finally:
        for hold in holds:
            hold.close()
        if os.environ.get("RMP_KEEP_CLUSTER") != "1":
            for stack in stacks:
                _take_down_if_last(stack)


def _keep_logs(stack: Stack) -> None:
    """`down` deletes the state directory; its logs stay in .cache/last-logs/NAME for a look."""
    kept = CACHE / "last-logs" / stack.state.name
    shutil.rmtree(kept, ignore_errors=True)
    if (stack.state / "logs").is_dir():
        shutil.copytree(stack.state / "logs", kept)


def _take_down_if_last(stack: Stack) -> None:
    last = _lock(stack.users, fcntl.LOCK_EX, 0)
    if last is None:
        return  # another session still uses it; the last one takes it down
    try:
        if stack is CLUSTER and NODE.started_marker.exists():
            _take_down_if_last(NODE)  # a node left by an earlier session needs the cluster
        if stack.started_marker.exists():
            _keep_logs(stack)
            stack.down()
            stack.started_marker.unlink()
    finally:
        last.close()
