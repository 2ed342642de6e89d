# Prometheus metrics across forked workers. Each worker keeps its counters in memory and
# flushes them to <run>/metrics/w<i>.rds at most 0.2 s after a request; /metrics sums the files
# and the answers nginx made itself.
# A replacement worker starts from its predecessor's file, so counters stay monotonic.

rmp_buckets <- c(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

rmp_metrics_dir <- function(run_dir) file.path(run_dir, "metrics")

rmp_read_rds <- function(path) tryCatch(readRDS(path), error = function(e) NULL)

# Micro-batching (batch.R): requests per predict() call, and how long a request waited in the
# queue before its batch was scored.
rmp_batch_buckets <- c(1, 2, 4, 8, 16, 32, 64, 128, 256)
rmp_wait_buckets <- c(0, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                      0.25, 1)

rmp_new_histogram <- function(bounds) {
  list(buckets = numeric(length(bounds) + 1), sum = 0, count = 0)
}

rmp_new_counters <- function() {
  list(requests = numeric(0), buckets = numeric(length(rmp_buckets) + 1), sum = 0, count = 0,
       batch_requests = rmp_new_histogram(rmp_batch_buckets),
       batch_wait = rmp_new_histogram(rmp_wait_buckets))
}

rmp_counter_names <- names(rmp_new_counters())

# The metrics of this process when it is a worker (set after the fork).
rmp_state <- new.env(parent = emptyenv())

# The worker's own timers (metrics flush, idle GC) run on a private later loop that the worker
# loop runs after each SCGI round, and whose next due time bounds the round's wait (worker.R).
# Outside a worker they run on the global loop.
rmp_timer <- function(callback, delay) {
  loop <- rmp_state$timers %||% later::global_loop()
  later::later(callback, delay, loop = loop)
}

rmp_new_metrics <- function(run_dir, worker_id) {
  path <- file.path(rmp_metrics_dir(run_dir), sprintf("w%d.rds", worker_id))
  counters <- utils::modifyList(rmp_new_counters(), rmp_read_rds(path) %||% list())
  metrics <- list2env(counters, parent = emptyenv())
  metrics$path <- path
  metrics$flush_pending <- FALSE
  metrics
}

`%||%` <- function(x, y) if (is.null(x)) y else x

rmp_record <- function(metrics, route, method, status, seconds) {
  key <- paste(route, method, status, sep = "\t")
  previous <- metrics$requests[key]
  metrics$requests[[key]] <- if (is.na(previous)) 1 else previous + 1
  bucket <- findInterval(seconds, rmp_buckets, left.open = TRUE) + 1L
  metrics$buckets[[bucket]] <- metrics$buckets[[bucket]] + 1
  metrics$sum <- metrics$sum + seconds
  metrics$count <- metrics$count + 1
  rmp_schedule_flush(metrics)
}

# A worker's answer to one request. nginx answers a request itself with its 504 when it gives
# up waiting (timeout_seconds) and counts that 504 (rmp_add_nginx_answers); an answer the worker
# finishes after that reaches no client (req$rmp.gone(), scgi.R), so it is not counted again.
rmp_record_answer <- function(metrics, req, route, status, started) {
  if (is.function(req$rmp.gone) && req$rmp.gone()) return(invisible())
  rmp_record(metrics, route, req$REQUEST_METHOD, status, rmp_now() - started)
}

rmp_observe <- function(histogram, bounds, value) {
  bucket <- findInterval(value, bounds, left.open = TRUE) + 1L
  histogram$buckets[[bucket]] <- histogram$buckets[[bucket]] + 1
  histogram$sum <- histogram$sum + value
  histogram$count <- histogram$count + 1
  histogram
}

# One model call of the batching front, made after its rows passed validation: how many
# requests it scored together (a failed batched call and each of its retries count apiece).
rmp_record_batch_size <- function(metrics, requests) {
  metrics$batch_requests <- rmp_observe(metrics$batch_requests, rmp_batch_buckets, requests)
  rmp_schedule_flush(metrics)
}

# How long each request of a flush waited in the queue (0: scored at once, never queued).
rmp_record_waits <- function(metrics, waits) {
  histogram <- metrics$batch_wait
  for (wait in waits) histogram <- rmp_observe(histogram, rmp_wait_buckets, wait)
  metrics$batch_wait <- histogram
  rmp_schedule_flush(metrics)
}

# Writing the file costs more than a prediction, so a burst of requests shares one write.
rmp_schedule_flush <- function(metrics, delay = 0.2) {
  if (metrics$flush_pending) return(invisible())
  metrics$flush_pending <- TRUE
  rmp_timer(function() rmp_flush_due(metrics), delay)
}

rmp_save_rds <- function(value, path) {
  rmp_replace_file(path, function(tmp) saveRDS(value, tmp, compress = FALSE))
}

# Writes the counts now (/metrics does, before it reads every worker's file). Returns NULL or
# the problem; a failed write leaves the last whole file.
rmp_flush <- function(metrics) {
  rmp_save_rds(mget(rmp_counter_names, envir = metrics), metrics$path)
}

# The scheduled write. One that fails (a full disk) is tried again a second later, for as long
# as it fails; the counts stay in memory meanwhile. The first failure of a streak is logged.
rmp_flush_due <- function(metrics) {
  metrics$flush_pending <- FALSE
  problem <- rmp_flush(metrics)
  if (!is.null(problem) && !isTRUE(metrics$failing)) {
    rmp_log("cannot write ", metrics$path, " (", problem, "); the counts are kept and ",
            "written again every second")
  }
  metrics$failing <- !is.null(problem)
  if (metrics$failing) rmp_schedule_flush(metrics, delay = 1)
}

# NULL, or the problem (the supervisor writes them again on its next turn).
rmp_write_supervisor_metrics <- function(run_dir, values) {
  rmp_save_rds(values, file.path(rmp_metrics_dir(run_dir), "supervisor.rds"))
}

rmp_sum_counters <- function(run_dir) {
  files <- list.files(rmp_metrics_dir(run_dir), pattern = "^w[0-9]+\\.rds$", full.names = TRUE)
  total <- rmp_new_counters()
  for (counters in Filter(Negate(is.null), lapply(files, rmp_read_rds))) {
    for (key in names(counters$requests)) {
      previous <- if (is.na(total$requests[key])) 0 else total$requests[[key]]
      total$requests[[key]] <- previous + counters$requests[[key]]
    }
    total$buckets <- total$buckets + counters$buckets
    total$sum <- total$sum + counters$sum
    total$count <- total$count + counters$count
    for (name in c("batch_requests", "batch_wait")) {
      total[[name]] <- rmp_add_histograms(total[[name]], counters[[name]])
    }
  }
  total
}

rmp_add_histograms <- function(a, b) {
  if (is.null(b)) return(a)
  list(buckets = a$buckets + b$buckets, sum = a$sum + b$sum, count = a$count + b$count)
}

# nginx answers any method token with 405 or 400; the label set stays bounded.
rmp_http_methods <- c("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE",
                      "CONNECT")

rmp_method_label <- function(method) if (method %in% rmp_http_methods) method else "other"

# Requests nginx answered itself (body too large, no worker, timeout): one "METHOD /uri status"
# line each in <run>/nginx-answers.log (nginx.conf.in).
rmp_add_nginx_answers <- function(requests, run_dir) {
  path <- file.path(run_dir, "nginx-answers.log")
  lines <- if (file.exists(path)) readLines(path, warn = FALSE) else character(0)
  parts <- strsplit(lines[nzchar(lines)], " ", fixed = TRUE)
  for (part in Filter(function(p) length(p) == 3, parts)) {
    key <- paste(rmp_route_label(part[[2]]), rmp_method_label(part[[1]]), part[[3]], sep = "\t")
    previous <- if (is.na(requests[key])) 0 else requests[[key]]
    requests[[key]] <- previous + 1
  }
  requests
}

rmp_metric_header <- function(name, type, help) {
  c(sprintf("# HELP %s %s", name, help), sprintf("# TYPE %s %s", name, type))
}

rmp_format_number <- function(x) {
  # decimal.mark: a scoring script's options(OutDec = ",") must not reach Prometheus' format.
  vapply(x, function(v) {
    format(v, scientific = FALSE, digits = 15, trim = TRUE, decimal.mark = ".")
  }, "")
}

rmp_requests_lines <- function(requests) {
  keys <- sort(as.character(names(requests)))
  parts <- strsplit(keys, "\t", fixed = TRUE)
  c(
    rmp_metric_header(
      "rmp_requests_total", "counter",
      "Requests answered, by route, method and status (nginx's own answers included)."
    ),
    vapply(seq_along(keys), function(i) sprintf(
      "rmp_requests_total{route=\"%s\",method=\"%s\",status=\"%s\"} %s",
      parts[[i]][[1]], parts[[i]][[2]], parts[[i]][[3]], rmp_format_number(requests[[keys[[i]]]])
    ), "")
  )
}

rmp_histogram_lines <- function(counters, name = "rmp_request_duration_seconds",
                                bounds = rmp_buckets,
                                help = "Time the R workers spent on a request.") {
  cumulative <- cumsum(counters$buckets)
  les <- c(rmp_format_number(bounds), "+Inf")
  c(
    rmp_metric_header(name, "histogram", help),
    sprintf("%s_bucket{le=\"%s\"} %s", name, les, rmp_format_number(cumulative)),
    sprintf("%s_sum %s", name, rmp_format_number(counters$sum)),
    sprintf("%s_count %s", name, rmp_format_number(counters$count))
  )
}

rmp_gauge_lines <- function(name, type, help, value) {
  c(rmp_metric_header(name, type, help), sprintf("%s %s", name, rmp_format_number(value)))
}

rmp_metrics_text <- function(run_dir, in_flight) {
  if (!is.null(rmp_state$metrics)) rmp_flush(rmp_state$metrics)
  counters <- rmp_sum_counters(run_dir)
  counters$requests <- rmp_add_nginx_answers(counters$requests, run_dir)
  supervisor <- rmp_read_rds(file.path(rmp_metrics_dir(run_dir), "supervisor.rds")) %||%
    list(restarts = 0, model_load_seconds = NA, workers = NA)
  lines <- c(
    rmp_requests_lines(counters$requests),
    rmp_histogram_lines(counters),
    rmp_histogram_lines(counters$batch_requests, "rmp_batch_requests", rmp_batch_buckets,
                        "Requests scored together by one model call (micro-batching; 4xx excluded)."),
    rmp_histogram_lines(counters$batch_wait, "rmp_batch_queue_wait_seconds", rmp_wait_buckets,
                        "Time a request waited in its worker's batch queue before scoring."),
    rmp_gauge_lines("rmp_in_flight_requests", "gauge",
                    "Requests nginx is processing right now, this scrape excluded.", in_flight),
    rmp_gauge_lines("rmp_worker_restarts_total", "counter",
                    "R workers replaced after they died.", supervisor$restarts),
    rmp_gauge_lines("rmp_model_load_seconds", "gauge",
                    "Seconds the supervisor took to read the model.", supervisor$model_load_seconds),
    rmp_gauge_lines("rmp_workers", "gauge", "Configured R worker processes.", supervisor$workers)
  )
  paste0(paste(lines, collapse = "\n"), "\n")
}
