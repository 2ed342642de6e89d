# rmodelpack's R supervisor: reads the config, writes the nginx config, has a loader child load
# the model once and fork the workers (they share the model copy-on-write), and replaces any
# worker that dies.
# Started by entrypoint.sh as: Rscript --vanilla supervisor.R  (with RMP_RUN_DIR set).

rmp_runtime_dir <- function() {
  file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  dirname(normalizePath(sub("^--file=", "", file_arg[[1]])))
}

# Every runtime file but this one, so a new file (e.g. protocols.R) needs no edit here.
rmp_source_runtime <- function(runtime_dir) {
  files <- setdiff(sort(list.files(runtime_dir, pattern = "[.]R$")), "supervisor.R")
  for (file in files) sys.source(file.path(runtime_dir, file), envir = globalenv())
}

rmp_log <- function(...) cat("rmodelpack: ", ..., "\n", sep = "", file = stderr())

# The calls an error came through, innermost last, for the log line of an unexpected failure.
rmp_call_trail <- function() {
  calls <- vapply(utils::tail(sys.calls(), 12L), function(call) {
    paste(deparse(call, nlines = 1L), collapse = "")
  }, "")
  paste0("\n  at ", calls, collapse = "")
}

rmp_set_thread_env <- function(threads) {
  # Read by OpenMP/BLAS when the model's packages load, so set before loading them.
  Sys.setenv(OMP_NUM_THREADS = threads, OPENBLAS_NUM_THREADS = threads,
             MKL_NUM_THREADS = threads, OMP_THREAD_LIMIT = threads)
}

rmp_load_context <- function(cfg, run_dir) {
  started <- rmp_now()
  sha256 <- rmp_sha256(cfg$model$path)
  rmp_check_sha256(sha256, cfg$model$sha256, cfg$model$path)
  rmp_load_packages(cfg$packages)
  model <- rmp_read_model(cfg$model$path)
  scorer <- rmp_make_scorer(model, cfg$scoring, cfg$runtime$threads)
  ctx <- list(cfg = cfg, run_dir = run_dir, sha256 = sha256,
              predictor = rmp_make_predictor(scorer, cfg$output$kind))
  ctx$scoring_handlers <- rmp_scoring_handlers(ctx)
  ctx$router <- rmp_router(ctx)
  ctx$load_seconds <- rmp_now() - started
  ctx
}

# A worker that fails ends its process (the supervisor replaces it); mcparallel would swallow
# the error, so it is logged here first.
rmp_run_worker_logged <- function(ctx, worker_id, supervisor_pid) {
  withCallingHandlers(
    rmp_run_worker(ctx, worker_id, supervisor_pid),
    error = function(e) rmp_log("worker ", worker_id, " failed: ", conditionMessage(e),
                                rmp_call_trail())
  )
}

rmp_spawn_worker <- function(ctx, worker_id, supervisor_pid) {
  force(supervisor_pid)
  job <- parallel::mcparallel(rmp_run_worker_logged(ctx, worker_id, supervisor_pid),
                              detached = TRUE)
  job$pid
}

# TRUE for each worker whose up file names its current pid (it is serving its socket).
rmp_workers_up <- function(run_dir, pids) {
  vapply(seq_along(pids), function(i) {
    identical(rmp_first_line(rmp_up_path(run_dir, i)), as.character(pids[[i]]))
  }, TRUE)
}

# A worker whose heartbeat (its up file's mtime, set when a request starts, worker.R) has not
# moved for longer than the request timeout plus this grace is hung: one request has kept it
# busy past the timeout (nginx, whose clock started no earlier, has answered 504 already), or it
# is stopped. It is killed and replaced rather than left burning a core; the requests queued
# behind that one are retried on another worker. The grace covers this loop's own period.
rmp_heartbeat_grace_seconds <- 0.5

# Seconds on a clock that never steps (CLOCK_BOOTTIME), for the heartbeat's age: set against the
# wall clock, a clock stepped forward (NTP at boot) made every worker look hung at once, and one
# stepped back hid a hung worker until the clock caught up. NA when it cannot be read: that turn
# adds no age (mixing in the wall clock would make every worker look hung, or none).
rmp_monotonic <- function() {
  suppressWarnings(as.numeric(sub(" .*", "", rmp_first_line("/proc/uptime"))))
}

