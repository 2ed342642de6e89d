# Scoring script of the batching tests, declared row-wise (scoring.rowwise: true): predicts like
# the default scorer; a call holding a row with crim 55 first sleeps 1.5 s (it keeps the worker
# busy while the tests queue requests behind it), and a call holding a row with crim 99 fails.
score <- function(model, df) {
  if (any(df$crim == 55, na.rm = TRUE)) Sys.sleep(1.5)
  if (any(df$crim == 99, na.rm = TRUE)) stop("crim 99 is the batching tests' failure trigger")
  stats::predict(model, df)
}
