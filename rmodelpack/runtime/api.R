# The Plumber router, built in code: one small function per route that takes `pr` and returns
# it, and handler factories that do the fixed work once and return small closures.

rmp_known_routes <- c("/predict", "/score", "/metadata", "/ping", "/prototype", "/openapi.json",
                      "/docs", "/metrics", "/healthz", "/readyz")

rmp_route_label <- function(path) if (path %in% rmp_known_routes) path else "other"

rmp_request_id <- function(req) {
  id <- req$HTTP_X_REQUEST_ID
  if (is.null(id) || !nzchar(id)) "none" else id
}

rmp_json_response <- function(res, status, body, rows = NULL) {
  res$status <- as.integer(status)
  res$setHeader("Content-Type", "application/json")
  if (!is.null(rows)) res$setHeader("X-Rmp-Rows", as.character(rows))
  res$body <- body
  res
}

rmp_error_response <- function(req, res, status, code, message, details = list()) {
  rmp_json_response(res, status, rmp_error_json(status, code, message, rmp_request_id(req), details))
}

rmp_log_error <- function(req, error, calls) {
  trace <- vapply(calls, function(call) paste(deparse(call, nlines = 1L), collapse = ""), "")
  lines <- c(
    sprintf("rmodelpack: error in %s %s (request %s): %s", req$REQUEST_METHOD, req$PATH_INFO,
            rmp_request_id(req), conditionMessage(error)),
    paste0("  at ", utils::tail(trace, 20L))
  )
  cat(lines, sep = "\n", file = stderr())
}

# Bad input becomes its own status; anything else is a 500 whose trace goes to stderr only.
rmp_guard <- function(handler) {
  function(req, res) {
    calls <- NULL
    tryCatch(
      withCallingHandlers(
        handler(req, res),
        error = function(e) if (!inherits(e, "rmp_http_error")) calls <<- sys.calls()
      ),
      rmp_http_error = function(e) {
        rmp_error_response(req, res, e$status, e$code, conditionMessage(e), e$details)
      },
      error = function(e) {
        rmp_log_error(req, e, calls)
        rmp_error_response(req, res, 500L, "scoring_error",
                           "the model failed to score the request; see the server log")
      }
    )
  }
}

rmp_json_type_ok <- function(type) {
  is.null(type) || !nzchar(type) || identical(type, "application/json") ||
    grepl("^application/([a-z.+-]*\\+)?json\\b", tolower(type))
}

rmp_read_json_body <- function(req) {
  type <- req$CONTENT_TYPE
  if (!rmp_json_type_ok(type)) {
    rmp_abort(415L, "unsupported_media_type",
              sprintf("expected Content-Type application/json, got %s", type))
  }
  # httpuv hands every request a fresh stream positioned at the start: no rewind needed.
  body <- req$rook.input$read()
  if (length(body) == 0) rmp_abort(400L, "malformed_json", "the request body is empty")
  body
}

rmp_body_key <- function(parsed, key) {
  if (!identical(key, "auto")) return(key)
  if (is.null(names(parsed))) NULL else "data"
}

rmp_handler_predict <- function(ctx, key, wrap) {
  validate <- rmp_make_validator(ctx$cfg$input)
  max_rows <- ctx$cfg$input$max_rows
  predictor <- ctx$predictor
  function(req, res) {
    body <- rmp_read_json_body(req)
    parsed <- rmp_parse_json(body)
    rows <- rmp_rows_from_body(parsed, rmp_body_key(parsed, key))
    rmp_check_row_count(rows, max_rows)
    df <- validate(rows, body)
    json <- predictor(df)
    out <- if (wrap) paste0("{\"predictions\":", json, "}") else as.character(json)
    rmp_json_response(res, 200L, out, rows = nrow(df))
  }
}

rmp_static_json <- function(value) {
  body <- as.character(jsonlite::toJSON(value, auto_unbox = TRUE, null = "null", digits = NA,
                                        pretty = TRUE))
  function(req, res) rmp_json_response(res, 200L, body)
}

rmp_scoring_handlers <- function(ctx) {
  list(
    `/predict` = rmp_guard(rmp_handler_predict(ctx, "auto", wrap = TRUE)),
    # The reference deployment's endpoint: {"df": [...]} in, a bare JSON array out.
    `/score` = rmp_guard(rmp_handler_predict(ctx, "df", wrap = FALSE))
  )
}

rmp_pr_scoring <- function(pr, handlers) {
  for (path in names(handlers)) pr <- plumber::pr_post(pr, path, handlers[[path]])
  pr
}

