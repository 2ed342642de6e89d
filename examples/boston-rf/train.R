# Trains the Azure reference model: a random forest on MASS::Boston, deterministically.
# Run from this folder (ci/setup.sh does): Rscript --vanilla train.R [ntree] [output]
# The defaults (ntree = 100, model.rds) are the reference model; benchmarks/bench_memory.py
# passes a larger ntree and another output path to get a model of >= 30 MB in memory.
suppressPackageStartupMessages(library(randomForest))

args <- commandArgs(trailingOnly = TRUE)
ntree <- if (length(args) >= 1) as.integer(args[[1]]) else 100L
output <- if (length(args) >= 2) args[[2]] else "model.rds"

set.seed(20240101)
model <- randomForest(medv ~ ., data = MASS::Boston, ntree = ntree)
saveRDS(model, output)
cat(sprintf("trained randomForest(medv ~ ., MASS::Boston, ntree = %d) -> %s\n", ntree, output))
