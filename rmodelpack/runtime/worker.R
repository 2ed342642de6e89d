# A forked worker: one SCGI socket (scgi.R) serving the app and router built before the fork.

rmp_up_path <- function(run_dir, worker_id) file.path(run_dir, sprintf("w%d.up", worker_id))

# The file's first line, or NA when it is gone or empty. A file can vanish between a check and
# the read: a process's stat file as it exits reads empty (that race once stopped the supervisor
# with "subscript out of bounds" as a loader left). suppressWarnings, not a warning handler:
# leaving file() at its warning skips its cleanup and leaks a connection.
rmp_first_line <- function(path) {
  text <- tryCatch(suppressWarnings(readLines(path, n = 1L, warn = FALSE)),
                   error = function(e) character())
  if (length(text)) text[[1]] else NA_character_
}

rmp_alive <- function(pid) {
  stat <- rmp_first_line(file.path("/proc", pid, "stat"))
  !is.na(stat) && !(sub("^.*\\) ([A-Za-z]).*$", "\\1", stat) %in% c("Z", "X", ""))
}

# A full GC once the worker has been idle for a moment: predict() may leave big temporaries
# (randomForest's .C call copies the whole forest) that are otherwise kept until the next
# collection. With entrypoint.sh's fixed mmap threshold, freeing them unmaps them at once.
# full = FALSE is not enough: copies that survived a collection during predict() are old.
rmp_idle_gc_seconds <- 1

# The heartbeat: the mtime of the worker's up file, set when a request starts and every
# rmp_heartbeat_seconds while the worker is idle. It goes stale only while one request keeps
# the worker busy (or the worker is stopped); the supervisor kills a worker whose heartbeat is
# older than the request timeout (supervisor.R): nginx has answered that request's 504 already,
# and the requests queued behind it are retried on another worker when it dies.
rmp_heartbeat_seconds <- 0.25

rmp_beat <- function(state) Sys.setFileTime(state$heartbeat, Sys.time())

rmp_announce <- function(up) {
  rmp_replace_file(up, function(tmp) writeLines(as.character(Sys.getpid()), tmp, sep = ""))
}

rmp_new_idle_gc <- function(heartbeat) {
  state <- new.env(parent = emptyenv())
  state$last_request <- 0
  state$pending <- FALSE
  state$heartbeat <- heartbeat
  state
}

rmp_note_request <- function(state) {
  state$last_request <- rmp_now()
  rmp_beat(state)
  if (state$pending) return(invisible())
  state$pending <- TRUE
  rmp_timer(function() rmp_gc_when_idle(state), rmp_idle_gc_seconds)
}

rmp_gc_when_idle <- function(state) {
  idle <- rmp_now() - state$last_request
  # A negative idle time is a clock stepped back: collect now rather than wait for it to catch up.
  if (idle >= 0 && idle < rmp_idle_gc_seconds) {
    rmp_timer(function() rmp_gc_when_idle(state), rmp_idle_gc_seconds - idle)
    return(invisible())
  }
  state$pending <- FALSE
  gc(full = TRUE)
  invisible()
}

# How long the worker may wait for a request before its own work (heartbeat, timers) is due.
rmp_due_seconds <- function(timers) {
  # next_op_secs() is negative for an overdue timer.
  max(0, min(rmp_heartbeat_seconds, later::next_op_secs(loop = timers)))
}

rmp_run_worker <- function(ctx, worker_id, supervisor_pid) {
  # Made again if package code's quit() in another worker took the shared one with it.
  tempdir(check = TRUE)
  up <- rmp_up_path(ctx$run_dir, worker_id)
  rmp_state$timers <- later::create_loop(parent = NULL)
  rmp_state$metrics <- rmp_new_metrics(ctx$run_dir, worker_id)
  state <- rmp_new_idle_gc(up)
  app <- rmp_app(ctx, rmp_state$metrics, state)
  scgi <- rmp_scgi_listen(ctx$cfg$scgi$ports[[worker_id]], ctx$cfg$scgi$token,
                          ctx$cfg$runtime$max_body_bytes, ctx$cfg$runtime$timeout_seconds)
  # The supervisor counts the worker once this file names its pid. A write that fails (a full
  # disk) is tried again with each heartbeat instead of ending the worker: a replacement would
  # read the model again only to fail the same way.
  announced <- is.null(rmp_announce(up))
  # Serve until the supervisor is gone. Each turn waits on the SCGI sockets (at most until the
  # heartbeat or a timer of the worker's own is due), answers what arrived, then runs the
  # timers; the heartbeat keeps ticking and the /proc check runs at most once a second.
  beaten <- checked <- rmp_now()
  repeat {
    rmp_scgi_round(scgi, rmp_due_seconds(rmp_state$timers), app$call, rmp_state$batcher)
    rmp_batch_flush_idle(rmp_state$batcher)
    later::run_now(0, loop = rmp_state$timers)
    now <- rmp_now()
    # abs(): after the clock is stepped back, the heartbeat must keep ticking all the same.
    if (abs(now - beaten) >= rmp_heartbeat_seconds) {
      if (!announced) announced <- is.null(rmp_announce(up))
      rmp_beat(state)
      beaten <- now
    }
    if (abs(now - checked) >= 1) {
      if (!rmp_alive(supervisor_pid)) break
      # An up file someone deleted (a tmp cleaner) would keep /readyz at 503 and stop the
      # heartbeat the supervisor watches.
      if (announced && !file.exists(up)) announced <- is.null(rmp_announce(up))
      rmp_scgi_reap(scgi)
      checked <- now
    }
  }
  # Returning lets parallel end the fork without R's exit cleanup (which would delete the
  # supervisor's tempdir).
  invisible(NULL)
}
