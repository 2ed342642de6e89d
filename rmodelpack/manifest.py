"""The model manifest (``rmodel.yaml``): the one home of every model-level default.

``load_manifest`` reads the YAML, validates it with pydantic and reports every problem at once,
each with its field path, what is wrong and how to fix it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import reprlib
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from rmodelpack import settings
from rmodelpack.exceptions import ManifestError, Problem

API_VERSION = "rmodelpack/v1"
MANIFEST_FILENAME = "rmodel.yaml"
MAX_MANIFEST_BYTES = 1 << 20
MAX_MANIFEST_VALUES = 100_000
# The Debian release of the debian base family (base-images/debian/Dockerfile's FROM).
DEBIAN_RELEASE = "trixie"
BASE_IMAGES = {
    "debian": f"rmodelpack/r-base:{DEBIAN_RELEASE}",
    "rocker": "rmodelpack/r-base:rocker-4.4.1",
}

# Every pattern is applied with fullmatch: with re.match, '$' also matches before a trailing
# newline, so "name\n" would pass here and fail in the chart (Go's '$' is the end of the text).
# The model's name is the release's by default: helm takes at most 53 characters, and the
# Service named after it must start with a letter (an RFC 1035 label).
MODEL_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,51}[a-z0-9])?$")
DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# A label value (the version becomes app.kubernetes.io/version): alphanumeric at both ends.
LABEL_VALUE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?$")
REALM = re.compile(r"^[A-Za-z0-9 ._-]{1,64}$")
# Docker's reference grammar: path components of lowercase alphanumerics joined by a separator,
# which is one '.' or '_', two '_', or any number of '-' (team--x and my__model are valid).
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY = rf"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
IMAGE_REFERENCE = re.compile(
    rf"^{_REPOSITORY}(?::[A-Za-z0-9_][A-Za-z0-9_.-]{{0,127}})?(?:@sha256:[0-9a-f]{{64}})?$"
)
R_PACKAGE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$")
R_IDENTIFIER = re.compile(r"^[A-Za-z.][A-Za-z0-9._]*$")
DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
IMAGE_REPOSITORY = re.compile(rf"^{_REPOSITORY}$")
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
HTPASSWD_USER = re.compile(r"^[^:\s]+$")
# A key of a Secret's data (Kubernetes' rule, and the chart's model.url.key).
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# A file inside the claim (the chart's model.pvc.subPath): '/'-separated names without
# whitespace, none of them '.' or '..', so the path cannot leave the mount. A leading '/' is
# allowed: the chart strips it. Whitespace is Go's \s (the chart's regexp), not Python's.
_GO_SPACE = r"\t\n\f\r "
_NAME_CHAR = rf"[^/{_GO_SPACE}]"
_SUB_PATH_NAME = (
    rf"(?:[^/.{_GO_SPACE}]{_NAME_CHAR}*|\.[^/.{_GO_SPACE}]{_NAME_CHAR}*|\.\.{_NAME_CHAR}+)"
)
SUB_PATH = re.compile(rf"^/?{_SUB_PATH_NAME}(?:/{_SUB_PATH_NAME})*$")


# Inputs are echoed in messages; a YAML alias bomb or a 20 MB string must stay a short line.
_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 80
_REPR.maxlevel = 3


def _short(value: Any) -> str:
    return _REPR.repr(value)


def _problem(kind: str, message: str, hint: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message, {"hint": hint})


def _first_repeat(values: list[str]) -> str | None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None


class Strict(BaseModel):
    # strict: the chart's schema types every value, so "false", "2" or true where a boolean or a
    # number belongs are mistakes to report, not values to convert.
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, strict=True)


def _base_dir(info: ValidationInfo) -> Path | None:
    context = info.context or {}
    base = context.get("base_dir")
    return Path(base) if base is not None else None


def _is_ipv4(value: str) -> bool:
    # As Kubernetes reads one (ParseIPSloppy): leading zeros allowed, so 010.0.0.1 is an IP too.
    parts = value.split(".")
    return len(parts) == 4 and all(
        part.isascii() and part.isdigit() and int(part) <= 255 for part in parts
    )


def _k8s_name(value: str | None, what: str) -> str | None:
    # Kubernetes object names (Secrets, PVCs) are DNS-1123 subdomains: a host name's shape.
    if value is not None and (len(value) > 63 or not DNS_NAME.fullmatch(value)):
        raise _problem(
            "bad_name",
            f"{_short(value)} is not a Kubernetes {what} name",
            "use at most 63 lowercase letters, digits, '-' and '.', alphanumeric at both ends",
        )
    return value


def _require_file(value: str, info: ValidationInfo, what: str) -> str:
    base = _base_dir(info)
    if base is None:
        return value
    shown = _short(value)
    try:
        resolved = (base / value).resolve()
        inside = resolved.is_relative_to(base.resolve())
        is_file = inside and resolved.is_file()
        readable = is_file and os.access(resolved, os.R_OK)
    except (OSError, RuntimeError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise _problem(
            "bad_path",
            f"{what} {shown} cannot be looked up ({reason})",
            "give a short path relative to the manifest's folder",
        ) from exc
    # The build context holds only the manifest's folder: a path (or a symlink) that leads out
    # of it would copy arbitrary host files into the image.
    if not inside:
        raise _problem(
            "outside_project",
            f"{what} {shown} is outside the manifest's folder {base}",
            "copy the file into the manifest's folder and give its relative path "
            "(no '..', absolute paths or symlinks out of the folder)",
        )
    if not is_file:
        raise _problem(
            "file_missing",
            f"{what} {shown} does not exist or is not a file (looked in {base})",
            "give a path relative to the manifest's folder",
        )
    if not readable:
        raise _problem(
            "file_unreadable",
            f"{what} {shown} cannot be read (permission denied)",
            "make it readable, e.g. chmod a+r",
        )
    return value


# --- model -------------------------------------------------------------------------------------


class SecretKeyRef(Strict):
    name: str = Field(description="Name of an existing Kubernetes Secret.")
    key: str | None = Field(
        None, description="Key in the Secret that holds the model URL (chart default: url)."
    )

    @field_validator("name")
    @classmethod
    def _secret_name(cls, value: str) -> str:
        return _k8s_name(value, "Secret")

    @field_validator("key")
    @classmethod
    def _secret_key(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not SECRET_KEY.fullmatch(value)):
            raise _problem(
                "bad_key",
                f"{_short(value)} is not a Secret key",
                "use at most 253 letters, digits, '-', '_' and '.', e.g. url",
            )
        return value


class PvcRef(Strict):
    claim_name: str = Field(description="An existing PersistentVolumeClaim (e.g. Azure Files).")
    sub_path: str | None = Field(
        None, description="Path of the .rds file inside the claim (chart default: model.rds)."
    )

    @field_validator("claim_name")
    @classmethod
    def _claim_name(cls, value: str) -> str:
        return _k8s_name(value, "PersistentVolumeClaim")

    @field_validator("sub_path")
    @classmethod
    def _inside_the_claim(cls, value: str | None) -> str | None:
        if value is not None and not SUB_PATH.fullmatch(value):
            raise _problem(
                "bad_sub_path",
                f"{_short(value)} is not a file path inside the claim",
                "use '/'-separated names without whitespace, empty parts, '.' or '..', "
                "e.g. boston/v1/model.rds",
            )
        return value


class ModelSpec(Strict):
    path: str = Field(description="The saved model (.rds), relative to the manifest.")
    source: Literal["image", "url", "pvc"] = Field(
        "image",
        description="image: baked into the image; url: downloaded at pod start from a URL held "
        "in a Secret and checked against the sha256; pvc: mounted from an existing claim.",
    )
    url_secret: SecretKeyRef | None = None
    pvc: PvcRef | None = None

    @field_validator("path")
    @classmethod
    def _path_is_rds(cls, value: str, info: ValidationInfo) -> str:
        if not value.lower().endswith(".rds"):  # readRDS() and saveRDS() ignore the case
            raise _problem(
                "not_rds", f"{_short(value)} is not an .rds file", "save the model with saveRDS()"
            )
        return _require_file(value, info, "model file")

    @model_validator(mode="after")
    def _source_has_its_reference(self) -> ModelSpec:
        if self.source == "url" and self.url_secret is None:
            raise _problem(
                "missing_reference",
                "source 'url' needs url_secret",
                "add url_secret: {name: <secret>, key: url}; the SAS URL stays in the Secret",
            )
        if self.source == "pvc" and self.pvc is None:
            raise _problem(
                "missing_reference",
                "source 'pvc' needs pvc",
                "add pvc: {claim_name: <claim>, sub_path: model.rds}",
            )
        return self


# --- scoring, input, output --------------------------------------------------------------------


class ScoringSpec(Strict):
    script: str | None = Field(
        None, description="R script defining the scoring function, relative to the manifest."
    )
    function: str = Field("score", description="Called as function(model, df).")
    predict_args: dict[str, Any] = Field(
        default_factory=dict,
        description="Extra arguments of the default scorer predict(model, df, ...).",
    )
    rowwise: bool = Field(
        settings.SCORING_ROWWISE.default, description=settings.SCORING_ROWWISE.description
    )

    @field_validator("predict_args")
    @classmethod
    def _json_values(cls, value: dict[str, Any]) -> dict[str, Any]:
        # They reach R through the runtime's JSON config.
        for key, arg in value.items():
            try:
                json.dumps(arg, allow_nan=False)
            except (TypeError, ValueError):
                raise _problem(
                    "not_json",
                    f"{key}: {_short(arg)} is not a JSON value (a date, binary, a set, NaN or "
                    "infinity)",
                    "give a string, a finite number, a boolean, a list or a mapping",
                ) from None
        return value

    @field_validator("script")
    @classmethod
    def _script_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        if not value.endswith((".R", ".r")):
            raise _problem("not_r", f"{_short(value)} is not an R script", "name it like score.R")
        return _require_file(value, info, "scoring script")

    @field_validator("function")
    @classmethod
    def _function_is_identifier(cls, value: str) -> str:
        if not R_IDENTIFIER.fullmatch(value):
            raise _problem(
                "bad_identifier", f"{_short(value)} is not an R function name", "use e.g. score"
            )
        return value


ColumnType = Literal["number", "integer", "string", "boolean", "factor"]


class Column(Strict):
    name: str = Field(min_length=1)
    type: ColumnType
    required: bool = True
    min: float | None = Field(None, allow_inf_nan=False)
    max: float | None = Field(None, allow_inf_nan=False)
    levels: list[str] | None = Field(None, description="factor: the levels used in training.")
    allowed: list[str] | None = Field(None, description="string: the values accepted.")
    description: str = ""

    @model_validator(mode="after")
    def _fields_fit_the_type(self) -> Column:
        numeric = self.type in ("number", "integer")
        if (self.min is not None or self.max is not None) and not numeric:
            raise _problem(
                "bad_bounds",
                f"min/max apply to number and integer columns, not {self.type}",
                "remove min/max or change the type",
            )
        if self.min is not None and self.max is not None and self.min > self.max:
            raise _problem("bad_bounds", f"min ({self.min}) is above max ({self.max})", "swap them")
        if self.type == "factor" and not self.levels:
            raise _problem(
                "missing_levels",
                "a factor column needs its levels",
                "list them, e.g. levels: [setosa, versicolor, virginica] (levels(df$col) in R)",
            )
        if self.levels is not None and self.type != "factor":
            raise _problem("bad_levels", "levels apply to factor columns only", "use type: factor")
        if self.allowed is not None and self.type != "string":
            raise _problem(
                "bad_allowed",
                "allowed applies to string columns only",
                "use type: factor with levels for categorical model inputs",
            )
        for key, values in (("levels", self.levels), ("allowed", self.allowed)):
            twice = _first_repeat(values or [])
            if twice is not None:
                # R refuses a factor with a level twice: every request would be a 500.
                raise _problem(
                    "repeated_value", f"{key} lists {_short(twice)} twice", "list each once"
                )
        return self


class InputSpec(Strict):
    columns: list[Column] = Field(min_length=1)
    max_rows: int = Field(1000, ge=1, le=1_000_000)
    example: str | None = Field(
        None, description="A JSON file of sample rows (used by the helm test and the docs)."
    )
    extra_columns: Literal["ignore", "reject"] = Field(
        "ignore",
        description="ignore: columns the model does not use are dropped (clients often send "
        "whole rows); reject: they are a 422.",
    )

    @field_validator("example")
    @classmethod
    def _example_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None else _require_file(value, info, "example request")

    @field_validator("columns")
    @classmethod
    def _unique_names(cls, columns: list[Column]) -> list[Column]:
        seen: set[str] = set()
        for column in columns:
            if column.name in seen:
                raise _problem(
                    "duplicate_column",
                    f"column '{column.name}' is listed twice",
                    "keep one entry per column",
                )
            seen.add(column.name)
        return columns


class OutputSpec(Strict):
    kind: Literal["value", "class", "probabilities", "class_probabilities"] = "value"


# --- R, image, runtime -------------------------------------------------------------------------


class RSpec(Strict):
    packages: list[str] = Field(default_factory=list)
    system_packages: list[str] = Field(default_factory=list)
    renv_lock: str | None = None

    @field_validator("packages")
    @classmethod
    def _r_package_names(cls, values: list[str]) -> list[str]:
        for value in values:
            if not R_PACKAGE.fullmatch(value):
                raise _problem(
                    "bad_package", f"{_short(value)} is not an R package name", "e.g. randomForest"
                )
        return values

    @field_validator("system_packages")
    @classmethod
    def _debian_package_names(cls, values: list[str]) -> list[str]:
        for value in values:
            if not DEBIAN_PACKAGE.fullmatch(value):
                raise _problem(
                    "bad_package", f"{_short(value)} is not a Debian package name", "e.g. libgomp1"
                )
        return values

    @field_validator("renv_lock")
    @classmethod
    def _lock_exists(cls, value: str | None, info: ValidationInfo) -> str | None:
        return value if value is None else _require_file(value, info, "renv lock file")


class ImageSpec(Strict):
    # Was `flavor` (still read): renamed so it no longer shares a name with the ingress flavor.
    base_family: Literal["debian", "rocker"] = Field(
        "debian",
        validation_alias=AliasChoices("base_family", "flavor"),
        description="The family of rmodelpack base image: debian (trixie, R from Debian) or "
        "rocker (rocker/r-ver, packages from Posit Package Manager).",
    )
    base: str | None = Field(None, description="Override the base image reference.")

    @field_validator("base")
    @classmethod
    def _base_reference(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_REFERENCE.fullmatch(value):
            raise _problem(
                "bad_base",
                f"{_short(value)} is not an image reference",
                "e.g. myregistry.azurecr.io/r-base:trixie or name@sha256:<digest>",
            )
        return value

    repository: str | None = Field(
        None, description="e.g. myregistry.azurecr.io/models/boston; default: rmodelpack/<name>."
    )
    tag: str | None = Field(None, description="Default: <version>-<content hash>.")

    @field_validator("repository")
    @classmethod
    def _repository_reference(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_REPOSITORY.fullmatch(value):
            raise _problem(
                "bad_repository",
                f"{_short(value)} is not an image repository",
                "use lowercase names joined by '.', '_', '__' or '-', "
                "e.g. myregistry.azurecr.io/models/boston (no tag)",
            )
        return value

    @field_validator("tag")
    @classmethod
    def _tag_reference(cls, value: str | None) -> str | None:
        if value is not None and not IMAGE_TAG.fullmatch(value):
            raise _problem("bad_tag", f"{_short(value)} is not an image tag", "e.g. 1.0.0")
        return value


def _bounded(setting: settings.Setting) -> Any:
    """A pydantic Field with the setting's default, bounds and description."""
    return Field(
        setting.default,
        ge=setting.minimum,
        le=setting.maximum,
        description=setting.description,
    )


