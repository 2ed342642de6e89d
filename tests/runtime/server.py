"""Start rmodelpack's runtime natively (R + nginx on this machine), as the image would.

Shared by the runtime tests, the image tests and the benchmarks: they all launch the same
`rmodelpack/runtime/entrypoint.sh`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
RUNTIME_DIR = REPO_ROOT / "rmodelpack" / "runtime"
ENTRYPOINT = RUNTIME_DIR / "entrypoint.sh"


@dataclass
class NativeServer:
    """A running entrypoint.sh, its logs and the RMP_TMPDIR it writes below."""

    process: subprocess.Popen[bytes]
    port: int
    tmpdir: Path
    stdout_path: Path
    stderr_path: Path
    _files: list[Any] = field(default_factory=list, repr=False)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    @property
    def run_dir(self) -> Path:
        """The per-start directory the entrypoint makes below RMP_TMPDIR."""
        dirs = sorted(self.tmpdir.glob("rmodelpack.*"))
        if not dirs:
            raise FileNotFoundError(f"no run directory below {self.tmpdir} yet")
        return dirs[-1]

    def worker_pids(self) -> dict[int, int]:
        pids = {}
        for path in self.run_dir.glob("w*.up"):
            # The supervisor removes a dead worker's file before it starts the replacement.
            with contextlib.suppress(FileNotFoundError):
                text = path.read_text().strip()
                if text:
                    pids[int(path.stem[1:])] = int(text)
        return pids

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.logs()}")
            try:
                if requests.get(self.url("/readyz"), timeout=2).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"server not ready after {timeout}s:\n{self.logs()}")

    def logs(self) -> str:
        return f"--- stderr ---\n{self.stderr_path.read_text(errors='replace')}"

    def access_log(self) -> list[dict[str, Any]]:
        lines = self.stdout_path.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def terminate(self, timeout: float = 60.0) -> int:
        """SIGTERM, as Kubernetes sends it; returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self.close_files()

    def kill(self) -> None:
        """SIGKILL the whole process group: entrypoint, R supervisor, workers and nginx."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.close_files()

    def close_files(self) -> None:
        for handle in self._files:
            handle.close()
        self._files.clear()


def start_native_server(
    config_path: Path,
    port: int,
    env: dict[str, str] | None = None,
    tmpdir: Path | None = None,
    entrypoint: Path = ENTRYPOINT,
) -> NativeServer:
    """Run entrypoint.sh on 127.0.0.1:port with the given runtime config json.

    `env` adds or overrides RMP_* variables (e.g. RMP_MODEL_PATH, RMP_WORKERS). Logs go to
    files in `tmpdir` (default: beside the config), never to pipes that could fill up.
    `entrypoint` may name another checkout's runtime (the benchmarks compare against one).
    """
    tmpdir = tmpdir or config_path.parent / f"server-{port}"
    tmpdir.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(
        RMP_CONFIG=str(config_path),
        RMP_PORT=str(port),
        RMP_HOST="127.0.0.1",
        RMP_TMPDIR=str(tmpdir),
    )
    full_env.update(env or {})
    stdout_path = tmpdir / "stdout.log"
    stderr_path = tmpdir / "stderr.log"
    stdout = stdout_path.open("wb")
    stderr = stderr_path.open("wb")
    process = subprocess.Popen(
        ["bash", str(entrypoint)],
        env=full_env,
        stdout=stdout,
        stderr=stderr,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    return NativeServer(process, port, tmpdir, stdout_path, stderr_path, [stdout, stderr])
