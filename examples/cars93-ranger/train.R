# Trains the cars93-ranger example: a ranger probability forest that predicts a car's Type
# (Compact, Large, Midsize, Small, Sporty, Van) from MASS::Cars93, which ships with R.
# Deterministic: ranger's own seed and one thread. Run in this folder: Rscript --vanilla train.R
suppressPackageStartupMessages(library(ranger))

cars <- MASS::Cars93
training <- data.frame(
  type = cars$Type,
  price = cars$Price,
  mpg_city = as.numeric(cars$MPG.city),
  horsepower = as.numeric(cars$Horsepower),
  engine_size = cars$EngineSize,
  weight = as.numeric(cars$Weight),
  drive_train = cars$DriveTrain,
  origin = cars$Origin
)

model <- ranger(
  type ~ .,
  data = training,
  num.trees = 300,
  probability = TRUE,
  seed = 20240601,
  num.threads = 1
)
saveRDS(model, "model.rds")
cat(sprintf("cars93-ranger: %d trees, OOB Brier score %.4f\n", model$num.trees, model$prediction.error))
