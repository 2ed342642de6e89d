# A scoring call that never returns on one input (crim == 77), like a model stuck in a loop;
# predicts like the default scorer otherwise.
score <- function(model, df) {
  if (any(df$crim == 77, na.rm = TRUE)) repeat Sys.sleep(3600)
  stats::predict(model, df)
}
