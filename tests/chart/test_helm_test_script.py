"""rmodelpack/runtime/helm-test.sh (the `helm test` pod's script, shipped in the image at
/opt/rmodelpack/runtime/) run with bash and curl against a real rmodelpack server started
natively on 127.0.0.1, and against nginx standing in for the ingress controller (basic auth,
routing by host name) and for a wrong backend; then in the built image with the pod's hardening.
Every failure is one line on stderr that says which call failed and why."""

from __future__ import annotations

import getpass
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import EXAMPLES_DIR, free_port
from image.conftest import base_image, build_example, example_env  # noqa: F401
from image.containers import hardened_container, wait_ready

# The native server's fixtures (the Boston example as rendered), shared with the runtime tests.
from runtime.conftest import boston_config, boston_model, server_factory  # noqa: F401
from runtime.server import NativeServer

from chart.helm_template import CHART_DIR, one, render_chart
from rmodelpack.contract import CONTAINER_PORT, CONTAINER_UID

SCRIPT = CHART_DIR.parent / "rmodelpack" / "runtime" / "helm-test.sh"
IMAGE_SCRIPT = "/opt/rmodelpack/runtime/helm-test.sh"
PREDICT_BODY = (EXAMPLES_DIR / "boston-rf" / "requests" / "predict.json").read_text()
ROWS = len(json.loads(PREDICT_BODY)["data"])
STRICT_SCORE = CHART_DIR.parent / "tests" / "runtime" / "scripts" / "strict_score.R"
PUBLIC_HOST = "boston.example.com"
USER, PASSWORD = "scorer", "helm-test-Passw0rd"

pytestmark = [pytest.mark.r, pytest.mark.helm]


def run_script(env: dict[str, str], *args: str, command: list[str] | None = None):
    full_env = {"PATH": os.environ["PATH"], "TMPDIR": os.environ.get("TMPDIR", "/tmp"), **env}
    return subprocess.run(
        command or ["bash", str(SCRIPT), *args],
        env=full_env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_fails_with(result: subprocess.CompletedProcess[str], *phrases: str) -> None:
    """Exit 1 and one line on stderr, prefixed helm-test:, holding every phrase."""
    assert result.returncode == 1, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("helm-test: "), result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]


@pytest.fixture(scope="module")
def model(server_factory) -> NativeServer:  # noqa: F811
    """The Boston example served natively with a scoring script that fails on crim == 99, so the
    same server gives a real 500."""

    def strict(config: dict[str, Any]) -> None:
        config["scoring"]["script"] = str(STRICT_SCORE)

    return server_factory(strict, env={"RMP_WORKERS": "1"})


def test_passes_against_a_serving_model(model):
    result = run_script({"SERVICE_URL": model.base_url, "PREDICT_BODY": PREDICT_BODY})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "readyz ok",
        f"predict through the Service ok ({ROWS} predictions)",
    ]
    assert result.stderr == ""
    assert logged_predictions(model) == [ROWS], "the script's /predict is not in the access log"


def logged_predictions(server: NativeServer) -> list[int]:
    """The rows of each 200 /predict in the access log (nginx flushes it every second)."""
    deadline = time.monotonic() + 10
    while True:
        log = server.access_log()
        rows = [e["rows"] for e in log if e["path"] == "/predict" and e["status"] == 200]
        if rows or time.monotonic() > deadline:
            return rows
        time.sleep(0.2)


def test_a_bare_array_body_is_counted_too(model):
    rows = json.loads(PREDICT_BODY)["data"][:2]
    result = run_script({"SERVICE_URL": model.base_url, "PREDICT_BODY": json.dumps(rows)})
    assert result.returncode == 0, result.stderr
    assert "predict through the Service ok (2 predictions)" in result.stdout


