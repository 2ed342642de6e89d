# Adaptive micro-batching inside one worker. Each POST /predict or /score is parsed on arrival
# (bad JSON, a bad ?type= or too many rows get their own 4xx at once). A request that finds
# nothing else to batch with is scored at once, as without batching. Otherwise it is queued and
# the call returns a promise, until the call of the last request that has already arrived (the
# last complete one of the worker's SCGI round, scgi.R) scores the whole queue and returns its
# own response directly. Nothing ever waits on a timer.
# The flush checks the queued rows as one set of column vectors (if that fails, each request on
# its own: an invalid one gets its own 422 and never joins the batch), scores them with one
# predict() per group of at most runtime.batching.max_rows rows of the same output type, and
# cuts each request's answer from one vector of JSON texts. If a batched predict() fails, its
# requests are scored one by one, so only a request that fails on its own gets the 500.

# A job is an environment: req, rows, body, kind, n, started (when its request arrived), and
# its route's functions answer(job, texts) -> response, alone(job) -> response (the unbatched
# path, errors included) and done(job, response) (metrics); queued, deferred (its promise, if
# its call returned one) and response are set later.
rmp_new_batcher <- function(validate, texts, max_rows, metrics) {
  batcher <- new.env(parent = emptyenv())
  batcher$validate <- validate
  batcher$texts <- texts
  batcher$max_rows <- max_rows
  batcher$metrics <- metrics
  batcher$queue <- list()
  # Complete requests the SCGI round (scgi.R) has still to hand over after this one.
  batcher$arriving <- 0L
  batcher
}

# Another request has already arrived: the SCGI round holds more.
rmp_more_arriving <- function(batcher) batcher$arriving > 0L

# Nothing else to batch with: the queue is empty and no other request has arrived. Such a
# request is scored at once, synchronously: the common case at low concurrency pays nothing
# for batching.
rmp_batch_alone <- function(batcher) {
  length(batcher$queue) == 0L && !rmp_more_arriving(batcher)
}

# Queues a job. When no other request has arrived, this is the last one: the queue is scored
# now and this request's response returned as is. Otherwise the caller gets a promise; the last
# arrival's call (or the worker loop, rmp_batch_flush_idle) scores the queue.
rmp_batch_submit <- function(batcher, job) {
  job$queued <- rmp_now()
  batcher$queue[[length(batcher$queue) + 1L]] <- job
  if (!rmp_more_arriving(batcher)) {
    rmp_batch_flush(batcher)
    return(job$response)
  }
  job$deferred <- rmp_deferred()
  job$deferred
}

# Called by the worker loop after each round: a queue left behind (the requests after it were
# not scoring ones, or failed before they were queued) is scored now.
rmp_batch_flush_idle <- function(batcher) {
  if (!is.null(batcher) && length(batcher$queue) > 0L && !rmp_more_arriving(batcher)) {
    rmp_batch_flush(batcher)
  }
}

# The promise a queued request's call returns: $then(onFulfilled, onRejected), $catch and
# $finally, as promises::then/catch/finally call them, run synchronously when it is resolved in
# the batch's flush (scgi.R writes the answer from its $then). A promises::promise costs ~1.2 ms
# of R CPU per request (each stage an R6 promise resolved through the later queue;
# benchmarks/README.md), more than the scoring it would batch. Callbacks return plain values.
rmp_deferred <- function() {
  d <- new.env(parent = emptyenv())
  d$state <- "pending"
  d$waiting <- list()
  settle <- function(state, value) {
    if (d$state != "pending") return(invisible())
    d$state <- state
    d$value <- value
    for (run in d$waiting) run()
    d$waiting <- list()
    invisible()
  }
  d$resolve <- function(value) settle("fulfilled", value)
  d$reject <- function(reason) settle("rejected", reason)
  d$then <- function(onFulfilled = NULL, onRejected = NULL) {
    next_one <- rmp_deferred()
    run <- function() {
      handler <- if (d$state == "fulfilled") onFulfilled else onRejected
      if (is.null(handler)) {
        return(rmp_settle_like(next_one, d$state, d$value))
      }
      tryCatch(next_one$resolve(handler(d$value)), error = function(e) next_one$reject(e))
    }
    if (d$state == "pending") d$waiting[[length(d$waiting) + 1L]] <- run else run()
    next_one
  }
  d$catch <- function(onRejected) d$then(onRejected = onRejected)
  d$finally <- function(onFinally) {
    d$then(function(value) {
      onFinally()
      value
    }, function(reason) {
      onFinally()
      stop(reason)
    })
  }
  class(d) <- c("rmp_deferred", "promise")
  d
}

rmp_settle_like <- function(deferred, state, value) {
  if (state == "fulfilled") deferred$resolve(value) else deferred$reject(value)
}

