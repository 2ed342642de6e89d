"""`rmodelpack size`: the image runs with 1 and N workers; the measured memory sizes the values."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES_DIR, free_port, run_cli

from rmodelpack.size import Measurement, parse_mib, recommend


def test_memory_quantities_parse_to_mib():
    assert parse_mib("512Mi") == 512
    assert parse_mib("1Gi") == 1024
    assert parse_mib("2048Ki") == 2
    assert round(parse_mib("1G"), 1) == 953.7
    assert parse_mib(str(64 * 1024 * 1024)) == 64


def test_recommendation_adds_margin_and_one_worker_of_headroom():
    one = Measurement(1, 200.0, ())
    many = Measurement(2, 300.0, ())
    request, limit = recommend(one, many)
    assert request == 400  # 300 * 1.3 = 390, rounded up to 16 MiB
    assert limit == 608  # 400 + 200, rounded up to 16 MiB


@pytest.mark.docker
def test_size_measures_and_writes_memory_into_values(docker_client, base_image, tmp_path: Path):
    folder = tmp_path / "custom-score"
    shutil.copytree(
        EXAMPLES_DIR / "custom-score", folder, ignore=shutil.ignore_patterns(".rmodelpack")
    )
    manifest = yaml.safe_load((folder / "rmodel.yaml").read_text())
    manifest["runtime"] = {"workers": 2}  # the pods' worker count, which the sizing must match
    (folder / "rmodel.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    out = tmp_path / "out"
    result = run_cli(
        "size", str(folder), "-o", str(out), "--workers", "2", "--port", str(free_port())
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sizing = json.loads((out / "sizing.json").read_text())
    assert sizing["workers"] == 2
    one, many = sizing["one_worker"], sizing["n_workers"]
    r_processes = [
        p for p in many["processes"] if "/R " in p["command"] or "exec/R" in p["command"]
    ]
    assert len(r_processes) >= 3, "supervisor + 2 workers"
    assert many["working_set_mib"] > one["working_set_mib"] > 50
    values = yaml.safe_load((out / "values.yaml").read_text())
    assert values["resources"]["requests"]["memory"] == f"{sizing['request_mib']}Mi"
    assert values["resources"]["limits"]["memory"] == f"{sizing['limit_mib']}Mi"
    assert f"{sizing['request_mib']}Mi" in result.stdout

    rerender = run_cli("render", str(folder), "-o", str(out))
    assert rerender.returncode == 0, rerender.stderr
    assert yaml.safe_load((out / "values.yaml").read_text())["resources"] == values["resources"]

    with (folder / "model.rds").open("ab") as model:
        model.write(b"retrained")
    assert run_cli("render", str(folder), "-o", str(out)).returncode == 0
    assert "resources" not in yaml.safe_load((out / "values.yaml").read_text()), (
        "a sizing measured for another model must not be applied"
    )
    assert not (out / "sizing.json").exists()
