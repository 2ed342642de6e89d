"""Generated manifests, valid and corrupted, through the real command line.

Every case runs `rmodelpack validate` and `rmodelpack render -o DIR` in-process (the same
``main`` the console script calls; a few run as a subprocess too): a valid manifest exits 0, a
broken one exits 2 naming the field path, nothing ever prints a traceback, and the output
folder (a previous good render, or one that does not exist yet) is left exactly as it was.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import shutil
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import EXAMPLES_DIR
from conftest import run_cli as rmodelpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rmodelpack.cli import main

EXAMPLES = ("boston-rf", "cars93-ranger")
PASSWORD_ENV = {"BOSTON_SCORER_PASSWORD": "correct horse battery staple"}
IS_ROOT = os.geteuid() == 0
CASES: Counter[str] = Counter()
MIN_CASES = 500
FUZZ = settings(
    max_examples=120,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# File fields and the suffix each one's validator insists on before it looks at the path.
FILE_FIELDS = {
    ("model", "path"): ".rds",
    ("scoring", "script"): ".R",
    ("input", "example"): ".json",
    ("r", "renv_lock"): ".lock",
}


@dataclass
class Project:
    """A copy of one example with hostile neighbours, and a previous good render."""

    name: str
    folder: Path
    outside: Path
    good_out: Path
    absent_out: Path
    base: dict[str, Any] = field(repr=False)
    snapshot: dict[str, tuple[int, bytes]] = field(repr=False)


def tree_snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    files = {}
    for path in sorted(folder.rglob("*")):
        data = path.read_bytes() if path.is_file() else b""
        files[str(path.relative_to(folder))] = (path.stat().st_mode, data)
    return files


def run(*argv: str) -> tuple[int, str]:
    """The CLI in-process; an exception that escapes main() is returned as its traceback."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            code = main(list(argv))
        except BaseException:  # a traceback is what this suite hunts
            return -1, stdout.getvalue() + stderr.getvalue() + traceback.format_exc()
    return code, stdout.getvalue() + stderr.getvalue()


def make_hostile_neighbours(folder: Path, outside: Path) -> None:
    outside.mkdir()
    shutil.copy(folder / "model.rds", outside / "model.rds")
    for name in ("score.R", "predict.json", "renv.lock"):
        (outside / name).write_text("secret outside the project\n")
    (folder / "score.R").write_text("score <- function(model, df) predict(model, df)\n")
    (folder / "renv.lock").write_text("{}\n")
    for suffix in (".rds", ".R", ".json", ".lock"):
        target = {".rds": "model.rds", ".R": "score.R", ".json": "predict.json"}.get(
            suffix, "renv.lock"
        )
        (folder / f"escape{suffix}").symlink_to(Path("..") / outside.name / target)
        (folder / f"escape_abs{suffix}").symlink_to(outside / target)
        (folder / f"adir{suffix}").mkdir()
        (folder / f"dangling{suffix}").symlink_to(folder / f"nowhere{suffix}")
        (folder / f"loop{suffix}").symlink_to(folder / f"loop{suffix}")
        locked = folder / f"locked{suffix}"
        locked.write_bytes((folder / "model.rds").read_bytes() if suffix == ".rds" else b"{}")
        locked.chmod(0)
    (folder / "linkdir").symlink_to(outside)
    (folder / "inlink.rds").symlink_to("model.rds")
    (folder / "sub").mkdir()


@pytest.fixture(scope="module")
def projects(tmp_path_factory) -> dict[str, Project]:
    saved = {key: os.environ.get(key) for key in PASSWORD_ENV}
    os.environ.update(PASSWORD_ENV)
    made = {}
    for name in EXAMPLES:
        if not (EXAMPLES_DIR / name / "model.rds").exists():
            pytest.fail(f"examples/{name}/model.rds is not trained (run: bash ci/setup.sh)")
        root = tmp_path_factory.mktemp(name)
        folder = root / name
        shutil.copytree(EXAMPLES_DIR / name, folder, ignore=shutil.ignore_patterns(".rmodelpack"))
        make_hostile_neighbours(folder, root / "outside")
        good_out = root / "good-out"
        code, output = run("render", str(folder), "-o", str(good_out))
        assert code == 0, output
        base = yaml.safe_load((folder / "rmodel.yaml").read_text())
        made[name] = Project(
            name,
            folder,
            root / "outside",
            good_out,
            root / "absent-out",
            base,
            tree_snapshot(good_out),
        )
    yield made
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