rmp_batch_flush <- function(batcher) {
  jobs <- batcher$queue
  batcher$queue <- list()
  # A failure in the batching code itself must not leave a request unanswered.
  tryCatch(
    for (group in rmp_batch_groups(jobs, batcher$max_rows)) rmp_batch_score(batcher, group),
    error = function(e) rmp_batch_rescue(jobs)
  )
  invisible()
}

rmp_batch_rescue <- function(jobs) {
  for (job in jobs) {
    if (is.null(job$response)) rmp_batch_finish(job, job$route$alone(job))
  }
}

# Jobs grouped by output type, in arrival order, each group at most max_rows rows (a request
# larger than that is a group of its own).
rmp_batch_groups <- function(jobs, max_rows) {
  kinds <- vapply(jobs, function(job) job$kind, "")
  groups <- list()
  for (kind in unique(kinds)) {
    same <- jobs[kinds == kind]
    rows <- vapply(same, function(job) job$n, 0L)
    group_of <- integer(length(same))
    group <- 1L
    filled <- 0L
    for (i in seq_along(same)) {
      if (filled > 0L && filled + rows[[i]] > max_rows) {
        group <- group + 1L
        filled <- 0L
      }
      group_of[[i]] <- group
      filled <- filled + rows[[i]]
    }
    groups <- c(groups, unname(split(same, group_of)))
  }
  groups
}

# The data.frame of several validated requests: each column the concatenation of theirs (the
# validator gave every request the same columns, types and factor levels).
rmp_concat_frames <- function(frames) {
  first <- frames[[1]]
  n <- sum(vapply(frames, function(df) length(df[[1]]), 0L))
  columns <- lapply(seq_along(first), function(j) {
    parts <- lapply(frames, .subset2, j)
    if (is.factor(first[[j]])) {
      codes <- unlist(lapply(parts, as.integer), use.names = FALSE)
      structure(codes, levels = levels(first[[j]]), class = "factor")
    } else {
      unlist(parts, use.names = FALSE)
    }
  })
  names(columns) <- names(first)
  structure(columns, class = "data.frame", row.names = c(NA_integer_, -n))
}

# The batch's rows checked as one set of column vectors. When that fails, each request is
# checked on its own: the invalid ones get their own 422 now, the valid ones are returned
# (their own data.frames concatenated) to be scored together.
rmp_batch_frame <- function(batcher, jobs) {
  rows <- unlist(lapply(jobs, function(job) job$rows), recursive = FALSE, use.names = FALSE)
  bodies <- unlist(lapply(jobs, function(job) job$body), use.names = FALSE)
  df <- tryCatch(batcher$validate(rows, bodies), error = function(e) NULL)
  if (!is.null(df)) return(list(jobs = jobs, df = df))
  valid <- Filter(function(job) {
    job$df <- tryCatch(batcher$validate(job$rows, job$body), error = function(e) NULL)
    if (is.null(job$df)) rmp_batch_finish(job, job$route$alone(job))
    !is.null(job$df)
  }, jobs)
  if (length(valid) == 0) return(list(jobs = valid))
  list(jobs = valid, df = rmp_concat_frames(lapply(valid, function(job) job$df)))
}

rmp_batch_score <- function(batcher, jobs) {
  now <- rmp_now()
  rmp_record_waits(batcher$metrics, vapply(jobs, function(job) now - job$queued, 0))
  if (length(jobs) > 1L) {
    batch <- rmp_batch_frame(batcher, jobs)
    jobs <- batch$jobs
  }
  if (length(jobs) == 0L) return(invisible())
  # rmp_batch_requests counts model calls, by the requests each held: alone() counts its own
  # call of one when its rows are valid, so a failed batched call counts once (all its
  # requests) and each one-by-one retry once more.
  if (length(jobs) == 1L) return(rmp_batch_finish(jobs[[1]], jobs[[1]]$route$alone(jobs[[1]])))
  rmp_record_batch_size(batcher$metrics, length(jobs))
  texts <- tryCatch(batcher$texts(batch$df, jobs[[1]]$kind), error = function(e) NULL)
  if (is.null(texts)) {
    for (job in jobs) rmp_batch_finish(job, job$route$alone(job))
    return(invisible())
  }
  ends <- cumsum(vapply(jobs, function(job) job$n, 0L))
  starts <- c(1L, utils::head(ends, -1L) + 1L)
  for (i in seq_along(jobs)) {
    job <- jobs[[i]]
    rmp_batch_finish(job, job$route$answer(job, texts[starts[[i]]:ends[[i]]]))
  }
  invisible()
}

rmp_batch_finish <- function(job, response) {
  job$route$done(job, response)
  job$response <- response
  if (!is.null(job$deferred)) job$deferred$resolve(response)
}
