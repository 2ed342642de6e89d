"""The hot route's transport: httpuv vs SCGI (nginx scgi_pass to R's own server sockets).

The measurement that chose SCGI for the runtime's scoring routes (runtime/scgi.R). A prototype,
not rmodelpack's runtime: the R worker below (R_WORKER) serves one route either
through httpuv (startPipeServer on a unix socket, nginx proxy_pass, as rmodelpack does) or as an
SCGI server (serverSocket/socketSelect on a TCP port, nginx scgi_pass). Each select round it
accepts every pending connection, reads what is readable and answers every complete request
together ("naive batching"). Two kinds of work:
- fixed: parse the JSON body with jsonlite, answer a constant: the transport's own cost;
- predict: boston-rf predict() on the request's rows (SCGI: one predict() per select round for
  all complete requests; httpuv: one per request).
Two workers per backend behind one nginx (least_conn); rmodelpack itself (batching on) runs
beside them on /predict as the reference. wrk at 1 and 8 keep-alive connections (--connections),
backends measured in turn, alternating rounds. Prints req/s, p50, p99, the R workers' and the nginx
workers' CPU per request (/proc/PID/stat) and the share of the predict-only ceiling (cores /
one predict()'s CPU time).
Not a test. Traffic goes to 127.0.0.1 only; every wrk run is bounded in time.
Usage: .venv/bin/python benchmarks/bench_transport.py [--seconds 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import requests
from common import ONE_ROW, cpu_seconds, free_port, load_average, start_rmodelpack, train, wrk

R_WORKER = r"""
args <- commandArgs(TRUE)  # transport (scgi|httpuv), address (port|socket path), work, model
work <- args[[3]]
if (work == "predict") {
  suppressPackageStartupMessages(library(randomForest))
  model <- readRDS(args[[4]])
  columns <- rownames(model$importance)
}

answer <- function(bodies) {  # one JSON text per request body
  requests <- lapply(bodies, function(body) jsonlite::parse_json(rawToChar(body)))
  if (work == "fixed") return(rep("[1]", length(bodies)))
  rows <- unlist(requests, recursive = FALSE)
  column <- function(col) vapply(rows, function(r) as.numeric(r[[col]]), 0)
  frame <- lapply(setNames(columns, columns), column)
  frame <- structure(frame, class = "data.frame", row.names = seq_along(rows))
  values <- sprintf("%.15g", predict(model, frame))
  owner <- rep(seq_along(requests), lengths(requests))
  vapply(split(values, owner), function(v) paste0("[", paste(v, collapse = ","), "]"), "")
}

serve_httpuv <- function(path) {
  app <- list(call = function(req) {
    list(status = 200L, headers = list("Content-Type" = "application/json"),
         body = answer(list(req$rook.input$read())))
  })
  httpuv::startPipeServer(path, NULL, app)
  repeat httpuv::service(1000)
}

# SCGI request: "<len>:" netstring of NUL-separated headers (CONTENT_LENGTH first) "," body.
scgi_body <- function(buffer) {
  colon <- match(as.raw(58), buffer)
  if (is.na(colon)) return(NULL)
  header_end <- colon + as.integer(rawToChar(buffer[seq_len(colon - 1)]))
  if (length(buffer) <= header_end) return(NULL)
  headers <- buffer[(colon + 1):header_end]
  fields <- strsplit(rawToChar(replace(headers, headers == as.raw(0), as.raw(10))), "\n")[[1]]
  size <- as.integer(fields[[match("CONTENT_LENGTH", fields) + 1]])
  if (length(buffer) < header_end + 1 + size) return(NULL)
  buffer[header_end + 1 + seq_len(size)]
}

SCGI_HEAD <- "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"

