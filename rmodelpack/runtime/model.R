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

# Models that take a per-call thread count get runtime.threads unless predict_args sets one:
# ranger otherwise uses every core, and N workers would each start one thread per core.
rmp_thread_args <- function(model, predict_args, threads) {
  if (inherits(model, "ranger") && is.null(predict_args$num.threads)) {
    predict_args$num.threads <- as.integer(threads)
  }
  predict_args
}

rmp_default_scorer <- function(model, predict_args, threads = 1L) {
  call_args <- c(list(quote(model), quote(df)), rmp_thread_args(model, predict_args, threads))
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

rmp_make_scorer <- function(model, scoring, threads = 1L) {
  # Scoring scripts read the same budget: getOption("rmodelpack.threads").
  options(rmodelpack.threads = as.integer(threads))
  if (is.null(scoring$script)) {
    return(rmp_default_scorer(model, scoring$predict_args, threads))
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

# JSON texts of numbers that read back as exactly the same doubles: 15 significant digits when
# that round-trips, 17 otherwise. The round trip is checked with jsonlite's parser (C strtod,
# correctly rounded, like the clients' parsers), not as.numeric(): R's own parser is off by one
# ulp for about 1 in 20,000 such texts. Vectorised: jsonlite::toJSON on per-row lists took
# ~0.4 ms a row, which made a 1000-row probability response cost 400 ms.
rmp_number_texts <- function(values) {
  text <- rep("null", length(values))
  finite <- which(is.finite(values))
  if (length(finite) == 0) return(text)
  short <- sprintf("%.15g", values[finite])
  back <- jsonlite::parse_json(paste0("[", paste(short, collapse = ","), "]"),
                               simplifyVector = TRUE)
  inexact <- back != values[finite]
  short[inexact] <- sprintf("%.17g", values[finite][inexact])
  text[finite] <- short
  text
}

rmp_string_texts <- function(values) {
  values <- as.character(values)
  quoted <- rep("null", length(values))
  present <- !is.na(values)
  levels <- unique(values[present])
  escaped <- vapply(levels, function(v) as.character(jsonlite::toJSON(v, auto_unbox = TRUE)), "")
  quoted[present] <- escaped[match(values[present], levels)]
  quoted
}

rmp_json_array <- function(texts) paste0("[", paste(texts, collapse = ","), "]")

# One {"class": p, ...} object text per row.
rmp_prob_object_texts <- function(probs) {
  keys <- rmp_string_texts(colnames(probs))
  pairs <- lapply(seq_len(ncol(probs)), function(j) {
    paste0(keys[[j]], ":", rmp_number_texts(probs[, j]))
  })
  paste0("{", do.call(paste, c(pairs, sep = ",")), "}")
}

# One JSON text per row, in the shape of output.kind: a batch's answers are cut from these.
rmp_prediction_texts <- function(result, kind) {
  result <- rmp_unwrap_prediction(result)
  switch(kind,
    value = rmp_number_texts(as.numeric(result)),
    class = rmp_string_texts(rmp_classes(result)),
    probabilities = rmp_prob_object_texts(rmp_prob_matrix(result)),
    class_probabilities = {
      probs <- rmp_prob_matrix(result)
      paste0('{"class":', rmp_string_texts(rmp_classes(probs)),
             ',"probabilities":', rmp_prob_object_texts(probs), "}")
    }
  )
}

# texts(df, kind) gives one JSON text per row, in output.kind's shape or another one (?type=);
# predictor(df, kind) the JSON array of them. The scorer rides along for the inference
# protocols (protocols.R), which shape tensors.
rmp_make_predictor <- function(scorer, kind) {
  default_kind <- kind
  texts <- function(df, kind = default_kind) {
    out <- rmp_prediction_texts(scorer(df), kind)
    if (length(out) != nrow(df)) {
      rmp_abort(500L, "scoring_error", sprintf(
        "the scoring function returned %d predictions for %d rows", length(out), nrow(df)
      ))
    }
    out
  }
  predictor <- function(df, kind = default_kind) rmp_json_array(texts(df, kind))
  structure(predictor, scorer = scorer, texts = texts)
}
