"""PSS per process of rmodelpack's server with a large model (the Boston forest, ntree = 3000).

Starts the native server with workers = 1 and 2, warms every worker up with requests, then reads
PSS/RSS from /proc/PID/smaps_rollup for the R supervisor, each R worker and nginx.
Prints the table and how much the second worker adds relative to a single worker's PSS
(goal: <= 60%). Not a test. Usage: .venv/bin/python benchmarks/bench_memory.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import requests
from common import ONE_ROW, start_rmodelpack, train

NTREE = 3000


def rollup(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = float(value.split()[0]) / 1024
    return values


def children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()] if path.exists() else []


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def processes(server) -> list[tuple[str, int]]:
    workers = server.worker_pids()
    supervisor = parent(next(iter(workers.values())))
    nginx_master = int((server.run_dir / "nginx.pid").read_text())
    found = [("R supervisor", supervisor)]
    found += [(f"R worker {i}", pid) for i, pid in sorted(workers.items())]
    found += [("nginx master", nginx_master)]
    found += [("nginx worker", pid) for pid in children(nginx_master)]
    return found


def measure(model: Path, workers: int, workdir: Path) -> dict[str, float]:
    server = start_rmodelpack(model, workers, workdir)
    try:
        with requests.Session() as session:
            for _ in range(60 * workers):
                session.post(server.url("/score"), json={"df": ONE_ROW}, timeout=30)
        print(f"\nworkers={workers}")
        print(f"  {'process':<14} {'pid':>7} {'PSS MB':>8} {'RSS MB':>8} {'shared MB':>10}")
        totals: dict[str, float] = {"total": 0.0, "worker": 0.0, "supervisor": 0.0}
        for role, pid in processes(server):
            mem = rollup(pid)
            shared = mem["Shared_Clean"] + mem["Shared_Dirty"]
            print(f"  {role:<14} {pid:>7} {mem['Pss']:>8.1f} {mem['Rss']:>8.1f} {shared:>10.1f}")
            totals["total"] += mem["Pss"]
            if role.startswith("R worker"):
                totals["worker"] += mem["Pss"] / workers
            if role == "R supervisor":
                totals["supervisor"] = mem["Pss"]
        print(f"  total PSS {totals['total']:.1f} MB")
        return totals
    finally:
        server.terminate()


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="rmp-mem-") as tmp:
        model = train(NTREE, Path(tmp) / f"boston-rf-{NTREE}.rds")
        size = model.stat().st_size / 2**20
        print(f"model: randomForest ntree={NTREE}, {size:.1f} MB on disk")
        one = measure(model, 1, Path(tmp))
        two = measure(model, 2, Path(tmp))
    added = two["total"] - one["total"]
    print(
        f"\nsecond worker adds {added:.1f} MB PSS = {added / one['worker']:.0%} of a single "
        f"worker's PSS ({one['worker']:.1f} MB); goal <= 60%"
    )
    print(
        f"supervisor PSS: {one['supervisor']:.1f} MB (workers=1), "
        f"{two['supervisor']:.1f} MB (workers=2)"
    )


if __name__ == "__main__":
    main()
