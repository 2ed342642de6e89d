"""The pipeline that the command line and library users share: manifest → render → build →
push → size → deploy, and local serving.

Each step takes a manifest (a path, or a ``LoadedManifest`` from ``load_manifest`` so that it is
read and validated once), reports progress through an optional callback of ``Event``s and
returns what it made; none of them prints. Where render's inputs come from (the earlier output's
bcrypt hashes and sizing.json) is decided here, so ``render.py`` stays a pure function.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rmodelpack.build import BuildResult, build_image, ensure_base_image, push_image
from rmodelpack.containers import check_port
from rmodelpack.contract import DEFAULT_OUT_DIR
from rmodelpack.deploy import DeployResult, DryRun
from rmodelpack.deploy import deploy as helm_deploy
from rmodelpack.exceptions import UsageError
from rmodelpack.manifest import MODEL_NAME, LoadedManifest, Manifest, load_manifest
from rmodelpack.render import (
    SIZING_FILE,
    RenderResult,
    bcrypt_hashes,
    check_output_dir,
    predict_body,
    render_context,
    render_files,
    write_atomically,
)
from rmodelpack.serve import serve_docker, serve_native
from rmodelpack.settings import WORKERS
from rmodelpack.size import Sizing, parse_mib, size_image

__all__ = [
    "Built",
    "Event",
    "LoadedManifest",
    "SizeResult",
    "build",
    "deploy",
    "load_manifest",
    "push",
    "render",
    "serve",
    "size",
]


@dataclass(frozen=True)
class Event:
    """One progress report: the stage (render, base, build, push, size, serve) and a line."""

    stage: str
    message: str


Progress = Callable[[Event], None] | None
Source = str | Path | LoadedManifest


def _loaded(source: Source) -> LoadedManifest:
    return source if isinstance(source, LoadedManifest) else load_manifest(source)


def _reporter(on_progress: Progress, stage: str) -> Callable[[str], None] | None:
    """A line callback for the lower layers, tagged with the stage."""
    if on_progress is None:
        return None
    return lambda line: on_progress(Event(stage, line))


def _report(on_progress: Progress, stage: str, message: str) -> None:
    if on_progress is not None:
        on_progress(Event(stage, message))


def default_out_dir(loaded: LoadedManifest) -> Path:
    """Where render writes unless told otherwise: .rmodelpack/ beside the manifest."""
    return loaded.base_dir / DEFAULT_OUT_DIR


# --- render ----------------------------------------------------------------------------------


def earlier_hashes(out_dir: Path) -> dict[str, str]:
    """The bcrypt hashes of an earlier render into ``out_dir`` (kept while passwords match)."""
    try:
        return bcrypt_hashes((out_dir / "values.yaml").read_bytes())
    except OSError:
        return {}


def earlier_sizing(out_dir: Path) -> dict[str, Any] | None:
    """The sizing an earlier `rmodelpack size` stored in ``out_dir``, if any."""
    try:
        data = json.loads((out_dir / SIZING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def render(
    source: Source,
    out_dir: str | Path | None = None,
    *,
    sizing: Mapping[str, Any] | None = None,
    on_progress: Progress = None,
) -> RenderResult:
    """Render the build context and values.yaml, and write them atomically to ``out_dir``.

    An earlier render in ``out_dir`` keeps its bcrypt hashes (so the output stays
    byte-identical) and its sizing while the model and worker count are the same; ``sizing``
    replaces the stored one.
    """
    loaded = _loaded(source)
    out = Path(out_dir) if out_dir is not None else default_out_dir(loaded)
    check_output_dir(out, protected=loaded.base_dir)
    rendered = render_files(
        loaded.manifest,
        loaded.base_dir,
        previous_hashes=earlier_hashes(out),
        sizing=sizing if sizing is not None else earlier_sizing(out),
    )
    write_atomically(rendered.files, out)
    _report(on_progress, "render", f"rendered {len(rendered.files)} files into {out.resolve()}")
    return RenderResult(
        out.resolve(),
        rendered.image,
        rendered.model_sha256,
        tuple(sorted(rendered.files)),
        contents=rendered.files,
    )


# --- build and push --------------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    """A rendered and built model image (and its pushed reference, when pushed)."""

    rendered: RenderResult
    result: BuildResult
    base_image_built: bool
    digest: str | None = None

    @property
    def image(self) -> str:
        return self.rendered.image


def build(
    source: Source,
    out_dir: str | Path | None = None,
    *,
    push: bool = False,
    client: Any = None,
    on_progress: Progress = None,
) -> Built:
    """render → the base image if the engine lacks it → docker build → push if asked."""
    loaded = _loaded(source)
    rendered = render(loaded, out_dir, on_progress=on_progress)
    base_built = ensure_base_image(
        loaded.manifest, client=client, on_progress=_reporter(on_progress, "base")
    )
    if base_built:
        _report(on_progress, "base", f"built the base image {loaded.manifest.base_image}")
    _report(on_progress, "build", f"building {rendered.image}")
    result = build_image(
        rendered.contents,
        rendered.image,
        client=client,
        on_progress=_reporter(on_progress, "build"),
    )
    digest = None
    if push:
        digest = push_image(
            rendered.image, client=client, on_progress=_reporter(on_progress, "push")
        )
    return Built(rendered, result, base_built, digest)


def push(image: str, *, client: Any = None, on_progress: Progress = None) -> str:
    """Push a built image; return the pushed ``repository@sha256:…``."""
    return push_image(image, client=client, on_progress=_reporter(on_progress, "push"))


# --- size ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SizeResult:
    """A measurement, and whether it sized values.yaml (it does for the pods' worker count)."""

    sizing: Sizing
    built: Built
    applied: bool
    deployment_workers: int | None
    low_memory: tuple[str, ...]  # the manifest's memory settings below the measurement


def sizing_workers(manifest: Manifest, override: int | None) -> int:
    """The worker count to measure: ``override``, else what the pods will run."""
    workers = override if override is not None else manifest.deployment_workers
    if workers is None:
        raise UsageError(
            "cannot tell how many workers the pods run: set runtime.workers or "
            "service.resources.requests.cpu in the manifest, or give the worker count to measure",
            parameter="workers",
        )
    return workers


def low_memory_settings(manifest: Manifest, sizing: Sizing) -> tuple[str, ...]:
    """Warnings for the manifest's own memory requests/limits below what was measured."""
    resources = manifest.service.resources
    warnings = []
    for kind, needed in (("requests", sizing.request_mib), ("limits", sizing.limit_mib)):
        group = getattr(resources, kind, None) if resources else None
        if group is not None and group.memory is not None and parse_mib(group.memory) < needed:
            warnings.append(
                f"service.resources.{kind}.memory is {group.memory} but the measurement "
                f"suggests {needed}Mi; pods may be OOM-killed or evicted"
            )
    return tuple(warnings)


def size(
    source: Source,
    out_dir: str | Path | None = None,
    *,
    workers: int | None = None,
    port: int = 18080,
    client: Any = None,
    on_progress: Progress = None,
) -> SizeResult:
    """Build the image, run it with 1 and N workers on 127.0.0.1:``port``, score the example
    rows, and store the measurement in the output (values.yaml's memory, unless the manifest
    sets it, when N is the pods' worker count). A bad or taken port and a worker count out of
    runtime.workers' range are refused before the build."""

    check_port(port)
    loaded = _loaded(source)
    manifest = loaded.manifest
    body = predict_body(manifest, loaded.base_dir)
    if body is None:
        raise UsageError("sizing scores example rows: set input.example in the manifest")
    count = sizing_workers(manifest, workers)
    if not WORKERS.minimum <= count <= WORKERS.maximum:
        raise UsageError(
            f"cannot measure {count} workers: the worker count must be from {WORKERS.minimum} "
            f"to {WORKERS.maximum} (the range of {WORKERS.manifest})",
            parameter="workers",
        )
    built = build(loaded, out_dir, client=client, on_progress=on_progress)
    _report(
        on_progress,
        "size",
        f"measuring {built.image} with 1 and {count} worker(s) on 127.0.0.1:{port}",
    )
    measured = size_image(
        image=built.image,
        model_sha256=built.rendered.model_sha256,
        example_body=body.encode(),
        workers=count,
        port=port,
        client=client,
        on_progress=_reporter(on_progress, "size"),
    )
    render(loaded, built.rendered.out_dir, sizing=json.loads(measured.to_json()))
    applied = manifest.deployment_workers == count
    return SizeResult(
        measured,
        built,
        applied,
        manifest.deployment_workers,
        low_memory_settings(manifest, measured) if applied else (),
    )


# --- deploy ----------------------------------------------------------------------------------


def _values_mapping(path: Path) -> dict[str, Any] | None:
    """A YAML mapping (a manifest or chart values) read from ``path``; None if not YAML."""
    if path.suffix not in (".yaml", ".yml"):
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not readable YAML: {exc}") from exc
    except RecursionError as exc:
        raise UsageError(f"{path} is nested too deeply to be chart values") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a YAML mapping of chart values or a manifest")
    return data


def deploy_target(
    target: Source, out_dir: str | Path | None = None, *, release: str | None = None
) -> tuple[Path, str]:
    """(values.yaml, release) of a target: a manifest (rendered first) or rendered values."""
    if not isinstance(target, LoadedManifest):
        source = Path(target)
        values = _values_mapping(source) if source.is_file() else None
        # Chart values have neither apiVersion nor input: a file with either is a manifest, and a
        # wrong one gets the manifest's errors, not "values without model.name".
        if values is not None and not {"apiVersion", "input"} & values.keys():
            if release is not None:
                return source, release_name(release, "--release")
            model = values.get("model")
            name = model.get("name") if isinstance(model, dict) else None
            if name is None:
                raise UsageError(
                    f"{source} has no model.name; give the release name", parameter="release"
                )
            return source, release_name(name, f"{source}: model.name")
    loaded = _loaded(target)
    if release is not None:
        release_name(release, "--release")
    rendered = render(loaded, out_dir)
    return rendered.out_dir / "values.yaml", release or loaded.manifest.name


def release_name(name: Any, where: str) -> str:
    """A release name helm and the chart's objects can carry; it goes on helm's command line,
    where a value such as --output-dir=… would be read as a flag."""
    if not isinstance(name, str) or not MODEL_NAME.fullmatch(name):
        raise UsageError(
            f"{where}: {name!r} cannot name a helm release; use lowercase letters, digits and "
            "'-', starting with a letter, at most 53 characters",
            parameter="release",
        )
    return name


def deploy(
    target: Source,
    out_dir: str | Path | None = None,
    *,
    release: str | None = None,
    namespace: str | None = None,
    chart: str | None = None,
    dry_run: DryRun | None = None,
    timeout: str = "10m",
    extra_values: Sequence[str | Path] = (),
) -> DeployResult:
    """helm upgrade --install (or a dry run) of the chart with a manifest's rendered values, or
    with an already rendered values.yaml; ``extra_values`` files go on top (later wins)."""
    missing = [str(path) for path in extra_values if not Path(path).is_file()]
    if missing:
        raise UsageError(f"values file {missing[0]}: no such file", parameter="extra_values")
    values, name = deploy_target(target, out_dir, release=release)
    return helm_deploy(
        values,
        release=name,
        namespace=namespace,
        chart=chart,
        dry_run=dry_run,
        timeout=timeout,
        extra_args=[arg for path in extra_values for arg in ("-f", str(path))],
    )


# --- serve -----------------------------------------------------------------------------------


def serve(
    source: Source,
    out_dir: str | Path | None = None,
    *,
    port: int = 8000,
    docker: bool = False,
    detach: bool = False,
    name: str | None = None,
    on_progress: Progress = None,
    on_output: Callable[[str], None] | None = None,
) -> tuple[str | None, int]:
    """Serve the model on 127.0.0.1:``port``: natively (R + nginx) or, with ``docker``, the
    built image hardened as in Kubernetes. Returns (container id or None, exit status).

    Natively without ``out_dir``, the build context is served from a temporary folder, so no
    basic-auth password is asked for; with ``out_dir`` the whole output is rendered there.
    A port out of range or already taken on 127.0.0.1 is refused before any work."""

    check_port(port)
    loaded = _loaded(source)
    if docker:
        built = build(loaded, out_dir, on_progress=on_progress)
        _report(
            on_progress,
            "serve",
            f"serving {built.image} in docker on http://127.0.0.1:{port} "
            "(read-only, non-root, no capabilities)",
        )
        return serve_docker(built.image, port, name=name, detach=detach, on_output=on_output)
    if out_dir is not None:
        rendered = render(loaded, out_dir, on_progress=on_progress)
        return None, _serve_natively(loaded, rendered.out_dir, rendered.image, port, on_progress)
    # Without an output folder to fill, the build context is enough: the chart's values, and
    # with them the basic-auth passwords, play no part in a native server.
    context = render_context(loaded.manifest, loaded.base_dir)
    with tempfile.TemporaryDirectory(prefix="rmodelpack-context-") as tmp:
        write_atomically(context.files, Path(tmp) / "context")
        return None, _serve_natively(
            loaded, Path(tmp) / "context", context.image, port, on_progress
        )


def _serve_natively(
    loaded: LoadedManifest, context_dir: Path, image: str, port: int, on_progress: Progress
) -> int:
    _report(
        on_progress, "serve", f"serving {image} natively on http://127.0.0.1:{port} (Ctrl-C stops)"
    )
    return serve_native(context_dir, port, loaded.base_dir / loaded.manifest.model.path)
