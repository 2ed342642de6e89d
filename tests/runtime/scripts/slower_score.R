# Each call takes 1.5 s: with timeout_seconds = 2 and one worker, the second of two concurrent
# requests is answered by nginx's 504 at 2 s while the worker still finishes it at 3 s.
score <- function(model, df) {
  Sys.sleep(1.5)
  stats::predict(model, df)
}