# At most this much age per turn: only time the supervisor watched counts. After the container
# was frozen or the machine suspended (the clock ran on, no process did), each worker gets its
# turn to beat again before the time since its last beat counts against it.
rmp_max_turn_seconds <- 1

# Each worker's heartbeat as last seen: its mtime, and its age (seconds watched since it moved).
rmp_heartbeats <- function(workers) {
  list(mtime = rep(NA_real_, workers), age = numeric(workers), turn = NA_real_)
}

# Any change of a heartbeat, forward or back, counts as a beat.
rmp_watch_heartbeats <- function(seen, run_dir, pids) {
  now <- rmp_monotonic()
  watched <- min(max(now - seen$turn, 0), rmp_max_turn_seconds)
  if (is.na(watched)) watched <- 0
  mtimes <- vapply(seq_along(pids), function(i) {
    as.numeric(file.mtime(rmp_up_path(run_dir, i)))
  }, 0)
  moved <- is.na(mtimes) | is.na(seen$mtime) | mtimes != seen$mtime
  seen$age <- ifelse(moved, 0, seen$age + watched)
  seen$mtime <- mtimes
  if (!is.na(now)) seen$turn <- now
  seen
}

rmp_hung_workers <- function(seen, up, limit) up & !is.na(seen$mtime) & seen$age > limit

# Every process below `pid` (from /proc/PID/task/*/children).
rmp_descendants <- function(pid) {
  files <- Sys.glob(sprintf("/proc/%d/task/*/children", pid))
  kids <- unlist(lapply(files, function(file) {
    tryCatch(scan(file, what = integer(), quiet = TRUE), error = function(e) integer())
  }))
  c(kids, unlist(lapply(kids, rmp_descendants)))
}

# A hung worker's own children (a scoring call's system()) go with it: they inherited its open
# SCGI connections (R cannot mark sockets close-on-exec), and nginx would wait for those
# requests until its timeout instead of retrying them on another worker.
rmp_kill_hung <- function(run_dir, pids, hung, limit) {
  for (i in which(hung)) {
    rmp_log("worker ", i, " (pid ", pids[[i]], ") gave no heartbeat for over ", limit,
            " s (a request ran past the timeout, or it is stopped); killing it")
    for (pid in c(rmp_descendants(pids[[i]]), pids[[i]])) tools::pskill(pid, tools::SIGKILL)
  }
}

# <run>/ready is what nginx's /readyz checks; the entrypoint writes <run>/draining on SIGTERM.
rmp_update_ready <- function(run_dir, serving) {
  ready <- file.path(run_dir, "ready")
  want <- serving && !file.exists(file.path(run_dir, "draining"))
  # A failed write (a full disk) is tried again on the next turn.
  if (want && !file.exists(ready)) rmp_replace_file(ready, function(tmp) writeLines("ready", tmp))
  if (!want && file.exists(ready)) unlink(ready)
}

# The supervisor stays small: it never loads the model, its packages or plumber. A short-lived
# loader child does: it reads (and verifies) the model, forks the workers, so that they share the
# model's pages copy-on-write, and exits. Replacing a dead worker starts another loader. The
# workers outlive their loader; they watch the supervisor's pid instead of their parent.
# Each worker's pid goes to <run>/loader.forked as soon as it is forked: a loader killed half-way
# (out of memory) leaves no worker behind that nobody knows of. The entrypoint stops the loader
# (<run>/loader.pid) and those workers on SIGTERM too.
rmp_forked_path <- function(run_dir) file.path(run_dir, "loader.forked")
rmp_loader_pid_path <- function(run_dir) file.path(run_dir, "loader.pid")

rmp_load_and_fork <- function(cfg, run_dir, ids, supervisor_pid) {
  force(supervisor_pid)
  ctx <- rmp_load_context(cfg, run_dir)
  pids <- vapply(ids, function(i) {
    pid <- rmp_spawn_worker(ctx, i, supervisor_pid)
    cat(pid, "\n", sep = "", file = rmp_forked_path(run_dir), append = TRUE)
    pid
  }, 0L)
  list(pids = pids, load_seconds = ctx$load_seconds)
}