class BatchingSpec(Strict):
    enabled: bool = _bounded(settings.BATCHING_ENABLED)
    max_rows: int = _bounded(settings.BATCHING_MAX_ROWS)


WORKER_COUNT = Annotated[int, Field(ge=settings.WORKERS.minimum, le=settings.WORKERS.maximum)]


class RuntimeSpec(Strict):
    workers: Literal["auto"] | WORKER_COUNT = Field(
        settings.WORKERS.default, description=settings.WORKERS.description
    )
    threads: int = _bounded(settings.THREADS)
    max_body_bytes: int = _bounded(settings.MAX_BODY_BYTES)
    timeout_seconds: int = _bounded(settings.TIMEOUT_SECONDS)
    drain_seconds: int = _bounded(settings.DRAIN_SECONDS)
    batching: BatchingSpec = BatchingSpec()

    @field_validator("workers", mode="before")
    @classmethod
    def _auto_or_count(cls, value: Any) -> Any:
        low, high = settings.WORKERS.minimum, settings.WORKERS.maximum
        if value == settings.AUTO or (
            isinstance(value, int) and not isinstance(value, bool) and low <= value <= high
        ):
            return value
        raise _problem(
            "bad_workers",
            f"{_short(value)} is not a worker count",
            f"use auto (the CPU request) or a whole number from {low} to {high}",
        )


