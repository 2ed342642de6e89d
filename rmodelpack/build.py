"""Build the base and model images with the docker SDK, and push them to a registry.

The build context goes to the engine as a tar with normalised owners, modes and
times, so the same rendered files always give the same context and docker's layer cache stays
warm across rebuilds (the repo2docker approach). The context is a folder (the base images) or
render's files in memory (a model image: nothing is read back from disk). Library code: it
reports progress through an optional callback and raises ``BuildError``/``PushError``; it never
prints or exits.
"""

from __future__ import annotations

import io
import re
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from rmodelpack.exceptions import BuildError, PushError, RmodelpackError
from rmodelpack.manifest import BASE_IMAGES as BASE_IMAGE_TAGS
from rmodelpack.manifest import Manifest
from rmodelpack.version import __version__

# A build context: a folder, or {relative path: bytes} as render makes it.
Context = Path | Mapping[str, bytes]

Progress = Callable[[str], None] | None

# A build context's tar: in memory up to CONTEXT_IN_MEMORY_BYTES, then in a temporary file.
ContextArchive = tempfile.SpooledTemporaryFile
CONTEXT_IN_MEMORY_BYTES = 8 * 1024 * 1024


def _base_images_dir() -> Path:
    """The copy shipped inside the installed package, else base-images/ of a checkout.

    The package's own copy comes first: beside an installed package, ``../base-images`` is
    site-packages, not rmodelpack's.
    """
    here = Path(__file__).resolve().parent
    shipped = here / "_base_images"
    return shipped if shipped.is_dir() else here.parent / "base-images"


BASE_IMAGES_DIR = _base_images_dir()
# Every file in the context gets these, whoever rendered it and whenever.
CONTEXT_MTIME = 0
LOG_TAIL_LINES = 30

_STEP_LINE = re.compile(r"^Step (\d+)/\d+ : (.*)$")
_BUILT_LINE = re.compile(r"^Successfully built ([0-9a-f]+)$")
# The engine colours a RUN step's stderr with ANSI escapes.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class BuildStep:
    """One Dockerfile instruction as the engine ran it."""

    number: int
    instruction: str
    cached: bool


@dataclass(frozen=True)
class BuildResult:
    """What a finished build produced: the image, its tag, and how each step went."""

    image_id: str
    tag: str
    steps: tuple[BuildStep, ...]

    @property
    def rebuilt_steps(self) -> tuple[BuildStep, ...]:
        """Steps that ran instead of coming from the cache (FROM never counts as either)."""
        return tuple(
            step for step in self.steps if not step.cached and not _is_from(step.instruction)
        )


def build_base_image(
    family: str = "debian", *, client: Any = None, on_progress: Progress = None
) -> str:
    """Build the base image of ``family`` from ``base-images/<family>/``; return its tag."""
    if family not in BASE_IMAGE_TAGS:
        known = ", ".join(sorted(BASE_IMAGE_TAGS))
        raise BuildError(f"unknown base image family {family!r}; known families: {known}")
    context_dir = BASE_IMAGES_DIR / family
    if not (context_dir / "Dockerfile").is_file():
        raise BuildError(
            f"{context_dir / 'Dockerfile'} is missing; rmodelpack ships it in its wheel and "
            "checkout: reinstall rmodelpack (pip install --force-reinstall rmodelpack)"
        )
    tag = BASE_IMAGE_TAGS[family]
    build_image(
        context_dir,
        tag,
        client=client,
        on_progress=on_progress,
        buildargs={"VERSION": __version__},
    )
    return tag


def ensure_base_image(
    manifest: Manifest, *, client: Any = None, on_progress: Progress = None
) -> bool:
    """Build the manifest's base image when the engine lacks it; return whether it was built.

    Only rmodelpack's own bases are built here; an ``image.base`` override is the engine's to
    pull when the model image is built.
    """
    if manifest.image.base is not None:
        return False
    docker_client = _connect(client, BuildError)
    if _image_present(docker_client, manifest.base_image):
        return False
    build_base_image(manifest.image.base_family, client=docker_client, on_progress=on_progress)
    return True


def build_image(
    context: Context | str,
    tag: str,
    *,
    client: Any = None,
    on_progress: Progress = None,
    buildargs: dict[str, str] | None = None,
    nocache: bool = False,
) -> BuildResult:
    """Build ``context`` (a folder with a Dockerfile, or render's files) into ``tag``."""
    with _context_archive(context) as archive:
        docker_client = _connect(client, BuildError)
        try:
            chunks = docker_client.api.build(
                fileobj=archive,
                custom_context=True,
                tag=tag,
                buildargs=buildargs,
                nocache=nocache,
                rm=True,
                forcerm=True,
                decode=True,
            )
            return _follow_build(chunks, tag, on_progress)
        except _docker_errors() as exc:
            raise BuildError(f"docker build of {tag} failed: {_explain(exc)}") from exc


