"""A wall clock stepped forward or back (NTP correcting a node's clock at boot, a VM resumed)
neither takes a worker for hung nor hides one that is. The heartbeat's age used to be the wall
clock minus the up file's mtime: a step forward of more than timeout_seconds had the supervisor
kill every worker at once, and a step back stopped an idle worker's heartbeat.

The clock is stepped for the server's R processes only, with libfaketime (its offset re-read from
a file on every call; the monotonic clock and file times are left real, as a real step leaves
them)."""

from __future__ import annotations

import contextlib
import glob
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from runtime.conftest import ServerFactory, tweak_runtime
from runtime.server import NativeServer

RUNTIME = Path(__file__).resolve().parents[2] / "rmodelpack" / "runtime"
TIMEOUT_SECONDS = 2
# timeout_seconds plus the supervisor's grace (rmp_heartbeat_grace_seconds), with a margin.
PAST_THE_LIMIT = TIMEOUT_SECONDS + 1.5

ROW = {
    "crim": 0.00632,
    "zn": 18,
    "indus": 2.31,
    "chas": 0,
    "nox": 0.538,
    "rm": 6.575,
    "age": 65.2,
    "dis": 4.09,
    "rad": 1,
    "tax": 296,
    "ptratio": 15.3,
    "black": 396.9,
    "lstat": 4.98,
}


def libfaketime() -> str:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        pytest.skip("libfaketime is not installed (ci/setup.sh tools installs it)")
    return found[0]


@pytest.fixture
def stepped(server_factory: ServerFactory, tmp_path: Path) -> Iterator[tuple[NativeServer, Path]]:
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    server = server_factory(
        tweak_runtime(timeout_seconds=TIMEOUT_SECONDS),
        env={
            "RMP_WORKERS": "2",
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(offset),
            "FAKETIME_NO_CACHE": "1",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "NO_FAKE_STAT": "1",
        },
    )
    yield server, offset
    server.kill()


def step_clock(offset: Path, to: str) -> None:
    offset.write_text(f"{to}\n")


def replaced_workers(server: NativeServer) -> list[str]:
    return [line for line in server.logs().splitlines() if "no heartbeat" in line]


def assert_serves(server: NativeServer) -> None:
    for _ in range(4):
        assert requests.post(server.url("/predict"), json=[ROW], timeout=10).status_code == 200


def test_idle_workers_outlive_clock_steps_both_ways(stepped) -> None:
    server, offset = stepped
    pids = server.worker_pids()
    heartbeat = server.run_dir / "w1.up"
    for to in ("+1h", "-1h", "+0"):
        step_clock(offset, to)
        # Idle past the limit: only the workers' own heartbeats keep them alive.
        time.sleep(PAST_THE_LIMIT)
        assert replaced_workers(server) == [], server.logs()
        assert server.worker_pids() == pids
        assert_serves(server)
        assert requests.get(server.url("/readyz"), timeout=5).status_code == 200
    # The step reached the workers: the heartbeat was written on the stepped clock.
    step_clock(offset, "+1h")
    time.sleep(1)
    assert heartbeat.stat().st_mtime - time.time() > 3000


def test_a_stopped_worker_is_still_replaced_after_a_step(stepped) -> None:
    server, offset = stepped
    step_clock(offset, "-1h")
    victim = server.worker_pids()[1]
    os.kill(victim, signal.SIGSTOP)
    try:
        deadline = time.monotonic() + PAST_THE_LIMIT + 10
        while time.monotonic() < deadline and server.worker_pids().get(1) in (victim, None):
            time.sleep(0.2)
        assert server.worker_pids().get(1) not in (victim, None), server.logs()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGCONT)
    assert any(f"pid {victim}" in line for line in replaced_workers(server)), server.logs()
    assert_serves(server)


# The supervisor's own functions, with its clock and the up files under the test's control.
HEARTBEATS = """
rd <- "{runtime}"
for (f in setdiff(list.files(rd, "[.]R$"), "supervisor.R")) {{
  sys.source(file.path(rd, f), envir = globalenv())
}}
code <- parse(file.path(rd, "supervisor.R"))
for (e in code[-length(code)]) eval(e, globalenv())
run <- tempfile(); dir.create(run); pids <- rep(Sys.getpid(), 2L)
for (i in 1:2) writeLines(as.character(Sys.getpid()), rmp_up_path(run, i), sep = "")
up <- rmp_workers_up(run, pids)
clock <- 1000
rmp_monotonic <- function() clock
turn <- function(seen, seconds) {{
  clock <<- clock + seconds
  rmp_watch_heartbeats(seen, run, pids)
}}
beat <- function(i) Sys.setFileTime(rmp_up_path(run, i), Sys.time() + runif(1, -5000, 5000))
seen <- turn(rmp_heartbeats(2L), 0)
{body}
"""


def heartbeats(body: str) -> str:
    script = HEARTBEATS.format(runtime=RUNTIME, body=body)
    result = subprocess.run(
        ["Rscript", "--vanilla", "-e", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_only_watched_time_ages_a_heartbeat() -> None:
    """A frozen container or a suspended machine: the clock ran on for an hour while no process
    did. The first turn after adds at most a second, so each worker beats again before the gap
    counts against it; a worker that still does not beat is hung after the limit."""
    out = heartbeats(
        """
seen <- turn(seen, 3600)
cat("after the gap:", rmp_hung_workers(seen, up, 2.5), "\\n")
beat(1)
for (k in 1:3) seen <- turn(seen, 1)
cat("three turns on, worker 2 silent:", rmp_hung_workers(seen, up, 2.5), "\\n")
"""
    )
    assert "after the gap: FALSE FALSE" in out, out
    assert "three turns on, worker 2 silent: FALSE TRUE" in out, out


def test_any_move_of_a_heartbeat_is_a_beat_and_an_unreadable_clock_adds_nothing() -> None:
    out = heartbeats(
        """
for (k in 1:5) { beat(1); beat(2); seen <- turn(seen, 1) }
cat("beating, steps either way:", rmp_hung_workers(seen, up, 2.5), "\\n")
rmp_monotonic <- function() NA_real_
for (k in 1:5) seen <- turn(seen, 1)
cat("clock unreadable:", rmp_hung_workers(seen, up, 2.5), "\\n")
"""
    )
    assert "beating, steps either way: FALSE FALSE" in out, out
    assert "clock unreadable: FALSE FALSE" in out, out
