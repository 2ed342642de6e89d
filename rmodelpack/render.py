"""Render a manifest into a Docker build context and Helm values, in memory.

``render_files`` is pure apart from reading the files the manifest names (model, scoring script,
renv lock, example) and its passwords: a validated manifest and explicit inputs (earlier bcrypt
hashes to keep, a measured sizing) in, ``{relative path: bytes}`` out. Where those inputs come
from, and writing the files (``write_atomically``), is the pipeline's business
(``rmodelpack.pipeline``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import bcrypt
import jinja2
import yaml

from rmodelpack import contract, settings
from rmodelpack.contract import CONTAINER_PORT, CONTAINER_UID, OUTPUT_MARKER
from rmodelpack.exceptions import CredentialError, OutputDirError, RenderError
from rmodelpack.manifest import DEBIAN_RELEASE, Manifest
from rmodelpack.version import __version__

# Written by `rmodelpack size`, carried over by later renders of the same model.
SIZING_FILE = "sizing.json"
BCRYPT_MAX_BYTES = 72
# R packages that the base image already carries, or that ship with R itself.
PROVIDED_R_PACKAGES = frozenset(
    {
        "plumber",
        "jsonlite",
        "base",
        "compiler",
        "datasets",
        "graphics",
        "grDevices",
        "grid",
        "methods",
        "parallel",
        "splines",
        "stats",
        "stats4",
        "tcltk",
        "tools",
        "utils",
    }
)
BCRYPT_ROUNDS = 12


class Rendered(NamedTuple):
    """What render_files makes: the files, the image reference they build, the model's hash."""

    files: dict[str, bytes]
    image: str
    model_sha256: str


@dataclass(frozen=True)
class RenderResult:
    """A render written to ``out_dir``; ``contents`` holds the same bytes, for the build."""

    out_dir: Path
    image: str
    model_sha256: str
    files: tuple[str, ...]
    contents: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


# --- helpers -------------------------------------------------------------------------------------


@cache
def template_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("rmodelpack", "templates"),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    # The image contract's paths, the same for every model (contract.py is their home).
    env.globals["contract"] = {
        name: getattr(contract, name) for name in dir(contract) if name.isupper()
    }
    return env


@cache
def debian_r_packages() -> frozenset[str]:
    listing = f"data/debian-{DEBIAN_RELEASE}-r-cran.txt"
    text = resources.files("rmodelpack").joinpath(listing).read_text()
    return frozenset(line for line in text.splitlines() if line and not line.startswith("#"))


def debian_package_for(r_package: str) -> str:
    return f"r-cran-{r_package.lower()}"