def push_image(ref: str, *, client: Any = None, on_progress: Progress = None) -> str:
    """Push ``ref`` (``registry/repository:tag``); return the pushed ``repository@sha256:…``."""
    from docker.utils import parse_repository_tag

    repository, tag = parse_repository_tag(ref)
    tag = tag or "latest"
    registry = registry_of(repository)
    docker_client = _connect(client, PushError)
    try:
        # No auth_config: the SDK reads the docker config (docker login / az acr login).
        chunks = docker_client.api.push(repository, tag=tag, stream=True, decode=True)
        digest = _follow_push(chunks, on_progress)
    except _docker_errors() as exc:
        raise PushError(_push_failure(ref, registry, _explain(exc))) from exc
    except _PushFailed as failure:
        raise PushError(_push_failure(ref, registry, str(failure))) from None
    if digest is None:
        raise PushError(f"pushing {ref} to {registry} reported no digest")
    return f"{repository}@{digest}"


def registry_of(repository: str) -> str:
    """The registry host of an image repository name (docker.io when it names none)."""
    first, _, rest = repository.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def _context_archive(context: Context | str) -> ContextArchive:
    if isinstance(context, Mapping):
        if "Dockerfile" not in context:
            raise BuildError("the build context has no Dockerfile; render the manifest first")
        return files_tar(context)
    context_dir = Path(context)
    if not (context_dir / "Dockerfile").is_file():
        raise BuildError(f"{context_dir} has no Dockerfile; render the manifest first")
    return context_tar(context_dir)


def _archive_buffer() -> ContextArchive:
    # A model can be a gigabyte: render already holds it in memory once, so a context past a
    # few MB goes to a temporary file rather than holding it twice.
    return tempfile.SpooledTemporaryFile(max_size=CONTEXT_IN_MEMORY_BYTES)


def context_tar(context_dir: Path) -> ContextArchive:
    """The build context as an uncompressed tar, honouring ``.dockerignore``."""
    buffer = _archive_buffer()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for relative in context_files(context_dir):
            _add_normalised(archive, context_dir, relative)
    buffer.seek(0)
    return buffer


def context_files(context_dir: Path) -> list[str]:
    """Sorted relative paths that go into the context: everything .dockerignore lets through."""
    from docker.utils.build import exclude_paths

    return sorted(exclude_paths(str(context_dir), dockerignore_patterns(context_dir)))


def dockerignore_patterns(context_dir: Path) -> list[str]:
    """The patterns of ``.dockerignore``, read the way the docker CLI and SDK read them."""
    ignore_file = context_dir / ".dockerignore"
    if not ignore_file.is_file():
        return []
    return _ignore_patterns(ignore_file.read_text(encoding="utf-8"))


def _ignore_patterns(text: str) -> list[str]:
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def files_tar(files: Mapping[str, bytes]) -> ContextArchive:
    """The same tar as ``context_tar`` of the folder that ``files`` would be written into."""
    buffer = _archive_buffer()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for relative in mapping_context_files(files):
            info = tarfile.TarInfo(relative)
            info.mtime = CONTEXT_MTIME
            if relative in files:
                info.size = len(files[relative])
                # write_atomically makes shell scripts executable; the folder's tar has 0755.
                info.mode = 0o755 if relative.endswith(".sh") else 0o644
                archive.addfile(info, io.BytesIO(files[relative]))
            else:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
    buffer.seek(0)
    return buffer


def mapping_context_files(files: Mapping[str, bytes]) -> list[str]:
    """``context_files`` for files in memory: the same paths, folders included."""
    from docker.utils.build import PatternMatcher

    patterns = _ignore_patterns(files.get(".dockerignore", b"").decode("utf-8"))
    matcher = PatternMatcher([*patterns, "!Dockerfile"])
    folders = {str(parent) for path in files for parent in PurePosixPath(path).parents}
    folders.discard(".")
    nodes = sorted(set(files) | folders)
    skipped: list[str] = []
    included = []
    for node in nodes:
        if any(node.startswith(f"{folder}/") for folder in skipped):
            continue
        excluded = matcher.matches(node)
        if not excluded:
            included.append(node)
        elif node in folders and not _reincluded_below(matcher, node):
            skipped.append(node)
    return included


def _reincluded_below(matcher: Any, folder: str) -> bool:
    """docker walks into an excluded folder only if an exclusion pattern starts with it."""
    return any(p.exclusion and p.cleaned_pattern.startswith(folder) for p in matcher.patterns)


def _add_normalised(archive: tarfile.TarFile, root: Path, relative: str) -> None:
    path = root / relative
    info = archive.gettarinfo(str(path), arcname=relative)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = CONTEXT_MTIME
    if info.isdir() or info.mode & 0o111:
        info.mode = 0o755
    elif info.issym():
        info.mode = 0o777
    else:
        info.mode = 0o644
    if info.isfile():
        with path.open("rb") as content:
            archive.addfile(info, content)
    else:
        archive.addfile(info)