# --- service (deployment) ----------------------------------------------------------------------


class IssuerRef(Strict):
    kind: Literal["ClusterIssuer", "Issuer"] | None = Field(
        None, description="Chart default: ClusterIssuer."
    )
    name: str

    @field_validator("name")
    @classmethod
    def _issuer_name(cls, value: str) -> str:
        return _k8s_name(value, "issuer")


class TlsSpec(Strict):
    enabled: bool | None = Field(None, description="Chart default: on.")
    issuer: IssuerRef | None = None


class AuthUser(Strict):
    name: str
    password_env: str | None = None
    password_file: str | None = None

    @field_validator("name")
    @classmethod
    def _htpasswd_name(cls, value: str) -> str:
        if not HTPASSWD_USER.fullmatch(value):
            raise _problem("bad_user", f"{_short(value)} cannot be a user name", "no ':' or spaces")
        return value

    @field_validator("password_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not ENV_NAME.fullmatch(value):
            raise _problem(
                "bad_env",
                f"{_short(value)} is not an environment variable name",
                "e.g. ALICE_PASSWORD",
            )
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> AuthUser:
        if (self.password_env is None) == (self.password_file is None):
            raise _problem(
                "password_source",
                f"user '{self.name}' needs exactly one of password_env and password_file",
                "passwords never go in the manifest; name an environment variable or a file",
            )
        return self


class AuthSpec(Strict):
    enabled: bool = True
    realm: str | None = None
    users: list[AuthUser] = Field(default_factory=list)
    existing_secret: str | None = None

    @field_validator("realm")
    @classmethod
    def _realm_text(cls, value: str | None) -> str | None:
        if value is not None and not REALM.fullmatch(value):
            raise _problem(
                "bad_realm",
                f"realm {_short(value)} has characters an ingress controller rejects",
                "use letters, digits, spaces, '.', '_' and '-' (at most 64)",
            )
        return value

    @field_validator("existing_secret")
    @classmethod
    def _secret_name(cls, value: str | None) -> str | None:
        return _k8s_name(value, "Secret")

    @model_validator(mode="after")
    def _users_or_secret(self) -> AuthSpec:
        twice = _first_repeat([user.name for user in self.users])
        if twice is not None:
            raise _problem(
                "repeated_user", f"user {_short(twice)} is listed twice", "list each user once"
            )
        if self.enabled and not self.users and not self.existing_secret:
            raise _problem(
                "no_credentials",
                "basic auth is enabled but has no users and no existing_secret",
                "add users: [{name: alice, password_env: ALICE_PASSWORD}] or existing_secret",
            )
        if self.users and self.existing_secret:
            raise _problem(
                "two_credential_sources",
                "users and existing_secret are both set",
                "keep one: the chart uses either the hashed users or the existing Secret",
            )
        return self


class AutoscalingSpec(Strict):
    enabled: bool | None = None
    min_replicas: int | None = Field(None, ge=1)
    max_replicas: int | None = Field(None, ge=1)
    target_cpu: int | None = Field(None, ge=1, le=1000)
    target_memory: int | None = Field(None, ge=1, le=1000)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> AutoscalingSpec:
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise _problem(
                "bad_range", f"min_replicas ({low}) is above max_replicas ({high})", "swap them"
            )
        # One end alone meets the chart's default for the other, which the chart checks for an
        # enabled HPA (enabled left out: the chart's default, on).
        if (low is None) != (high is None) and self.enabled is not False:
            self._one_end_fits_the_chart_default(low, high)
        return self

    @staticmethod
    def _one_end_fits_the_chart_default(low: int | None, high: int | None) -> None:
        chart_max = settings.AUTOSCALING_MAX_REPLICAS.default
        chart_min = settings.AUTOSCALING_MIN_REPLICAS.default
        if low is not None and low > chart_max:
            raise _problem(
                "bad_range",
                f"min_replicas ({low}) is above max_replicas ({chart_max}, the chart's default)",
                f"set max_replicas to at least {low}, or lower min_replicas",
            )
        if high is not None and high < chart_min:
            raise _problem(
                "bad_range",
                f"max_replicas ({high}) is below min_replicas ({chart_min}, the chart's default)",
                f"set min_replicas to at most {high}, or raise max_replicas",
            )


Quantity = Annotated[str, Field(pattern=QUANTITY.pattern)]


class ResourceList(Strict):
    cpu: Quantity | None = None
    memory: Quantity | None = None


class ResourcesSpec(Strict):
    requests: ResourceList | None = None
    limits: ResourceList | None = None


class IngressSpec(Strict):
    flavor: Literal["traefik", "nginx"] | None = Field(
        None, description="The ingress controller in front: Traefik (chart default) or NGINX."
    )
    class_name: str | None = Field(
        None, description="IngressClass name, when it is not the flavor's usual one."
    )

    @field_validator("class_name")
    @classmethod
    def _ingress_class_name(cls, value: str | None) -> str | None:
        # An IngressClass is a cluster object named as a DNS subdomain (up to 253 characters).
        if value is not None and (len(value) > 253 or not DNS_NAME.fullmatch(value)):
            raise _problem(
                "bad_name",
                f"{_short(value)} is not an IngressClass name",
                "use lowercase letters, digits, '-' and '.', alphanumeric at both ends, "
                "e.g. webapprouting.kubernetes.azure.com; leave class_name out for the flavor's",
            )
        return value


class ServiceSpec(Strict):
    host: str | None = None
    ingress: IngressSpec | None = None
    tls: TlsSpec | None = None
    auth: AuthSpec | None = None
    autoscaling: AutoscalingSpec | None = None
    resources: ResourcesSpec | None = None

    @field_validator("host")
    @classmethod
    def _host_name(cls, value: str | None) -> str | None:
        if value is not None and (len(value) > 253 or not DNS_NAME.fullmatch(value)):
            raise _problem(
                "bad_host", f"{_short(value)} is not a DNS host name", "e.g. boston.example.com"
            )
        if value is not None and _is_ipv4(value):
            # The API server refuses an IP address as an Ingress host.
            raise _problem(
                "bad_host",
                f"{_short(value)} is an IP address; an Ingress routes by host name",
                "give the DNS name that resolves to the ingress, e.g. boston.example.com",
            )
        return value


# --- the manifest --------------------------------------------------------------------------------


class Manifest(Strict):
    """A validated ``rmodel.yaml``."""

    api_version: Literal["rmodelpack/v1"] = Field(alias="apiVersion")
    name: str = Field(
        description="Lowercase letters, digits and '-', starting with a letter, at most 53 "
        "characters (the helm release and the Service are named after it)."
    )
    version: str = Field(description="Model version, e.g. 1.0.0 (quote it in YAML).")
    description: str = ""
    model: ModelSpec
    scoring: ScoringSpec = ScoringSpec()
    input: InputSpec
    output: OutputSpec = OutputSpec()
    r: RSpec = RSpec()
    image: ImageSpec = ImageSpec()
    runtime: RuntimeSpec = RuntimeSpec()
    service: ServiceSpec = ServiceSpec()

    @field_validator("name")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not MODEL_NAME.fullmatch(value):
            suggestion = re.sub(r"[^a-z0-9-]+", "-", value.lower()).strip("-")
            suggestion = re.sub(r"^[^a-z]+", "", suggestion)[:53].strip("-") or "my-model"
            raise _problem(
                "bad_name",
                f"{_short(value)} cannot name a helm release and its Service",
                "use lowercase letters, digits and '-', starting with a letter, at most 53 "
                f"characters, e.g. {suggestion}",
            )
        return value

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, value: Any) -> Any:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            raise _problem(
                "version_not_text",
                f"version {value!r} was read as a number",
                f'quote it: version: "{value}"',
            )
        return value

    @field_validator("version")
    @classmethod
    def _version_fits_a_tag_and_a_label(cls, value: str) -> str:
        if not LABEL_VALUE.fullmatch(value):
            raise _problem(
                "bad_version",
                f"{_short(value)} cannot be an image tag and a Kubernetes label value",
                "use letters, digits, '.', '_' and '-', starting and ending alphanumeric, "
                "at most 63, e.g. 1.0.0",
            )
        return value

    @property
    def repository(self) -> str:
        return self.image.repository or f"rmodelpack/{self.name}"

    @property
    def base_image(self) -> str:
        return self.image.base or BASE_IMAGES[self.image.base_family]

    @property
    def deployment_workers(self) -> int | None:
        """The worker count the pods run: runtime.workers, or (auto) what the chart derives from
        the CPU request; None when the manifest leaves both to the chart."""
        if isinstance(self.runtime.workers, int):
            return self.runtime.workers
        resources = self.service.resources
        cpu = resources.requests.cpu if resources and resources.requests else None
        return settings.workers_for_cpu(cpu) if cpu else None


