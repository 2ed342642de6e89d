# Takes 2 s to source (a stand-in for a slow model load), then predicts like the default scorer.
Sys.sleep(2)
score <- function(model, df) stats::predict(model, df)
