"""Rendering: pure, deterministic, atomic; golden files for the examples' Dockerfile and values."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES_DIR, deep_merge

from rmodelpack import render
from rmodelpack.exceptions import OutputDirError
from rmodelpack.manifest import load_manifest, parse_manifest
from rmodelpack.render import (
    OUTPUT_MARKER,
    content_hash,
    render_files,
    split_r_packages,
    write_atomically,
)

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE_GOLDEN = os.environ.get("UPDATE_GOLDEN") == "1"
EXAMPLES = sorted(p.parent for p in EXAMPLES_DIR.glob("*/rmodel.yaml"))
PASSWORDS = {
    "BOSTON_SCORER_PASSWORD": "boston-secret-1",
    "IRIS_SCORER_PASSWORD": "iris-secret-2",
    "CUSTOM_SCORER_PASSWORD": "custom-secret-3",
}


@pytest.fixture(autouse=True)
def passwords(monkeypatch):
    for name, value in PASSWORDS.items():
        monkeypatch.setenv(name, value)


def trained(folder: Path) -> Path:
    if not (folder / "model.rds").exists():
        pytest.skip(f"{folder.name}/model.rds is not trained (run: bash ci/setup.sh)")
    return folder


def redact(text: str) -> str:
    """Volatile values: bcrypt salts, the model's sha256 and the content-hash tag."""
    text = re.sub(r"\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}", "<bcrypt>", text)
    text = re.sub(r"\b[0-9a-f]{64}\b", "<sha256>", text)
    return re.sub(r"-[0-9a-f]{12}\b", "-<hash>", text)


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize(
    "name", ["Dockerfile", "values.yaml", ".dockerignore", "app/rmodelpack.json"]
)
def test_golden_files(folder: Path, name: str, tmp_path: Path):
    result = render(trained(folder), tmp_path / "out")
    actual = redact((result.out_dir / name).read_text())
    golden = GOLDEN_DIR / folder.name / name.replace("/", "__")
    if UPDATE_GOLDEN:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(actual)
    assert golden.exists(), f"no golden file {golden}; run UPDATE_GOLDEN=1 pytest {__file__}"
    assert actual == golden.read_text(), f"{name} changed; review, then UPDATE_GOLDEN=1"


@pytest.mark.parametrize("folder", EXAMPLES, ids=lambda p: p.name)
def test_rendering_twice_is_byte_identical(folder: Path, tmp_path: Path):
    first = render(trained(folder), tmp_path / "a")
    second = render(folder, tmp_path / "b")
    third = render(folder, tmp_path / "a")  # re-render in place keeps the bcrypt hashes
    assert first.files == second.files == third.files
    for relative in first.files:
        if relative == "values.yaml":
            continue
        assert (tmp_path / "a" / relative).read_bytes() == (tmp_path / "b" / relative).read_bytes()
    assert first.image == second.image == third.image
    values_a = (tmp_path / "a" / "values.yaml").read_bytes()
    assert redact(values_a.decode()) == redact((tmp_path / "b" / "values.yaml").read_text())
    assert render(folder, tmp_path / "a").files == first.files
    assert (tmp_path / "a" / "values.yaml").read_bytes() == values_a


def test_image_tag_is_a_content_hash(tmp_path: Path):
    folder = trained(EXAMPLES_DIR / "boston-rf")
    manifest, base_dir = load_manifest(folder)
    files, image, _sha = render_files(manifest, base_dir)
    assert image.startswith("127.0.0.1:5000/models/boston-rf:1.0.0-")
    image_only = {k: v for k, v in files.items() if k not in ("values.yaml", OUTPUT_MARKER)}
    assert image.endswith(content_hash(image_only)[:12])
    changed = dict(image_only, **{"model/model.rds": image_only["model/model.rds"] + b"x"})
    assert content_hash(changed) != content_hash(image_only)


def test_values_hold_only_bcrypt_hashes_and_validate_against_the_chart_schema(tmp_path: Path):
    folder = trained(EXAMPLES_DIR / "boston-rf")
    result = render(folder, tmp_path / "out")
    text = (result.out_dir / "values.yaml").read_text()
    assert PASSWORDS["BOSTON_SCORER_PASSWORD"] not in text
    values = yaml.safe_load(text)
    user, hashed = values["auth"]["users"][0].split(":", 1)
    import bcrypt

    assert user == "scorer"
    assert bcrypt.checkpw(PASSWORDS["BOSTON_SCORER_PASSWORD"].encode(), hashed.encode())
    schema_path = Path(__file__).parent.parent / "chart" / "values.schema.json"
    if not schema_path.exists():
        pytest.fail("chart/values.schema.json is missing")
    import jsonschema

    chart_defaults = yaml.safe_load((schema_path.parent / "values.yaml").read_text())
    merged = deep_merge(chart_defaults, values)
    jsonschema.validate(merged, json.loads(schema_path.read_text()))


def test_runtime_config_carries_every_runtime_field(tmp_path: Path):
    folder = trained(EXAMPLES_DIR / "boston-rf")
    result = render(folder, tmp_path / "out")
    config = json.loads((result.out_dir / "app" / "rmodelpack.json").read_text())
    assert set(config) == {
        "name",
        "version",
        "description",
        "model",
        "scoring",
        "input",
        "output",
        "runtime",
        "bounds",
        "packages",
        "rmodelpack_version",
    }
    assert config["bounds"]["runtime.workers"] == {"min": 1, "max": 64}
    assert set(config["runtime"]) == {
        "workers",
        "threads",
        "max_body_bytes",
        "timeout_seconds",
        "drain_seconds",
        "port",
        "batching",
    }
    assert config["runtime"]["batching"] == {"enabled": True, "max_rows": 256}
    assert config["scoring"]["rowwise"] is False
    assert config["model"]["path"] == "/opt/rmodelpack/model/model.rds"
    assert len(config["model"]["sha256"]) == 64
    assert all(
        {"name", "type", "required", "min", "max", "levels", "allowed"} == set(c)
        for c in config["input"]["columns"]
    )


