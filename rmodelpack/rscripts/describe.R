# Describe a saved model (and optionally a sample data frame) as JSON for `rmodelpack init`.
# Usage: Rscript describe.R MODEL.rds [SAMPLE.csv|SAMPLE.rds]
args <- commandArgs(trailingOnly = TRUE)
model <- readRDS(args[[1]])
sample_path <- if (length(args) > 1) args[[2]] else NA_character_

model_levels <- function(model) {
  if (!is.null(model$xlevels)) return(model$xlevels)
  model$forest$xlevels
}

# R's own record of how the model saw a column ("numeric" for integers too), if it kept one.
model_class <- function(name) {
  tm <- tryCatch(terms(model), error = function(e) NULL)
  classes <- if (is.null(tm)) NULL else attr(tm, "dataClasses")
  if (is.null(classes) || is.na(classes[name])) NA_character_ else unname(classes[name])
}

# guessed: the column's type is read.csv's guess from its text (whole numbers become integer).
column_from_vector <- function(name, x, guessed = FALSE) {
  trained <- model_levels(model)[[name]]
  if (is.character(x) && length(trained) > 0) x <- factor(x, levels = trained)
  if (is.factor(x)) {
    levels <- if (length(trained) > 0) trained else levels(x)
    return(list(name = name, type = "factor", levels = I(levels)))
  }
  if (is.logical(x)) return(list(name = name, type = "boolean"))
  if (is.integer(x) && !guessed && !identical(model_class(name), "numeric"))
    return(list(name = name, type = "integer"))
  if (is.numeric(x)) return(list(name = name, type = "number"))
  list(name = name, type = "string")
}

columns_from_frame <- function(df, predictors = NULL, drop = character(), guessed = FALSE) {
  keep <- setdiff(if (is.null(predictors)) names(df) else intersect(predictors, names(df)), drop)
  unname(lapply(keep, function(n) column_from_vector(n, df[[n]], guessed)))
}

predictor_names <- function(model) {
  tm <- tryCatch(terms(model), error = function(e) NULL)
  if (!is.null(tm)) return(all.vars(delete.response(tm)))
  model$forest$independent.variable.names
}

response_name <- function(model) {
  tm <- tryCatch(terms(model), error = function(e) NULL)
  if (is.null(tm) || attr(tm, "response") == 0) return(character())
  all.vars(tm)[[1]]
}

columns_from_terms <- function(model) {
  tm <- tryCatch(terms(model), error = function(e) NULL)
  classes <- if (is.null(tm)) NULL else attr(tm, "dataClasses")
  if (is.null(classes)) return(NULL)
  classes <- classes[setdiff(names(classes), response_name(model))]
  xlevels <- model$xlevels
  if (is.null(xlevels) && !is.null(model$forest$xlevels)) xlevels <- model$forest$xlevels
  unname(Map(function(name, cls) {
    levels <- xlevels[[name]]
    if (cls %in% c("factor", "ordered") && length(levels) > 0)
      return(list(name = name, type = "factor", levels = I(levels)))
    switch(cls, numeric = list(name = name, type = "number"),
           logical = list(name = name, type = "boolean"),
           list(name = name, type = "string"))
  }, names(classes), classes))
}

# A recipe (caret's train on a recipe keeps it in $recipe): its predictors, typed and levelled as
# its training data (ptype); the outcome is not an input.
columns_from_recipe <- function(model) {
  recipe <- if (inherits(model, "recipe")) model else model$recipe
  if (!inherits(recipe, "recipe") || is.null(recipe$ptype)) return(NULL)
  info <- recipe$var_info
  prototype <- recipe$ptype
  class(prototype) <- "data.frame"  # a tibble; tibble need not be installed here
  columns_from_frame(prototype, info$variable[info$role %in% "predictor"])
}

columns_from_ranger <- function(model) {
  vars <- model$forest$independent.variable.names
  if (is.null(vars)) return(NULL)
  lapply(vars, function(n) list(name = n, type = "number"))
}

output_kind <- function(model) {
  if (inherits(model, "randomForest"))
    return(if (identical(model$type, "classification")) "class" else "value")
  if (inherits(model, "ranger"))
    return(switch(model$treetype, Classification = "class",
                  "Probability estimation" = "class_probabilities", "value"))
  # caret's predict() on a classifier gives classes; predict(type = "prob") the probabilities.
  if (inherits(model, "train"))
    return(if (identical(model$modelType, "Classification")) "class" else "value")
  "value"
}

columns <- if (!is.na(sample_path)) {
  from_rds <- grepl("\\.rds$", sample_path, ignore.case = TRUE)
  df <- if (from_rds) readRDS(sample_path) else
    utils::read.csv(sample_path, stringsAsFactors = TRUE)
  columns_from_frame(df, predictor_names(model), drop = response_name(model), guessed = !from_rds)
} else {
  cols <- columns_from_terms(model)
  if (is.null(cols)) cols <- columns_from_recipe(model)
  if (is.null(cols)) cols <- columns_from_ranger(model)
  cols
}

# A model's class is usually named after the package that defines it (randomForest, ranger, glmnet).
packages <- Filter(function(p) !p %in% c("lm", "glm", "stats", "base") &&
                     suppressWarnings(requireNamespace(p, quietly = TRUE)), class(model))
# caret's train (maybe without caret here: the model may come from a newer R), and its recipe.
if (inherits(model, "train")) {
  packages <- unique(c(packages, "caret", if (inherits(model$recipe, "recipe")) "recipes"))
}

cat(jsonlite::toJSON(list(
  class = I(class(model)),
  columns = if (is.null(columns)) list() else columns,
  output = output_kind(model),
  packages = I(packages)
), auto_unbox = TRUE, null = "null"))
