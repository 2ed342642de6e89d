"""A full disk (an emptyDir on tmpfs at its size limit) never leaves a truncated file behind: the
runtime's files are replaced whole or not at all, and the worker keeps its counts until a write
succeeds. R only warns when a buffered write fails as the file is closed, so a plain write then
rename used to put a truncated file in place of a good one."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
import requests
from conftest import metric_samples

from runtime.conftest import ServerFactory

RUNTIME = Path(__file__).resolve().parents[2] / "rmodelpack" / "runtime"

# Every write to a file fails with EFBIG, as on a full disk (SIGXFSZ ignored). The script is
# written beforehand: `Rscript -e` would write its code to a temporary file first.
NO_FILE_WRITES = "trap '' XFSZ; ulimit -f 0; exec Rscript --vanilla \"$0\""


def run_without_file_writes(script: Path) -> str:
    result = subprocess.run(
        ["bash", "-c", NO_FILE_WRITES, str(script)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def r_script(tmp_path: Path):
    def write(body: str) -> Path:
        script = tmp_path / "script.R"
        script.write_text(
            f'rd <- "{RUNTIME}"\n'
            'for (f in setdiff(list.files(rd, "[.]R$"), "supervisor.R")) '
            "sys.source(file.path(rd, f), envir = globalenv())\n" + body
        )
        return script

    return write


def test_a_write_that_fails_on_close_leaves_the_old_file(r_script, tmp_path: Path) -> None:
    good = tmp_path / "nginx.conf"
    good.write_text("the good file\n")
    counts = tmp_path / "w1.rds"
    subprocess.run(
        ["Rscript", "--vanilla", "-e", f'saveRDS(list(count = 3), "{counts}")'], check=True
    )
    before = counts.read_bytes()
    out = run_without_file_writes(
        r_script(
            f'''
tryCatch(rmp_write_file_atomic("{good}", "a new text\\n"),
         error = function(e) cat("error:", conditionMessage(e), "\\n"))
metrics <- rmp_new_metrics("{tmp_path}", 1L)
metrics$path <- "{counts}"
metrics$count <- 99
cat("flush:", rmp_flush(metrics), "\\n")
cat("connections:", nrow(showConnections()), "\\n")
'''
        )
    )
    assert f"error: cannot write {good}: Problem closing connection" in out, out
    assert "flush: Problem closing connection" in out, out
    assert "connections: 0" in out, out
    assert good.read_text() == "the good file\n"
    assert counts.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nginx.conf", "script.R", "w1.rds"]


def test_counts_wait_out_a_failing_disk_and_are_written_after(
    server_factory: ServerFactory, r_predictions: dict
) -> None:
    """A write that keeps failing (here the temporary's name is taken by a directory) neither ends
    the worker nor touches its counts file; the counts are written within a couple of seconds
    once the write can succeed, with no scrape to push them."""
    server = server_factory(env={"RMP_WORKERS": "1"})
    ok = 'rmp_requests_total{route="/predict",method="POST",status="200"}'
    rows = r_predictions["rows"][:1]
    for _ in range(3):
        requests.post(server.url("/predict"), json=rows, timeout=10)
    time.sleep(0.5)
    assert metric_samples(server.url("/metrics"))[ok] == 3
    time.sleep(0.5)  # the scrape's own count is written 0.2 s after it
    counts = server.run_dir / "metrics" / "w1.rds"
    written = counts.stat().st_mtime_ns
    worker = server.worker_pids()[1]
    blocker = server.run_dir / "metrics" / "w1.rds.tmp"
    blocker.mkdir()
    for _ in range(5):
        assert requests.post(server.url("/predict"), json=rows, timeout=10).status_code == 200
    time.sleep(2.5)
    assert counts.stat().st_mtime_ns == written
    assert server.worker_pids() == {1: worker}
    log = server.stderr_path.read_text()
    assert log.count(f"cannot write {counts}") == 1, log
    blocker.rmdir()
    deadline = time.monotonic() + 5
    while counts.stat().st_mtime_ns == written:
        assert time.monotonic() < deadline, "the counts were not written again"
        time.sleep(0.1)
    assert metric_samples(server.url("/metrics"))[ok] == 8
    assert server.worker_pids() == {1: worker}
    assert server.terminate() == 0
