"""The Debian base image (trixie: R 4.5), built for real from base-images/debian (offline base,
Debian packages)."""

from __future__ import annotations

import pytest

from rmodelpack.build import BASE_IMAGE_TAGS, build_base_image
from rmodelpack.exceptions import BuildError

pytestmark = [pytest.mark.docker]

HARDENED = {
    "read_only": True,
    "tmpfs": {"/tmp": "rw,nosuid,nodev"},
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
    "remove": True,
}


def run_in(client, image: str, script: str) -> str:
    """Run a shell script in a hardened, throwaway container of ``image``; return its output."""
    output = client.containers.run(image, ["bash", "-c", script], **HARDENED)
    return output.decode()


def test_base_is_non_root_and_labelled(docker_client, base_image):
    config = docker_client.images.get(base_image).attrs["Config"]
    assert base_image == BASE_IMAGE_TAGS["debian"] == "rmodelpack/r-base:trixie"
    assert config["User"] == "10001:10001"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "rmodelpack/r-base"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.base.name"].endswith("debian:trixie-slim")
    assert labels["io.rmodelpack.base.flavor"] == "debian"
    assert "org.opencontainers.image.created" not in labels  # no timestamp by default


def test_base_runs_r_plumber_nginx_and_tini_read_only_as_10001(docker_client, base_image):
    output = run_in(
        docker_client,
        base_image,
        "id -u; id -g; getent passwd rmodelpack | cut -d: -f6,7; "
        'Rscript -e \'cat(as.character(packageVersion("plumber")), '
        'as.character(packageVersion("jsonlite")), as.character(getRversion()), "\\n")\'; '
        "command -v nginx tini curl; "
        "[ -e /etc/nginx/sites-enabled/default ] || echo no-default-site; "
        "find / -xdev -perm /6000 -type f | wc -l; "
        "touch /opt/x 2>/dev/null || echo root-is-read-only; "
        "touch /tmp/x && echo tmp-is-writable",
    )
    lines = output.splitlines()
    assert lines[0:2] == ["10001", "10001"]
    assert lines[2] == "/nonexistent:/usr/sbin/nologin"
    plumber, _, r_version = lines[3].split()
    assert plumber == "1.3.0"  # Debian trixie's r-cran-plumber
    assert r_version.startswith("4.5.")  # Debian trixie's r-base-core
    assert lines[4:7] == ["/usr/sbin/nginx", "/usr/bin/tini", "/usr/bin/curl"]
    assert lines[7:] == ["no-default-site", "0", "root-is-read-only", "tmp-is-writable"]


def test_rebuilding_the_base_is_fully_cached(docker_client, base_image):
    progress: list[str] = []
    tag = build_base_image("debian", client=docker_client, on_progress=progress.append)
    assert tag == base_image
    assert "---> Using cache" in "\n".join(progress)
    assert not any(line.strip().startswith("---> Running in") for line in progress)


def test_unknown_flavour_is_a_build_error():
    with pytest.raises(BuildError, match="known families: debian, rocker"):
        build_base_image("alpine")