def split_r_packages(packages: list[str], family: str = "debian") -> tuple[list[str], list[str]]:
    """Return (Debian packages, CRAN packages) for the R packages the image still lacks.

    Debian's r-cran-* binaries fit only the debian base family; rocker images take every package
    from Posit Package Manager.
    """
    available = debian_r_packages() if family == "debian" else frozenset()
    apt: set[str] = set()
    cran: set[str] = set()
    for package in packages:
        if package in PROVIDED_R_PACKAGES:
            continue
        candidate = debian_package_for(package)
        if candidate in available:
            apt.add(candidate)
        else:
            cran.add(package)
    return sorted(apt), sorted(cran)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def runtime_files() -> dict[str, bytes]:
    """The R runtime, byte for byte, keyed by its path inside the build context."""
    root = resources.files("rmodelpack").joinpath("runtime")
    files: dict[str, bytes] = {}

    def walk(node: Any, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name.startswith(".") or child.name == "__pycache__":
                continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                files[f"runtime/{prefix}{child.name}"] = child.read_bytes()

    walk(root, "")
    return files


def script_name(manifest: Manifest) -> str | None:
    return Path(manifest.scoring.script).name if manifest.scoring.script else None


# --- the runtime config --------------------------------------------------------------------------


def runtime_config(manifest: Manifest, model_sha256: str) -> dict[str, Any]:
    """The runtime's rmodelpack.json: every field present, paths as seen inside the image."""
    script = script_name(manifest)
    return {
        "name": manifest.name,
        "version": manifest.version,
        "description": manifest.description,
        "model": {"path": contract.MODEL_PATH, "sha256": model_sha256},
        "scoring": {
            "script": f"{contract.APP_DIR}/{script}" if script else None,
            "function": manifest.scoring.function,
            "predict_args": manifest.scoring.predict_args,
            "rowwise": manifest.scoring.rowwise,
        },
        "input": {
            "columns": [
                column.model_dump(exclude={"description"}) for column in manifest.input.columns
            ],
            "max_rows": manifest.input.max_rows,
            "extra_columns": manifest.input.extra_columns,
        },
        "output": manifest.output.model_dump(),
        "runtime": {**manifest.runtime.model_dump(), "port": CONTAINER_PORT},
        "bounds": settings.runtime_bounds(),
        "packages": sorted(manifest.r.packages),
        "rmodelpack_version": __version__,  # the server's version in the OIP server metadata
    }


# --- chart values --------------------------------------------------------------------------------


def _drop_none(mapping: Mapping[str, Any]) -> dict[str, Any]:
    cleaned: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            value = _drop_none(value)
            if not value:
                continue
        if value is not None:
            cleaned[key] = value
    return cleaned


def read_password(user: Any, base_dir: Path, index: int) -> str:
    where = f"service.auth.users[{index}]"
    if user.password_env is not None:
        password = os.environ.get(user.password_env)
        if not password:
            raise CredentialError(
                f"{where}.password_env: the environment variable {user.password_env} "
                f"(password of '{user.name}') is not set; export it before rendering"
            )
        return _usable_password(password, f"{where}.password_env")
    path = base_dir / user.password_file
    # A FIFO or a device would block render or never end; only a regular file is read.
    if path.exists() and not path.is_file():
        raise CredentialError(
            f"{where}.password_file: {path} is not a regular file; "
            "create a file with the password on its first line"
        )
    try:
        password = path.read_text(encoding="utf-8").rstrip("\r\n")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise CredentialError(
            f"{where}.password_file: cannot read {path} ({reason}); "
            "create it with the password on its first line"
        ) from exc
    if not password:
        raise CredentialError(f"{where}.password_file: {path} is empty")
    if "\n" in password:
        raise CredentialError(
            f"{where}.password_file: {path} holds more than one line; keep only the password"
        )
    return _usable_password(password, f"{where}.password_file")


def _usable_password(password: str, where: str) -> str:
    try:
        encoded = password.encode()
    except UnicodeEncodeError:  # bytes the environment held that are not UTF-8
        raise CredentialError(
            f"{where}: the password is not UTF-8 text; use letters, digits and punctuation "
            "(e.g. openssl rand -hex 24)"
        ) from None
    if len(encoded) > BCRYPT_MAX_BYTES:
        raise CredentialError(
            f"{where}: the password is longer than bcrypt's {BCRYPT_MAX_BYTES} bytes; "
            "use a shorter one (e.g. openssl rand -hex 24)"
        )
    return password


def htpasswd_lines(manifest: Manifest, base_dir: Path, previous: Mapping[str, str]) -> list[str]:
    """bcrypt htpasswd lines; an earlier hash of the same password is kept so output is stable."""
    auth = manifest.service.auth
    if auth is None:
        return []
    lines = []
    for index, user in enumerate(auth.users):
        password = read_password(user, base_dir, index).encode()
        earlier = previous.get(user.name)
        if earlier and bcrypt.checkpw(password, earlier.encode()):
            hashed = earlier
        else:
            hashed = bcrypt.hashpw(password, bcrypt.gensalt(BCRYPT_ROUNDS)).decode()
        lines.append(f"{user.name}:{hashed}")
    return lines


def bcrypt_hashes(values_text: str | bytes) -> dict[str, str]:
    """{user: bcrypt hash} of a rendered values.yaml; {} when it holds none or is not ours."""
    try:
        values = yaml.safe_load(values_text) or {}
        users = values.get("auth", {}).get("users", [])
        return dict(line.split(":", 1) for line in users if ":" in line)
    except (yaml.YAMLError, AttributeError, ValueError, TypeError, RecursionError):
        return {}


def applicable_sizing(
    manifest: Manifest, sizing: Mapping[str, Any] | None, model_sha256: str
) -> Mapping[str, Any] | None:
    """A measured sizing holds only for the model it measured and the pods' worker count."""
    if sizing is None or sizing.get("model_sha256") != model_sha256:
        return None
    # A stored sizing edited or cut short is ignored, not a crash of the next render.
    measured = all(
        isinstance(sizing.get(key), int) and not isinstance(sizing.get(key), bool)
        for key in ("request_mib", "limit_mib")
    )
    return sizing if measured and sizing.get("workers") == manifest.deployment_workers else None


def resources_values(manifest: Manifest, sizing: Mapping[str, Any] | None) -> dict[str, Any]:
    """The manifest's resources; memory the manifest leaves out comes from `rmodelpack size`."""
    resources = manifest.service.resources
    values = resources.model_dump() if resources else {}
    if sizing is None:
        return values
    measured = {"requests": f"{sizing['request_mib']}Mi", "limits": f"{sizing['limit_mib']}Mi"}
    for kind, memory in measured.items():
        current = values.get(kind) or {}
        if current.get("memory") is None:
            values[kind] = {**current, "memory": memory}
    return values


def _at(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        data = getattr(data, key)
    return data


def _put(values: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for key in parents:
        values = values.setdefault(key, {})
    values[last] = value


def runtime_values(manifest: Manifest) -> dict[str, Any]:
    """The chart's runtime.* block, setting by setting (settings.py maps the names)."""
    values: dict[str, Any] = {}
    for setting in settings.SETTINGS:
        if setting.manifest and setting.chart:
            value = _at(manifest, setting.manifest)
            _put(values, setting.chart, None if value == settings.AUTO else value)
    return values["runtime"]


def chart_values(
    manifest: Manifest,
    *,
    image_tag: str,
    model_sha256: str,
    users: list[str],
    predict_body: str | None,
    sizing: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Values for chart/: what the manifest determines; the chart supplies every other default."""
    service = manifest.service
    model = manifest.model
    values: dict[str, Any] = {
        "image": {"repository": manifest.repository, "tag": image_tag},
        "model": {
            "name": manifest.name,
            "version": manifest.version,
            "sha256": model_sha256,
            "source": model.source,
            "url": model.url_secret
            and {"existingSecret": model.url_secret.name, "key": model.url_secret.key},
            "pvc": model.pvc and {"claimName": model.pvc.claim_name, "subPath": model.pvc.sub_path},
        },
        "runtime": runtime_values(manifest),
        "ingress": {
            "host": service.host,
            "flavor": service.ingress and service.ingress.flavor,
            "className": service.ingress and service.ingress.class_name,
        },
        "tls": service.tls
        and {
            "enabled": service.tls.enabled,
            "issuerRef": service.tls.issuer and service.tls.issuer.model_dump(),
        },
        "auth": service.auth
        and {
            "enabled": service.auth.enabled,
            "realm": service.auth.realm,
            "users": users or None,
            "existingSecret": service.auth.existing_secret,
        },
        "autoscaling": service.autoscaling
        and {
            "enabled": service.autoscaling.enabled,
            "minReplicas": service.autoscaling.min_replicas,
            "maxReplicas": service.autoscaling.max_replicas,
            "targetCPUUtilizationPercentage": service.autoscaling.target_cpu,
            "targetMemoryUtilizationPercentage": service.autoscaling.target_memory,
        },
        "resources": resources_values(manifest, sizing),
        "tests": {"predictBody": predict_body},
    }
    return _drop_none(values)


def dump_values(values: Mapping[str, Any]) -> bytes:
    header = (
        f"# Generated by rmodelpack {__version__} from rmodel.yaml; edit the manifest, "
        "not this file.\n# helm upgrade --install NAME chart/ -f values.yaml\n"
    )
    body = yaml.safe_dump(dict(values), sort_keys=True, default_flow_style=False, width=1000)
    return (header + body).encode()


# --- Dockerfile ----------------------------------------------------------------------------------


def dockerfile_context(manifest: Manifest, model_sha256: str) -> dict[str, Any]:
    apt_packages, cran_packages = split_r_packages(manifest.r.packages, manifest.image.base_family)
    labels = {
        "io.rmodelpack.model.name": manifest.name,
        "io.rmodelpack.model.sha256": model_sha256,
        "io.rmodelpack.model.version": manifest.version,
        "org.opencontainers.image.description": manifest.description,
        "org.opencontainers.image.title": manifest.name,
        "org.opencontainers.image.version": manifest.version,
    }
    return {
        "header": f"# Generated by rmodelpack {__version__} from rmodel.yaml; "
        "edit the manifest, not this file",
        "base_image": manifest.base_image,
        # the template's name for the base family (image.base_family)
        "flavor": manifest.image.base_family,
        "apt_packages": sorted(set(apt_packages) | set(manifest.r.system_packages)),
        "cran_packages": cran_packages,
        "renv_lock": "app/renv.lock" if manifest.r.renv_lock else None,
        "has_script": manifest.scoring.script is not None,
        "labels": dict(sorted(labels.items())),
        "port": CONTAINER_PORT,
        "uid": CONTAINER_UID,
        "model_in_image": manifest.model.source == "image",
    }


def render_template(name: str, context: Mapping[str, Any]) -> bytes:
    try:
        return template_env().get_template(name).render(**context).encode()
    except jinja2.TemplateError as exc:
        raise RenderError(f"template {name}: {exc}") from exc


# --- the whole output ----------------------------------------------------------------------------


def content_hash(files: Mapping[str, bytes]) -> str:
    """A hash of everything that goes into the image, so identical inputs give identical tags."""
    digest = hashlib.sha256()
    for path in sorted(files):
        digest.update(path.encode() + b"\0" + hashlib.sha256(files[path]).digest())
    return digest.hexdigest()


def image_files(manifest: Manifest, base_dir: Path, model_sha256: str) -> dict[str, bytes]:
    """Everything in the build context (values.yaml is not part of the image)."""
    files = runtime_files()
    config = runtime_config(manifest, model_sha256)
    # allow_nan=False: R's JSON reader would refuse the file and the server would not start.
    config_text = json.dumps(config, indent=2, sort_keys=True, allow_nan=False)
    files["app/rmodelpack.json"] = (config_text + "\n").encode()
    if manifest.scoring.script:
        files[f"app/{script_name(manifest)}"] = (base_dir / manifest.scoring.script).read_bytes()
    if manifest.r.renv_lock:
        files["app/renv.lock"] = (base_dir / manifest.r.renv_lock).read_bytes()
    if manifest.model.source == "image":
        files["model/model.rds"] = (base_dir / manifest.model.path).read_bytes()
    context = dockerfile_context(manifest, model_sha256)
    files["Dockerfile"] = render_template("Dockerfile.j2", context)
    files[".dockerignore"] = render_template("dockerignore.j2", context)
    return files


def image_tag(manifest: Manifest, files: Mapping[str, bytes]) -> str:
    return manifest.image.tag or f"{manifest.version}-{content_hash(files)[:12]}"


def predict_body(manifest: Manifest, base_dir: Path) -> str | None:
    if manifest.input.example is None:
        return None
    path = base_dir / manifest.input.example
    try:
        # parse_constant: NaN and Infinity are not JSON; the helm test would send them as is.
        example = json.loads(path.read_text(encoding="utf-8"), parse_constant=_not_json)
        return json.dumps(example, separators=(",", ":"), allow_nan=False)
    except (OSError, ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise RenderError(f"input.example: {path} is not readable JSON ({reason})") from exc


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON value")


def render_context(manifest: Manifest, base_dir: Path) -> Rendered:
    """The build context alone (what the image and a native server run), without the chart's
    values: no basic-auth password is needed."""
    model_sha256 = sha256_file(base_dir / manifest.model.path)
    files = image_files(manifest, base_dir, model_sha256)
    return Rendered(files, f"{manifest.repository}:{image_tag(manifest, files)}", model_sha256)


def render_files(
    manifest: Manifest,
    base_dir: Path,
    *,
    previous_hashes: Mapping[str, str] | None = None,
    sizing: Mapping[str, Any] | None = None,
) -> Rendered:
    """The whole output of a validated manifest, in memory.

    ``previous_hashes`` ({user: bcrypt hash}, from an earlier values.yaml) are kept when the
    passwords still match, so a re-render is byte-identical. ``sizing`` (an earlier
    `rmodelpack size`'s sizing.json) sizes the memory values while it fits this model and
    worker count, and is carried in the output.
    """
    model_sha256 = sha256_file(base_dir / manifest.model.path)
    files = image_files(manifest, base_dir, model_sha256)
    tag = image_tag(manifest, files)
    sizing = applicable_sizing(manifest, sizing, model_sha256)
    values = chart_values(
        manifest,
        image_tag=tag,
        model_sha256=model_sha256,
        users=htpasswd_lines(manifest, base_dir, previous_hashes or {}),
        predict_body=predict_body(manifest, base_dir),
        sizing=sizing,
    )
    files["values.yaml"] = dump_values(values)
    files[OUTPUT_MARKER] = (
        b"Written by rmodelpack render. This folder is replaced whole on every render.\n"
    )
    if sizing is not None:
        files[SIZING_FILE] = (json.dumps(sizing, indent=2, sort_keys=True) + "\n").encode()
    return Rendered(files, f"{manifest.repository}:{tag}", model_sha256)


def check_output_dir(out_dir: Path, protected: Path | None = None) -> None:
    """Refuse to replace a folder that holds anything rmodelpack did not write."""
    try:
        _check_output_dir(out_dir.resolve(), protected)
    except OSError as exc:  # a name too long, a folder we may not list
        raise _unwritable(out_dir, exc) from exc


def _unwritable(out_dir: Path, exc: OSError) -> OutputDirError:
    return OutputDirError(
        f"cannot write the output folder {out_dir}: {exc.strerror or exc}; "
        "choose a folder you can write (-o)",
        parameter="out_dir",
    )


def _check_output_dir(out_dir: Path, protected: Path | None) -> None:
    if protected is not None:
        protected = protected.resolve()
        if out_dir == protected or out_dir in protected.parents:
            raise OutputDirError(
                f"the output folder {out_dir} is the manifest's folder or one above it; render "
                "replaces its output folder whole, so choose a folder of its own "
                f"(default: {contract.DEFAULT_OUT_DIR}/ beside the manifest)",
                parameter="out_dir",
            )
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise OutputDirError(
            f"the output folder {out_dir} exists and is not a folder; choose another",
            parameter="out_dir",
        )
    if any(out_dir.iterdir()) and not (out_dir / OUTPUT_MARKER).is_file():
        raise OutputDirError(
            f"the output folder {out_dir} holds files that rmodelpack did not write; render "
            "replaces its output folder whole, so choose an empty or new folder",
            parameter="out_dir",
        )


def write_atomically(files: Mapping[str, bytes], out_dir: Path) -> None:
    """Replace out_dir with exactly ``files``; on any error out_dir is left as it was."""
    try:
        _write_atomically(files, out_dir.resolve())
    except OSError as exc:
        raise _unwritable(out_dir, exc) from exc


def _write_atomically(files: Mapping[str, bytes], out_dir: Path) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for relative, data in sorted(files.items()):
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if relative.endswith(".sh"):
                target.chmod(0o755)
        _swap_in(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _swap_in(staging: Path, out_dir: Path) -> None:
    if not out_dir.exists():
        staging.rename(out_dir)
        return
    if not out_dir.is_dir():
        raise RenderError(
            f"{out_dir} exists and is not a folder; choose another output folder",
            parameter="out_dir",
        )
    # A name of its own: a fixed ".NAME.old" removed whatever the user kept there, and two renders
    # at once swapped into each other's.
    retired = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
    try:
        out_dir.rename(retired)
    except OSError:
        retired.rmdir()
        raise
    try:
        staging.rename(out_dir)
    except BaseException:
        retired.rename(out_dir)
        raise
    shutil.rmtree(retired, ignore_errors=True)
