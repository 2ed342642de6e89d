"""Faults around the supervisor, its model loader and the runtime's settings, found by black-box
probes of the native server and the image:

- the supervisor waited on a replacement loader without a timeout: while a large model loaded,
  /readyz kept its last answer (200 with no worker left) and a hung worker was not replaced;
- a loader killed after it had forked a worker (out of memory) hung the supervisor for good (the
  worker held the loader's pipe open), and one killed during a replacement stopped the server;
- SIGTERM during a replacement left the loader running after the server had stopped;
- quit() in a scoring script deleted the tempdir every worker shares, options(OutDec = ",")
  reached /metrics, and a deleted up file kept /readyz at 503 for good;
- RMP_* overrides past their maximum broke the nginx config or started 1,000 workers, and a
  model that cannot be read or scored was only found by the requests that failed.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import metric_samples

from adversarial.conftest import ServeExample, every_worker_serves, use_script
from adversarial.load import json_body
from adversarial.test_faults import wait_until

pytestmark = [pytest.mark.r, pytest.mark.slow]

RUNTIME = Path(__file__).resolve().parents[2] / "rmodelpack" / "runtime"


def readyz(served) -> int:
    return requests.get(served.url("/readyz"), timeout=5).status_code


def predict(served, rows: list[dict[str, Any]]) -> requests.Response:
    return requests.post(
        served.url("/predict"),
        data=json_body(rows),
        headers={"Content-Type": "application/json"},
        timeout=30,
    )


def test_the_supervisor_keeps_watching_while_a_replacement_loads(
    serve_example: ServeExample, tmp_path: Path
) -> None:
    """Both workers die while the first replacement is still loading: /readyz turns 503 at once
    (it stayed 200 for the whole load). The loader is then killed: the server carries on and
    tries again (it used to exit), and serves with both workers once loading is quick again."""
    flag = tmp_path / "slow"
    served = serve_example(
        "boston-rf",
        use_script("flagged_load_score.R"),
        env={"RMP_TEST_SLOW_LOAD": str(flag)},
    )
    pids = served.server.worker_pids()
    flag.touch()
    os.kill(pids[1], signal.SIGKILL)
    loader_pid = served.server.run_dir / "loader.pid"
    wait_until(loader_pid.exists, timeout=10)
    assert readyz(served) == 200  # worker 2 still serves
    os.kill(pids[2], signal.SIGKILL)
    wait_until(lambda: readyz(served) == 503, timeout=3)
    os.kill(int(loader_pid.read_text()), signal.SIGKILL)
    wait_until(lambda: "died before it delivered" in served.server.logs(), timeout=5)
    assert served.server.process.poll() is None, served.server.logs()
    flag.unlink()
    wait_until(lambda: readyz(served) == 200, timeout=30)
    every_worker_serves(served)
    assert metric_samples(served.url("/metrics"))["rmp_worker_restarts_total"] == 2


def test_sigterm_during_a_replacement_stops_the_loader_too(
    serve_example: ServeExample, tmp_path: Path
) -> None:
    flag = tmp_path / "slow"
    served = serve_example(
        "boston-rf",
        use_script("flagged_load_score.R", drain_seconds=0),
        env={"RMP_TEST_SLOW_LOAD": str(flag)},
    )
    flag.touch()
    os.kill(served.server.worker_pids()[1], signal.SIGKILL)
    loader_pid_file = served.server.run_dir / "loader.pid"
    wait_until(loader_pid_file.exists, timeout=10)
    loader = int(loader_pid_file.read_text())
    assert served.server.terminate(timeout=30) == 0
    wait_until(lambda: not alive(loader), timeout=5)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in "ZX"


LOADER_WITH_AN_ORPHAN = """
for (f in list.files("{runtime}", pattern = "[.]R$", full.names = TRUE))
  if (basename(f) != "supervisor.R") sys.source(f, envir = globalenv())
