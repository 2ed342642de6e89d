# Scoring code that writes a temporary file for every request (which needs R's tempdir) and,
# on the first request with crim == 44, ends its worker with a segfault, as a crash in compiled
# model code would. R's segfault handler deletes the tempdir on its way out: the tempdir every
# worker shares. The flag file makes the crash happen once.
score <- function(model, df) {
  flag <- file.path(Sys.getenv("RMP_RUN_DIR"), "segfaulted")
  if (any(df$crim == 44, na.rm = TRUE) && !file.exists(flag)) {
    file.create(flag)
    tools::pskill(Sys.getpid(), 11L)
    Sys.sleep(5)
  }
  writeLines("scratch", tempfile())
  stats::predict(model, df)
}
