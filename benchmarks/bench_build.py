"""Build times and image sizes: cold base, cold model image, no-change and model-only rebuilds.

Prints figures and ratios; never pass/fail. Uses the real engine and the examples' models.
The cold builds run with nocache under throwaway tags, so the shared base image and every cache
others rely on stay as they are.

    .venv/bin/python benchmarks/bench_build.py [--example cars93-ranger] [--skip-cold-base]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import docker

from rmodelpack import render
from rmodelpack.build import BASE_IMAGES_DIR, BuildResult, build_base_image, build_image

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_REPOSITORY = "rmodelpack-bench"
# Some manifests read passwords from the environment; the benchmark never deploys.
os.environ.setdefault("BOSTON_SCORER_PASSWORD", "benchmark-only")

T = TypeVar("T")


def timed(action: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = action()
    return result, time.perf_counter() - started


def megabytes(client: docker.DockerClient, reference: str) -> float:
    return client.images.get(reference).attrs["Size"] / 1e6


def touch_model(example: Path) -> None:
    """A retrain in miniature: the same model with one attribute more, so new bytes."""
    script = (
        'm <- readRDS("model.rds"); attr(m, "rmodelpack_bench") <- "retrained"; '
        'saveRDS(m, "model.rds")'
    )
    subprocess.run(["Rscript", "--vanilla", "-e", script], cwd=example, check=True)


def steps_summary(result: BuildResult) -> str:
    return f"{len(result.rebuilt_steps)} of {len(result.steps) - 1} steps after FROM rebuilt"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", default="cars93-ranger")
    parser.add_argument("--skip-cold-base", action="store_true", help="skip the ~1 min base build")
    args = parser.parse_args()
    client = docker.from_env()
    tag = f"{BENCH_REPOSITORY}/{args.example}:bench"
    cold_base_tag = f"{BENCH_REPOSITORY}/r-base:cold"
    base = build_base_image("debian", client=client)
    print(f"example {args.example}, base {base}, docker {client.version()['Version']}")

    with tempfile.TemporaryDirectory(prefix="bench-build-") as scratch:
        example = Path(scratch) / args.example
        shutil.copytree(REPO_ROOT / "examples" / args.example, example)
        out = Path(scratch) / "out"
        try:
            if not args.skip_cold_base:
                _, cold_base = timed(
                    lambda: build_image(
                        BASE_IMAGES_DIR / "debian", cold_base_tag, client=client, nocache=True
                    )
                )
                print(f"cold base build (nocache, apt downloads)    {cold_base:8.1f} s")
            context = render(example, out).out_dir
            cold, cold_s = timed(lambda: build_image(context, tag, client=client, nocache=True))
            print(
                f"cold model image build (nocache)            {cold_s:8.1f} s  "
                f"({steps_summary(cold)})"
            )
            same, same_s = timed(
                lambda: build_image(render(example, out).out_dir, tag, client=client)
            )
            print(
                f"rebuild, nothing changed                    {same_s:8.2f} s  "
                f"({steps_summary(same)})"
            )
            touch_model(example)
            retrained, model_s = timed(
                lambda: build_image(render(example, out).out_dir, tag, client=client)
            )
            print(
                f"rebuild, model changed only                 {model_s:8.2f} s  "
                f"({steps_summary(retrained)})"
            )
            base_mb, model_mb = megabytes(client, base), megabytes(client, tag)
            print(f"base image size                             {base_mb:8.1f} MB")
            print(
                f"model image size                            {model_mb:8.1f} MB  "
                f"(+{model_mb - base_mb:.1f} MB over the base)"
            )
            print(f"ratio cold / model-only rebuild             {cold_s / model_s:8.1f} x")
        finally:
            for reference in (tag, cold_base_tag):
                with contextlib.suppress(docker.errors.ImageNotFound):
                    client.images.remove(reference, force=True)


if __name__ == "__main__":
    main()
