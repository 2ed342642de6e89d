"""Local HTTP and HTTPS "blob stores" on 127.0.0.1 for the model download tests: they serve a
folder, and /redirect.rds answers 302 to a configurable target."""

from __future__ import annotations

import functools
import hashlib
import http.server
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

MODEL_BYTES = b"RDX3\n" + bytes(range(256)) * 64
GOOD_SHA = hashlib.sha256(MODEL_BYTES).hexdigest()


class BlobHandler(http.server.SimpleHTTPRequestHandler):
    """Serves the blob directory; /redirect.rds answers 302 to `redirect_target`; /slow.rds sends
    half of the model, then the rest once `release` is set (at most 20 s later); /stall.rds sends
    16 bytes and stops until `release` is set (at most 20 s)."""

    redirect_target = ""
    release = threading.Event()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/redirect.rds":
            self.send_response(302)
            self.send_header("Location", self.redirect_target)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path == "/stall.rds":
            # A few bytes, then nothing until released: a transfer that stalled.
            self.send_response(200)
            self.send_header("Content-Length", str(len(MODEL_BYTES)))
            self.end_headers()
            self.wfile.write(MODEL_BYTES[:16])
            self.wfile.flush()
            self.release.wait(timeout=20)
            return
        if path == "/slow.rds":
            self.send_response(200)
            self.send_header("Content-Length", str(len(MODEL_BYTES)))
            self.end_headers()
            half = len(MODEL_BYTES) // 2
            self.wfile.write(MODEL_BYTES[:half])
            self.wfile.flush()
            self.release.wait(timeout=20)
            self.wfile.write(MODEL_BYTES[half:])
            return
        super().do_GET()

    def log_message(self, format: str, *args) -> None:
        pass


def serve(
    root: Path,
    tls: ssl.SSLContext | None = None,
    redirect_target: str = "",
    release: threading.Event | None = None,
) -> Iterator[str]:
    """Serve `root` until the generator is closed; yields the base URL."""
    attributes = {"redirect_target": redirect_target, "release": release or threading.Event()}
    handler_class = type("Handler", (BlobHandler,), attributes)
    handler = functools.partial(handler_class, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def make_self_signed_cert(openssl: str, directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context
