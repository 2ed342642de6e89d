"""The Python core's shape: no import circles, a library API that the CLI only wraps, library
errors in library terms, a pure render whose in-memory files are the build context."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
import tarfile
import tracemalloc
from pathlib import Path

import pytest
import yaml
from conftest import EXAMPLES_DIR, REPO_ROOT

import rmodelpack
from rmodelpack import contract
from rmodelpack.build import context_tar, files_tar
from rmodelpack.cli import FLAGS
from rmodelpack.exceptions import OutputDirError
from rmodelpack.manifest import load_manifest
from rmodelpack.render import bcrypt_hashes, render_files

PACKAGE_DIR = REPO_ROOT / "rmodelpack"
MODULES = sorted(
    f"rmodelpack.{path.stem}" if path.stem != "__init__" else "rmodelpack"
    for path in PACKAGE_DIR.glob("*.py")
)
BOSTON = EXAMPLES_DIR / "boston-rf"


def module_path(module: str) -> Path:
    name = module.removeprefix("rmodelpack").lstrip(".") or "__init__"
    return PACKAGE_DIR / f"{name}.py"


def imported_modules(module: str) -> set[str]:
    """The rmodelpack modules ``module`` imports anywhere (top level or inside a function)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(module_path(module).read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from rmodelpack import x` imports the module rmodelpack.x when there is one.
            names = [
                f"{node.module}.{alias.name}"
                if f"{node.module}.{alias.name}" in MODULES
                else node.module
                for alias in node.names
            ]
        else:
            continue
        found |= {name for name in names if name in MODULES}
    return found - {module}


def import_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of the graph as a path (first == last), or None."""
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return [*stack[stack.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_no_import_cycle():
    graph = {module: imported_modules(module) for module in MODULES}
    assert graph["rmodelpack.render"], "the graph sees render's imports"
    assert import_cycle(graph) is None, " → ".join(import_cycle(graph) or [])


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert import_cycle(graph) == ["a", "b", "c", "a"]


@pytest.mark.parametrize("module", [m for m in MODULES if m != "rmodelpack.__main__"])
def test_every_module_imports_alone_in_a_fresh_interpreter(module: str):
    completed = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr


def test_the_package_exports_the_pipeline():
    for name in ("load_manifest", "render", "build", "push", "size", "deploy", "serve"):
        assert callable(getattr(rmodelpack, name)), name
    assert rmodelpack.__version__.startswith("0.")


def test_the_cli_only_parses_prints_and_maps_exit_codes():
    tree = ast.parse((PACKAGE_DIR / "cli.py").read_text())
    local_imports = [
        f"line {node.lineno}"
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for node in ast.walk(function)
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    assert local_imports == [], "cli.py imports inside functions"
    defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert not defined & {"build_manifest", "sizing_workers", "deploy_target"}


def library_modules() -> list[Path]:
    return [path for path in sorted(PACKAGE_DIR.glob("*.py")) if path.stem not in ("cli",)]


def raised_text(path: Path) -> list[str]:
    """Every string constant inside a raise statement of a module (f-string parts included)."""
    return [
        constant.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Raise)
        for constant in ast.walk(node)
        if isinstance(constant, ast.Constant) and isinstance(constant.value, str)
    ]


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: p.name)
def test_library_errors_speak_library_terms(path: Path):
    flags = {part for flag in FLAGS.values() for part in flag.split("/")}
    for text in raised_text(path):
        assert "ci/setup.sh" not in text, text
        assert not any(f"{flag} " in f"{text} " for flag in flags), text


@pytest.mark.parametrize("path", library_modules(), ids=lambda p: p.name)
def test_library_code_does_not_print(path: Path):
    calls = [
        node.lineno
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "print"
    ]
    assert calls == [], f"print() at lines {calls}"


@pytest.fixture
def boston(monkeypatch):
    if not (BOSTON / "model.rds").exists():
        pytest.skip("examples/boston-rf/model.rds is not trained (run: bash ci/setup.sh)")
    monkeypatch.setenv("BOSTON_SCORER_PASSWORD", "layout-test")
    return load_manifest(BOSTON)


def test_render_files_is_pure_and_writing_is_the_pipelines(boston, tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    files, image, _ = render_files(*boston)
    assert list(tmp_path.iterdir()) == [], "render_files wrote something"
    again = render_files(*boston, previous_hashes=bcrypt_hashes(files["values.yaml"]))
    assert again.files == files and again.image == image


def test_the_build_context_from_memory_is_the_written_folders(boston, tmp_path: Path):
    result = rmodelpack.render(boston, tmp_path / "out")
    assert result.contents, "render returns the files it wrote"
    assert files_tar(result.contents).read() == context_tar(result.out_dir).read()


def test_a_large_model_is_not_held_twice_while_its_context_is_made():
    """render holds the model in memory; its tar used to be a second in-memory copy."""
    model = bytes(range(256)) * (256 * 1024)  # 64 MiB
    files = {"Dockerfile": b"FROM scratch\n", "model/model.rds": model}
    tracemalloc.start()
    try:
        archive = files_tar(files)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < len(model) / 4, f"making the context allocated {peak / 2**20:.0f} MiB at peak"
    with tarfile.open(fileobj=archive) as tar:
        assert tar.extractfile("model/model.rds").read() == model


def test_the_readmes_library_example_calls_the_api_as_it_is():
    """Every rmodelpack.<step>(...) call in the README's library example binds to the real
    signature (running it needs a registry and a cluster; tests/image and tests/cluster do)."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("### Library use", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
    calls = [
        node
        for node in ast.walk(ast.parse(example))
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "rmodelpack"
    ]
    assert {call.func.attr for call in calls} >= {"load_manifest", "build", "deploy"}
    for call in calls:
        function = getattr(rmodelpack, call.func.attr)
        arguments = [None] * len(call.args)
        keywords = {keyword.arg: None for keyword in call.keywords}
        inspect.signature(function).bind(*arguments, **keywords)


def test_the_charts_defaults_repeat_the_image_contract():
    """A hand-written `helm install` runs the image as contract.py describes it."""
    values = yaml.safe_load((REPO_ROOT / "chart" / "values.yaml").read_text(encoding="utf-8"))
    for context in ("podSecurityContext", "containerSecurityContext"):
        assert values[context]["runAsUser"] == contract.CONTAINER_UID
        assert values[context]["runAsGroup"] == contract.CONTAINER_UID
    assert values["runtime"]["port"] == contract.CONTAINER_PORT
    size_mib = int(contract.TMP_SIZE.removesuffix("m"))  # docker's tmpfs size: m = MiB
    assert values["tmpDir"]["sizeLimit"] == f"{size_mib}Mi"


def test_library_steps_report_progress_and_errors_name_the_parameter(boston, tmp_path: Path):
    events: list[rmodelpack.pipeline.Event] = []
    result = rmodelpack.render(boston, tmp_path / "out", on_progress=events.append)
    assert [event.stage for event in events] == ["render"]
    assert str(result.out_dir) in events[0].message
    foreign = tmp_path / "notes"
    foreign.mkdir()
    (foreign / "todo.txt").write_text("mine")
    with pytest.raises(OutputDirError) as raised:
        rmodelpack.render(boston, foreign)
    assert raised.value.parameter == "out_dir"
    assert not str(raised.value).startswith("-o") and "did not write" in str(raised.value)