serve_scgi <- function(port) {
  server <- serverSocket(port)
  conns <- list(); buffers <- list()
  repeat {
    if (!length(conns)) socketSelect(list(server), timeout = 1)
    while (socketSelect(list(server), timeout = 0)) {
      conns[[length(conns) + 1]] <- socketAccept(server, blocking = FALSE, open = "r+b")
      buffers[[length(conns)]] <- raw(0)
    }
    if (!length(conns)) next
    readable <- socketSelect(conns, timeout = 1)
    bodies <- list(); done <- integer(0)
    for (i in which(readable)) {
      chunk <- readBin(conns[[i]], "raw", 65536L)
      if (!length(chunk)) { done <- c(done, i); next }  # readable but empty: closed
      buffers[[i]] <- c(buffers[[i]], chunk)
      body <- scgi_body(buffers[[i]])
      if (!is.null(body)) { bodies[[as.character(i)]] <- body; done <- c(done, i) }
    }
    if (length(bodies)) {
      texts <- answer(bodies)
      for (k in seq_along(bodies)) {
        head <- sprintf(SCGI_HEAD, nchar(texts[[k]]))
        writeBin(charToRaw(paste0(head, texts[[k]])), conns[[as.integer(names(bodies)[[k]])]])
      }
    }
    for (i in done) close(conns[[i]])
    if (length(done)) { conns <- conns[-done]; buffers <- buffers[-done] }
  }
}

if (args[[1]] == "scgi") serve_scgi(as.integer(args[[2]])) else serve_httpuv(args[[2]])
"""

NGINX_CONF = """{user} daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {d}/b; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f;
  uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;
{upstreams}
  server {{
    listen 127.0.0.1:{port};
{locations}
  }}
}}
"""

BACKENDS = ("scgi fixed", "httpuv fixed", "scgi predict", "httpuv predict")


def predict_cpu_seconds(model: Path, repeats: int = 2000) -> float:
    """CPU time (user + sys) of one single-row predict(): the per-request floor."""
    code = (
        "suppressPackageStartupMessages(library(randomForest));"
        f"m <- readRDS('{model}'); x <- MASS::Boston[1, ]; invisible(predict(m, x));"
        f"t <- proc.time(); for (i in 1:{repeats}) predict(m, x); t <- proc.time() - t;"
        f"cat((t[['user.self']] + t[['sys.self']]) / {repeats})"
    )
    out = subprocess.run(["Rscript", "--vanilla", "-e", code], check=True, capture_output=True)
    return float(out.stdout.decode().strip())


def start_backends(tmp: Path, model: Path, workers: int) -> tuple[list, int]:
    """All backends (workers processes each) and one nginx in front; returns (processes, port)."""
    script = tmp / "worker.R"
    script.write_text(R_WORKER)
    processes, upstreams, locations = [], [], []
    for backend in BACKENDS:
        transport, work = backend.split()
        name = f"{transport}_{work}"
        servers = []
        for i in range(workers):
            address = str(free_port()) if transport == "scgi" else str(tmp / f"{name}{i}.sock")
            servers.append(f"127.0.0.1:{address}" if transport == "scgi" else f"unix:{address}")
            command = ["Rscript", "--vanilla", str(script), transport, address, work, str(model)]
            processes.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        # max_fails=0: a worker still starting must not be marked down for the whole run.
        members = "".join(f" server {s} max_fails=0;" for s in servers)
        upstreams.append(f"  upstream {name} {{ least_conn;{members} }}")
        passing = f"scgi_pass {name};" if transport == "scgi" else f"proxy_pass http://{name};"
        locations.append(f"    location = /{transport}/{work} {{ {passing} }}")
    port = free_port()
    conf = tmp / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            # As root, nginx's worker would otherwise run as nobody and not reach the sockets.
            user="user root;" if os.geteuid() == 0 else "",
            d=tmp,
            port=port,
            upstreams="\n".join(upstreams),
            locations="\n".join(locations),
        )
    )
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    processes.append(
        subprocess.Popen(
            [nginx, "-p", str(tmp), "-c", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )
    return processes, port


def wait_answering(url: str, timeout: float = 60) -> str:
    """The first 200 answer's body, once the backend gives one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(requests.ConnectionError):
            answer = requests.post(url, json=ONE_ROW * 3, timeout=5)
            if answer.status_code == 200:
                return answer.text
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer")


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def nginx_workers(parent: int) -> list[int]:
    """The worker processes of the nginx that `parent` (nginx's master or its parent) runs."""
    for pid in [parent, *children(parent)]:
        if Path(f"/proc/{pid}/comm").read_text().strip() == "nginx":
            return children(pid)
    raise LookupError(f"no nginx below pid {parent}")


