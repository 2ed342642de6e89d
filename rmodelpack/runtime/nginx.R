# Writes <run>/nginx.conf from nginx.conf.in for the resolved runtime settings.

rmp_socket_path <- function(run_dir, worker_id) file.path(run_dir, sprintf("w%d.sock", worker_id))

rmp_upstream_lines <- function(run_dir, workers) {
  # max_fails/fail_timeout: a dead worker's socket is skipped for a second, then retried,
  # so its replacement gets traffic again quickly.
  paste(sprintf("    server unix:%s max_fails=1 fail_timeout=1s;",
                rmp_socket_path(run_dir, seq_len(workers))), collapse = "\n")
}

rmp_nginx_user_line <- function() {
  # As root (natively, in CI), nginx would switch its workers to nobody, who cannot reach the
  # run directory; in the image the server runs as uid 10001 and this line is left out.
  if (identical(unname(Sys.info()[["effective_user"]]), "root")) "user root;" else ""
}

rmp_write_file_atomic <- function(path, text) {
  tmp <- paste0(path, ".tmp")
  writeLines(text, tmp, sep = "")
  file.rename(tmp, path)
}

rmp_write_nginx_conf <- function(cfg, run_dir, runtime_dir) {
  template <- paste(readLines(file.path(runtime_dir, "nginx.conf.in")), collapse = "\n")
  values <- c(
    RUN_DIR = run_dir, PORT = cfg$runtime$port, HOST = Sys.getenv("RMP_HOST", "0.0.0.0"),
    MAX_BODY = cfg$runtime$max_body_bytes, TIMEOUT = cfg$runtime$timeout_seconds,
    # Bodies up to 1 MiB stay in memory; larger ones spill to a file below the run dir.
    BODY_BUFFER = min(cfg$runtime$max_body_bytes, 1048576L),
    UPSTREAMS = rmp_upstream_lines(run_dir, cfg$runtime$workers), USER = rmp_nginx_user_line()
  )
  for (key in names(values)) {
    template <- gsub(paste0("@", key, "@"), values[[key]], template, fixed = TRUE)
  }
  for (dir in c("client_body", "proxy", "fastcgi", "uwsgi", "scgi")) {
    dir.create(file.path(run_dir, "nginx", dir), recursive = TRUE, showWarnings = FALSE)
  }
  rmp_write_file_atomic(file.path(run_dir, "nginx.conf"), paste0(template, "\n"))
}

# The entrypoint sources this for its SIGTERM sequence (it cannot read JSON itself).
rmp_write_shutdown_env <- function(cfg, run_dir) {
  rmp_write_file_atomic(file.path(run_dir, "shutdown.env"), sprintf(
    "RMP_DRAIN=%d\nRMP_TIMEOUT=%d\n", cfg$runtime$drain_seconds, cfg$runtime$timeout_seconds
  ))
}
