# Sourcing waits while the file RMP_TEST_SLOW_LOAD names exists (a stand-in for a model that
# takes long to load, switched on and off by the test), then predicts like the default scorer.
flag <- Sys.getenv("RMP_TEST_SLOW_LOAD")
while (nzchar(flag) && file.exists(flag)) Sys.sleep(0.1)
score <- function(model, df) stats::predict(model, df)