def test_without_a_predict_body_only_readyz_is_checked(model):
    result = run_script({"SERVICE_URL": model.base_url, "PREDICT_BODY": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["readyz ok"]


def test_fails_when_no_server_answers():
    url = f"http://127.0.0.1:{free_port()}"
    result = run_script({"SERVICE_URL": url, "PREDICT_BODY": PREDICT_BODY}, "--ready-retries", "1")
    assert_fails_with(result, f"GET {url}/readyz (through the Service) failed", "no model pod")
    assert "readyz ok" not in result.stdout


def test_waits_for_a_model_that_is_still_starting(server_factory):  # noqa: F811
    """Run right after the install: nothing listens yet, then /readyz answers 503 while the
    workers load; both are retried (2 s apart) until the model is ready."""
    starting = server_factory(wait=False)
    result = run_script(
        {"SERVICE_URL": starting.base_url, "PREDICT_BODY": PREDICT_BODY}, "--ready-retries", "30"
    )
    assert result.returncode == 0, result.stderr + starting.logs()
    assert f"predict through the Service ok ({ROWS} predictions)" in result.stdout


def test_a_5xx_from_the_model_is_reported_with_its_error(model):
    body = json.loads(PREDICT_BODY)
    body["data"][0]["crim"] = 99  # strict_score.R's failure trigger
    result = run_script({"SERVICE_URL": model.base_url, "PREDICT_BODY": json.dumps(body)})
    assert_fails_with(result, f"POST {model.base_url}/predict", "HTTP 500", "scoring_error")
    assert "readyz ok" in result.stdout


def test_a_4xx_names_the_status_and_the_servers_message(model):
    result = run_script({"SERVICE_URL": model.base_url, "PREDICT_BODY": '[{"crim": "x"}]'})
    assert_fails_with(result, "HTTP 422", "invalid_input")


@pytest.mark.parametrize(
    ("path", "phrase"),
    [
        ("/html", 'answered 200 but not {"predictions": [...]}'),
        ("/extra", 'answered 200 but not {"predictions": [...]}'),
        ("/short", f"answered 1 predictions for the {ROWS} rows of tests.predictBody"),
    ],
)
def test_a_wrong_answer_shape_fails(proxy, path, phrase):
    url = f"{proxy.wrong_backend}{path}"
    result = run_script({"SERVICE_URL": url, "PREDICT_BODY": PREDICT_BODY})
    assert_fails_with(result, f"POST {url}/predict", phrase)


@pytest.mark.parametrize(
    ("change", "args", "message"),
    [
        ({"SERVICE_URL": ""}, (), "SERVICE_URL is empty"),
        ({"PREDICT_BODY": '{"x": 1}'}, (), "PREDICT_BODY (tests.predictBody) holds no JSON array"),
        ({}, ("--insecure",), "unknown argument '--insecure'"),
        ({}, ("--ready-retries", "many"), "--ready-retries needs a whole number"),
        ({"PUBLIC_URL": "ftp://x"}, (), "PUBLIC_URL 'ftp://x' is not http(s)://<host>[:port]"),
        ({"PUBLIC_URL": "http://x"}, (), "INGRESS_SERVICE is empty"),
    ],
)
def test_bad_usage_is_a_clear_error(change, args, message):
    # Port 9 (discard) is never contacted: the script stops before curl.
    env = {"SERVICE_URL": "http://127.0.0.1:9", "PREDICT_BODY": PREDICT_BODY, **change}
    result = run_script(env, *args)
    assert result.returncode == 2, result
    assert message in result.stderr
    assert result.stdout == ""


# --- through an ingress: nginx with basic auth in front of the model ----------------------------


class Proxy:
    def __init__(self, auth_port: int, wrong_backend_port: int) -> None:
        self.public_url = f"http://{PUBLIC_HOST}:{auth_port}"
        self.wrong_backend = f"http://127.0.0.1:{wrong_backend_port}"


NGINX_CONF = """
{user}
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log;
daemon off;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  # The ingress: basic auth for the public host name only, any other host is not routed.
  server {{
    listen 127.0.0.1:{auth_port} default_server;
    return 404;
  }}
  server {{
    listen 127.0.0.1:{auth_port};
    server_name {host};
    auth_basic "boston";
    auth_basic_user_file {root}/htpasswd;
    location / {{ proxy_pass {upstream}; }}
  }}
  # A backend that is not an rmodelpack model: ready, but /predict answers another shape.
  server {{
    listen 127.0.0.1:{wrong_port};
    default_type application/json;
    location ~ /readyz$ {{ return 200 "ok"; }}
    location = /html/predict {{ default_type text/html; return 200 "<html>Welcome</html>"; }}
    location = /extra/predict {{ return 200 '{{"predictions":[1,2,3,4,5],"more":[]}}'; }}
    location = /short/predict {{ return 200 '{{"predictions":[1]}}'; }}
  }}
}}
"""


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else "")
    if not found:
        pytest.skip("nginx is not installed (run: bash ci/setup.sh)")
    return found


def wait_listening(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nginx not listening on {port}: {log.read_text()}")


@pytest.fixture(scope="module")
def proxy(model, tmp_path_factory) -> Iterator[Proxy]:
    root = tmp_path_factory.mktemp("ingress")
    digest = subprocess.run(
        ["openssl", "passwd", "-apr1", PASSWORD], capture_output=True, text=True, check=True
    ).stdout.strip()
    (root / "htpasswd").write_text(f"{USER}:{digest}\n")
    auth_port, wrong_port = free_port(), free_port()
    conf = NGINX_CONF.format(
        # Started as root, nginx's workers would be nobody, who cannot read pytest's tmp dirs.
        user=f"user {getpass.getuser()};" if os.geteuid() == 0 else "",
        root=root, auth_port=auth_port, wrong_port=wrong_port, host=PUBLIC_HOST,
        upstream=model.base_url,
    )  # fmt: skip
    (root / "nginx.conf").write_text(conf)
    process = subprocess.Popen(
        [
            nginx_binary(),
            "-p",
            str(root),
            "-e",
            str(root / "error.log"),
            "-c",
            str(root / "nginx.conf"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_listening(auth_port, process, root / "error.log")
        wait_listening(wrong_port, process, root / "error.log")
        yield Proxy(auth_port, wrong_port)
    finally:
        process.terminate()
        process.wait(timeout=20)


def ingress_env(model: NativeServer, public_url: str, **extra: str) -> dict[str, str]:
    return {
        "SERVICE_URL": model.base_url,
        "PREDICT_BODY": PREDICT_BODY,
        "PUBLIC_URL": public_url,
        "INGRESS_SERVICE": "127.0.0.1",
        **extra,
    }


def test_passes_through_the_ingress_with_auth(model, proxy):
    env = ingress_env(model, proxy.public_url, AUTH_USERNAME=USER, AUTH_PASSWORD=PASSWORD)
    result = run_script(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "readyz ok",
        f"predict through the Service ok ({ROWS} predictions)",
        "auth required ok",
        "readyz through the ingress ok",
        f"predict through the ingress ok ({ROWS} predictions)",
        f"through the ingress ({proxy.public_url} via 127.0.0.1) ok",
    ]


def test_wrong_credentials_get_401_and_fail(model, proxy):
    env = ingress_env(model, proxy.public_url, AUTH_USERNAME=USER, AUTH_PASSWORD="wrong")
    result = run_script(env)
    assert_fails_with(result, "through the ingress", "HTTP 401", "tests.ingress.credentialsSecret")


def test_missing_credentials_get_401_and_fail(model, proxy):
    result = run_script(ingress_env(model, proxy.public_url))
    assert_fails_with(result, f"GET {proxy.public_url}/readyz (through the ingress)", "HTTP 401")


def test_an_ingress_that_lets_anyone_in_fails(model):
    """Credentials are given, so auth is on: a route that answers without them is a failure."""
    env = ingress_env(model, f"http://{PUBLIC_HOST}:{model.port}", AUTH_USERNAME=USER,
                      AUTH_PASSWORD=PASSWORD)  # fmt: skip
    assert_fails_with(run_script(env), "answered HTTP 200, expected 401: auth is not enforced")


def test_the_public_host_name_is_what_the_ingress_routes_on(model, proxy):
    other = proxy.public_url.replace(PUBLIC_HOST, "other.example.com")
    env = ingress_env(model, other, AUTH_USERNAME=USER, AUTH_PASSWORD=PASSWORD)
    assert_fails_with(run_script(env), "expected 401", "HTTP 404")


# --- the chart's test pod runs the script -------------------------------------------------------


@pytest.fixture(scope="module")
def hook_container(helm) -> dict[str, Any]:
    values = {"tests": {"predictBody": PREDICT_BODY}}
    pod = one(
        render_chart(values, show_only=["templates/tests/test-connection.yaml"], helm=helm), "Pod"
    )
    [container] = pod["spec"]["containers"]
    return container


def test_the_hook_runs_the_images_script_with_env_only(hook_container):
    assert hook_container["command"][-2:] == ["helm-test", IMAGE_SCRIPT]
    assert "curl" not in json.dumps(hook_container["command"])
    assert "args" not in hook_container
    env = {e["name"]: e["value"] for e in hook_container["env"]}
    assert env == {
        "SERVICE_URL": "http://release-rmodelpack.models.svc:80",
        "PREDICT_BODY": PREDICT_BODY,
    }


def test_an_image_without_the_script_fails_with_a_clear_message(hook_container):
    """The hook's own command, run as the pod would in an image built before the script existed."""
    assert not Path(IMAGE_SCRIPT).exists()
    result = run_script({"SERVICE_URL": "http://127.0.0.1:9"}, command=hook_container["command"])
    assert result.returncode == 127
    assert f"helm-test: {IMAGE_SCRIPT} is missing" in result.stderr
    assert "rebuild the image or set tests.enabled=false" in result.stderr


def test_the_hooks_command_passes_its_arguments_to_the_script(hook_container, model):
    command = [*hook_container["command"][:-1], str(SCRIPT), "--ready-retries", "0"]
    result = run_script(
        {"SERVICE_URL": model.base_url, "PREDICT_BODY": PREDICT_BODY}, command=command
    )
    assert result.returncode == 0, result.stderr
    bad = run_script({"SERVICE_URL": model.base_url}, command=[*command[:-2], "--nope"])
    assert bad.returncode == 2 and "unknown argument '--nope'" in bad.stderr


def test_the_script_ships_in_every_model_image():
    """render's build context copies runtime/ to /opt/rmodelpack/runtime/."""
    from rmodelpack.render import runtime_files

    assert runtime_files()["runtime/helm-test.sh"] == SCRIPT.read_bytes()


# --- in the built image, hardened as the test pod is --------------------------------------------


def run_hook_in_image(client, image: str, hook: dict[str, Any], server, env: dict[str, str],
                      *args: str) -> tuple[int, str]:  # fmt: skip
    """The hook's command in `image` with the pod's securityContext and memory limit, sharing
    the server container's network namespace so the model is 127.0.0.1:8000."""
    security = hook["securityContext"]
    assert security["readOnlyRootFilesystem"] and not security["allowPrivilegeEscalation"]
    memory = hook["resources"]["limits"]["memory"].removesuffix("Mi")
    container = client.containers.run(
        image,
        entrypoint=hook["command"][0],
        command=[*hook["command"][1:], *args],
        environment=env,
        read_only=True,
        tmpfs={"/tmp": "rw,nosuid,nodev,size=16m"},
        cap_drop=security["capabilities"]["drop"],
        security_opt=["no-new-privileges"],
        user=f"{CONTAINER_UID}:{CONTAINER_UID}",
        mem_limit=f"{memory}m",
        network_mode=f"container:{server.container.id}",
        detach=True,
    )
    try:
        status = container.wait(timeout=120)["StatusCode"]
        return status, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


@pytest.mark.docker
@pytest.mark.slow
def test_the_hook_runs_in_the_built_image_with_the_pods_hardening(
    docker_client,
    build_example,  # noqa: F811
    hook_container,
):
    image = build_example("boston-rf")
    with hardened_container(docker_client, image.tag) as server:
        wait_ready(server)
        service = f"http://127.0.0.1:{CONTAINER_PORT}"
        env = {"SERVICE_URL": service, "PREDICT_BODY": PREDICT_BODY}
        status, logs = run_hook_in_image(docker_client, image.tag, hook_container, server, env)
        assert status == 0, logs
        assert f"predict through the Service ok ({ROWS} predictions)" in logs
        down = {**env, "SERVICE_URL": "http://127.0.0.1:9"}
        status, logs = run_hook_in_image(
            docker_client, image.tag, hook_container, server, down, "--ready-retries", "0"
        )
        assert status == 1, logs
        assert "helm-test: GET http://127.0.0.1:9/readyz (through the Service) failed" in logs
