# Loading the model and its packages, and turning predict() output into the manifest's shape.

rmp_load_packages <- function(packages) {
  for (pkg in unlist(packages)) {
    suppressPackageStartupMessages(library(pkg, character.only = TRUE))
  }
}

rmp_sha256 <- function(path) {
  out <- suppressWarnings(system2("sha256sum", shQuote(path), stdout = TRUE, stderr = TRUE))
  if (!is.null(attr(out, "status")) || !length(out) || !grepl("^[0-9a-f]{64} ", out[[1]])) {
    rmp_config_error("cannot read the model file ", path, ": ", paste(out, collapse = " "),
                     " (it must be a file the server's user can read)")
  }
  substr(out[[1]], 1L, 64L)
}

rmp_check_sha256 <- function(actual, expected, path) {
  if (!is.null(expected) && nzchar(expected) && !identical(tolower(expected), actual)) {
    rmp_config_error("model file ", path, " has sha256 ", actual, " but the config expects ",
                     expected, ": serve the model the image was built with, or render and ",
                     "build again for this one")
  }
}

rmp_read_model <- function(path) {
  tryCatch(readRDS(path), error = function(e) {
    rmp_config_error("model file ", path, " is not a readable RDS file (", conditionMessage(e),
                     "): save the model with saveRDS()")
  })
}

# The default scorer calls predict(): without a method for the model's class (an RDS of a
# function, or the package that defines the class missing from r.packages) every request would
# be a 500 behind a ready pod, so the server does not start.
rmp_check_predict_method <- function(model) {
  if (isS4(model)) return(invisible())  # S4 methods are found another way
  found <- vapply(class(model), function(cls) {
    !is.null(utils::getS3method("predict", cls, optional = TRUE))
  }, TRUE)
  if (!any(found)) {
    rmp_config_error("the model (class ", paste(class(model), collapse = ", "), ") has no ",
                     "predict() method: list the package that defines it in r.packages, or ",
                     "score it with a scoring script")
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

# quit() in a worker would run R's exit clean-up, which deletes the temporary directory that
# every worker shares: from the script, it fails that one request instead.
rmp_refuse_quit <- function(...) {
  stop("the scoring script called quit(); return the predictions, or stop() with a message",
       call. = FALSE)
}

# An error while sourcing (a syntax error, a file it reads that is not in the image) names the
# script; R's warnings often hold the missing file's name.
rmp_source_script <- function(script, env) {
  warned <- character()
  tryCatch(
    withCallingHandlers(
      sys.source(script, envir = env),
      warning = function(w) warned <<- c(warned, conditionMessage(w))
    ),
    error = function(e) {
      rmp_config_error(
        "scoring.script ", basename(script), " failed to load: ", conditionMessage(e),
        if (length(warned)) paste0(" (", paste(warned, collapse = "; "), ")"),
        ". Only the script itself is copied into the image; keep what it needs inside it, ",
        "or in an R package listed in r.packages"
      )
    }
  )
}

rmp_script_scorer <- function(model, script, function_name) {
  env <- new.env(parent = globalenv())
  env$quit <- env$q <- rmp_refuse_quit
  rmp_source_script(script, env)
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
    rmp_check_predict_method(model)
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
  if (!is.matrix(result) || is.null(colnames(result)) || !rmp_numbers_or_na(result)) {
    rmp_abort(500L, "scoring_error", "the model did not return class probabilities (a matrix with class columns)")
  }
  storage.mode(result) <- "double"
  rmp_check_json_numbers(result)
  result
}

# The numbers of a value prediction. Anything else (texts; factors, whose codes as.numeric()
# would give) is the scoring function's error, not a null in a 200. NA stays: the model's own
# "no prediction", sent as null.
rmp_value_numbers <- function(result) {
  if (!rmp_numbers_or_na(result)) {
    rmp_abort(500L, "scoring_error", sprintf(
      "the scoring function returned %s values; output.kind value needs numbers",
      class(result)[[1]]
    ))
  }
  values <- as.numeric(result)
  rmp_check_json_numbers(values)
  values
}

rmp_numbers_or_na <- function(x) is.numeric(x) || (is.logical(x) && all(is.na(x)))

# JSON has no Inf or NaN: a prediction that is one would reach the client as null, silently.
rmp_check_json_numbers <- function(values) {
  bad <- which(is.infinite(values) | is.nan(values))
  if (length(bad) == 0L) return(invisible())
  rmp_abort(500L, "scoring_error", sprintf(
    "the scoring function returned %s (for %d value(s)), which JSON cannot hold",
    format(values[[bad[[1]]]]), length(bad)
  ))
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
    value = rmp_number_texts(rmp_value_numbers(result)),
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
