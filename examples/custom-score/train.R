# Trains the custom-score example: an elastic net (glmnet) for mtcars' mpg. glmnet needs a
# numeric model matrix, so the pre-processing lives in score.R and is shared with serving.
# Deterministic: fixed seed and fixed cross-validation folds. Run: Rscript --vanilla train.R
source("score.R")
set.seed(20240601)

levels <- list(cyl = c("4", "6", "8"))
x <- design_matrix(mtcars, levels)
folds <- rep_len(1:5, nrow(x))
cv <- cv.glmnet(x, mtcars$mpg, alpha = 0.5, foldid = folds)

model <- list(fit = cv$glmnet.fit, lambda = cv$lambda.min, levels = levels)
saveRDS(model, "model.rds")
cat(sprintf("custom-score: glmnet, lambda.min %.5f, CV MSE %.3f\n", cv$lambda.min, min(cv$cvm)))
