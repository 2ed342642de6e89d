"""rmodelpack as users get it: the wheel and sdist from `python -m build`, the wheel installed
into a clean virtual environment outside the repository, and every command run from a folder
that is not the repository, on a copy of an example, with the chart and base images shipped
inside the wheel.

The wheel is built and installed once per module; pip fetches the dependencies as a user's pip
does (its cache makes a second run quick). The image build reuses docker's layer cache.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import yaml
from conftest import BIN_DIR, EXAMPLES_DIR, REPO_ROOT, free_port, require_tool

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli
    import tomli as tomllib

BOSTON = EXAMPLES_DIR / "boston-rf"
PASSWORD_ENV = {"BOSTON_SCORER_PASSWORD": "wheel-test-only-password"}
PROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]

# What the installed package needs beside its Python modules, as paths inside the wheel.
SHIPPED_FILES = [
    "rmodelpack/_chart/Chart.yaml",
    "rmodelpack/_chart/values.yaml",
    "rmodelpack/_chart/values.schema.json",
    "rmodelpack/_chart/templates/deployment.yaml",
    "rmodelpack/_base_images/debian/Dockerfile",
    "rmodelpack/_base_images/rocker/Dockerfile",
    "rmodelpack/runtime/entrypoint.sh",
    "rmodelpack/runtime/supervisor.R",
    "rmodelpack/runtime/nginx.conf.in",
    "rmodelpack/templates/Dockerfile.j2",
    "rmodelpack/templates/dockerignore.j2",
    "rmodelpack/rscripts/describe.R",
]


@dataclass(frozen=True)
class Dists:
    wheel: Path
    sdist: Path


@dataclass(frozen=True)
class Installed:
    """The wheel installed in a clean venv, and a work folder outside the repository."""

    venv: Path
    workdir: Path

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    def env(self) -> dict[str, str]:
        """The user's environment: the venv's scripts and the pinned helm first, no repo paths."""
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"}
        }
        env["PATH"] = os.pathsep.join([str(self.venv / "bin"), str(BIN_DIR), env["PATH"]])
        return {**env, **PASSWORD_ENV}

    def rmodelpack(self, *args: str, timeout: int = 900) -> subprocess.CompletedProcess[str]:
        completed = subprocess.run(
            [str(self.venv / "bin" / "rmodelpack"), *args],
            capture_output=True,
            text=True,
            cwd=self.workdir,
            env=self.env(),
            timeout=timeout,
        )
        return completed


def run(command: list[str], **options) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(command, capture_output=True, text=True, timeout=900, **options)
    assert completed.returncode == 0, (
        f"{' '.join(command)} exited {completed.returncode}\n{completed.stdout}\n{completed.stderr}"
    )
    return completed


def assert_ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def outside_repo(path: Path) -> bool:
    return not path.resolve().is_relative_to(REPO_ROOT)


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> Dists:
    """`python -m build`: the sdist, then the wheel built from that sdist (as PyPI would)."""
    out = tmp_path_factory.mktemp("dist")
    assert outside_repo(out)
    run([sys.executable, "-m", "build", "--outdir", str(out), str(REPO_ROOT)])
    wheels = list(out.glob("rmodelpack-*.whl"))
    sdists = list(out.glob("rmodelpack-*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(p.name for p in out.iterdir())
    return Dists(wheels[0], sdists[0])


@pytest.fixture(scope="module")
def installed(dists: Dists, tmp_path_factory) -> Installed:
    """A clean venv (no system site-packages, nothing from .venv) with only the wheel and its
    declared dependencies; the work folder holds a copy of boston-rf and nothing else."""
    if not (BOSTON / "model.rds").is_file():
        pytest.fail("examples/boston-rf/model.rds is missing; run: bash ci/setup.sh")
    root = tmp_path_factory.mktemp("wheel-user")
    venv = root / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(dists.wheel)])
    workdir = root / "work"
    shutil.copytree(BOSTON, workdir / "boston-rf", ignore=shutil.ignore_patterns(".rmodelpack"))
    assert outside_repo(workdir)
    return Installed(venv, workdir)


def test_sdist_and_wheel_have_the_same_version_as_the_package(dists: Dists):
    from rmodelpack import __version__

    assert dists.wheel.name.startswith(f"rmodelpack-{__version__}-py3-none-any")
    assert dists.sdist.name == f"rmodelpack-{__version__}.tar.gz"


def test_wheel_ships_the_chart_base_images_runtime_and_license(dists: Dists):
    names = set(zipfile.ZipFile(dists.wheel).namelist())
    missing = [name for name in SHIPPED_FILES if name not in names]
    assert not missing, f"missing from the wheel: {missing}"
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    assert any(name.startswith("rmodelpack/data/") for name in names)
    chart_files = {
        p.relative_to(REPO_ROOT / "chart").as_posix()
        for p in (REPO_ROOT / "chart").rglob("*")
        if p.is_file()
    }
    shipped_chart = {
        n.removeprefix("rmodelpack/_chart/") for n in names if n.startswith("rmodelpack/_chart/")
    }
    assert chart_files <= shipped_chart, sorted(chart_files - shipped_chart)


def test_sdist_can_rebuild_everything_the_wheel_ships(dists: Dists):
    with tarfile.open(dists.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in [
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "chart/Chart.yaml",
        "base-images/debian/Dockerfile",
        "rmodelpack/runtime/entrypoint.sh",
    ]:
        assert needed in names, f"{needed} is missing from the sdist"


def test_metadata_has_what_a_pypi_page_needs(dists: Dists):
    with zipfile.ZipFile(dists.wheel) as wheel:
        (metadata_name,) = [n for n in wheel.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(wheel.read(metadata_name))
    assert metadata["Name"] == "rmodelpack"
    assert metadata["License-Expression"] == PROJECT["license"]
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Description-Content-Type"] == "text/markdown"
    urls = dict(url.split(", ", 1) for url in metadata.get_all("Project-URL"))
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(urls)
    assert all(url.startswith("https://") for url in urls.values())
    classifiers = metadata.get_all("Classifier")
    assert "Programming Language :: R" in classifiers
    assert metadata["Requires-Python"] == PROJECT["requires-python"]
    description = metadata.get_payload()
    assert description.startswith("# rmodelpack")
    # PyPI shows the README without the repository: no link may point at a relative path.
    assert "](examples/" not in description and "](docs/" not in description
    assert "](https://github.com/rmodelpack/rmodelpack/blob/main/docs/aks.md)" in description


def test_twine_check_passes(dists: Dists):
    """twine's check is the one PyPI's upload runs: the README must render."""
    output = run(
        [sys.executable, "-m", "twine", "check", "--strict", str(dists.wheel), str(dists.sdist)]
    ).stdout
    assert output.count("PASSED") == 2, output


def test_installed_package_is_the_wheel_not_the_checkout(installed: Installed):
    # `import rmodelpack.build as b` would give the function rmodelpack.build (the package
    # exports the pipeline's functions under the modules' names); import the parts by name.
    probe = (
        "import json, rmodelpack; from rmodelpack.build import BASE_IMAGES_DIR; "
        "from rmodelpack.deploy import chart_path; "
        "print(json.dumps([rmodelpack.__file__, str(chart_path()), str(BASE_IMAGES_DIR)]))"
    )
    completed = run(
        [str(installed.python), "-c", probe], cwd=installed.workdir, env=installed.env()
    )
    package, chart, base_images = (Path(p) for p in json.loads(completed.stdout))
    for path in (package, chart, base_images):
        assert path.is_relative_to(installed.venv), f"{path} is not inside the clean venv"
    assert (chart / "Chart.yaml").is_file()
    assert (base_images / "debian" / "Dockerfile").is_file()


def test_version(installed: Installed):
    from rmodelpack import __version__

    assert assert_ok(installed.rmodelpack("--version")).strip() == f"rmodelpack {__version__}"


@pytest.mark.r
def test_init_validate_render_a_copy_of_an_example(installed: Installed):
    require_tool("Rscript")
    folder = installed.workdir / "scaffolded"
    folder.mkdir()
    shutil.copy(BOSTON / "model.rds", folder / "model.rds")
    assert_ok(installed.rmodelpack("init", "scaffolded/model.rds"))
    manifest = yaml.safe_load((folder / "rmodel.yaml").read_text())
    assert manifest["name"] == "scaffolded"
    assert "lstat" in json.dumps(manifest)  # the input schema came from the model's terms
    assert "valid (scaffolded" in assert_ok(installed.rmodelpack("validate", "scaffolded"))
    assert_ok(installed.rmodelpack("render", "scaffolded", "-o", "scaffolded-out"))
    rendered = installed.workdir / "scaffolded-out"
    assert (rendered / "Dockerfile").is_file()
    assert (rendered / "runtime" / "entrypoint.sh").is_file()
    assert yaml.safe_load((rendered / "values.yaml").read_text())["image"]


@pytest.fixture(scope="module")
def rendered_boston(installed: Installed) -> Path:
    assert_ok(installed.rmodelpack("render", "boston-rf"))
    return installed.workdir / "boston-rf" / ".rmodelpack"


@pytest.mark.docker
@pytest.mark.slow
def test_build_uses_the_shipped_base_image_dockerfile(installed: Installed, docker_client):
    """The base image builds from the wheel's base-images/ (docker's cache makes it quick when
    the checkout built the same Dockerfile), then the model image on top of it."""
    probe = "from rmodelpack.build import build_base_image; print(build_base_image('debian'))"
    tag = run(
        [str(installed.python), "-c", probe], cwd=installed.workdir, env=installed.env()
    ).stdout.strip()
    assert docker_client.images.get(tag)
    output = assert_ok(installed.rmodelpack("build", "boston-rf"))
    values = yaml.safe_load((installed.workdir / "boston-rf/.rmodelpack/values.yaml").read_text())
    image = f"{values['image']['repository']}:{values['image']['tag']}"
    assert image in output
    assert docker_client.images.get(image)


@pytest.mark.helm
def test_deploy_dry_run_renders_the_shipped_chart(installed: Installed, rendered_boston: Path):
    require_tool("helm")
    output = assert_ok(
        installed.rmodelpack(
            "deploy", str(rendered_boston / "values.yaml"), "--dry-run", "--release", "boston"
        )
    )
    objects = [doc for doc in yaml.safe_load_all(output) if doc]
    kinds = {doc["kind"] for doc in objects}
    assert {"Deployment", "Service"} <= kinds
    deployment = next(doc for doc in objects if doc["kind"] == "Deployment")
    values = yaml.safe_load((rendered_boston / "values.yaml").read_text())
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith(values["image"]["repository"])


@pytest.mark.r
def test_serve_natively_answers_a_prediction(installed: Installed):
    """Without the basic-auth password: a native server needs no chart values."""
    require_tool("Rscript")
    env = {k: v for k, v in installed.env().items() if k != "BOSTON_SCORER_PASSWORD"}
    port = free_port()
    log = installed.workdir / "serve.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [str(installed.venv / "bin" / "rmodelpack"), "serve", "boston-rf", "--port", str(port)],
            cwd=installed.workdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_ready(server, port, log)
        rows = json.loads((BOSTON / "requests" / "predict.json").read_text())["data"]
        response = requests.post(f"http://127.0.0.1:{port}/predict", json=rows, timeout=30)
        assert response.status_code == 200, response.text
        predictions = response.json()["predictions"]
        assert len(predictions) == len(rows)
        assert all(isinstance(value, float) and 5 <= value <= 50 for value in predictions)
        metadata = requests.get(f"http://127.0.0.1:{port}/metadata", timeout=10).json()
        assert json.dumps(metadata).count("boston-rf") >= 1
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)


def wait_ready(server: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"rmodelpack serve exited {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if requests.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"rmodelpack serve not ready after {timeout}s:\n{log.read_text()[-3000:]}")
