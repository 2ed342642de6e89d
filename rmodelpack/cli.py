"""The rmodelpack command line: argument parsing, printing, exceptions → exit codes.

The work itself is ``rmodelpack.pipeline``'s. Exit codes: 0 ok, 1 runtime failure (build
failed, registry refused, helm failed), 2 bad input or usage (invalid manifest, missing file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.table import Table

from rmodelpack import pipeline
from rmodelpack.containers import Terminated
from rmodelpack.contract import DEFAULT_OUT_DIR
from rmodelpack.exceptions import RmodelpackError, UsageError
from rmodelpack.init import init_manifest
from rmodelpack.manifest import load_manifest, manifest_json_schema
from rmodelpack.size import Sizing
from rmodelpack.version import __version__

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# The command line's name for each library parameter an error message may point at.
FLAGS = {
    "out_dir": "-o/--output",
    "force": "--force",
    "data": "--data",
    "workers": "--workers",
    "release": "--release",
    "chart": "--chart",
    "dry_run": "--dry-run",
    "extra_values": "-f/--values",
    "docker": "--docker",
    "port": "-p/--port",
}


def show_progress(event: pipeline.Event) -> None:
    line = event.message.rstrip()
    if line:
        err.print(f"[dim]{event.stage}[/dim] {line}", markup=True, highlight=False)


def show_output(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def output_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.output) if args.output else None


# --- commands ------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    manifest, _ = load_manifest(args.manifest)
    out.print(f"{args.manifest}: valid ({manifest.name} {manifest.version})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    text = json.dumps(manifest_json_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {args.output}: {exc.strerror}") from exc
    else:
        sys.stdout.write(text)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    written = init_manifest(
        Path(args.model),
        data=Path(args.data) if args.data else None,
        name=args.name,
        force=args.force,
    )
    for path in written:
        out.print(f"wrote {path}")
    out.print("next: review rmodel.yaml, then `rmodelpack validate` and `rmodelpack build`")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    result = pipeline.render(args.manifest, output_dir(args))
    out.print(f"rendered {len(result.files)} files into {result.out_dir}")
    out.print(f"image:  {result.image}")
    out.print(f"values: {result.out_dir / 'values.yaml'}")
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    built = pipeline.build(args.manifest, output_dir(args), on_progress=show_progress)
    steps = built.result.steps
    cached = len(steps) - len(built.result.rebuilt_steps)
    out.print(
        f"built {built.image} ({built.result.image_id}; {cached} of {len(steps)} steps cached)"
    )
    if args.push:
        out.print(f"pushed {pipeline.push(built.image, on_progress=show_progress)}")
    return 0


def cmd_size(args: argparse.Namespace) -> int:
    result = pipeline.size(
        args.manifest,
        output_dir(args),
        workers=args.workers,
        port=args.port,
        on_progress=show_progress,
    )
    print_sizing(result.sizing)
    if result.applied:
        out.print(
            f"values.yaml: resources.requests.memory {result.sizing.request_mib}Mi, "
            f"resources.limits.memory {result.sizing.limit_mib}Mi (unless the manifest sets them)"
        )
        for warning in result.low_memory:
            err.print(f"warning: {warning}")
    else:
        deployed = result.deployment_workers
        err.print(
            f"warning: measured with {result.sizing.workers} workers, but the pods run "
            f"{deployed if deployed is not None else 'the chart default of'} worker(s); "
            "values.yaml is unchanged (set runtime.workers to size the values)"
        )
    return 0


def print_sizing(sizing: Sizing) -> None:
    table = Table(title=f"memory of {sizing.image}")
    for column in ("workers", "process", "PSS MiB", "RSS MiB"):
        table.add_column(column)
    measurements = [sizing.one_worker]
    if sizing.workers > 1:
        measurements.append(sizing.n_workers)
    for measurement in measurements:
        for process in measurement.processes:
            table.add_row(
                str(measurement.workers),
                process.command,
                f"{process.pss_mib:.1f}",
                f"{process.rss_mib:.1f}",
            )
        table.add_row(
            str(measurement.workers),
            "[b]container working set[/b]",
            f"{measurement.working_set_mib:.1f}",
            "",
        )
    out.print(table)
    out.print(f"each extra worker adds {sizing.per_extra_worker_mib:.1f} MiB")


def cmd_deploy(args: argparse.Namespace) -> int:
    result = pipeline.deploy(
        args.target,
        output_dir(args),
        release=args.release,
        namespace=args.namespace,
        chart=args.chart,
        dry_run=args.dry_run,
        timeout=args.timeout,
        extra_values=args.values,
    )
    if args.dry_run:
        sys.stdout.write(result.output)
    else:
        out.print(result.output.rstrip())
        out.print(f"deployed release {result.release}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    container, status = pipeline.serve(
        args.manifest,
        output_dir(args),
        port=args.port,
        docker=args.docker,
        detach=args.detach,
        name=args.name,
        on_progress=show_progress,
        on_output=show_output,
    )
    if args.detach and container:
        out.print(container)
    return status


# --- parser --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rmodelpack",
        description="Package a trained R model as a secure, autoscaled REST scoring service "
        "on Kubernetes: manifest → render → build → deploy.",
    )
    parser.add_argument("--version", action="version", version=f"rmodelpack {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, handler: Callable[[argparse.Namespace], int], help_text: str):
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    manifest_help = "rmodel.yaml, or the folder that holds it"
    output_help = f"output folder (default: {DEFAULT_OUT_DIR}/ beside the manifest)"

    sub = add("init", cmd_init, "Scaffold rmodel.yaml (and a score.R stub) next to a model file.")
    sub.add_argument("model", help="the saved model (.rds)")
    sub.add_argument("--data", help="a sample data frame (.csv or .rds) to derive the inputs from")
    sub.add_argument("--name", help="service name (default: from the model's folder)")
    sub.add_argument("--force", action="store_true", help="overwrite existing files")

    sub = add("validate", cmd_validate, "Check a manifest; exit 2 with every problem.")
    sub.add_argument("manifest", help=manifest_help)

    sub = add("schema", cmd_schema, "Print the manifest's JSON Schema (for editors).")
    sub.add_argument("-o", "--output", help="write to this file instead of stdout")

    sub = add("render", cmd_render, "Write the Docker build context and the chart values.")
    sub.add_argument("manifest", help=manifest_help)
    sub.add_argument("-o", "--output", help=output_help)

    sub = add("build", cmd_build, "Render, then build the image with docker (and push it).")
    sub.add_argument("manifest", help=manifest_help)
    sub.add_argument("-o", "--output", help=output_help)
    sub.add_argument("--push", action="store_true", help="push to image.repository afterwards")

    sub = add("size", cmd_size, "Measure the image's memory with 1 and N workers; size values.")
    sub.add_argument("manifest", help=manifest_help)
    sub.add_argument("-o", "--output", help=output_help)
    sub.add_argument("--workers", type=int, help="N (default: runtime.workers or the CPU request)")
    sub.add_argument("-p", "--port", type=int, default=18080, help="port on 127.0.0.1 to use")

    sub = add("deploy", cmd_deploy, "helm upgrade --install the chart with the rendered values.")
    sub.add_argument("target", help="rmodel.yaml (or its folder), or a rendered values.yaml")
    sub.add_argument("-o", "--output", help=output_help)
    sub.add_argument("--release", help="helm release name (default: the model name)")
    sub.add_argument("-n", "--namespace", help="Kubernetes namespace (created if missing)")
    sub.add_argument("--chart", help="chart path or oci:// reference (default: the bundled chart)")
    sub.add_argument(
        "--dry-run",
        nargs="?",
        const="client",
        choices=["client", "server"],
        help="client: render the manifests offline; server: helm runs against the cluster "
        "(release history, lookups, capabilities) and changes nothing",
    )
    sub.add_argument("--timeout", default="10m", help="how long helm waits (default: 10m)")
    sub.add_argument(
        "-f",
        "--values",
        action="append",
        default=[],
        metavar="FILE",
        help="more chart values on top of the rendered ones (repeatable; later wins), "
        "e.g. serviceMonitor settings that the manifest does not carry",
    )

    sub = add(
        "serve", cmd_serve, "Run the scoring server locally: natively (R + nginx) or in docker."
    )
    sub.add_argument("manifest", help=manifest_help)
    sub.add_argument("-o", "--output", help=output_help)
    sub.add_argument("-p", "--port", type=int, default=8000, help="port on 127.0.0.1")
    sub.add_argument("--docker", action="store_true", help="build the image and run it in docker")
    sub.add_argument("--detach", action="store_true", help="with --docker: print the id, return")
    sub.add_argument("--name", help="with --docker: the container name")
    return parser


def error_text(exc: RmodelpackError) -> str:
    """The library's message, plus the command line's flag for the parameter it names."""
    flag = FLAGS.get(exc.parameter or "")
    return f"{exc} (option: {flag})" if flag else str(exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except RmodelpackError as exc:
        err.print(f"error: {error_text(exc)}", markup=False)
        return exc.exit_code
    except Terminated:
        err.print("terminated", markup=False)
        return 143
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130
