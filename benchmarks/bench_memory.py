"""PSS per process of rmodelpack's server with large models, idle and under load.

For each model (the Boston forest with randomForest ntree = 3000, whose predict() copies the
forest through .C, and a ranger forest of about the same size, whose predict() does not) and for
workers = 1 and 2: starts the native server, sends a load burst (wrk, 4 connections) and reads
PSS/RSS from /proc/PID/smaps_rollup for the R supervisor, each R worker and nginx twice: during
the burst ("load", the mean of several samples) and a few seconds after it ("idle", after the
workers' idle GC).
Prints how much the second worker adds relative to a single worker's PSS (goal: <= 60%).
`--compare REF` measures rmodelpack as it was at git REF too, and prints every process's PSS
together, this tree against REF.
Not a test. Usage: .venv/bin/python benchmarks/bench_memory.py [--compare REF]
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests
from common import (
    ONE_ROW,
    boston_config,
    export_runtime,
    load_average,
    start_rmodelpack,
    train,
    wrk,
)

NTREE = 3000
RANGER_TREES = 3500
IDLE_WAIT_SECONDS = 3.0
LOAD_SECONDS = 6
LOAD_SAMPLES = 10


def train_ranger(output: Path, trees: int = RANGER_TREES) -> Path:
    code = (
        "suppressPackageStartupMessages(library(ranger)); set.seed(20240101);"
        f"m <- ranger(medv ~ ., data = MASS::Boston, num.trees = {trees}, num.threads = 1);"
        f"saveRDS(m, '{output}')"
    )
    subprocess.run(["Rscript", "--vanilla", "-e", code], check=True)
    return output


def ranger_config(model: Path) -> dict[str, Any]:
    config = boston_config(model)
    config["packages"] = ["ranger"]
    config["scoring"]["predict_args"] = {"num.threads": 1}
    return config


def in_memory_mb(model: Path, package: str) -> float:
    code = (
        f"suppressPackageStartupMessages(library({package}));"
        f"cat(as.numeric(object.size(readRDS('{model}'))) / 2^20)"
    )
    out = subprocess.run(["Rscript", "--vanilla", "-e", code], check=True, capture_output=True)
    return float(out.stdout)


def rollup(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = float(value.split()[0]) / 1024
    return values


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def malloc_env(pid: int) -> list[str]:
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return sorted(item.decode() for item in environ if item.startswith(b"MALLOC_"))


def processes(server) -> list[tuple[str, int]]:
    workers = server.worker_pids()
    supervisor = int((server.run_dir / "supervisor.pid").read_text())
    nginx_master = int((server.run_dir / "nginx.pid").read_text())
    found = [("R supervisor", supervisor)]
    found += [(f"R worker {i}", pid) for i, pid in sorted(workers.items())]
    found += [("nginx master", nginx_master)]
    found += [("nginx worker", pid) for pid in children(nginx_master)]
    return found


def snapshot(server) -> list[tuple[str, int, dict[str, float]]]:
    return [(role, pid, rollup(pid)) for role, pid in processes(server)]


def mean_snapshot(server, samples: int, interval: float) -> list[tuple[str, int, dict[str, float]]]:
    """Per-process mean of several snapshots: under load PSS swings with each R GC."""
    taken = []
    for _ in range(samples):
        taken.append(snapshot(server))
        time.sleep(interval)
    return [
        (role, pid, {key: sum(s[i][2][key] for s in taken) / samples for key in mem})
        for i, (role, pid, mem) in enumerate(taken[0])
    ]


def print_snapshot(title: str, rows: list[tuple[str, int, dict[str, float]]]) -> None:
    print(f"  {title}")
    header = ("process", "pid", "PSS MB", "RSS MB", "shared", "private")
    print("    {:<14} {:>7} {:>8} {:>8} {:>8} {:>8}".format(*header))
    for role, pid, mem in rows:
        shared = mem["Shared_Clean"] + mem["Shared_Dirty"]
        private = mem["Private_Clean"] + mem["Private_Dirty"]
        print(
            f"    {role:<14} {pid:>7} {mem['Pss']:>8.1f} {mem['Rss']:>8.1f} {shared:>8.1f}"
            f" {private:>8.1f}"
        )
    print(f"    total PSS {total_pss(rows):.1f} MB")


def total_pss(rows: list[tuple[str, int, dict[str, float]]]) -> float:
    return sum(mem["Pss"] for _, _, mem in rows)


def worker_pss(rows: list[tuple[str, int, dict[str, float]]]) -> float:
    pss = [mem["Pss"] for role, _, mem in rows if role.startswith("R worker")]
    return sum(pss) / len(pss)


def supervisor_pss(rows: list[tuple[str, int, dict[str, float]]]) -> float:
    return next(mem["Pss"] for role, _, mem in rows if role == "R supervisor")


def measure(
    model: Path,
    config: dict[str, Any],
    workers: int,
    workdir: Path,
    runtime_dir: Path | None = None,
) -> dict[str, list[tuple[str, int, dict[str, float]]]]:
    server = start_rmodelpack(model, workers, workdir, config=config, runtime_dir=runtime_dir)
    try:
        with requests.Session() as session:
            for _ in range(20 * workers):
                session.post(server.url("/score"), json={"df": ONE_ROW}, timeout=60)
        load: dict[str, float] = {}
        burst = threading.Thread(
            target=lambda: load.update(wrk(server.url("/score"), {"df": ONE_ROW}, 4, LOAD_SECONDS))
        )
        burst.start()
        time.sleep(1)
        during = mean_snapshot(server, LOAD_SAMPLES, (LOAD_SECONDS - 2) / LOAD_SAMPLES)
        burst.join()
        time.sleep(IDLE_WAIT_SECONDS)
        idle = snapshot(server)
        burst_figures = f"{load['rps']:.0f} req/s, p99 {load['p99_ms']:.0f} ms"
        print(f"\n workers={workers}  (burst: {burst_figures})")
        print(f"  malloc env of worker 1: {' '.join(malloc_env(server.worker_pids()[1]))}")
        print_snapshot(f"under load (mean of {LOAD_SAMPLES} samples)", during)
        print_snapshot(f"idle ({IDLE_WAIT_SECONDS:.0f} s after the burst)", idle)
        return {"load": during, "idle": idle}
    finally:
        server.terminate()


def report(label: str, one: dict, two: dict) -> None:
    print(f"\n{label}")
    for phase in ("idle", "load"):
        single_worker = worker_pss(one[phase])
        added = total_pss(two[phase]) - total_pss(one[phase])
        print(
            f"  {phase:<5} second worker adds {added:6.1f} MB PSS = {added / single_worker:4.0%}"
            f" of a single worker's PSS ({single_worker:.1f} MB; goal <= 60%); supervisor PSS"
            f" {supervisor_pss(one[phase]):.1f} / {supervisor_pss(two[phase]):.1f} MB"
            " (workers = 1 / 2)"
        )


def report_totals(title: str, ref: str, this: dict, then: dict) -> None:
    """Every process's PSS together, this tree against `ref`, per workers and phase."""
    print(f"\n{title}: total PSS of all processes, this tree / {ref}")
    for workers in (1, 2):
        for phase in ("idle", "load"):
            now, before = total_pss(this[workers][phase]), total_pss(then[workers][phase])
            print(
                f"  workers={workers} {phase:<5} {now:7.1f} / {before:7.1f} MB"
                f" ({now - before:+.1f} MB, {now / before - 1:+.0%})"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models", default="randomForest,ranger")
    parser.add_argument("--compare", default="", help="also measure rmodelpack as at this git ref")
    args = parser.parse_args()
    print(f"load average: {load_average()}")
    with tempfile.TemporaryDirectory(prefix="rmp-mem-") as tmp:
        workdir = Path(tmp)
        ref_runtime = export_runtime(args.compare, workdir / "ref") if args.compare else None
        for name in args.models.split(","):
            if name == "randomForest":
                model = train(NTREE, workdir / f"boston-rf-{NTREE}.rds")
                config = boston_config(model)
                title = f"randomForest ntree={NTREE}"
            else:
                model = train_ranger(workdir / f"boston-ranger-{RANGER_TREES}.rds")
                config = ranger_config(model)
                title = f"ranger num.trees={RANGER_TREES}"
            size = in_memory_mb(model, name)
            on_disk = model.stat().st_size / 2**20
            print(f"\n=== {title}: {on_disk:.1f} MB on disk, {size:.1f} MB in R")
            one = measure(model, config, 1, workdir / f"{name}-1")
            two = measure(model, config, 2, workdir / f"{name}-2")
            report(title, one, two)
            if ref_runtime is not None:
                print(f"\n--- the same, rmodelpack at {args.compare}")
                ref_one = measure(model, config, 1, workdir / f"{name}-ref-1", ref_runtime)
                ref_two = measure(model, config, 2, workdir / f"{name}-ref-2", ref_runtime)
                report(f"{title} at {args.compare}", ref_one, ref_two)
                report_totals(title, args.compare, {1: one, 2: two}, {1: ref_one, 2: ref_two})


if __name__ == "__main__":
    main()
