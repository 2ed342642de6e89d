"""Running a model image as the chart runs it: the one place that starts containers.

``rmodelpack serve --docker`` and ``rmodelpack size`` (and the image tests) use these, so a
container on this machine is exactly as hardened as a pod.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from typing import Any

from rmodelpack.contract import CONTAINER_PORT, CONTAINER_UID, TMP_DIR, TMP_SIZE
from rmodelpack.exceptions import BuildError

READY_TIMEOUT_SECONDS = 180


def run_hardened(client: Any, image: str, port: int, **options: Any) -> Any:
    """Start the image as the chart runs it (read-only root, tmpfs /tmp, no capabilities,
    uid 10001), detached, published on 127.0.0.1:port only."""
    return client.containers.run(
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
