# rmodelpack's R supervisor: reads the config, writes the nginx config, has a loader child load
# the model once and fork the workers (they share the model copy-on-write), and replaces any
# worker that dies.
# Started by entrypoint.sh as: Rscript --vanilla supervisor.R  (with RMP_RUN_DIR set).

rmp_runtime_dir <- function() {
  file_arg <- grep("^--file=", commandArgs(trailingOnly = FALSE), value = TRUE)
  dirname(normalizePath(sub("^--file=", "", file_arg[[1]])))
}

rmp_source_runtime <- function(runtime_dir) {
  files <- c("config.R", "errors.R", "validate.R", "model.R", "metrics.R", "spec.R", "api.R",
             "nginx.R", "worker.R")
  for (file in files) sys.source(file.path(runtime_dir, file), envir = globalenv())
}

rmp_log <- function(...) cat("rmodelpack: ", ..., "\n", sep = "", file = stderr())

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
  model <- readRDS(cfg$model$path)
  scorer <- rmp_make_scorer(model, cfg$scoring, cfg$runtime$threads)
  ctx <- list(cfg = cfg, run_dir = run_dir, sha256 = sha256,
              predictor = rmp_make_predictor(scorer, cfg$output$kind))
  ctx$scoring_handlers <- rmp_scoring_handlers(ctx)
  ctx$router <- rmp_router(ctx)
  ctx$load_seconds <- rmp_now() - started
  ctx
}

rmp_spawn_worker <- function(ctx, worker_id, supervisor_pid) {
  force(supervisor_pid)
  job <- parallel::mcparallel(rmp_run_worker(ctx, worker_id, supervisor_pid), detached = TRUE)
  job$pid
}

rmp_workers_up <- function(run_dir, pids) {
  all(vapply(seq_along(pids), function(i) {
    path <- rmp_up_path(run_dir, i)
    file.exists(path) && identical(readLines(path, warn = FALSE)[1], as.character(pids[[i]]))
  }, TRUE))
}

# <run>/ready is what nginx's /readyz checks; the entrypoint writes <run>/draining on SIGTERM.
rmp_update_ready <- function(run_dir, pids) {
  ready <- file.path(run_dir, "ready")
  want <- rmp_workers_up(run_dir, pids) && !file.exists(file.path(run_dir, "draining"))
  if (want && !file.exists(ready)) rmp_write_file_atomic(ready, "ready\n")
  if (!want && file.exists(ready)) unlink(ready)
}

# The supervisor stays small: it never loads the model, its packages or plumber. A short-lived
# loader child does: it reads (and verifies) the model, forks the workers, so that they share the
# model's pages copy-on-write, and exits. Replacing a dead worker starts another loader. The
# workers outlive their loader; they watch the supervisor's pid instead of their parent.
rmp_load_and_fork <- function(cfg, run_dir, ids, supervisor_pid) {
  force(supervisor_pid)
  ctx <- rmp_load_context(cfg, run_dir)
  pids <- vapply(ids, function(i) rmp_spawn_worker(ctx, i, supervisor_pid), 0L)
  list(pids = pids, load_seconds = ctx$load_seconds)
}

rmp_spawn_workers <- function(cfg, run_dir, ids, pids) {
  for (i in ids) unlink(rmp_up_path(run_dir, i))
  # Evaluated here: a promise would be forced in the worker and give the worker's own pid.
  supervisor_pid <- Sys.getpid()
  job <- parallel::mcparallel(rmp_load_and_fork(cfg, run_dir, ids, supervisor_pid))
  result <- parallel::mccollect(job)[[1]]
  if (inherits(result, "try-error")) stop(attr(result, "condition"))
  if (is.null(result$pids)) stop("the model loader process died before it forked the workers")
  pids[ids] <- result$pids
  list(pids = pids, load_seconds = result$load_seconds)
}

rmp_supervise <- function(cfg, run_dir) {
  workers <- cfg$runtime$workers
  spawned <- rmp_spawn_workers(cfg, run_dir, seq_len(workers), integer(workers))
  pids <- spawned$pids
  sup_metrics <- list(restarts = 0, model_load_seconds = spawned$load_seconds, workers = workers)
  rmp_write_supervisor_metrics(run_dir, sup_metrics)
  rmp_log("model loaded in ", round(sup_metrics$model_load_seconds, 3), " s; ", workers,
          " worker(s) forked")
  repeat {
    dead <- which(!vapply(pids, rmp_alive, TRUE))
    if (length(dead) > 0) {
      rmp_log("worker(s) ", paste(dead, collapse = ", "), " (pid ",
              paste(pids[dead], collapse = ", "), ") died; starting replacements")
      unlink(file.path(run_dir, "ready"))
      sup_metrics$restarts <- sup_metrics$restarts + length(dead)
      rmp_write_supervisor_metrics(run_dir, sup_metrics)
      pids <- rmp_spawn_workers(cfg, run_dir, dead, pids)$pids
    }
    rmp_update_ready(run_dir, pids)
    Sys.sleep(0.1)
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
  rmp_write_file_atomic(file.path(run_dir, "supervisor.pid"), as.character(Sys.getpid()))
  dir.create(rmp_metrics_dir(run_dir), showWarnings = FALSE)
  rmp_write_shutdown_env(cfg, run_dir)
  rmp_write_nginx_conf(cfg, run_dir, runtime_dir)
  rmp_set_thread_env(cfg$runtime$threads)
  rmp_supervise(cfg, run_dir)
}

tryCatch(
  rmp_main(),
  rmp_config_error = function(e) {
    cat("rmodelpack: configuration error: ", conditionMessage(e), "\n", sep = "", file = stderr())
    quit(save = "no", status = 2)
  },
  error = function(e) {
    cat("rmodelpack: supervisor failed: ", conditionMessage(e), "\n", sep = "", file = stderr())
    quit(save = "no", status = 1)
  }
)