rmp_pr_metadata <- function(pr, ctx) {
  plumber::pr_get(pr, "/metadata", rmp_static_json(rmp_metadata(ctx)))
}

# vetiver clients call GET /ping and expect {"status": "online", "time": ...}.
rmp_pr_ping <- function(pr) {
  plumber::pr_get(pr, "/ping", function(req, res) {
    time <- format(Sys.time(), "%Y-%m-%d %H:%M:%S", tz = "UTC")
    rmp_json_response(res, 200L, sprintf("{\"status\":\"online\",\"time\":\"%s\"}", time))
  })
}

rmp_pr_prototype <- function(pr, ctx) {
  plumber::pr_get(pr, "/prototype", rmp_static_json(rmp_prototype(ctx$cfg$input$columns)))
}

rmp_pr_openapi <- function(pr, ctx) {
  plumber::pr_get(pr, "/openapi.json", rmp_static_json(rmp_openapi(ctx$cfg)))
}

rmp_pr_docs <- function(pr, ctx) {
  page <- rmp_docs_html(ctx$cfg)
  plumber::pr_get(pr, "/docs", function(req, res) {
    res$setHeader("Content-Type", "text/html; charset=utf-8")
    res$body <- page
    res
  })
}

rmp_pr_metrics <- function(pr, ctx) {
  plumber::pr_get(pr, "/metrics", function(req, res) {
    writing <- suppressWarnings(as.numeric(req$HTTP_X_RMP_IN_FLIGHT %||% NA))
    res$setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
    res$body <- rmp_metrics_text(ctx$run_dir, max(0, writing - 1, na.rm = TRUE))
    res
  })
}

rmp_pr_errors <- function(pr) {
  pr <- plumber::pr_set_404(pr, function(req, res) {
    rmp_error_response(req, res, 404L, "not_found", sprintf("no route %s", req$PATH_INFO))
  })
  plumber::pr_set_error(pr, function(req, res, err) {
    rmp_log_error(req, err, list())
    rmp_error_response(req, res, 500L, "internal_error", "internal server error; see the server log")
  })
}

rmp_router <- function(ctx) {
  pr <- plumber::pr(filters = list())
  pr <- rmp_pr_errors(pr)
  pr <- rmp_pr_scoring(pr, ctx$scoring_handlers)
  pr <- rmp_pr_metadata(pr, ctx)
  pr <- rmp_pr_ping(pr)
  pr <- rmp_pr_prototype(pr, ctx)
  pr <- rmp_pr_openapi(pr, ctx)
  pr <- rmp_pr_docs(pr, ctx)
  rmp_pr_metrics(pr, ctx)
}

rmp_now <- function() as.numeric(Sys.time())

# plumber answers a known path with the wrong method itself, in its own error shape.
rmp_fix_405 <- function(req, response) {
  if (response$status == 405L) {
    response$headers[["Content-Type"]] <- "application/json"
    response$body <- rmp_error_json(405L, "method_not_allowed", sprintf(
      "%s is not allowed on %s", req$REQUEST_METHOD, req$PATH_INFO
    ), rmp_request_id(req))
  }
  response
}

# A PlumberResponse stand-in with just what the scoring handlers use.
rmp_light_response <- function() {
  res <- new.env(parent = emptyenv())
  res$status <- 200L
  res$headers <- list()
  res$body <- ""
  res$setHeader <- function(name, value) res$headers[[name]] <- value
  res
}

rmp_call_light <- function(handler, req) {
  res <- handler(req, rmp_light_response())
  list(status = res$status, headers = res$headers, body = res$body)
}

# The httpuv app. POST /predict and /score go straight to their handlers (the same ones the
# router holds): plumber's routing, hooks and serializer steps cost about as much as the
# scoring itself (benchmarks/README.md). plumber answers everything else. Every answer is
# counted for /metrics.
rmp_app <- function(ctx, metrics, idle_gc) {
  pr <- ctx$router
  hot <- ctx$scoring_handlers
  list(call = function(req) {
    started <- rmp_now()
    handler <- if (identical(req$REQUEST_METHOD, "POST")) hot[[req$PATH_INFO]]
    response <- if (is.null(handler)) rmp_fix_405(req, pr$call(req)) else rmp_call_light(handler, req)
    rmp_record(metrics, rmp_route_label(req$PATH_INFO), req$REQUEST_METHOD,
               response$status, rmp_now() - started)
    rmp_note_request(idle_gc)
    response
  })
}
