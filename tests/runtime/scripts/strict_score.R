# Scoring script of the runtime tests: predicts like the default scorer, and fails on purpose
# when crim is 99 so the tests can check how an error in user code is answered.
score <- function(model, df) {
  if (any(df$crim == 99, na.rm = TRUE)) stop("crim 99 is the runtime tests' failure trigger")
  stats::predict(model, df)
}
