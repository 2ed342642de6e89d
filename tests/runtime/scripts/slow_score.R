# Each call takes 1 s, so requests are still in flight when the tests send SIGTERM.
score <- function(model, df) {
  Sys.sleep(1)
  stats::predict(model, df)
}
