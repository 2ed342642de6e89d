# Scoring script of the custom-score example: rmodelpack sources this file once and calls
# score(model, df) for every request. df holds the validated input columns of rmodel.yaml
# (cyl already a factor with levels 4, 6, 8). train.R sources this file too, so training and
# serving build the model matrix with the very same code.
suppressPackageStartupMessages(library(glmnet))

design_matrix <- function(df, levels) {
  features <- data.frame(
    wt = as.numeric(df$wt),
    log_hp = log(as.numeric(df$hp)),
    qsec = as.numeric(df$qsec),
    cyl = factor(as.character(df$cyl), levels = levels$cyl),
    manual = as.numeric(df$am)
  )
  # The fixed cyl levels give one row the same columns as a thousand (cyl6, cyl8).
  matrix <- model.matrix(~ wt + log_hp + qsec + cyl + manual, data = features)
  matrix[, -1, drop = FALSE]
}

score <- function(model, df) {
  x <- design_matrix(df, model$levels)
  as.numeric(predict(model$fit, newx = x, s = model$lambda))
}
