"""Running a model image as the chart runs it: the one place that starts containers.

``rmodelpack serve --docker`` and ``rmodelpack size`` (and the image tests) use these, so a
container on this machine is exactly as hardened as a pod.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from rmodelpack.contract import CONTAINER_PORT, CONTAINER_UID, TMP_DIR, TMP_SIZE
from rmodelpack.exceptions import BuildError, UsageError

READY_TIMEOUT_SECONDS = 180
PORT_RANGE = (1, 65535)
# What the engine says when the host port is taken (userland proxy, or another container's).
PORT_TAKEN_MARKERS = ("address already in use", "port is already allocated")


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: handled as Ctrl-C is, so that every started container is stopped and
    removed on the way out."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises ``Terminated`` (a KeyboardInterrupt) in the main thread
    instead of ending the process with its containers left running. Off the main thread,
    where Python cannot install signal handlers, this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(_signum: int, _frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def port_taken_error(port: int) -> UsageError:
    return UsageError(
        f"127.0.0.1:{port} is already in use by another program or container; "
        "stop it or choose a free port",
        parameter="port",
    )


def check_port(port: int) -> None:
    """Refuse a port docker cannot publish on 127.0.0.1: out of range (0 included: docker would
    pick another one), or already listened on. Run before any build, so a bad port costs
    nothing; docker's own refusal on start is still handled (the port may be taken meanwhile)."""
    low, high = PORT_RANGE
    if not low <= port <= high:
        raise UsageError(
            f"port {port} is not a TCP port to publish on 127.0.0.1; choose one from "
            f"{low} to {high}",
            parameter="port",
        )
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # Without SO_REUSEADDR a port still in TIME_WAIT would look taken; a listener still is.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise port_taken_error(port) from exc
            # EACCES for a port below 1024: the daemon (root) may still bind it.


def _engine_message(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def _start_error(exc: Exception, image: str, port: int) -> Exception:
    """docker's refusal to create or start a container, in rmodelpack's terms."""
    message = _engine_message(exc)
    if any(marker in message.lower() for marker in PORT_TAKEN_MARKERS):
        return port_taken_error(port)
    if "invalid port" in message.lower():
        return UsageError(f"docker refused port {port}: {message}", parameter="port")
    return BuildError(f"docker could not run {image}: {message}")


def run_hardened(client: Any, image: str, port: int, **options: Any) -> Any:
    """Start the image as the chart runs it (read-only root, tmpfs /tmp, no capabilities,
    uid 10001), detached, published on 127.0.0.1:port only.

    Created and started in two steps so that a container whose start fails (a taken port) or is
    interrupted is removed, not left behind in state "created". docker's refusals come back as
    ``UsageError`` (the port) or ``BuildError``."""
    import docker

    try:
        container = client.containers.create(
            image,
            detach=True,
            read_only=True,
            tmpfs={TMP_DIR: f"rw,nosuid,nodev,size={TMP_SIZE}"},
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            user=f"{CONTAINER_UID}:{CONTAINER_UID}",
            ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
            **options,
        )
    except docker.errors.DockerException as exc:
        raise _start_error(exc, image, port) from exc
    try:
        container.start()
    except BaseException as exc:
        # The start's error is the one to report, not a failure to clean up after it.
        with contextlib.suppress(docker.errors.DockerException):
            container.remove(force=True)
        if isinstance(exc, docker.errors.DockerException):
            raise _start_error(exc, image, port) from exc
        raise
    container.reload()
    return container


def wait_ready(url: str, container: Any, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Poll ``url`` until it answers 200; fail early with the logs if the container exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        container.reload()
        if container.status == "exited":
            logs = container.logs(tail=20).decode(errors="replace")
            raise BuildError(f"the container exited before it was ready:\n{logs}")
        time.sleep(0.5)
    raise BuildError(f"the container was not ready within {timeout:.0f} s")
