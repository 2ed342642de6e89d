"""The lean process layout: a small supervisor that never holds the model, workers forked by a
short-lived loader, the allocator settings reaching R, and no R process left behind."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import requests

from runtime.conftest import ServerFactory
from runtime.server import NativeServer


def alive(pid: int) -> bool:
    """True while pid runs; a zombie (killed, not yet reaped by init) counts as gone."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in {"Z", "X"}


def wait_gone(pids: list[int], timeout: float = 10.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    return [pid for pid in pids if alive(pid)]


def supervisor_pid(server: NativeServer) -> int:
    return int((server.run_dir / "supervisor.pid").read_text())


def mapped_files(pid: int) -> str:
    return Path(f"/proc/{pid}/maps").read_text()


def test_supervisor_never_loads_the_model_or_plumber(server_factory: ServerFactory) -> None:
    server = server_factory(env={"RMP_WORKERS": "2"})
    supervisor = mapped_files(supervisor_pid(server))
    for worker in server.worker_pids().values():
        assert "randomForest.so" in mapped_files(worker)
    assert "randomForest.so" not in supervisor
    assert "httpuv.so" not in supervisor
    assert server.terminate() == 0


def test_fixed_malloc_thresholds_reach_the_r_processes(boston_server: NativeServer) -> None:
    pids = [supervisor_pid(boston_server), *boston_server.worker_pids().values()]
    for pid in pids:
        environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        assert b"MALLOC_MMAP_THRESHOLD_=262144" in environ
        assert b"MALLOC_TRIM_THRESHOLD_=1048576" in environ


def test_sigterm_leaves_no_r_process_behind(server_factory: ServerFactory) -> None:
    server = server_factory(env={"RMP_WORKERS": "2", "RMP_DRAIN_SECONDS": "0"})
    pids = [supervisor_pid(server), *server.worker_pids().values()]
    assert server.terminate() == 0
    assert wait_gone(pids) == []


def test_workers_exit_on_their_own_when_the_supervisor_is_gone(
    server_factory: ServerFactory,
) -> None:
    server = server_factory(env={"RMP_WORKERS": "2"})
    workers = list(server.worker_pids().values())
    # Kill the entrypoint first so nothing but the workers' own watch can stop them.
    os.kill(server.process.pid, signal.SIGKILL)
    os.kill(supervisor_pid(server), signal.SIGKILL)
    assert wait_gone(workers, timeout=10) == []
    server.kill()


def test_a_replacement_worker_re_verifies_the_model(
    server_factory: ServerFactory, boston_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model.rds"
    shutil.copyfile(boston_model, model)
    server = server_factory(env={"RMP_WORKERS": "2", "RMP_MODEL_PATH": str(model)})
    with model.open("ab") as handle:
        handle.write(b"tampered")
    os.kill(server.worker_pids()[1], signal.SIGKILL)
    assert server.process.wait(timeout=30) != 0
    assert "sha256" in server.stderr_path.read_text()
    server.kill()


def test_replaced_worker_serves_from_a_fresh_load(
    server_factory: ServerFactory, r_predictions: dict
) -> None:
    server = server_factory(env={"RMP_WORKERS": "1"})
    old = server.worker_pids()[1]
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and server.worker_pids().get(1) in (None, old):
        time.sleep(0.1)
    server.wait_ready(timeout=30)
    response = requests.post(
        server.url("/score"), json={"df": r_predictions["rows"][:2]}, timeout=30
    )
    assert response.status_code == 200, response.text
    expected = r_predictions["predictions"][:2]
    assert response.json() == pytest.approx(expected, abs=1e-9, rel=0)
    assert server.terminate() == 0
