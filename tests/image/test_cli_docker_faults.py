"""`rmodelpack size` and `serve --docker` when the port or the worker count is wrong, and when
the server is told to stop: one clear error (exit 2, naming the option) before any build, and
never a container left behind.

The example is copied with an image repository of its own, built once for the module; every
container of that image is this module's, and each test leaves none (the fixture removes any by
id, so a failing test does not leave one either).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from conftest import EXAMPLES_DIR, REPO_ROOT, free_port, run_cli

from rmodelpack.exceptions import UsageError
from rmodelpack.settings import WORKERS

pytestmark = pytest.mark.docker

REPOSITORY = "rmodelpack-test/cli-faults/boston-rf"
ENV = {"BOSTON_SCORER_PASSWORD": "test-only-password"}
FAST_SECONDS = 120  # a refused call does not build: far below this even on a busy machine
READY_SECONDS = 120
STOP_SECONDS = 60


@dataclass(frozen=True)
class Example:
    folder: Path
    out: Path
    image: str


@pytest.fixture(scope="module")
def example(docker_client, base_image, tmp_path_factory) -> Iterator[Example]:
    root = tmp_path_factory.mktemp("cli-faults")
    folder = root / "boston-rf"
    shutil.copytree(
        EXAMPLES_DIR / "boston-rf", folder, ignore=shutil.ignore_patterns(".rmodelpack")
    )
    manifest = yaml.safe_load((folder / "rmodel.yaml").read_text())
    manifest["image"]["repository"] = REPOSITORY
    (folder / "rmodel.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    out = root / "out"
    built = run_cli("build", str(folder), "-o", str(out), env=ENV, timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]
    image = built.stdout.split("built ", 1)[1].split(" ", 1)[0]
    assert image.startswith(f"{REPOSITORY}:"), built.stdout
    yield Example(folder, out, image)
    remove_containers(docker_client)
    for tagged in docker_client.images.list(name=REPOSITORY):
        with contextlib.suppress(Exception):
            docker_client.images.remove(tagged.id, force=True)


def containers_of_ours(client) -> list:
    """Every container (any state) of this module's image repository."""
    return [
        container
        for container in client.containers.list(all=True)
        if container.attrs.get("Config", {}).get("Image", "").startswith(f"{REPOSITORY}:")
    ]


def remove_containers(client) -> list[str]:
    """Remove this module's containers by id; return what was left (as "id status")."""
    left = []
    for container in containers_of_ours(client):
        left.append(f"{container.short_id} {container.status}")
        with contextlib.suppress(Exception):
            container.remove(force=True)
    return left


@pytest.fixture
def no_leftovers(docker_client, example) -> Iterator[None]:
    """Fail the test if it leaves a container of the module's image; remove them either way."""
    remove_containers(docker_client)
    yield
    left = remove_containers(docker_client)
    assert not left, f"containers left behind: {left}"


@contextlib.contextmanager
def listening_port() -> Iterator[int]:
    """A port on 127.0.0.1 that something (this test) already listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield sock.getsockname()[1]


def assert_refused(result: subprocess.CompletedProcess[str], option: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"(option: {option})" in result.stderr, result.stderr
    assert "building" not in result.stderr, "refused only after the build"


# --- bugs 1 and 2: a taken or impossible port -----------------------------------------------------


@pytest.mark.parametrize("command", ["size", "serve"])
def test_a_taken_port_is_exit_2_before_the_build_and_leaves_no_container(
    example, no_leftovers, command
):
    extra = ["--docker"] if command == "serve" else []
    with listening_port() as port:
        result = run_cli(
            command,
            str(example.folder),
            "-o",
            str(example.out),
            *extra,
            "--port",
            str(port),
            env=ENV,
            timeout=FAST_SECONDS,
        )
    assert_refused(result, "-p/--port")
    assert f"127.0.0.1:{port} is already in use" in result.stderr


@pytest.mark.parametrize("command", ["size", "serve"])
@pytest.mark.parametrize("port", ["0", "-1", "70000", "99999"])
def test_a_port_out_of_range_is_exit_2_before_the_build(example, no_leftovers, command, port):
    extra = ["--docker"] if command == "serve" else []
    result = run_cli(
        command,
        str(example.folder),
        "-o",
        str(example.out),
        *extra,
        f"--port={port}",
        env=ENV,
        timeout=FAST_SECONDS,
    )
    assert_refused(result, "-p/--port")
    assert "1 to 65535" in result.stderr


def test_docker_refusing_the_port_on_start_is_a_usage_error_and_no_container_stays(
    docker_client, example, no_leftovers
):
    """The port taken between the check and the start (a race the check cannot close): docker's
    refusal to start becomes the same error, and the created container is removed."""
    from rmodelpack.serve import serve_docker
    from rmodelpack.size import size_image

    with listening_port() as port:
        with pytest.raises(UsageError, match=f"127.0.0.1:{port} is already in use") as raised:
            serve_docker(example.image, port)
        assert raised.value.parameter == "port"
        assert not containers_of_ours(docker_client)
        with pytest.raises(UsageError, match="already in use"):
            size_image(
                image=example.image,
                model_sha256="0" * 64,
                example_body=b"[]",
                workers=1,
                port=port,
                client=docker_client,
            )


# --- bug 3: SIGTERM to a foreground serve --docker ---------------------------------------------


def test_sigterm_stops_serve_docker_like_ctrl_c(docker_client, example, no_leftovers, tmp_path):
    port = free_port()
    log = (tmp_path / "serve.log").open("w+")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "rmodelpack",
            "serve",
            str(example.folder),
            "-o",
            str(example.out),
            "--docker",
            "--port",
            str(port),
        ],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **ENV},
    )
    try:
        deadline = time.monotonic() + READY_SECONDS
        ready = False
        while time.monotonic() < deadline and process.poll() is None:
            with contextlib.suppress(requests.RequestException):
                ready = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).ok
            if ready:
                break
            time.sleep(0.5)
        log.seek(0)
        assert ready, f"serve --docker did not get ready:\n{log.read()[-3000:]}"
        assert [c.status for c in containers_of_ours(docker_client)] == ["running"]

        process.send_signal(signal.SIGTERM)
        status = process.wait(timeout=STOP_SECONDS)
        log.seek(0)
        output = log.read()
        assert status == 0, f"exit {status}, as Ctrl-C's 0 is expected:\n{output[-3000:]}"
        assert "Traceback" not in output, output[-3000:]
        assert not containers_of_ours(docker_client), "SIGTERM left the container behind"
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", port))  # the port is free again
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        log.close()


# --- bug 4: a worker count out of runtime.workers' range ----------------------------------------


@pytest.mark.parametrize("workers", [WORKERS.minimum - 1, -1, WORKERS.maximum + 1])
def test_size_refuses_workers_out_of_range_before_the_build(example, no_leftovers, workers):
    result = run_cli(
        "size",
        str(example.folder),
        "-o",
        str(example.out),
        f"--workers={workers}",
        "--port",
        str(free_port()),
        env=ENV,
        timeout=FAST_SECONDS,
    )
    assert_refused(result, "--workers")
    assert f"from {WORKERS.minimum} to {WORKERS.maximum}" in result.stderr
