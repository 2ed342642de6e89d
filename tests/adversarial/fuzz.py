"""schemathesis against a running server's own /openapi.json, through its CLI (`st run`), with
a JSON report read back: how many cases ran, and every failure and error.

Shared by tests/adversarial/test_schemathesis.py and benchmarks/reliability_long.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "schemathesis.toml"
PHASES = "examples,coverage,fuzzing"
# The four, and the two that hold the front's 405 answers to the spec.
CHECKS = ",".join(
    [
        "not_a_server_error",
        "content_type_conformance",
        "negative_data_rejection",
        "positive_data_acceptance",
        "unsupported_method",
        "allow_header_conformance",
    ]
)


@dataclass
class FuzzResult:
    report: dict[str, Any]
    exit_code: int
    output: str

    @property
    def cases(self) -> int:
        return int(self.report["test_cases"]["generated"])

    @property
    def problems(self) -> list[Any]:
        return [*self.report.get("failures", []), *self.report.get("errors", [])]

    def summary(self) -> str:
        tail = "\n".join(self.output.splitlines()[-60:])
        return f"exit {self.exit_code}; problems {self.problems}\n{tail[:6000]}"


def st_command() -> list[str]:
    st = Path(sys.executable).with_name("st")
    return [str(st)] if st.exists() else [sys.executable, "-m", "schemathesis.cli"]


def run_schemathesis(
    base_url: str, max_examples: int, report_dir: Path, seed: int = 11, timeout: float = 1800
) -> FuzzResult:
    """`st run BASE/openapi.json`; every phase, the checks above, one worker (schemathesis'
    own threads trip a CPython AST recursion check now and then)."""
    report_dir.mkdir(parents=True, exist_ok=True)
    report = report_dir / "schemathesis.json"
    command = [
        *st_command(),
        "--config-file",
        str(CONFIG),
        "run",
        f"{base_url}/openapi.json",
        "--phases",
        PHASES,
        "--checks",
        CHECKS,
        "--max-examples",
        str(max_examples),
        "--seed",
        str(seed),
        "--workers",
        "1",
        "--request-timeout",
        "60",
        "--output-truncate",
        "true",
        "--report",
        "json",
        "--report-json-path",
        str(report),
    ]
    # cwd: schemathesis keeps a cache (.schemathesis/) in its working directory.
    done = subprocess.run(
        command,
        cwd=report_dir,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "NO_COLOR": "1"},
    )
    if not report.is_file():
        raise AssertionError(
            f"schemathesis wrote no report:\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
        )
    return FuzzResult(json.loads(report.read_text()), done.returncode, done.stdout + done.stderr)
