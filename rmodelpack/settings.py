"""Every deploy-time runtime setting, once: its manifest field, chart value, environment
variable and default.

``manifest.py`` takes its defaults and bounds from here, ``render.py`` emits the chart values
and the runtime config from here, and docs/design.md's "Settings" table lists the same rows
(``tests/test_settings_table.py`` fails when the two disagree). The chart's ``values.yaml``
repeats the defaults for hand-written installs; the same test pins them together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rmodelpack.contract import CONTAINER_PORT

AUTO = "auto"


@dataclass(frozen=True)
class Setting:
    """One runtime setting as each layer names it (None: the layer does not carry it)."""

    manifest: str | None  # dotted path in rmodel.yaml
    chart: str | None  # dotted path in the chart's values
    env: str | None  # environment variable the runtime reads
    default: Any
    minimum: int | None = None
    maximum: int | None = None
    description: str = ""

    @property
    def chart_default(self) -> Any:
        """The chart spells "auto" as null: the pod's CPU request decides."""
        return None if self.default == AUTO else self.default


WORKERS = Setting(
    "runtime.workers",
    "runtime.workers",
    "RMP_WORKERS",
    AUTO,
    1,
    64,
    "R worker processes per container; auto = the CPU request (nproc natively).",
)
THREADS = Setting(
    "runtime.threads",
    "runtime.threads",
    "RMP_THREADS",
    1,
    1,
    64,
    "Threads one worker may use per request.",
)
TIMEOUT_SECONDS = Setting(
    "runtime.timeout_seconds",
    "runtime.timeoutSeconds",
    "RMP_TIMEOUT_SECONDS",
    30,
    1,
    3600,
    "Longest a request may run; also bounds the drain at shutdown.",
)
DRAIN_SECONDS = Setting(
    "runtime.drain_seconds",
    "runtime.drainSeconds",
    "RMP_DRAIN_SECONDS",
    5,
    0,
    300,
    "Seconds the server keeps serving after SIGTERM while /readyz reports 503.",
)
MAX_BODY_BYTES = Setting(
    "runtime.max_body_bytes",
    "runtime.maxBodyBytes",
    "RMP_MAX_BODY_BYTES",
    1_048_576,
    1024,
    1_073_741_824,
    "Largest request body the server accepts.",
)
BATCHING_ENABLED = Setting(
    "runtime.batching.enabled",
    "runtime.batching.enabled",
    "RMP_BATCHING",
    True,
    description="Score the rows of concurrent requests in one model call (when the scorer is "
    "row-wise: predict(), or a script with scoring.rowwise).",
)
BATCHING_MAX_ROWS = Setting(
    "runtime.batching.max_rows",
    "runtime.batching.maxRows",
    "RMP_BATCH_MAX_ROWS",
    256,
    1,
    100_000,
    "Most rows in one batched model call.",
)
SCORING_ROWWISE = Setting(
    "scoring.rowwise",
    None,
    None,
    False,
    description="The scoring script scores each row on its own, so requests may be batched.",
)
# Part of the image contract, not of the manifest: the chart may move it, the image says 8000.
PORT = Setting(None, "runtime.port", "RMP_PORT", CONTAINER_PORT, 1, 65535)

SETTINGS: tuple[Setting, ...] = (
    WORKERS,
    THREADS,
    TIMEOUT_SECONDS,
    DRAIN_SECONDS,
    MAX_BODY_BYTES,
    BATCHING_ENABLED,
    BATCHING_MAX_ROWS,
    SCORING_ROWWISE,
    PORT,
)


def runtime_bounds() -> dict[str, dict[str, int]]:
    """Each integer setting's range by its path in the runtime config: the runtime refuses an
    RMP_* override outside it (the manifest and the chart check their own values)."""
    return {
        setting.chart if setting.manifest is None else setting.manifest: {
            "min": setting.minimum,
            "max": setting.maximum,
        }
        for setting in SETTINGS
        if setting.env and setting.minimum is not None and setting.maximum is not None
    }


def workers_for_cpu(cpu: str) -> int:
    """What "auto" workers means in a pod: its CPU request (a Kubernetes quantity), rounded up.

    The chart computes the same from ``resources.requests.cpu`` when ``runtime.workers`` is null.
    """
    cores = float(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)
    return max(1, math.ceil(cores))


# The chart's HPA range defaults. They are deployment settings, not runtime ones (no variable, not
# in rmodelpack.json, not in SETTINGS), but the manifest needs them: min_replicas alone or
# max_replicas alone is checked against the other end's chart default, as the chart does.
# tests/test_manifest_rules.py pins them to chart/values.yaml.
AUTOSCALING_MIN_REPLICAS = Setting(
    "service.autoscaling.min_replicas",
    "autoscaling.minReplicas",
    None,
    2,
    1,
    description="Fewest pods the HorizontalPodAutoscaler keeps (chart default).",
)
AUTOSCALING_MAX_REPLICAS = Setting(
    "service.autoscaling.max_replicas",
    "autoscaling.maxReplicas",
    None,
    10,
    1,
    description="Most pods the HorizontalPodAutoscaler starts (chart default).",
)
