"""Run the scoring server locally: natively (R + nginx on this machine) or in docker.

Library code: output of the server goes to a callback, never to our own stdout.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from rmodelpack.containers import run_hardened, sigterm_as_interrupt
from rmodelpack.exceptions import BuildError, ToolNotFound

Output = Callable[[str], None] | None

__all__ = ["native_environment", "run_hardened", "serve_docker", "serve_native"]


def native_tools_missing() -> list[str]:
    missing = [tool for tool in ("Rscript", "bash") if shutil.which(tool) is None]
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        missing.append("nginx")
    return missing


def native_environment(out_dir: Path, port: int, tmpdir: Path, model_path: Path) -> dict[str, str]:
    """Point the runtime at the rendered files in ``out_dir`` instead of the in-image paths.

    ``model_path`` is the manifest's own model file: the model rendered into the image
    context when there is one, else (source url/pvc) the local copy the manifest names.
    """
    env = dict(os.environ)
    env.update(
        RMP_CONFIG=str(out_dir / "app" / "rmodelpack.json"),
        RMP_PORT=str(port),
        RMP_HOST="127.0.0.1",
        RMP_TMPDIR=str(tmpdir),
    )
    rendered_model = out_dir / "model" / "model.rds"
    env["RMP_MODEL_PATH"] = str(rendered_model if rendered_model.is_file() else model_path)
    scripts = [p for p in (out_dir / "app").iterdir() if p.suffix in (".R", ".r")]
    if scripts:
        env["RMP_SCRIPT_PATH"] = str(scripts[0])
    return env


def serve_native(out_dir: Path, port: int, model_path: Path) -> int:
    """Run a rendered output's runtime/entrypoint.sh in the foreground until it exits or we are
    interrupted; return its exit status. The server writes to our stdout/stderr directly."""
    missing = native_tools_missing()
    if missing:
        raise ToolNotFound(
            f"serving natively needs {', '.join(missing)}; install them "
            "(Debian: apt-get install r-base-core r-cran-plumber nginx-light) or serve in docker",
            parameter="docker",
        )
    with tempfile.TemporaryDirectory(prefix="rmodelpack-serve-") as tmp:
        env = native_environment(out_dir, port, Path(tmp), model_path)
        entrypoint = out_dir / "runtime" / "entrypoint.sh"
        process = subprocess.Popen(["bash", str(entrypoint)], env=env)

        def forward(signum: int, _frame: FrameType | None) -> None:
            process.send_signal(signal.SIGTERM if signum == signal.SIGINT else signum)

        previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            return process.wait()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve_docker(
    image: str,
    port: int,
    *,
    name: str | None = None,
    detach: bool = False,
    on_output: Output = None,
) -> tuple[str, int]:
    """Run the image hardened as in Kubernetes, published on 127.0.0.1:port only.

    The container's log goes to ``on_output`` as it comes. Returns (container id, exit status);
    with detach the status is 0 and the container runs on. In the foreground, Ctrl-C and SIGTERM
    alike stop the container gracefully and remove it (status 0); a port that is taken is a
    ``UsageError`` naming ``port``, and no container is left behind.
    """
    import docker

    try:
        client = docker.from_env()
    except docker.errors.DockerException as exc:
        raise BuildError(f"cannot reach the docker engine: {exc}") from exc
    if detach:
        return run_hardened(client, image, port, name=name).id, 0
    with sigterm_as_interrupt():
        container = run_hardened(client, image, port, name=name)
        try:
            try:
                for chunk in container.logs(stream=True, follow=True):
                    if on_output is not None:
                        on_output(chunk.decode(errors="replace"))
                return container.id, container.wait()["StatusCode"]
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (containers.Terminated)
                container.stop(timeout=40)
                return container.id, 0
            except docker.errors.DockerException as exc:
                raise BuildError(f"docker failed while serving {image}: {exc}") from exc
        finally:
            with contextlib.suppress(docker.errors.NotFound):
                container.remove(force=True)