# --- checking one case -----------------------------------------------------------------------


def write_manifest(project: Project, content: Any) -> Path:
    manifest = project.folder / "rmodel.yaml"
    if isinstance(content, bytes):
        manifest.write_bytes(content)
    else:
        manifest.write_text(yaml.safe_dump(content, allow_unicode=True, sort_keys=False))
    return manifest


def check_case(project: Project, content: Any, *, valid: bool | None, field: str | None) -> None:
    """validate + render; ``valid=None`` means "either outcome, but a clean one"."""
    CASES[os.environ.get("PYTEST_CURRENT_TEST", "?").split("::")[-1].split(" ")[0]] += 1
    manifest = write_manifest(project, content)
    code, output = run("validate", str(manifest))
    assert "Traceback" not in output and code in (0, 2), output
    if valid is not None:
        assert code == (0 if valid else 2), output
    if code == 2 and field is not None:
        assert f"{field}:" in output or f"{field}." in output, (field, output)
    if code == 0:
        check_valid_render(project, manifest)
    else:
        check_refused_render(project, manifest)


def check_refused_render(project: Project, manifest: Path) -> None:
    before = sorted(p.name for p in project.good_out.parent.iterdir())
    for out in (project.good_out, project.absent_out):
        code, output = run("render", str(manifest), "-o", str(out))
        assert code == 2 and "Traceback" not in output, output
    assert tree_snapshot(project.good_out) == project.snapshot
    assert not project.absent_out.exists()
    assert sorted(p.name for p in project.good_out.parent.iterdir()) == before


def check_valid_render(project: Project, manifest: Path) -> None:
    fresh = project.good_out.parent / "fresh-out"
    try:
        code, output = run("render", str(manifest), "-o", str(fresh))
        assert code == 0 and "Traceback" not in output, output
        assert (fresh / "values.yaml").is_file()
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def path_text(path: tuple[Any, ...]) -> str:
    text = ""
    for step in path:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else step)
    return text


