# The Plumber router, built in code from one route table, and handler factories that do the
# fixed work once and return small closures.

rmp_route <- function(method, path, make) list(method = method, path = path, make = make)

# THE ROUTE TABLE: the one list of the routes the R workers serve, with their methods.
# rmp_router() mounts exactly these in plumber, and nginx.R renders the front's locations from
# the same list (rmp_nginx_route_locations: an unknown path gets the JSON 404, another method the
# JSON 405 with Allow, HEAD is served as GET), so a route added here reaches nginx with no second
# edit. `make(ctx)` returns the handler; the supervisor reads only method and path (it never
# loads the model). Paths may hold plumber parameters (`/v2/models/<name>/infer`).
rmp_routes <- function() {
  c(list(
    rmp_route("POST", "/predict", function(ctx) ctx$scoring_handlers[["/predict"]]),
    rmp_route("POST", "/score", function(ctx) ctx$scoring_handlers[["/score"]]),
    rmp_route("GET", "/metadata", function(ctx) rmp_static_json(rmp_metadata(ctx))),
    rmp_route("GET", "/ping", function(ctx) rmp_handler_ping),
    rmp_route("GET", "/prototype",
              function(ctx) rmp_static_json(rmp_prototype(ctx$cfg$input$columns))),
    rmp_route("GET", "/openapi.json", function(ctx) rmp_static_json(rmp_openapi(ctx$cfg))),
    rmp_route("GET", "/docs", rmp_handler_docs),
    rmp_route("GET", "/metrics", rmp_handler_metrics)
  ), rmp_protocol_routes())
}

# Answered by nginx itself (nginx.conf.in), never by R: they hold while no worker is up. "/" is
# KServe v1's server liveness ({"status": "alive"} while the process runs, model loaded or not).
rmp_front_routes <- c("/healthz", "/readyz", "/")

# A route path as an anchored regex (for R and for nginx's PCRE): plumber's <name> or
# <name:type> matches one segment of unreserved characters.
rmp_route_regex <- function(path) {
  literal <- gsub("([.+*?^$()|{}\\[\\]\\\\])", "\\\\\\1", path, perl = TRUE)
  paste0("^", gsub("<[^>]+>", "[A-Za-z0-9._~-]+", literal), "$")
}

rmp_route_has_params <- function(path) grepl("<", path, fixed = TRUE)

# Metric labels: the route's own path (its pattern for parameter routes) or "other", so a
# client cannot grow the label set.
rmp_route_label <- function(path) {
  labels <- rmp_state$route_labels
  if (is.null(labels)) {
    paths <- unique(c(vapply(rmp_routes(), function(route) route$path, ""), rmp_front_routes))
    patterns <- paths[vapply(paths, rmp_route_has_params, NA)]
    labels <- list(exact = setdiff(paths, patterns), patterns = patterns,
                   regexes = vapply(patterns, rmp_route_regex, ""))
    rmp_state$route_labels <- labels
  }
  if (path %in% labels$exact) return(path)
  for (i in seq_along(labels$patterns)) {
    if (grepl(labels$regexes[[i]], path)) return(labels$patterns[[i]])
  }
  "other"
}

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

