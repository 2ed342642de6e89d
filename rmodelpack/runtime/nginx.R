# Writes <run>/nginx.conf from nginx.conf.in for the resolved runtime settings. The front's
# route locations come from the route table in api.R (rmp_routes), its error answers from
# rmp_nginx_errors below: nothing about routes is written twice.

# Each worker's SCGI port (scgi.R). max_fails=0: nginx never takes a worker out of rotation on
# its own. A worker that drops one bad request's connection is not dead, and with the default
# (1 failure = out for 10 s) two such requests emptied the pool; the supervisor alone decides
# liveness and replaces workers. A request whose worker died is retried once on another one
# (scgi_next_upstream).
rmp_upstream_lines <- function(ports) {
  paste(sprintf("    server 127.0.0.1:%d max_fails=0;", ports), collapse = "\n")
}

rmp_nginx_user_line <- function() {
  # As root (natively, in CI), nginx would switch its workers to nobody, who cannot reach the
  # run directory; in the image the server runs as uid 10001 and this line is left out.
  if (identical(unname(Sys.info()[["effective_user"]]), "root")) "user root;" else ""
}

# Replaces `path` whole or not at all: `write(tmp)` fills a temporary beside it, which is renamed
# over `path` only when every byte was written. On a full disk R may only warn (when it closes
# the file), and the truncated temporary would replace a good file. Warnings are noted, not
# raised, so that close() still frees the connection. Returns NULL, or the first problem (with
# the temporary removed and `path` untouched).
rmp_replace_file <- function(path, write) {
  tmp <- paste0(path, ".tmp")
  problem <- NULL
  note <- function(condition) problem <<- problem %||% conditionMessage(condition)
  tryCatch(
    withCallingHandlers(write(tmp), warning = function(w) {
      note(w)
      invokeRestart("muffleWarning")
    }),
    error = note
  )
  if (is.null(problem) && !file.rename(tmp, path)) problem <- "cannot rename the temporary"
  if (!is.null(problem)) unlink(tmp)
  problem
}

rmp_write_file_atomic <- function(path, text) {
  problem <- rmp_replace_file(path, function(tmp) writeLines(text, tmp, sep = ""))
  if (!is.null(problem)) stop(sprintf("cannot write %s: %s", path, problem), call. = FALSE)
  invisible()
}

# Every answer nginx makes itself, in the one JSON error shape (errors.R). `from` is the status
# nginx raises internally when it differs (494: request header too large). `early` errors can
# happen while the request line is read, before there is a URI: nginx cannot redirect those to
# a named location, so they go to internal URI locations. Messages must not hold ' $ or \
# (they are written into nginx string literals).
rmp_nginx_errors <- function(cfg) {
  error <- function(status, code, message, from = status, early = FALSE) {
    list(status = status, code = code, message = message, from = from, early = early)
  }
  list(
    error(400L, "bad_request", "malformed request: bad request line, header, URI or body framing",
          early = TRUE),
    error(404L, "not_found", "no such route; see /openapi.json"),
    error(405L, "method_not_allowed", "method not allowed on this route; see the Allow header"),
    error(408L, "request_timeout", "the request was not received in time"),
    error(411L, "length_required", "the request needs a Content-Length header"),
    # nginx checks If-Match and If-Unmodified-Since itself on the routes it answers (nothing
    # there has an ETag or a Last-Modified, so any such precondition fails).
    error(412L, "precondition_failed",
          "a precondition of the request (If-Match, If-Unmodified-Since) does not hold"),
    error(413L, "body_too_large",
          sprintf("the request body is larger than %d bytes", cfg$runtime$max_body_bytes)),
    error(414L, "uri_too_long", "the request line is too long", early = TRUE),
    error(431L, "headers_too_large", "the request headers are too large", from = 494L),
    error(500L, "internal_error", "internal server error; see the server log"),
    error(501L, "not_implemented", "the request uses a feature the server does not implement"),
    error(502L, "no_worker", "no R worker could take the request"),
    error(503L, "unavailable", "the server cannot take the request now"),
    error(504L, "timeout",
          sprintf("the R worker did not answer within %d seconds", cfg$runtime$timeout_seconds)),
    error(505L, "http_version_not_supported", "only HTTP/1.0 and HTTP/1.1 are served",
          early = TRUE)
  )
}

rmp_nginx_error_target <- function(e) {
  if (e$early) sprintf("/.rmp-error/%d", e$status) else sprintf("@rmp_%d", e$status)
}

# The JSON body as an nginx string literal, with nginx's request id in it.
rmp_nginx_error_body <- function(status, code, message) {
  json <- rmp_error_json(status, code, message, "@REQUEST_ID@")
  sprintf("'%s\\n'", sub("@REQUEST_ID@", "$rmp_request_id", json, fixed = TRUE))
}