code <- parse("{runtime}/supervisor.R")
for (e in code[-length(code)]) eval(e, globalenv())
# A loader that forks a worker and is then killed, as the memory limit kills one: the worker
# holds the loader's pipe open, so the pipe never reaches its end.
job <- parallel::mcparallel({{
  parallel::mcparallel(Sys.sleep(30), detached = TRUE)
  Sys.sleep(0.5)
  tools::pskill(Sys.getpid(), tools::SIGKILL)
}})
loading <- list(job = job, ids = 1L, state = "working", result = NULL)
started <- Sys.time()
while (loading$state == "working" && Sys.time() - started < 10) {{
  loading <- rmp_poll_loader(loading)
  Sys.sleep(0.05)
}}
cat("state:", loading$state, "\\n")
"""


def test_a_loader_killed_after_forking_a_worker_is_seen_dead() -> None:
    """The supervisor used to block in mccollect() on such a loader forever: the pod stayed
    healthy (liveness 200) and never ready, with nothing in the log."""
    script = LOADER_WITH_AN_ORPHAN.format(runtime=RUNTIME)
    result = subprocess.run(
        ["Rscript", "--vanilla", "-e", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "state: died" in result.stdout, result.stdout + result.stderr


ALIVE_WHILE_EXITING = """
source("{runtime}/worker.R")
# Asked about processes as they exit: each one's stat file vanishes under the read. The
# supervisor asks this of every loader as it leaves; an error here stopped the server in CI.
failures <- 0L
for (k in 1:300) {{
  pid <- parallel::mcparallel(invisible(NULL), detached = TRUE)$pid
  repeat {{
    alive <- tryCatch(rmp_alive(pid), error = function(e) {{ failures <<- failures + 1L; FALSE }})
    if (!alive) break
  }}
}}
never <- vapply(1:200, function(i) rmp_alive(2147483647L), TRUE)
cat("failures:", failures, "connections:", nrow(showConnections()), "never:", any(never), "\\n")
"""


def test_asking_whether_an_exiting_process_is_alive_never_fails() -> None:
    script = ALIVE_WHILE_EXITING.format(runtime=RUNTIME)
    result = subprocess.run(
        ["Rscript", "--vanilla", "-e", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "failures: 0 connections: 0 never: FALSE" in result.stdout, result.stdout


def test_quit_and_outdec_in_a_scoring_script_harm_only_their_request(
    serve_example: ServeExample,
) -> None:
    served = serve_example("boston-rf", use_script("hostile_score.R"))
    row = served.rows[0]
    quitting = predict(served, [{**row, "crim": 66}])
    assert quitting.status_code == 500, quitting.text
    assert quitting.json()["error"]["code"] == "scoring_error"
    assert "called quit()" in served.server.logs()
    # Every later request writes a temporary file: the shared tempdir is still there.
    for _ in range(10):
        assert predict(served, [row]).status_code == 200
    assert predict(served, [{**row, "crim": 55}]).status_code == 200
    for _ in range(4):  # reach both workers, the one that changed OutDec included
        assert predict(served, [row]).status_code == 200
    metrics = requests.get(served.url("/metrics"), timeout=10).text
    assert not re.search(r'le="[0-9]+,[0-9]', metrics), metrics[:2000]
    assert not re.search(r"_sum [0-9]+,[0-9]", metrics)
    every_worker_serves(served)


def test_a_worker_that_segfaults_leaves_the_others_a_tempdir(serve_example: ServeExample) -> None:
    """R's segfault handler deletes the tempdir the workers share: the survivor then failed
    every later tempfile() with a 500 for good while /readyz said 200."""
    served = serve_example("boston-rf", use_script("segfault_once_score.R"))
    row = served.rows[0]
    before = served.server.worker_pids()
    crashing = predict(served, [{**row, "crim": 44}])
    assert (served.server.run_dir / "segfaulted").exists()
    assert crashing.status_code in (200, 502), crashing.text

    def one_replaced() -> bool:
        now = served.server.worker_pids()
        return sorted(now) == [1, 2] and len(set(now.values()) & set(before.values())) == 1

    wait_until(one_replaced, timeout=30)
    for _ in range(6):  # every request writes a temporary file, on both workers
        response = predict(served, [row])
        assert response.status_code == 200, response.text
    every_worker_serves(served)


def test_a_deleted_up_file_comes_back(serve_example: ServeExample) -> None:
    """A tmp cleaner removing the up files kept /readyz at 503 for good while every worker
    served, and stopped the heartbeat the supervisor watches."""
    served = serve_example("boston-rf")
    for path in served.server.run_dir.glob("w*.up"):
        path.unlink()
    wait_until(lambda: sorted(served.server.worker_pids()) == [1, 2], timeout=5)
    wait_until(lambda: readyz(served) == 200, timeout=3)
    every_worker_serves(served)


@pytest.mark.parametrize(
    ("env", "words"),
    [
        ({"RMP_MAX_BODY_BYTES": "3000000000"}, "(RMP_MAX_BODY_BYTES) must be a whole number"),
        ({"RMP_WORKERS": "65"}, "(RMP_WORKERS) must be a whole number from 1 to 64"),
        ({"RMP_TIMEOUT_SECONDS": "1e10"}, "(RMP_TIMEOUT_SECONDS) must be a whole number"),
        ({"RMP_DRAIN_SECONDS": "100000"}, "(RMP_DRAIN_SECONDS) must be a whole number from 0"),
        ({"RMP_PORT": "70000"}, "(RMP_PORT) must be a whole number from 1 to 65535"),
    ],
)
def test_an_override_past_its_maximum_is_a_configuration_error(
    serve_example: ServeExample, env: dict[str, str], words: str
) -> None:
    served = serve_example("boston-rf", env=env, wait=False)
    assert served.server.process.wait(timeout=60) == 2, served.server.logs()
    assert words in served.server.logs()


@pytest.mark.parametrize(
    ("content", "packages", "words"),
    [
        (b"not an RDS file\n", None, "is not a readable RDS file"),
        ("function", None, "has no predict() method"),
        ("randomForest", [], "randomForest) has no predict() method"),
    ],
)
def test_a_model_that_cannot_score_does_not_start(
    serve_example: ServeExample,
    tmp_path: Path,
    content: bytes | str,
    packages: list[str] | None,
    words: str,
) -> None:
    """Each of these used to start, become ready, and answer every request with a 500."""
    model = tmp_path / "model.rds"
    if content == "function":
        subprocess.run(
            ["Rscript", "-e", f"saveRDS(function(x) x, '{model}')"], check=True, timeout=60
        )
    elif content == "randomForest":
        model = None  # the example's own model, without its package
    else:
        model.write_bytes(content)

    def tweak(config: dict[str, Any]) -> None:
        config["model"]["sha256"] = ""  # not the model the config was rendered for
        if packages is not None:
            config["packages"] = packages

    env = {"RMP_MODEL_PATH": str(model)} if model else {}
    served = serve_example("boston-rf", tweak, env=env, wait=False)
    assert served.server.process.wait(timeout=60) == 2, served.server.logs()
    assert words in served.server.logs()


@pytest.mark.parametrize(
    ("script", "words"),
    [
        ("score <- function(model, df { 1 }\n", "failed to load: "),
        ('source("helpers.R")\nscore <- function(model, df) 1\n', "helpers.R"),
    ],
)
def test_a_scoring_script_that_fails_to_load_is_named(
    serve_example: ServeExample, tmp_path: Path, script: str, words: str
) -> None:
    path = tmp_path / "broken_score.R"
    path.write_text(script)

    def tweak(config: dict[str, Any]) -> None:
        config["scoring"]["script"] = str(path)

    served = serve_example("boston-rf", tweak, wait=False)
    assert served.server.process.wait(timeout=60) == 2, served.server.logs()
    logs = served.server.logs()
    assert "scoring.script broken_score.R failed to load" in logs and words in logs, logs


def test_a_second_sigterm_does_not_restart_the_drain(serve_example: ServeExample) -> None:
    served = serve_example("boston-rf", lambda config: config["runtime"].update(drain_seconds=3))
    started = time.monotonic()
    for _ in range(3):
        served.server.process.send_signal(signal.SIGTERM)
        time.sleep(1.0)
    assert served.server.process.wait(timeout=30) == 0
    took = time.monotonic() - started
    # The drain is 3 s and the stop of an idle server well under one: a drain started again by
    # the second or third signal would end past 5 s.
    assert took < 5.0, (took, served.server.logs())
    assert served.server.logs().count("SIGTERM: /readyz is 503") == 1


def test_a_run_directory_that_cannot_be_made_is_explained(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(RUNTIME / "entrypoint.sh")],
        env={**os.environ, "RMP_TMPDIR": "/proc/rmodelpack-cannot-be-here"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "cannot create the run directory" in result.stderr and "RMP_TMPDIR" in result.stderr
