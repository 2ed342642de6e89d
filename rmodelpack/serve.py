"""Run the scoring server locally: natively (R + nginx on this machine) or in docker."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from rmodelpack.exceptions import ToolNotFound
from rmodelpack.render import CONTAINER_UID, RenderResult


def native_tools_missing() -> list[str]:
    missing = [tool for tool in ("Rscript", "bash") if shutil.which(tool) is None]
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        missing.append("nginx")
    return missing


def native_environment(
    rendered: RenderResult, port: int, tmpdir: Path, model_path: Path
) -> dict[str, str]:
    """Point the runtime at the rendered files instead of the in-image paths.

    ``model_path`` is the manifest's own model file: the model rendered into the image
    context when there is one, else (source url/pvc) the local copy the manifest names.
    """
    out = rendered.out_dir
    env = dict(os.environ)
    env.update(
        RMP_CONFIG=str(out / "app" / "rmodelpack.json"),
        RMP_PORT=str(port),
        RMP_HOST="127.0.0.1",
        RMP_TMPDIR=str(tmpdir),
    )
    rendered_model = out / "model" / "model.rds"
    env["RMP_MODEL_PATH"] = str(rendered_model if rendered_model.is_file() else model_path)
    scripts = [p for p in (out / "app").iterdir() if p.suffix in (".R", ".r")]
    if scripts:
        env["RMP_SCRIPT_PATH"] = str(scripts[0])
    return env


def serve_native(rendered: RenderResult, port: int, model_path: Path) -> int:
    """Run runtime/entrypoint.sh in the foreground until it exits or we are interrupted."""
    missing = native_tools_missing()
    if missing:
        raise ToolNotFound(
            f"serving natively needs {', '.join(missing)}; install them "
            "(Debian: apt-get install r-base-core r-cran-plumber nginx-light) or use --docker"
        )
    with tempfile.TemporaryDirectory(prefix="rmodelpack-serve-") as tmp:
        env = native_environment(rendered, port, Path(tmp), model_path)
        entrypoint = rendered.out_dir / "runtime" / "entrypoint.sh"
        process = subprocess.Popen(["bash", str(entrypoint)], env=env)

        def forward(signum: int, _frame: FrameType | None) -> None:
            process.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return process.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run_hardened(client: Any, image: str, port: int, **options: Any) -> Any:
    """Start the image as the chart runs it (read-only root, tmpfs /tmp, no capabilities,
    uid 10001), detached, published on 127.0.0.1:port only."""
    return client.containers.run(
        image,
        detach=True,
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=256m"},
        cap_drop=["ALL"],
        security_opt=["no-new-privileges"],
        user=f"{CONTAINER_UID}:{CONTAINER_UID}",
        ports={"8000/tcp": ("127.0.0.1", port)},
        **options,
    )


def serve_docker(
    image: str, port: int, *, name: str | None = None, detach: bool = False
) -> tuple[str, int]:
    """Run the image hardened as in Kubernetes, published on 127.0.0.1:port only.

    Returns (container id, exit status); with detach the status is 0 and the container runs on.
    """
    import docker

    from rmodelpack.exceptions import BuildError

    try:
        container = run_hardened(docker.from_env(), image, port, name=name)
    except docker.errors.DockerException as exc:
        raise BuildError(f"docker run {image} failed: {exc}") from exc
    if detach:
        return container.id, 0
    try:
        for chunk in container.logs(stream=True, follow=True):
            print(chunk.decode(errors="replace"), end="", flush=True)
        return container.id, container.wait()["StatusCode"]
    except KeyboardInterrupt:
        container.stop(timeout=40)
        return container.id, 0
    finally:
        if not detach:
            container.remove(force=True)