def leaves(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    found = [(prefix, node)] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += leaves(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += leaves(value, (*prefix, index))
    return found


def set_at(data: Any, path: tuple[Any, ...], value: Any) -> Any:
    data = copy.deepcopy(data)
    node = data
    for step in path[:-1]:
        node = node.setdefault(step, {}) if isinstance(node, dict) else node[step]
    node[path[-1]] = value
    return data


def wrong_values_for(value: Any) -> list[Any]:
    """Values pydantic cannot coerce to the type of ``value``."""
    if isinstance(value, bool):
        return ["maybe", 2, [], {}, 1.5]
    if isinstance(value, int):
        return ["many", [], {"a": 1}, [1]]  # not 1.5: min/max are floats
    if isinstance(value, float):
        return ["lots", [], {"a": 1}]
    if isinstance(value, str):
        return [123, 1.5, [], {"a": 1}, ["x"], True]
    if isinstance(value, list):
        return [5, "text", {"a": 1}, 1.5]
    return [5, "text", [1, 2], 1.5]


# --- the generated cases ---------------------------------------------------------------------

example_names = st.sampled_from(EXAMPLES)


@FUZZ
@given(data=st.data())
def test_wrong_types_exit_2_naming_the_field(projects, data):
    project = projects[data.draw(example_names)]
    path, original = data.draw(st.sampled_from(leaves(project.base)))
    wrong = data.draw(st.sampled_from(wrong_values_for(original)))
    manifest = set_at(project.base, path, wrong)
    check_case(project, manifest, valid=False, field=path_text(path))


REQUIRED = [
    ("apiVersion",),
    ("name",),
    ("version",),
    ("model",),
    ("model", "path"),
    ("input",),
    ("input", "columns"),
    ("input", "columns", 0, "name"),
    ("input", "columns", 1, "type"),
    ("service", "tls", "issuer", "name"),
]


@FUZZ
@given(data=st.data())
def test_missing_required_fields_exit_2(projects, data):
    project = projects[data.draw(example_names)]
    paths = data.draw(st.lists(st.sampled_from(REQUIRED), min_size=1, max_size=3, unique=True))
    manifest = copy.deepcopy(project.base)
    removed = []
    for path in sorted(paths, key=len, reverse=True):
        node = manifest
        try:
            for step in path[:-1]:
                node = node[step]
            del node[path[-1]]
            removed.append(path)
        except (KeyError, IndexError, TypeError):
            continue
    check_case(project, manifest, valid=not removed, field=None)
    if removed:
        _, output = run("validate", str(project.folder / "rmodel.yaml"))
        assert any(f"{path_text(p)}: is required" in output for p in removed), output


odd_keys = st.one_of(
    st.sampled_from(
        [
            "[",
            "]",
            "a[b]",
            "int",
            "str",
            "function-after",
            "literal['auto']",
            "",
            " ",
            "\t",
            "ключ",
            "模型",
            "🙂",
            "x" * 5000,
            "apiversion",
            "Model",
            "pathh",
        ]
    ),
    st.text(min_size=1, max_size=40),
)


@FUZZ
@given(data=st.data())
def test_unknown_keys_exit_2_naming_the_key(projects, data):
    project = projects[data.draw(example_names)]
    mappings = [()] + [p for p, v in leaves(project.base) if isinstance(v, dict)]
    parent = data.draw(st.sampled_from(mappings))
    node = project.base
    for step in parent:
        node = node[step]
    key = data.draw(odd_keys.filter(lambda k: k not in node and k not in ("apiVersion",)))
    # predict_args is a free-form mapping of R arguments: any key is allowed there.
    free_form = parent[-1:] == ("predict_args",)
    manifest = set_at(project.base, (*parent, key), 1)
    check_case(project, manifest, valid=free_form, field=None)
    if not free_form:
        _, output = run("validate", str(project.folder / "rmodel.yaml"))
        assert "unknown key" in output, output
        if parent and key.isprintable() and len(key) < 80:
            assert f"{path_text(parent)}.{key}: unknown key" in output, output


def hostile_paths(project: Project, suffix: str) -> list[tuple[str, bool]]:
    """(value, is valid) for one file field."""
    real = {".rds": "model.rds", ".R": "score.R", ".json": "requests/predict.json"}.get(
        suffix, "renv.lock"
    )
    locked_ok = IS_ROOT  # root reads a chmod 000 file, so it is a valid input then
    return [
        (real, True),
        (f"./{real}", True),
        (f"sub/../{real}", True),
        ("../../etc/passwd", False),
        ("/etc/passwd", False),
        (f"../../etc/passwd{suffix}", False),
        (
            f"../outside/{Path(real).name}" if suffix != ".json" else "../outside/predict.json",
            False,
        ),
        (str(project.outside / "model.rds") if suffix == ".rds" else "/etc/hostname", False),
        (f"escape{suffix}", False),
        (f"escape_abs{suffix}", False),
        (f"linkdir/model{suffix}", False),
        (f"adir{suffix}", False),
        (f"dangling{suffix}", False),
        (f"loop{suffix}", False),
        (f"locked{suffix}", locked_ok),
        (f"nope{suffix}", False),
        (f"mo\0del{suffix}", False),
        ("a" * 5000 + suffix, False),
        ("d/" * 3000 + f"m{suffix}", False),
        ("", False),
        (".", False),
        ("sub", False),
        (f"~/x{suffix}", False),
    ]


@settings(FUZZ, max_examples=200)
@given(data=st.data())
def test_hostile_file_paths_are_refused(projects, data):
    project = projects[data.draw(example_names)]
    field, suffix = data.draw(st.sampled_from(sorted(FILE_FIELDS.items())))
    value, valid = data.draw(st.sampled_from(hostile_paths(project, suffix)))
    manifest = set_at(project.base, field, value)
    if suffix == ".rds" and not value.endswith(".rds"):
        valid = False
    if field == ("input", "example") and valid and value != "requests/predict.json":
        valid = None  # not an example request body: render may refuse it, cleanly
    if field == ("input", "example") and value.endswith((".rds", ".lock")) and valid:
        valid = None
    check_case(project, manifest, valid=valid, field=path_text(field) if valid is False else None)


def bomb(depth: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    for level in range(1, depth):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines) + "\n"


def corrupt_files(project: Project) -> list[tuple[str, bytes]]:
    good = yaml.safe_dump(project.base, allow_unicode=True).encode()
    deep = bomb(9)
    return [
        ("non-utf8", good + b"description: caf\xe9\n"),
        ("latin1 whole", good.decode().encode("utf-16")),
        ("nul byte", good[:40] + b"\0" + good[40:]),
        ("nul in value", good + b'description: "a\\0b"\n'),
        ("a list", b"- a\n- b\n"),
        ("a string", b"just text\n"),
        ("a number", b"42\n"),
        ("empty", b""),
        ("null", b"~\n"),
        ("bad yaml", b"name: [unclosed\n"),
        ("tab indent", b"model:\n\tpath: model.rds\n"),
        ("unhashable key", b"? [a, b]\n: 1\n"),
        ("bomb in name", (deep + "name: *a8\nversion: *a8\napiVersion: *a8\n").encode()),
        ("bomb in predict_args", good + ("scoring: {predict_args: {x: *a8}}\n" + deep).encode()),
        (
            "bomb in workers",
            good.replace(b"runtime:", b"runtime_:") + (deep + "runtime: {workers: *a8}\n").encode(),
        ),
        ("recursive alias", b"name: &n [*n]\n"),
        ("deep nesting", b"[" * 3000 + b"]" * 3000),
        ("deep mapping", b"a: " + b"{b: " * 3000 + b"1" + b"}" * 3000),
        ("duplicate keys", good + b"name: other\n"),
        ("int key", good + b"7: seven\n"),
        ("null key", good + b"~: nothing\n"),
        ("date version", good.replace(b"version:", b"version_:") + b"version: 2024-01-01\n"),
        ("float version", good.replace(b"version:", b"version_:") + b"version: 1.0\n"),
        ("bom", b"\xef\xbb\xbf" + good),
        ("binary", bytes(range(256)) * 4),
        ("python tag", good + b"x: !!python/object/apply:os.system [id]\n"),
    ]


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_corrupt_manifest_files_never_trace_back(projects, data):
    project = projects[data.draw(example_names)]
    _, content = data.draw(st.sampled_from(corrupt_files(project)))
    check_case(project, content, valid=None, field=None)


@settings(FUZZ, max_examples=60)
@given(data=st.data())
def test_random_bytes_and_text_never_trace_back(projects, data):
    project = projects[data.draw(example_names)]
    good = yaml.safe_dump(project.base, allow_unicode=True).encode()
    where = data.draw(st.integers(0, len(good)))
    noise = data.draw(st.binary(min_size=1, max_size=40) | st.text(max_size=40).map(str.encode))
    check_case(project, good[:where] + noise + good[where:], valid=None, field=None)


# --- single cases ------------------------------------------------------------------------------


def test_huge_manifest_is_refused_quickly(projects):
    project = projects["boston-rf"]
    huge = yaml.safe_dump(project.base).encode() + b"# " + b"x" * (20 << 20) + b"\n"
    check_case(project, huge, valid=False, field="(file)")
    _, output = run("validate", str(project.folder / "rmodel.yaml"))
    assert "a manifest is at most" in output, output


def test_manifest_path_too_long_or_unreadable(projects, tmp_path):
    code, output = run("validate", "m" * 5000 + ".yaml")
    assert code == 2 and "Traceback" not in output and "cannot be looked up" in output, output
    code, output = run("validate", str(tmp_path / "missing.yaml"))
    assert code == 2 and "no such manifest" in output, output
    folder = tmp_path / "dir-as-manifest"
    (folder / "rmodel.yaml").mkdir(parents=True)
    code, output = run("validate", str(folder))
    assert code == 2 and "Traceback" not in output, output


def test_subprocess_cases_match_in_process(projects):
    """A handful through `python -m rmodelpack`, as a user runs it."""
    project = projects["cars93-ranger"]
    cases = [
        (set_at(project.base, ("model", "path"), "escape.rds"), "model.path"),
        (set_at(project.base, ("scoring", "script"), "../outside/score.R"), "scoring.script"),
        (set_at(project.base, ("input", "max_rows"), "many"), "input.max_rows"),
        (set_at(project.base, ("model", "["), 1), "model.["),
    ]
    for content, where in cases:
        manifest = write_manifest(project, content)
        for argv in (
            ("validate", str(manifest)),
            ("render", str(manifest), "-o", str(project.good_out)),
        ):
            result = rmodelpack(*argv, env=PASSWORD_ENV)
            assert result.returncode == 2, result.stderr
            assert "Traceback" not in result.stderr + result.stdout
            assert f"{where}:" in result.stderr, result.stderr
        assert tree_snapshot(project.good_out) == project.snapshot
    CASES["subprocess"] += len(cases)


def test_at_least_500_generated_cases():
    """Runs last: the generated tests above really exercised the CLI this many times."""
    total = sum(CASES.values())
    print(dict(CASES))
    assert total >= MIN_CASES, dict(CASES)
