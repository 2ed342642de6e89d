"""Every failure rmodelpack expects, one class per kind.

Library code raises these with a message in library terms (what is wrong, how to fix it);
``parameter`` names the library argument that fixes it, so that ``cli.py`` can add the command
line's flag for it. Only ``cli.py`` turns them into messages and exit codes.
"""

from __future__ import annotations

from dataclasses import dataclass


class RmodelpackError(Exception):
    """Base class of every error rmodelpack raises on purpose."""

    exit_code = 1

    def __init__(self, message: str = "", *, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class UsageError(RmodelpackError):
    """The call has arguments that cannot work (a missing file, a value out of range)."""

    exit_code = 2


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a manifest: where, what, and how to fix it."""

    path: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        text = f"{self.path}: {self.message}"
        return f"{text} (fix: {self.hint})" if self.hint else text


class ManifestError(RmodelpackError):
    """The manifest cannot be read or is invalid. Carries every problem at once."""

    exit_code = 2

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = problems
        count = len(problems)
        lines = [f"{source}: {count} problem{'s' if count != 1 else ''}"]
        lines += [f"  - {problem}" for problem in problems]
        super().__init__("\n".join(lines), parameter=None)


class RenderError(RmodelpackError):
    """The manifest is valid but its files cannot be rendered (e.g. a missing model file)."""


class CredentialError(RenderError):
    """A password the manifest names cannot be read or used (missing variable, bad file)."""

    exit_code = 2


class OutputDirError(RenderError):
    """The output folder is one rmodelpack must not replace (it holds other files)."""

    exit_code = 2


class BuildError(RmodelpackError):
    """docker build failed."""


class PushError(RmodelpackError):
    """The registry refused the image or could not be reached."""


class HelmError(RmodelpackError):
    """helm failed (chart, values or cluster problem)."""


class ToolNotFound(RmodelpackError):
    """A required external program (helm, docker, Rscript, nginx) is not installed."""
