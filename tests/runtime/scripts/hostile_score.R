# Scoring code that misbehaves on one input each (crim picks it), predicting like the default
# scorer otherwise, after writing a temporary file (which needs R's tempdir):
# crim == 66: quit(), which used to delete the tempdir every worker shares;
# crim == 55: options(OutDec = ","), which used to reach /metrics' number format.
score <- function(model, df) {
  if (any(df$crim == 66, na.rm = TRUE)) quit(save = "no")
  if (any(df$crim == 55, na.rm = TRUE)) options(OutDec = ",")
  writeLines("scratch", tempfile())
  stats::predict(model, df)
}