# The supervisor goes on supervising while a loader works: a large model takes tens of seconds
# to load, and meanwhile /readyz must tell the truth and a hung worker must still be replaced.
rmp_start_loader <- function(cfg, run_dir, ids) {
  for (i in ids) unlink(rmp_up_path(run_dir, i))
  unlink(rmp_forked_path(run_dir))
  # Evaluated here: a promise would be forced in the worker and give the worker's own pid.
  supervisor_pid <- Sys.getpid()
  job <- parallel::mcparallel(rmp_load_and_fork(cfg, run_dir, ids, supervisor_pid))
  rmp_write_file_atomic(rmp_loader_pid_path(run_dir), as.character(job$pid))
  list(job = job, ids = ids, state = "working", result = NULL)
}

# One look at a loader. state: "working"; "delivered" (its result is in; the loader is leaving);
# "finished"; or "died" without a result (out of memory, killed). mccollect() reads the result,
# then the loader's goodbye, which lets it exit. Workers forked before a loader died hold its
# pipe open, so its end may show only as a dead process.
rmp_poll_loader <- function(loading) {
  repeat {
    # A loader that has exited and been reaped is "not there" to mccollect(): not an error.
    got <- suppressWarnings(parallel::mccollect(loading$job, wait = FALSE, timeout = 0))
    if (is.null(got)) break
    if (is.null(got[[1]])) {
      loading$state <- if (is.null(loading$result)) "died" else "finished"
      return(loading)
    }
    loading$result <- got[[1]]
    loading$state <- "delivered"
  }
  if (!rmp_alive(loading$job$pid)) {
    loading$state <- if (is.null(loading$result)) "died" else "finished"
  }
  loading
}

rmp_end_loader <- function(run_dir) {
  unlink(c(rmp_loader_pid_path(run_dir), rmp_forked_path(run_dir)))
}

# The workers a dead loader forked: they may serve, but the supervisor does not know their pids
# (and they hold the loader's pipe), so they go; a new loader starts them again.
rmp_kill_forked <- function(run_dir) {
  pids <- tryCatch(scan(rmp_forked_path(run_dir), what = integer(), quiet = TRUE),
                   error = function(e) integer())
  for (pid in pids) tools::pskill(pid, tools::SIGKILL)
  rmp_end_loader(run_dir)
}

rmp_loader_died_message <- function(loading) {
  paste0("the model loader (pid ", loading$job$pid, ") died before it delivered worker(s) ",
         paste(loading$ids, collapse = ", "), ": out of memory? (the container's memory limit ",
         "must hold the model, one loader and every worker)")
}

# After a replacement loader died, the next one waits this many turns (0.1 s each), doubling
# up to 30 s, so a loader the memory limit kills every time does not thrash the node.
rmp_loader_backoff <- function(failures) min(300L, 10L * 2L^min(failures, 5L))

