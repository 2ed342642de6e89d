"""The image contract: what every model image provides, whoever builds or runs it.

The Dockerfile template, ``rmodelpack serve``, ``rmodelpack size`` and the chart values read
these names; the chart's defaults (``runtime.port``, the pod's uid, the /tmp volume) repeat them
for hand-written installs, and the tests pin the two together.
"""

from __future__ import annotations

IMAGE_ROOT = "/opt/rmodelpack"
RUNTIME_DIR = f"{IMAGE_ROOT}/runtime"
APP_DIR = f"{IMAGE_ROOT}/app"
CONFIG_PATH = f"{APP_DIR}/rmodelpack.json"
MODEL_PATH = f"{IMAGE_ROOT}/model/model.rds"
ENTRYPOINT = f"{RUNTIME_DIR}/entrypoint.sh"

CONTAINER_UID = 10001
CONTAINER_PORT = 8000
# The only writable path in the (read-only) container; the runtime keeps every file below it.
TMP_DIR = "/tmp"
TMP_SIZE = "256m"

# Written into every output folder; only a folder holding it (or an empty one) is replaced.
OUTPUT_MARKER = ".rmodelpack-output"
DEFAULT_OUT_DIR = ".rmodelpack"
