# The reference architecture's server (Azure/RealtimeRDeployment style): one plain Plumber
# process, POST /score with {"df": [...]}, no validation, no health checks.
# Run: Rscript -e 'plumber::pr_run(plumber::plumb("plumber.R"), host = "127.0.0.1", port = 8000)'
# with RMP_BASELINE_MODEL naming the model.rds.
library(randomForest)

model <- readRDS(Sys.getenv("RMP_BASELINE_MODEL"))

#* @post /score
function(df) {
  predict(model, df)
}