rmp_supervise <- function(cfg, run_dir) {
  workers <- cfg$runtime$workers
  pids <- integer(workers)
  sup_metrics <- list(restarts = 0, model_load_seconds = NA_real_, workers = workers)
  # NULL once written; a write that failed (a full disk) is tried again on each turn.
  unwritten <- NULL
  limit <- cfg$runtime$timeout_seconds + rmp_heartbeat_grace_seconds
  loading <- rmp_start_loader(cfg, run_dir, seq_len(workers))
  first_load <- TRUE
  pending <- integer()   # workers to replace, counted as restarts once
  failures <- 0L
  backoff <- 0L
  # Ready once every worker is up; after that, while at least one worker can serve (a worker
  # being replaced does not take the pod out of its Service; none left does).
  all_were_up <- FALSE
  heartbeats <- rmp_heartbeats(workers)
  repeat {
    if (!is.null(loading)) {
      loading <- rmp_poll_loader(loading)
      if (loading$state %in% c("delivered", "finished") && is.null(loading$assigned)) {
        result <- loading$result
        if (inherits(result, "try-error")) stop(attr(result, "condition"))
        pids[loading$ids] <- result$pids
        loading$assigned <- TRUE
        pending <- setdiff(pending, loading$ids)
        failures <- 0L
        if (first_load) {
          first_load <- FALSE
          sup_metrics$model_load_seconds <- result$load_seconds
          unwritten <- rmp_write_supervisor_metrics(run_dir, sup_metrics)
          rmp_log("model loaded in ", round(result$load_seconds, 3), " s; ", workers,
                  " worker(s) forked")
        }
      }
      if (loading$state == "died") {
        rmp_kill_forked(run_dir)
        if (first_load) stop(rmp_loader_died_message(loading))
        failures <- failures + 1L
        backoff <- rmp_loader_backoff(failures)
        rmp_log(rmp_loader_died_message(loading), "; trying again in ", backoff / 10, " s")
        loading <- NULL
      } else if (loading$state == "finished") {
        rmp_end_loader(run_dir)
        loading <- NULL
      }
    }
    alive <- vapply(pids, rmp_alive, TRUE)
    up <- rmp_workers_up(run_dir, pids) & alive
    heartbeats <- rmp_watch_heartbeats(heartbeats, run_dir, pids)
    hung <- rmp_hung_workers(heartbeats, up, limit)
    rmp_kill_hung(run_dir, pids, hung, limit)
    healthy <- up & !hung
    all_were_up <- all_were_up || all(healthy)
    rmp_update_ready(run_dir, if (all_were_up) any(healthy) else all(healthy))
    if (!is.null(unwritten)) unwritten <- rmp_write_supervisor_metrics(run_dir, sup_metrics)
    if (!first_load) {
      died <- setdiff(which(!alive | hung), c(pending, loading$ids))
      if (length(died) > 0) {
        rmp_log("worker(s) ", paste(died, collapse = ", "), " (pid ",
                paste(pids[died], collapse = ", "), ") died; starting replacements")
        sup_metrics$restarts <- sup_metrics$restarts + length(died)
        unwritten <- rmp_write_supervisor_metrics(run_dir, sup_metrics)
        pending <- c(pending, died)
      }
      backoff <- max(0L, backoff - 1L)
      if (length(pending) > 0 && is.null(loading) && backoff == 0L) {
        loading <- rmp_start_loader(cfg, run_dir, sort(pending))
        next
      }
    }
    rmp_sleep(0.1)
  }
}

rmp_main <- function() {
  runtime_dir <- rmp_runtime_dir()
  rmp_source_runtime(runtime_dir)
  run_dir <- Sys.getenv("RMP_RUN_DIR")
  if (!nzchar(run_dir) || !dir.exists(run_dir)) {
    rmp_config_error("RMP_RUN_DIR must name an existing directory (entrypoint.sh sets it)")
  }
  cfg <- rmp_load_config()
  cfg$scgi <- rmp_scgi_plan(cfg$runtime$workers)
  rmp_write_file_atomic(file.path(run_dir, "supervisor.pid"), as.character(Sys.getpid()))
  dir.create(rmp_metrics_dir(run_dir), showWarnings = FALSE)
  rmp_write_shutdown_env(cfg, run_dir)
  rmp_write_nginx_conf(cfg, run_dir, runtime_dir)
  rmp_set_thread_env(cfg$runtime$threads)
  rmp_supervise(cfg, run_dir)
}

# An unexpected failure is logged with the calls it came through (a race seen once in CI must
# be traceable from its log); a configuration error is the user's to fix and needs none.
failed_at <- ""
tryCatch(
  withCallingHandlers(rmp_main(), error = function(e) {
    if (!inherits(e, "rmp_config_error")) failed_at <<- rmp_call_trail()
  }),
  rmp_config_error = function(e) {
    cat("rmodelpack: configuration error: ", conditionMessage(e), "\n", sep = "", file = stderr())
    quit(save = "no", status = 2)
  },
  error = function(e) {
    cat("rmodelpack: supervisor failed: ", conditionMessage(e), failed_at, "\n", sep = "",
        file = stderr())
    quit(save = "no", status = 1)
  }
)