def _follow_build(chunks: Iterable[dict[str, Any]], tag: str, on_progress: Progress) -> BuildResult:
    log = _BuildLog(on_progress)
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            log.flush()
            raise BuildError(_build_failure(tag, _chunk_error(chunk), log.tail))
        if "ID" in chunk.get("aux", {}):
            log.image_id = chunk["aux"]["ID"]
        log.feed(chunk.get("stream", ""))
    log.flush()
    if not log.image_id:
        raise BuildError(_build_failure(tag, "the engine reported no image id", log.tail))
    return BuildResult(image_id=log.image_id, tag=tag, steps=tuple(log.steps))


class _BuildLog:
    """Turns the engine's stream fragments into lines, steps and the image id."""

    def __init__(self, on_progress: Progress):
        self.on_progress = on_progress
        self.steps: list[BuildStep] = []
        self.tail: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.image_id = ""
        self._pending = ""

    def feed(self, text: str) -> None:
        *complete, self._pending = (self._pending + text).split("\n")
        for line in complete:
            self._line(_ANSI_ESCAPE.sub("", line).rstrip())

    def flush(self) -> None:
        self.feed("\n")

    def _line(self, line: str) -> None:
        if not line.strip():
            return
        self.tail.append(line)
        if self.on_progress is not None:
            self.on_progress(line)
        step = _STEP_LINE.match(line)
        if step:
            self.steps.append(BuildStep(int(step.group(1)), step.group(2), cached=False))
        elif line.strip() == "---> Using cache" and self.steps:
            last = self.steps[-1]
            self.steps[-1] = BuildStep(last.number, last.instruction, cached=True)
        built = _BUILT_LINE.match(line.strip())
        if built and not self.image_id:
            self.image_id = built.group(1)


def _chunk_error(chunk: dict[str, Any]) -> str:
    message = chunk.get("error") or chunk.get("errorDetail", {}).get("message", "")
    return str(message).strip()


def _build_failure(tag: str, message: str, tail: Iterable[str]) -> str:
    text = f"docker build of {tag} failed: {message}"
    lines = list(tail)
    if lines:
        text += "\nlast build output:\n" + "\n".join(f"  {line}" for line in lines)
    steps = [line for line in lines if _STEP_LINE.match(line)]
    if steps and " : FROM rmodelpack/r-base:" in steps[-1]:
        text += (
            "\nthe rmodelpack base image is missing; build it with build_base_image() from "
            "rmodelpack.build (rmodelpack's build() does this by itself)"
        )
    return text


class _PushFailed(Exception):
    """An error chunk in the push stream (turned into PushError with the registry named)."""


def _follow_push(chunks: Iterable[dict[str, Any]], on_progress: Progress) -> str | None:
    digest = None
    for chunk in chunks:
        if "error" in chunk or "errorDetail" in chunk:
            raise _PushFailed(_chunk_error(chunk))
        if "aux" in chunk and "Digest" in chunk["aux"]:
            digest = chunk["aux"]["Digest"]
        status = chunk.get("status")
        # Byte counts (a non-empty progressDetail) would flood the callback; states do not.
        if status and on_progress is not None and not chunk.get("progressDetail"):
            on_progress(f"{chunk['id']}: {status}" if "id" in chunk else status)
    return digest


def _push_failure(ref: str, registry: str, message: str) -> str:
    lowered = message.lower()
    if "does not exist locally" in lowered or "no such image" in lowered:
        return f"cannot push {ref}: there is no local image with that name; build it first"
    login = f"log in first: az acr login --name {_acr_name(registry)}" + (
        f" (Azure Container Registry) or docker login {registry}"
    )
    if any(word in lowered for word in ("unauthorized", "denied", "authentication required")):
        return f"registry {registry} refused {ref} (not logged in?): {message}\n{login}"
    unreachable = ("connection refused", "no such host", "timeout", "dial tcp", "connect:")
    if any(word in lowered for word in unreachable):
        return (
            f"registry {registry} cannot be reached while pushing {ref}: {message}\n"
            f"check the registry address in image.repository, then {login}"
        )
    return f"pushing {ref} to {registry} failed: {message}\n{login}"


def _acr_name(registry: str) -> str:
    host = registry.split(":")[0]
    return host.split(".")[0] if host.endswith(".azurecr.io") else "<registry-name>"


def _connect(client: Any, error: type[RmodelpackError]) -> Any:
    if client is not None:
        return client
    import docker

    try:
        connected = docker.from_env()
        connected.ping()
    except _docker_errors() as exc:
        raise error(
            f"cannot reach the Docker engine ({_explain(exc)}); start dockerd, or point "
            "DOCKER_HOST at a running engine"
        ) from exc
    return connected


def _image_present(client: Any, reference: str) -> bool:
    import docker.errors

    try:
        client.images.get(reference)
    except docker.errors.ImageNotFound:
        return False
    except _docker_errors() as exc:
        raise BuildError(f"cannot inspect {reference}: {_explain(exc)}") from exc
    return True


def _docker_errors() -> tuple[type[Exception], ...]:
    import docker.errors
    import requests.exceptions

    return (docker.errors.DockerException, requests.exceptions.RequestException)


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


def _is_from(instruction: str) -> bool:
    return instruction.upper().startswith("FROM ")