class LoadedManifest(NamedTuple):
    """A validated manifest and the folder its paths are relative to."""

    manifest: Manifest
    base_dir: Path


# --- loading -------------------------------------------------------------------------------------


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [field.alias or name for name, field in model.model_fields.items()]


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model that owns the key at ``loc``'s last step."""
    current: Any = Manifest
    for step in loc[:-1]:
        if isinstance(step, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = next((f for n, f in current.model_fields.items() if step in (n, f.alias)), None)
        if field is None:
            return None
        current = _unwrap(field.annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    for arg in getattr(annotation, "__args__", ()) or ():
        inner = _unwrap(arg)
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return inner
    return annotation


def _format_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for step in loc:
        if isinstance(step, int):
            path += f"[{step}]"
        elif step in ("function-after", "function-before", "literal", "int", "str"):
            continue
        else:
            path += f".{step}" if path else str(step)
    return path or "(top level)"


def _clean_loc(loc: tuple[Any, ...]) -> tuple[Any, ...]:
    # pydantic adds union-branch names such as "literal['auto']" or "int" to the location
    return tuple(s for s in loc if not (isinstance(s, str) and ("[" in s or s in ("int", "str"))))


# What a strict type error says: (what the value is not, how to write it).
_EXPECTED_TYPES = {
    "bool_type": ("a boolean", "write true or false, without quotes"),
    "int_type": ("a whole number", "write a whole number without quotes, e.g. 2"),
    "float_type": ("a number", "write a number without quotes, e.g. 1.5"),
    "finite_number": ("a finite number", "write a number; NaN and infinity have no JSON form"),
    "string_type": ("text", "write text; quote it if YAML reads it as a number or boolean"),
    "list_type": ("a list", "write a YAML list, e.g. [a, b]"),
    "dict_type": ("a mapping", "write key: value pairs"),
    "model_type": ("a mapping", "write key: value pairs"),
}


def _type_problem(path: str, kind: str, value: Any) -> Problem:
    what, how = _EXPECTED_TYPES[kind]
    return Problem(path, f"{_short(value)} is not {what}", how)


def _problem_from_error(error: dict[str, Any]) -> Problem:
    kind = error["type"]
    if kind == "extra_forbidden":
        return _unknown_key(tuple(error["loc"]))
    loc = _clean_loc(error["loc"])
    path = _format_path(loc)
    hint = (error.get("ctx") or {}).get("hint", "")
    if kind == "missing":
        return Problem(path, "is required", "add it")
    if kind == "literal_error":
        expected = (error.get("ctx") or {}).get("expected", "")
        return Problem(path, f"{_short(error['input'])} is not allowed", f"use one of {expected}")
    if not hint and kind in _EXPECTED_TYPES:
        return _type_problem(path, kind, error["input"])
    if not hint and kind.endswith("_type"):
        hint = f"give a {kind.removesuffix('_type').replace('_', ' ')}"
    if kind == "string_pattern_mismatch":
        return Problem(
            path,
            f"{_short(error['input'])} is not a Kubernetes quantity",
            "use e.g. 500m or 2 (cpu), 512Mi or 2Gi (memory)",
        )
    return Problem(path, error["msg"], hint)


def _unknown_key(raw_loc: tuple[Any, ...]) -> Problem:
    # The last step is the user's own key: keep it even when it looks like a pydantic union tag
    # ("int", "a[b"), or the message would blame the parent key.
    loc = (*_clean_loc(raw_loc[:-1]), raw_loc[-1])
    parent = _format_path(loc[:-1])
    key = loc[-1]
    printable = isinstance(key, str) and key.isprintable() and len(key) <= 80
    shown = key if printable else _short(key)
    path = f"{parent}.{shown}" if loc[:-1] else shown
    owner = _model_at(loc)
    allowed = _allowed_keys(owner) if owner else []
    close = difflib.get_close_matches(str(key)[:100], allowed, n=1, cutoff=0.6)
    hint = f"did you mean '{close[0]}'?" if close else f"allowed keys: {', '.join(allowed)}"
    return Problem(path, f"unknown key '{shown}'", hint)


def _dedupe_union_errors(problems: list[Problem]) -> list[Problem]:
    seen: dict[str, Problem] = {}
    for problem in problems:
        seen.setdefault(problem.path + problem.message, problem)
    return list(seen.values())


def parse_manifest(data: Any, *, source: str, base_dir: Path | None) -> Manifest:
    """Validate already-parsed YAML; raise ManifestError with every problem."""
    if not isinstance(data, dict):
        raise ManifestError(
            source, [Problem("(top level)", "is not a mapping", "start from `rmodelpack init`")]
        )
    context = {"base_dir": base_dir} if base_dir is not None else None
    try:
        return Manifest.model_validate(data, context=context)
    except ValidationError as exc:
        problems = [_problem_from_error(e) for e in exc.errors(include_url=False)]
        raise ManifestError(source, _dedupe_union_errors(problems)) from exc


def resolve_manifest_path(path: str | Path) -> Path:
    """Accept a manifest file or a folder holding rmodel.yaml."""
    candidate = Path(path)
    try:
        if candidate.is_dir():
            candidate = candidate / MANIFEST_FILENAME
        found = candidate.is_file()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ManifestError(
            str(path)[:200],
            [Problem("(manifest path)", f"cannot be looked up ({reason})", "give a shorter path")],
        ) from exc
    if not found:
        raise ManifestError(
            str(path),
            [Problem(str(path), "no such manifest", "give rmodel.yaml or its folder")],
        )
    return candidate


def _manifest_text(manifest_path: Path) -> str:
    size = manifest_path.stat().st_size
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(
            str(manifest_path),
            [
                Problem(
                    "(file)",
                    f"is {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES} bytes",
                    "keep data out of rmodel.yaml: point input.example at a JSON file",
                )
            ],
        )
    return manifest_path.read_text(encoding="utf-8")


def _check_expanded_size(data: Any, source: str) -> None:
    """Refuse YAML whose aliases expand to a huge (or cyclic) tree: a "billion laughs" bomb."""
    pending, seen = [data], 0
    while pending:
        node = pending.pop()
        seen += 1
        if seen > MAX_MANIFEST_VALUES:
            raise ManifestError(
                source,
                [
                    Problem(
                        "(file)",
                        f"expands to more than {MAX_MANIFEST_VALUES} values (YAML anchors/aliases)",
                        "write the values out instead of nesting aliases",
                    )
                ],
            )
        if isinstance(node, dict):
            pending.extend(node.keys())
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, but a key twice in one mapping is an error: PyYAML keeps the last,
    so a second `service:` block silently dropped the first one's auth."""


def _unique_mapping(loader: UniqueKeyLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            repeated = key in seen
        except TypeError:  # an unhashable key: construct_mapping reports it
            continue
        if repeated:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping",
                node.start_mark,
                f"found the key {_short(key)} twice; keep one",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=True)


UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _unique_mapping)


def load_manifest(path: str | Path) -> LoadedManifest:
    """Read and validate a manifest; return it with the folder its paths are relative to."""
    manifest_path = resolve_manifest_path(path)
    try:
        data = yaml.load(_manifest_text(manifest_path), Loader=UniqueKeyLoader)
    except RecursionError as exc:
        raise ManifestError(
            str(manifest_path),
            [Problem("(file)", "is nested too deeply", "a manifest is a few levels of mappings")],
        ) from exc
    except OSError as exc:
        raise ManifestError(
            str(manifest_path),
            [Problem("(file)", f"cannot be read ({exc.strerror})", "make it readable (chmod a+r)")],
        ) from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(
            str(manifest_path),
            [Problem(f"byte {exc.start}", "is not UTF-8 text", "save the manifest as UTF-8")],
        ) from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ManifestError(
            str(manifest_path),
            [
                Problem(
                    where, f"is not valid YAML: {getattr(exc, 'problem', exc)}", "fix the syntax"
                )
            ],
        ) from exc
    _check_expanded_size(data, str(manifest_path))
    base_dir = manifest_path.parent.resolve()
    manifest = parse_manifest(data, source=str(manifest_path), base_dir=base_dir)
    return LoadedManifest(manifest, base_dir)


def manifest_json_schema() -> dict[str, Any]:
    """The JSON Schema of rmodel.yaml, for editors (by_alias: apiVersion)."""
    schema = Manifest.model_json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "rmodelpack model manifest (rmodel.yaml)"
    return schema
