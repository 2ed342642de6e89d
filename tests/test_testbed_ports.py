"""The test bed's fixed ports lie where nothing else the suite starts can take one first. A port
in the kernel's ephemeral range can be handed to any `free_port()` or outgoing connection, and a
port in the runtime's SCGI range can be bound by any R worker of a test server (each listens on
a random port there). In one CI run a worker held etcd's old port 23790, and the control plane
could not start."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
PORT_ASSIGNMENT = re.compile(r"^([A-Z_]+_PORT)=(\d+)$", re.MULTILINE)
TESTBED_SCRIPTS = ("lib.sh", "cluster.sh", "node.sh")


def fixed_ports() -> dict[str, int]:
    ports = {}
    for script in TESTBED_SCRIPTS:
        text = (ROOT / "testbed" / script).read_text()
        ports.update({name: int(port) for name, port in PORT_ASSIGNMENT.findall(text)})
    return ports


def ephemeral_range() -> tuple[int, int]:
    low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
    return int(low), int(high)


def scgi_range() -> tuple[int, int]:
    """The range the runtime's own code picks SCGI ports from (rmodelpack/runtime/scgi.R)."""
    scgi = ROOT / "rmodelpack" / "runtime" / "scgi.R"
    code = f'sys.source("{scgi}", envir = globalenv()); cat(rmp_scgi_port_range())'
    out = subprocess.run(
        [require_tool("Rscript"), "--vanilla", "-e", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    low, high = out.stdout.split()
    return int(low), int(high)


def test_every_daemon_of_the_test_bed_has_a_port_of_its_own() -> None:
    ports = fixed_ports()
    assert len(ports) >= 15, ports  # two for etcd, the API server, 2 controllers, 10 on the node
    assert len(set(ports.values())) == len(ports), ports


@pytest.mark.r
def test_no_test_bed_port_can_be_taken_by_a_test_server_or_the_kernel() -> None:
    scgi_low, scgi_high = scgi_range()
    kernel_low, kernel_high = ephemeral_range()
    clashing = {
        name: port
        for name, port in fixed_ports().items()
        if scgi_low <= port <= scgi_high or kernel_low <= port <= kernel_high or port > 65535
    }
    assert not clashing, (
        f"{clashing}: move these test-bed ports out of the SCGI range {scgi_low}-{scgi_high} "
        f"and the kernel's ephemeral range {kernel_low}-{kernel_high}"
    )