rmp_nginx_error_pages <- function(errors) {
  paste(vapply(errors, function(e) {
    # "=status": the answer's status even when nginx has already picked another (494 -> 400).
    sprintf("    error_page %d =%d %s;", e$from, e$status, rmp_nginx_error_target(e))
  }, ""), collapse = "\n")
}

rmp_nginx_error_locations <- function(errors, run_dir) {
  paste(vapply(errors, function(e) {
    # After a redirect to a URI location, $uri is that location's: log the client's path.
    log_format <- if (e$early) "rmp_json_early" else "rmp_json"
    status_format <- if (e$early) "rmp_status_early" else "rmp_status"
    paste(
      if (e$early) sprintf("    location = %s {\n      internal;", rmp_nginx_error_target(e)) else
        sprintf("    location %s {", rmp_nginx_error_target(e)),
      sprintf("      access_log /dev/stdout %s buffer=32k flush=1s;", log_format),
      sprintf("      access_log %s/nginx-answers.log %s;", run_dir, status_format),
      sprintf("      return %d %s;", e$status, rmp_nginx_error_body(e$status, e$code, e$message)),
      "    }", sep = "\n")
  }, ""), collapse = "\n")
}

# Any other method gets the JSON 405 (with the Allow header, rmp_nginx_allow_map).
rmp_nginx_method_guard <- function(methods) {
  paste(
    sprintf("      if ($request_method !~ ^(%s)$) {", paste(methods, collapse = "|")),
    "        return 405;",
    "      }", sep = "\n")
}

# The Allow header of a 405, by path; empty (no header) for every other answer.
rmp_nginx_allow_map <- function(routes = rmp_routes()) {
  paths <- unique(c(rmp_front_routes, vapply(routes, function(route) route$path, "")))
  entries <- vapply(paths, function(path) {
    methods <- if (path %in% rmp_front_routes) c("GET", "HEAD") else rmp_route_methods(routes, path)
    key <- if (rmp_route_has_params(path)) sprintf("\"~^405:%s\"", sub("^\\^", "", rmp_route_regex(path))) else
      sprintf("\"405:%s\"", path)
    sprintf("    %s \"%s\";", key, paste(methods, collapse = ", "))
  }, "")
  paste(c("  map \"$status:$uri\" $rmp_allow {", "    default \"\";", entries, "  }"), collapse = "\n")
}

rmp_route_methods <- function(routes, path) {
  methods <- unique(vapply(Filter(function(r) identical(r$path, path), routes),
                           function(r) r$method, ""))
  if ("GET" %in% methods) methods <- unique(c(methods, "HEAD"))
  methods
}

# One location per route path. Exact paths match exactly; parameter paths by regex (segments
# limited to unreserved characters, so the forwarded $uri is always a clean request target).
rmp_nginx_route_locations <- function(routes = rmp_routes()) {
  paths <- unique(vapply(routes, function(route) route$path, ""))
  blocks <- vapply(paths, function(path) {
    match <- if (rmp_route_has_params(path)) sprintf("~ \"%s\"", rmp_route_regex(path)) else
      paste("=", path)
    paste(
      sprintf("    location %s {", match),
      rmp_nginx_method_guard(rmp_route_methods(routes, path)),
      "      scgi_pass rmp_workers;",
      "    }", sep = "\n")
  }, "")
  paste(blocks, collapse = "\n")
}

rmp_write_nginx_conf <- function(cfg, run_dir, runtime_dir) {
  template <- paste(readLines(file.path(runtime_dir, "nginx.conf.in")), collapse = "\n")
  errors <- rmp_nginx_errors(cfg)
  values <- c(
    ROUTES = rmp_nginx_route_locations(),
    ALLOW_MAP = rmp_nginx_allow_map(),
    GET_GUARD = rmp_nginx_method_guard(c("GET", "HEAD")),
    ERROR_PAGES = rmp_nginx_error_pages(errors),
    ERROR_LOCATIONS = rmp_nginx_error_locations(errors, run_dir),
    NOT_READY_BODY = rmp_nginx_error_body(503L, "not_ready", paste(
      "no R worker can take requests: the model is loading, workers are being replaced,",
      "or the server is draining")),
    RUN_DIR = run_dir, PORT = cfg$runtime$port, HOST = Sys.getenv("RMP_HOST", "0.0.0.0"),
    MAX_BODY = cfg$runtime$max_body_bytes, TIMEOUT = cfg$runtime$timeout_seconds,
    # Bodies up to 1 MiB stay in memory; larger ones spill to a file below the run dir.
    BODY_BUFFER = min(cfg$runtime$max_body_bytes, 1048576L),
    UPSTREAMS = rmp_upstream_lines(cfg$scgi$ports), USER = rmp_nginx_user_line(),
    SCGI_TOKEN = cfg$scgi$token
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
