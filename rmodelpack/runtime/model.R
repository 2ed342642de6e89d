# Loading the model and its packages, and turning predict() output into the manifest's shape.

rmp_load_packages <- function(packages) {
  for (pkg in unlist(packages)) {
    suppressPackageStartupMessages(library(pkg, character.only = TRUE))
  }
}

rmp_sha256 <- function(path) {
  out <- system2("sha256sum", shQuote(path), stdout = TRUE)
  strsplit(out[[1]], " ", fixed = TRUE)[[1]][[1]]
}

rmp_check_sha256 <- function(actual, expected, path) {
  if (!is.null(expected) && nzchar(expected) && !identical(tolower(expected), actual)) {
    rmp_config_error("model file ", path, " has sha256 ", actual, " but the config expects ",
                     expected)
  }
}

rmp_default_scorer <- function(model, predict_args) {
  call_args <- c(list(quote(model), quote(df)), predict_args)
  function(df) do.call(stats::predict, call_args)
}

rmp_script_scorer <- function(model, script, function_name) {
  env <- new.env(parent = globalenv())
  sys.source(script, envir = env)
  if (!exists(function_name, envir = env, inherits = FALSE)) {
    rmp_config_error("scoring script ", script, " defines no function '", function_name, "'")
  }
  score <- get(function_name, envir = env)
  function(df) score(model, df)
}

rmp_make_scorer <- function(model, scoring) {
  if (is.null(scoring$script)) {
    return(rmp_default_scorer(model, scoring$predict_args))
  }
  rmp_script_scorer(model, scoring$script, scoring[["function"]])
}

rmp_unwrap_prediction <- function(result) {
  if (inherits(result, "ranger.prediction") || (is.list(result) && !is.data.frame(result) &&
                                                !is.null(result$predictions))) {
    result <- result$predictions
  }
  if (is.data.frame(result)) result <- as.matrix(result)
  if (is.matrix(result) && ncol(result) == 1 && is.null(colnames(result))) result <- result[, 1]
  result
}

rmp_prob_matrix <- function(result) {
  if (!is.matrix(result) || is.null(colnames(result))) {
    rmp_abort(500L, "scoring_error", "the model did not return class probabilities (a matrix with class columns)")
  }
  storage.mode(result) <- "double"
  result
}

rmp_classes <- function(result) {
  if (is.matrix(result)) {
    probs <- rmp_prob_matrix(result)
    return(colnames(probs)[max.col(probs, ties.method = "first")])
  }
  as.character(result)
}

rmp_prob_records <- function(probs) {
  classes <- colnames(probs)
  lapply(seq_len(nrow(probs)), function(i) as.list(stats::setNames(probs[i, ], classes)))
}

# A JSON array of numbers that read back as exactly the same doubles: 15 significant digits
# when that round-trips, 17 otherwise. Much cheaper than jsonlite::toJSON for this one shape.
rmp_numbers_json <- function(values) {
  finite <- is.finite(values)
  text <- rep("null", length(values))
  text[finite] <- sprintf("%.15g", values[finite])
  inexact <- which(finite)[as.numeric(text[finite]) != values[finite]]
  text[inexact] <- sprintf("%.17g", values[inexact])
  paste0("[", paste(text, collapse = ","), "]")
}

# Returns a list(n = rows, json = JSON array text) in the shape of output.kind.
rmp_shape_predictions <- function(result, kind) {
  result <- rmp_unwrap_prediction(result)
  switch(kind,
    value = {
      values <- as.numeric(result)
      list(n = length(values), json = rmp_numbers_json(values))
    },
    class = {
      classes <- rmp_classes(result)
      list(n = length(classes), json = jsonlite::toJSON(classes, na = "null"))
    },
    probabilities = {
      probs <- rmp_prob_matrix(result)
      list(n = nrow(probs), json = jsonlite::toJSON(rmp_prob_records(probs), auto_unbox = TRUE,
                                                    digits = NA))
    },
    class_probabilities = {
      probs <- rmp_prob_matrix(result)
      records <- Map(function(cls, p) list(class = cls, probabilities = p),
                     rmp_classes(probs), rmp_prob_records(probs))
      list(n = nrow(probs), json = jsonlite::toJSON(unname(records), auto_unbox = TRUE,
                                                    digits = NA))
    }
  )
}

rmp_make_predictor <- function(scorer, kind) {
  function(df) {
    shaped <- rmp_shape_predictions(scorer(df), kind)
    if (shaped$n != nrow(df)) {
      rmp_abort(500L, "scoring_error", sprintf(
        "the scoring function returned %d predictions for %d rows", shaped$n, nrow(df)
      ))
    }
    shaped$json
  }
}
