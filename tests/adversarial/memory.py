"""Memory of a running server: the PSS of every process in its process group (the entrypoint,
nginx, the R supervisor and workers). PSS splits the model's shared copy-on-write pages fairly."""

from __future__ import annotations

from pathlib import Path


def group_pids(pgid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(") ", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def group_pss_mib(pgid: int) -> float:
    return sum(pss_kib(pid) for pid in group_pids(pgid)) / 1024
