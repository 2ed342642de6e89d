"""What the host shows about the node's processes."""

from __future__ import annotations

import re

from cluster.kube import run


def listening_pids(program: str) -> dict[str, set[str]]:
    """Local addresses each process named `program` listens on (TCP), from ss."""
    out = run("ss", "-Hltnp").stdout
    found: dict[str, set[str]] = {}
    for line in out.splitlines():
        for pid in re.findall(rf'\("{re.escape(program)}",pid=(\d+)', line):
            found.setdefault(pid, set()).add(line.split()[3])
    return found
