# Fits the caret-recipes example: a caret `train` object (logistic regression, 5-fold CV) whose
# pre-processing is a recipes recipe, predicting low birth weight from MASS::birthwt, which ships
# with R. Needs caret and recipes: train.sh runs it inside the trixie image, where both are
# Debian packages (r-cran-caret, r-cran-recipes). Deterministic: fixed seed, glm has no tuning.
suppressPackageStartupMessages({
  library(caret)
  library(recipes)
})

births <- MASS::birthwt
training <- data.frame(
  low = factor(births$low, levels = c(0, 1), labels = c("normal", "low")),
  age = births$age,
  lwt = as.numeric(births$lwt),
  race = factor(births$race, levels = 1:3, labels = c("white", "black", "other")),
  smoke = births$smoke,
  ptl = births$ptl,
  ht = births$ht,
  ui = births$ui,
  ftv = births$ftv
)

# Dummy variables for race, then centre and scale every numeric predictor: the recipe is
# trained with the model and re-applied by predict().
recipe <- recipe(low ~ ., data = training) |>
  step_dummy(race) |>
  step_normalize(all_numeric_predictors())

set.seed(20240701)
model <- train(
  recipe,
  data = training,
  method = "glm",
  family = binomial(),
  metric = "ROC",
  trControl = trainControl(method = "cv", number = 5, classProbs = TRUE,
                           summaryFunction = twoClassSummary)
)
saveRDS(model, "model.rds")
cat(sprintf("caret-recipes: glm via caret %s, recipes %s, R %s; CV ROC %.4f\n",
            packageVersion("caret"), packageVersion("recipes"), getRversion(),
            model$results$ROC))
