"""The rmodelpack command line: argument parsing, progress output, exceptions → exit codes.

Exit codes: 0 ok, 1 runtime failure (build failed, registry refused, helm failed),
2 bad input or usage (invalid manifest, missing file).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console

from rmodelpack import __version__
from rmodelpack.exceptions import RmodelpackError, UsageError

DEFAULT_OUT = ".rmodelpack"

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def default_out_dir(manifest: str) -> Path:
    from rmodelpack.manifest import resolve_manifest_path

    return resolve_manifest_path(manifest).parent / DEFAULT_OUT


def progress_printer(prefix: str) -> Callable[[str], None]:
    def show(line: str) -> None:
        line = line.rstrip()
        if line:
            err.print(f"[dim]{prefix}[/dim] {line}", markup=True, highlight=False)

    return show


# --- commands ------------------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    from rmodelpack.manifest import load_manifest

    manifest, _ = load_manifest(args.manifest)
    out.print(f"{args.manifest}: valid ({manifest.name} {manifest.version})")
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from rmodelpack.manifest import manifest_json_schema

    text = json.dumps(manifest_json_schema(), indent=2, sort_keys=True) + "\n"
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"-o {args.output}: {exc.strerror}") from exc
    else:
        sys.stdout.write(text)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    from rmodelpack.init import init_manifest

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
    from rmodelpack.render import render

    target = Path(args.output) if args.output else default_out_dir(args.manifest)
    result = render(args.manifest, target)
    out.print(f"rendered {len(result.files)} files into {result.out_dir}")
    out.print(f"image:  {result.image}")
    out.print(f"values: {result.out_dir / 'values.yaml'}")
    return 0


def build_manifest(manifest_arg: str, output: str | None, *, push: bool) -> str:
    """render → (base image if missing) → build → optional push; return the image reference."""
    from rmodelpack.build import build_image, ensure_base_image, push_image
    from rmodelpack.manifest import load_manifest
    from rmodelpack.render import render

    manifest, _ = load_manifest(manifest_arg)
    rendered = render(manifest_arg, Path(output) if output else default_out_dir(manifest_arg))
    if ensure_base_image(manifest, on_progress=progress_printer("base")):
        err.print(f"built the base image {manifest.base_image}")
    err.print(f"building {rendered.image} from {rendered.out_dir}")
    result = build_image(rendered.out_dir, rendered.image, on_progress=progress_printer("build"))
    cached = len(result.steps) - len(result.rebuilt_steps)
    out.print(
        f"built {rendered.image} ({result.image_id}; {cached} of {len(result.steps)} steps cached)"
    )
    if push:
        digest = push_image(rendered.image, on_progress=progress_printer("push"))
        out.print(f"pushed {digest}")
    return rendered.image


def cmd_build(args: argparse.Namespace) -> int:
    build_manifest(args.manifest, args.output, push=args.push)
    return 0


def cmd_size(args: argparse.Namespace) -> int:
    from rmodelpack.manifest import load_manifest
    from rmodelpack.render import predict_body, render, write_atomically
    from rmodelpack.size import SIZING_FILE, deployment_workers, size_image, sizing_workers

    manifest, base_dir = load_manifest(args.manifest)
    body = predict_body(manifest, base_dir)
    if body is None:
        raise UsageError("sizing scores example rows: set input.example in the manifest")
    workers = sizing_workers(manifest, args.workers)
    target = Path(args.output) if args.output else default_out_dir(args.manifest)
    image = build_manifest(args.manifest, str(target), push=False)
    rendered = render(args.manifest, target)
    err.print(f"measuring {image} with 1 and {workers} worker(s) on 127.0.0.1:{args.port}")
    sizing = size_image(
        manifest,
        image=image,
        model_sha256=rendered.model_sha256,
        example_body=body.encode(),
        workers=workers,
        port=args.port,
        on_progress=progress_printer("size"),
    )
    files = {p: (rendered.out_dir / p).read_bytes() for p in rendered.files}
    files[SIZING_FILE] = sizing.to_json().encode()
    write_atomically(files, rendered.out_dir)
    render(args.manifest, target)
    print_sizing(sizing)
    deployed = deployment_workers(manifest)
    if deployed == workers:
        out.print(
            f"values.yaml: resources.requests.memory {sizing.request_mib}Mi, "
            f"resources.limits.memory {sizing.limit_mib}Mi (unless the manifest sets them)"
        )
        warn_if_manifest_memory_is_low(manifest, sizing)
    else:
        err.print(
            f"warning: measured with {workers} workers, but the pods run "
            f"{deployed if deployed is not None else 'the chart default of'} worker(s); "
            "values.yaml is unchanged (set runtime.workers to size the values)"
        )
    return 0


def warn_if_manifest_memory_is_low(manifest, sizing) -> None:
    from rmodelpack.size import parse_mib

    resources = manifest.service.resources
    for kind, needed in (("requests", sizing.request_mib), ("limits", sizing.limit_mib)):
        group = getattr(resources, kind, None) if resources else None
        if group is not None and group.memory is not None and parse_mib(group.memory) < needed:
            err.print(
                f"warning: service.resources.{kind}.memory is {group.memory} but the "
                f"measurement suggests {needed}Mi; pods may be OOM-killed or evicted"
            )


def print_sizing(sizing) -> None:
    from rich.table import Table

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
    from rmodelpack.deploy import deploy

    values, release = _values_and_release(args)
    extra_values = [arg for path in args.values for arg in ("-f", str(_existing_file(path)))]
    result = deploy(
        values,
        release=release,
        namespace=args.namespace,
        chart=args.chart,
        dry_run=args.dry_run,
        timeout=args.timeout,
        extra_args=extra_values,
    )
    if args.dry_run:
        sys.stdout.write(result.output)
    else:
        out.print(result.output.rstrip())
        out.print(f"deployed release {release}")
    return 0


def _read_values_file(path: Path) -> dict | None:
    """A YAML mapping (a manifest or chart values), or a clear usage error."""
    import yaml

    if path.suffix not in (".yaml", ".yml"):
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path} is not readable YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a YAML mapping of chart values or a manifest")
    return data


def _existing_file(path: str) -> Path:
    if not Path(path).is_file():
        raise UsageError(f"--values {path}: no such file")
    return Path(path)


def _values_and_release(args: argparse.Namespace) -> tuple[Path, str]:
    """deploy takes a manifest (rendered first) or an already rendered values.yaml."""
    source = Path(args.target)
    values = _read_values_file(source) if source.is_file() else None
    if values is not None and values.get("apiVersion") != "rmodelpack/v1":
        model = values.get("model")
        name = args.release or (model.get("name") if isinstance(model, dict) else None)
        if not name:
            raise UsageError(f"{source} has no model.name; pass --release NAME")
        return source, name
    from rmodelpack.render import render

    rendered = render(source, Path(args.output) if args.output else default_out_dir(str(source)))
    from rmodelpack.manifest import load_manifest

    manifest, _ = load_manifest(source)
    return rendered.out_dir / "values.yaml", args.release or manifest.name


def cmd_serve(args: argparse.Namespace) -> int:
    from rmodelpack.render import render
    from rmodelpack.serve import serve_docker, serve_native

    if args.docker:
        image = build_manifest(args.manifest, args.output, push=False)
        url = f"http://127.0.0.1:{args.port}"
        err.print(f"serving {image} in docker on {url} (read-only, non-root, no capabilities)")
        container, status = serve_docker(image, args.port, name=args.name, detach=args.detach)
        if args.detach:
            out.print(container)
        return status
    from rmodelpack.manifest import load_manifest

    manifest, base_dir = load_manifest(args.manifest)
    target = Path(args.output) if args.output else default_out_dir(args.manifest)
    rendered = render(args.manifest, target)
    err.print(f"serving {rendered.image} natively on http://127.0.0.1:{args.port} (Ctrl-C stops)")
    return serve_native(rendered, args.port, base_dir / manifest.model.path)


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
    output_help = f"output folder (default: {DEFAULT_OUT}/ beside the manifest)"

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


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.handler(args)
    except RmodelpackError as exc:
        err.print(f"error: {exc}", markup=False)
        return exc.exit_code
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        return 130