def measured_run(url: str, pids: list[int], nginx: list[int], connections: int, seconds: int):
    """One wrk run: its figures, and the R workers' and nginx workers' CPU ms per request."""
    r_before, nginx_before = sum(map(cpu_seconds, pids)), sum(map(cpu_seconds, nginx))
    result = wrk(url, ONE_ROW, connections, seconds)
    requests_done = result["rps"] * seconds
    result["cpu_ms"] = (sum(map(cpu_seconds, pids)) - r_before) / requests_done * 1000
    result["nginx_ms"] = (sum(map(cpu_seconds, nginx)) - nginx_before) / requests_done * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=int, default=4, help="length of each wrk run")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds")
    parser.add_argument("--connections", default="1,8")
    args = parser.parse_args()
    load_before = load_average()
    model = train()
    cores = os.cpu_count() or 1
    predict_first = predict_cpu_seconds(model)
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rmp-bench-transport-") as tmp:
        processes, port = start_backends(Path(tmp), model, cores)
        rmodelpack = None
        try:
            rmodelpack = start_rmodelpack(model, cores, Path(tmp) / "rmodelpack")
            prototype_nginx = nginx_workers(processes[-1].pid)
            targets = {
                backend: (
                    f"http://127.0.0.1:{port}/{backend.replace(' ', '/')}",
                    [p.pid for p in processes[i * cores : (i + 1) * cores]],
                    prototype_nginx,
                )
                for i, backend in enumerate(BACKENDS)
            }
            targets["rmodelpack /predict (batching)"] = (
                rmodelpack.url("/predict"),
                list(rmodelpack.worker_pids().values()),
                nginx_workers(rmodelpack.process.pid),
            )
            answers = {label: wait_answering(target[0]) for label, target in targets.items()}
            predictions = {answers["scgi predict"], answers["httpuv predict"]}
            assert len(predictions) == 1, f"the backends' predictions differ: {predictions}"
            for url, *_ in targets.values():
                wrk(url, ONE_ROW, 8, 1)  # warm-up
            for _ in range(args.rounds):
                for c in (int(c) for c in args.connections.split(",")):
                    for label, (url, pids, nginx) in targets.items():
                        run = measured_run(url, pids, nginx, c, args.seconds)
                        results.setdefault((label, c), []).append(run)
        finally:
            if rmodelpack is not None:
                rmodelpack.terminate()
            for process in processes:
                process.terminate()
                process.wait()
    # Measured before and after; the cheaper one (less contention) gives the higher ceiling.
    predict_last = predict_cpu_seconds(model)
    predict_s = min(predict_first, predict_last)
    ceiling = cores / predict_s
    print(
        f"\nload average before: {load_before}  after: {load_average()}\n"
        f"cores={cores}  workers per backend={cores}  predict() one row CPU="
        f"{predict_s * 1000:.2f} ms (before {predict_first * 1000:.2f},"
        f" after {predict_last * 1000:.2f})  "
        f"predict-only ceiling={ceiling:.0f} req/s\n"
        f"{args.rounds} alternating rounds of {args.seconds}s (wrk, 1 thread); medians\n"
    )
    print(
        "| backend | conns | req/s | p50 ms | p99 ms | R CPU ms/req | nginx CPU ms/req"
        " | of ceiling | non-2xx |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for (label, c), runs in sorted(results.items(), key=lambda item: item[0][1]):
        med = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"| {label} | {c} | {med['rps']:.0f} | {med['p50_ms']:.1f} | {med['p99_ms']:.1f}"
            f" | {med['cpu_ms']:.2f} | {med['nginx_ms']:.2f} | {med['rps'] / ceiling:.0%}"
            f" | {int(sum(r['non_2xx'] for r in runs))} |"
        )


if __name__ == "__main__":
    main()