rmp_error_response <- function(req, res, status, code, message, details = list(),
                               error_json = rmp_error_json) {
  rmp_json_response(res, status, error_json(status, code, message, rmp_request_id(req), details))
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
# error_json renders the body (the inference protocols have their own shape, protocols.R).
rmp_guard <- function(handler, error_json = rmp_error_json) {
  function(req, res) {
    calls <- NULL
    tryCatch(
      withCallingHandlers(
        handler(req, res),
        error = function(e) if (!inherits(e, "rmp_http_error")) calls <<- sys.calls()
      ),
      rmp_http_error = function(e) {
        rmp_error_response(req, res, e$status, e$code, conditionMessage(e), e$details,
                           error_json)
      },
      error = function(e) {
        rmp_log_error(req, e, calls)
        rmp_error_response(req, res, 500L, "scoring_error",
                           "the model failed to score the request; see the server log",
                           error_json = error_json)
      }
    )
  }
}

# application/json or a +json type (application/vnd.api+json), with any parameters: the media
# type is the whole text before ";" (application/json-seq or a list of types is not JSON).
rmp_json_type_ok <- function(type) {
  if (is.null(type) || !nzchar(type) || identical(type, "application/json")) return(TRUE)
  media <- trimws(tolower(sub(";.*$", "", type)))
  grepl("^application/([a-z0-9.!#$&^_-]+\\+)?json$", media)
}

rmp_read_json_body <- function(req) {
  type <- req$CONTENT_TYPE
  if (!rmp_json_type_ok(type)) {
    rmp_abort(415L, "unsupported_media_type",
              sprintf("expected Content-Type application/json, got %s", type))
  }
  encoding <- req$HTTP_CONTENT_ENCODING
  if (!is.null(encoding) && !identical(tolower(trimws(encoding)), "identity")) {
    rmp_abort(415L, "unsupported_media_type", sprintf(
      "Content-Encoding %s is not supported; send the body uncompressed", encoding))
  }
  # Every request has a fresh stream positioned at the start (scgi.R): no rewind needed.
  body <- req$rook.input$read()
  if (length(body) == 0) rmp_abort(400L, "malformed_json", "the request body is empty")
  body
}

rmp_body_key <- function(parsed, key) {
  if (!identical(key, "auto")) return(key)
  if (is.null(names(parsed))) NULL else "data"
}

# Parses one scoring request: list(kind, rows, body); its rows are validated later, on their
# own or together with a batch's (batch.R).
rmp_predict_preparer <- function(ctx, key) {
  max_rows <- ctx$cfg$input$max_rows
  kind <- ctx$cfg$output$kind
  function(req) {
    as_kind <- rmp_request_kind(req, kind)
    body <- rmp_read_json_body(req)
    parsed <- rmp_parse_json(body)
    rows <- rmp_rows_from_body(parsed, rmp_body_key(parsed, key))
    rmp_check_row_count(rows, max_rows)
    list(kind = as_kind, rows = rows, body = body)
  }
}

rmp_predictions_body <- function(json, wrap) {
  if (wrap) paste0("{\"predictions\":", json, "}") else json
}

# Validates and scores one parsed request on its own: the unbatched path. on_call() runs once
# the rows are valid, just before the model is called (the batching front counts that call).
rmp_request_scorer <- function(ctx, wrap) {
  validate <- rmp_make_validator(ctx$cfg$input)
  predictor <- ctx$predictor
  kind <- ctx$cfg$output$kind
  function(job, res, on_call = NULL) {
    # No rows, no predictions: what /openapi.json allows, answered without calling the model.
    if (length(job$rows) == 0) {
      return(rmp_json_response(res, 200L, rmp_predictions_body("[]", wrap), rows = 0L))
    }
    df <- validate(job$rows, job$body)
    if (!is.null(on_call)) on_call()
    json <- rmp_predict_as(predictor, df, job$kind, kind)
    rmp_json_response(res, 200L, rmp_predictions_body(json, wrap), rows = nrow(df))
  }
}

# The unbatched handler; its parts ride along for the batching front (rmp_batch_route).
rmp_handler_predict <- function(ctx, key, wrap) {
  prepare <- rmp_predict_preparer(ctx, key)
  score <- rmp_request_scorer(ctx, wrap)
  handler <- function(req, res) score(prepare(req), res)
  structure(handler, prepare = prepare, score = score, wrap = wrap)
}

rmp_static_json <- function(value) {
  body <- as.character(jsonlite::toJSON(value, auto_unbox = TRUE, null = "null", digits = NA,
                                        pretty = TRUE))
  function(req, res) rmp_json_response(res, 200L, body)
}

rmp_scoring_handlers <- function(ctx) {
  guarded <- function(handler) {
    structure(rmp_guard(handler), prepare = attr(handler, "prepare"),
              score = attr(handler, "score"), wrap = attr(handler, "wrap"))
  }
  list(
    `/predict` = guarded(rmp_handler_predict(ctx, "auto", wrap = TRUE)),
    # The reference deployment's endpoint: {"df": [...]} in, a bare JSON array out.
    `/score` = guarded(rmp_handler_predict(ctx, "df", wrap = FALSE))
  )
}

# vetiver clients call GET /ping and expect {"status": "online", "time": ...}.
rmp_handler_ping <- function(req, res) {
  time <- format(Sys.time(), "%Y-%m-%d %H:%M:%S", tz = "UTC")
  rmp_json_response(res, 200L, sprintf("{\"status\":\"online\",\"time\":\"%s\"}", time))
}

rmp_handler_docs <- function(ctx) {
  page <- rmp_docs_html(ctx$cfg)
  function(req, res) {
    res$setHeader("Content-Type", "text/html; charset=utf-8")
    res$body <- page
    res
  }
}

rmp_handler_metrics <- function(ctx) {
  function(req, res) {
    writing <- suppressWarnings(as.numeric(req$HTTP_X_RMP_IN_FLIGHT %||% NA))
    res$setHeader("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
    res$body <- rmp_metrics_text(ctx$run_dir, max(0, writing - 1, na.rm = TRUE))
    res
  }
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
  pr <- rmp_pr_errors(plumber::pr(filters = list()))
  for (route in rmp_routes()) {
    pr <- plumber::pr_handle(pr, route$method, route$path, route$make(ctx))
  }
  pr
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

rmp_light_result <- function(res) list(status = res$status, headers = res$headers, body = res$body)

rmp_call_light <- function(handler, req) rmp_light_result(handler(req, rmp_light_response()))

# A hot route with micro-batching (batch.R): function(req, started) -> a response, or a promise
# of one when the request joined the queue. A request that fails before its rows are checked
# (bad JSON, ?type=, too many rows) is answered at once and never queued.
rmp_batch_route <- function(path, handler, batcher, metrics) {
  prepare <- attr(handler, "prepare")
  score <- attr(handler, "score")
  wrap <- attr(handler, "wrap")
  count_call <- function() rmp_record_batch_size(metrics, 1L)
  # Parses the request; scores it at once when there is nothing to batch it with (or no rows),
  # else leaves the job on res for the queue.
  admit <- rmp_guard(function(req, res) {
    job <- prepare(req)
    if (length(job$rows) == 0L) return(score(job, res))
    if (rmp_batch_alone(batcher)) {
      rmp_record_waits(metrics, 0)
      return(score(job, res, count_call))
    }
    res$job <- job
    res
  })
  route <- list(
    answer = function(job, texts) {
      list(status = 200L, headers = list(`Content-Type` = "application/json",
                                         `X-Rmp-Rows` = as.character(job$n)),
           body = rmp_predictions_body(rmp_json_array(texts), wrap))
    },
    alone = function(job) {
      rmp_call_light(rmp_guard(function(req, res) score(job, res, count_call)), job$req)
    },
    done = function(job, response) {
      rmp_record_answer(metrics, job$req, path, response$status, job$started)
    }
  )
  function(req, started) {
    res <- admit(req, rmp_light_response())
    if (is.null(res$job)) {
      response <- rmp_light_result(res)
      rmp_record_answer(metrics, req, path, response$status, started)
      return(response)
    }
    job <- list2env(res$job, parent = emptyenv())
    job$req <- req
    job$n <- length(job$rows)
    job$started <- started
    job$route <- route
    rmp_batch_submit(batcher, job)
  }
}

rmp_batch_routes <- function(ctx, metrics) {
  if (!rmp_batching_on(ctx$cfg)) return(list())
  batcher <- rmp_new_batcher(rmp_make_validator(ctx$cfg$input), attr(ctx$predictor, "texts"),
                             ctx$cfg$runtime$batching$max_rows, metrics)
  # The worker loop scores a queue left behind (worker.R).
  rmp_state$batcher <- batcher
  hot <- ctx$scoring_handlers
  stats::setNames(lapply(names(hot), function(path) {
    rmp_batch_route(path, hot[[path]], batcher, metrics)
  }), names(hot))
}

# The Rook app each SCGI request is handed to (scgi.R). POST /predict and /score go straight to
# their handlers (the same ones the router holds), through the batching queue when batching is
# on: plumber's routing, hooks and serializer steps cost about as much as the scoring itself
# (benchmarks/README.md). plumber answers everything else. Every answer is counted for /metrics.
rmp_app <- function(ctx, metrics, idle_gc) {
  pr <- ctx$router
  hot <- ctx$scoring_handlers
  batched <- rmp_batch_routes(ctx, metrics)
  list(call = function(req) {
    started <- rmp_now()
    # Before the work: the worker's heartbeat then says when this request started (worker.R).
    rmp_note_request(idle_gc)
    # A worker that crashes (a segfault in compiled model code) deletes the tempdir every worker
    # shares on its way out; made again here, or each tempfile() after it would fail.
    tempdir(check = TRUE)
    post <- identical(req$REQUEST_METHOD, "POST")
    route <- if (post) batched[[req$PATH_INFO]]
    if (!is.null(route)) return(route(req, started))
    handler <- if (post) hot[[req$PATH_INFO]]
    response <- if (is.null(handler)) rmp_fix_405(req, pr$call(req)) else rmp_call_light(handler, req)
    rmp_record_answer(metrics, req, rmp_route_label(req$PATH_INFO), response$status, started)
    response
  })
}
