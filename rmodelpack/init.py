"""`rmodelpack init`: scaffold rmodel.yaml (and a score.R stub) next to a saved model.

The input schema comes from the model itself (its terms, factor levels) or from a sample data
frame, read by R (rscripts/describe.R), so it matches what predict() saw in training.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from rmodelpack.exceptions import ManifestError, ToolNotFound, UsageError
from rmodelpack.manifest import API_VERSION, MANIFEST_FILENAME, parse_manifest

SCORE_STUB = """\
# Scoring function for {name}. rmodelpack calls {function}(model, df) with a data frame whose
# columns are typed and validated from rmodel.yaml (factors carry the manifest's levels).
# Return a numeric vector (value), a factor/character vector (class) or a matrix/data frame of
# class probabilities, one row per input row, in input order.
{function} <- function(model, df) {{
  predict(model, df)
}}
"""


def describe_model(model: Path, data: Path | None) -> dict[str, Any]:
    rscript = shutil.which("Rscript")
    if rscript is None:
        raise ToolNotFound("rmodelpack init reads the model with R: install R (Rscript)")
    script = resources.files("rmodelpack").joinpath("rscripts/describe.R")
    with resources.as_file(script) as path:
        command = [rscript, "--vanilla", str(path), str(model)] + ([str(data)] if data else [])
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise UsageError(f"R could not read {model}:\n{completed.stderr.strip()}")
    return json.loads(completed.stdout)


def service_name(model: Path, name: str | None) -> str:
    raw = name or model.resolve().parent.name or model.stem
    cleaned = re.sub(r"[^a-z0-9-]+", "-", raw.lower())
    # The manifest's rule: a letter first, at most 53 characters, no '-' at either end.
    cleaned = re.sub(r"^[^a-z]+", "", cleaned)[:53].strip("-")
    return cleaned or "my-model"


def manifest_data(model: Path, name: str, description: dict[str, Any]) -> dict[str, Any]:
    packages = description.get("packages") or []
    return {
        "apiVersion": API_VERSION,
        "name": name,
        "version": "0.1.0",
        "description": f"{name} ({', '.join(description.get('class') or ['R model'])})",
        "model": {"path": model.name},
        "scoring": {"script": "score.R", "function": "score"},
        "input": {"columns": description.get("columns") or []},
        "output": {"kind": description.get("output", "value")},
        "r": {"packages": [packages] if isinstance(packages, str) else packages},
    }


def refuse_unwritable_targets(targets: list[Path], force: bool) -> None:
    for target in targets:
        if target.exists() and not target.is_file():
            raise UsageError(
                f"{target} exists and is not a file; move it away, or scaffold in another folder"
            )
    existing = [t for t in targets if t.exists()]
    if existing and not force:
        raise UsageError(
            f"{existing[0]} exists; allow overwriting it, or scaffold in another folder",
            parameter="force",
        )


def write_scaffold(
    targets: list[Path], manifest_text: str, stub: str, check: Callable[[], object]
) -> None:
    """Write score.R, check the manifest against it, then write rmodel.yaml; on failure the
    folder is left as it was (an overwritten score.R gets its old text back)."""
    manifest_path, script_path = targets
    previous_script = script_path.read_bytes() if script_path.is_file() else None
    try:
        script_path.write_text(stub)
        check()
        manifest_path.write_text(manifest_text)
    except (ManifestError, OSError) as error:
        if previous_script is None:
            script_path.unlink(missing_ok=True)
        else:
            script_path.write_bytes(previous_script)
        if isinstance(error, OSError):
            raise UsageError(f"could not write the scaffold: {error}") from error
        raise


def init_manifest(
    model: Path, *, data: Path | None = None, name: str | None = None, force: bool = False
) -> list[Path]:
    if not model.is_file():
        raise UsageError(
            f"{model} does not exist; save your model with saveRDS(model, 'model.rds')"
        )
    folder = model.resolve().parent
    targets = [folder / MANIFEST_FILENAME, folder / "score.R"]
    refuse_unwritable_targets(targets, force)
    description = describe_model(model, data)
    data_dict = manifest_data(model, service_name(model, name), description)
    if not data_dict["input"]["columns"]:
        raise UsageError(
            f"could not find the model's inputs in {model}; give a sample data frame "
            "(.csv or .rds) to derive them from",
            parameter="data",
        )
    text = yaml.safe_dump(data_dict, sort_keys=False, width=100)
    write_scaffold(
        targets,
        f"# Scaffolded by rmodelpack init; review every field.\n{text}",
        SCORE_STUB.format(name=data_dict["name"], function="score"),
        lambda: parse_manifest(data_dict, source=str(targets[0]), base_dir=folder),
    )
    return targets
