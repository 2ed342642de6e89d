"""The image's own process tree under tini: when nginx or the R supervisor is SIGKILLed, the
container exits non-zero within seconds (so Kubernetes restarts it) instead of staying
half-alive with /readyz at 200."""

from __future__ import annotations

import time

import pytest
import requests
from image.containers import hardened_container, wait_ready

pytestmark = [pytest.mark.docker, pytest.mark.r, pytest.mark.slow]


@pytest.mark.parametrize("pid_file", ["nginx.pid", "supervisor.pid"])
def test_container_exits_when_a_core_process_dies(
    docker_client, build_example, pid_file: str
) -> None:
    image = build_example("boston-rf")
    with hardened_container(docker_client, image.tag) as running:
        wait_ready(running)
        assert requests.get(f"{running.url}/readyz", timeout=10).status_code == 200
        killed = running.container.exec_run(
            ["sh", "-c", f"kill -KILL $(cat /tmp/rmodelpack.*/{pid_file})"]
        )
        assert killed.exit_code == 0, killed.output
        started = time.monotonic()
        status = running.container.wait(timeout=20)["StatusCode"]
        took = time.monotonic() - started
        print(f"{pid_file}: container exited {status} after {took:.2f}s")
        assert status == 1
        assert took < 10