def test_r_packages_map_to_debian_when_debian_has_them():
    apt, cran = split_r_packages(["randomForest", "glmnet", "plumber", "stats", "notOnDebianPkg"])
    assert apt == ["r-cran-glmnet", "r-cran-randomforest"]
    assert cran == ["notOnDebianPkg"]


def test_failed_write_leaves_the_output_folder_as_it_was(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("earlier render")
    with pytest.raises(OutputDirError, match="cannot write the output folder"):
        # "x" is written as a file, then "x/y" needs it to be a folder: fails mid-way
        write_atomically({"a.txt": b"1", "x": b"2", "x/y": b"3"}, out)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert (out / "keep.txt").read_text() == "earlier render"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"], "no staging folder left"


def test_render_error_leaves_the_output_folder_as_it_was(tmp_path: Path, monkeypatch):
    folder = trained(EXAMPLES_DIR / "boston-rf")
    out = tmp_path / "out"
    render(folder, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.delenv("BOSTON_SCORER_PASSWORD")
    from rmodelpack.exceptions import RenderError

    with pytest.raises(RenderError, match="BOSTON_SCORER_PASSWORD"):
        render(folder, out)
    after = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_url_source_keeps_the_model_out_of_the_image(tmp_path: Path):
    folder = trained(EXAMPLES_DIR / "boston-rf")
    data = yaml.safe_load((folder / "rmodel.yaml").read_text())
    data["model"] = {
        "path": "model.rds",
        "source": "url",
        "url_secret": {"name": "boston-model-url", "key": "url"},
    }
    manifest = parse_manifest(data, source="m", base_dir=folder)
    files, _, sha = render_files(manifest, folder)
    assert "model/model.rds" not in files
    values = yaml.safe_load(files["values.yaml"])
    assert values["model"]["source"] == "url"
    assert values["model"]["url"] == {"existingSecret": "boston-model-url", "key": "url"}
    assert values["model"]["sha256"] == sha


def test_rocker_flavour_takes_every_r_package_from_cran():
    apt, cran = split_r_packages(["randomForest", "glmnet", "plumber"], "rocker")
    assert apt == []
    assert cran == ["glmnet", "randomForest"]


def test_the_wheel_ships_the_chart_runtime_and_base_images(tmp_path: Path):
    import subprocess
    import sys
    import zipfile

    root = Path(__file__).parent.parent
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("rmodelpack-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "rmodelpack/_chart/Chart.yaml",
        "rmodelpack/_chart/values.schema.json",
        "rmodelpack/_base_images/debian/Dockerfile",
        "rmodelpack/runtime/entrypoint.sh",
        "rmodelpack/templates/Dockerfile.j2",
        "rmodelpack/rscripts/describe.R",
        "rmodelpack/data/debian-trixie-r-cran.txt",
    ):
        assert required in names, required


def test_ingress_flavor_reaches_the_values(tmp_path: Path):
    folder = trained(EXAMPLES_DIR / "boston-rf")
    data = yaml.safe_load((folder / "rmodel.yaml").read_text())
    data["service"]["ingress"] = {
        "flavor": "nginx",
        "class_name": "webapprouting.kubernetes.azure.com",
    }
    manifest = parse_manifest(data, source="m", base_dir=folder)
    files, _, _ = render_files(manifest, folder)
    values = yaml.safe_load(files["values.yaml"])
    assert values["ingress"] == {
        "host": "boston.example.com",
        "flavor": "nginx",
        "className": "webapprouting.kubernetes.azure.com",
    }


def test_a_stored_sizing_applies_only_to_the_same_model_and_worker_count(tmp_path: Path):
    folder = trained(EXAMPLES_DIR / "boston-rf")  # workers: auto, cpu request "2" → 2 workers
    out = tmp_path / "out"
    first = render(folder, out)

    def sizing(workers: int, sha: str) -> None:
        (out / "sizing.json").write_text(
            json.dumps(
                {"model_sha256": sha, "workers": workers, "request_mib": 400, "limit_mib": 608}
            )
        )

    sizing(3, first.model_sha256)
    render(folder, out)
    assert not (out / "sizing.json").exists(), "measured for 3 workers; the pods run 2"
    sizing(2, "0" * 64)
    render(folder, out)
    assert not (out / "sizing.json").exists(), "measured for another model"
    data = yaml.safe_load((folder / "rmodel.yaml").read_text())
    del data["service"]["resources"]["requests"]["memory"]
    del data["service"]["resources"]["limits"]
    manifest = parse_manifest(data, source="m", base_dir=folder)
    sizing(2, first.model_sha256)
    stored = json.loads((out / "sizing.json").read_text())
    files, _, _ = render_files(manifest, folder, sizing=stored)
    resources = yaml.safe_load(files["values.yaml"])["resources"]
    assert resources == {"requests": {"cpu": "2", "memory": "400Mi"}, "limits": {"memory": "608Mi"}}
    assert "sizing.json" in files
