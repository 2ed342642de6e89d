# The runtime config: app/rmodelpack.json plus the RMP_* environment overrides.
# The runtime has no defaults of its own: a missing key stops the server with a clear message.

rmp_config_error <- function(...) {
  stop(structure(
    class = c("rmp_config_error", "error", "condition"),
    list(message = paste0(...), call = NULL)
  ))
}

rmp_require <- function(x, path) {
  keys <- strsplit(path, ".", fixed = TRUE)[[1]]
  for (key in keys) {
    if (!is.list(x) || !(key %in% names(x))) {
      rmp_config_error("config key '", path, "' is missing")
    }
    x <- x[[key]]
  }
  x
}

rmp_required_keys <- c(
  "name", "version", "description", "model.path", "model.sha256", "scoring.script",
  "scoring.function", "scoring.predict_args", "input.columns", "input.max_rows",
  "input.extra_columns", "output.kind", "runtime.workers", "runtime.threads",
  "runtime.max_body_bytes", "runtime.timeout_seconds", "runtime.drain_seconds",
  "runtime.port", "packages", "rmodelpack_version"
)

rmp_env_overrides <- list(
  RMP_MODEL_PATH = "model.path", RMP_SCRIPT_PATH = "scoring.script",
  RMP_WORKERS = "runtime.workers", RMP_THREADS = "runtime.threads", RMP_PORT = "runtime.port",
  RMP_TIMEOUT_SECONDS = "runtime.timeout_seconds", RMP_DRAIN_SECONDS = "runtime.drain_seconds",
  RMP_MAX_BODY_BYTES = "runtime.max_body_bytes", RMP_BATCHING = "runtime.batching.enabled",
  RMP_BATCH_MAX_ROWS = "runtime.batching.max_rows"
)

rmp_set_path <- function(x, path, value) {
  keys <- strsplit(path, ".", fixed = TRUE)[[1]]
  if (length(keys) == 1) {
    x[[keys]] <- value
  } else if (is.null(x[[keys[[1]]]])) {
    x[[keys[[1]]]] <- rmp_set_path(list(), paste(keys[-1], collapse = "."), value)
  } else {
    x[[keys[[1]]]] <- rmp_set_path(x[[keys[[1]]]], paste(keys[-1], collapse = "."), value)
  }
  x
}

rmp_apply_env <- function(cfg) {
  for (var in names(rmp_env_overrides)) {
    value <- Sys.getenv(var, "")
    if (nzchar(value)) cfg <- rmp_set_path(cfg, rmp_env_overrides[[var]], value)
  }
  cfg
}

rmp_int <- function(value, path, min = 1L) {
  number <- suppressWarnings(as.numeric(value))
  if (length(number) != 1 || is.na(number) || number < min || number != round(number)) {
    rmp_config_error("config key '", path, "' must be an integer >= ", min, ", got '",
                     paste(format(value), collapse = ","), "'")
  }
  as.integer(number)
}

rmp_resolve_workers <- function(value) {
  if (identical(as.character(value), "auto")) {
    return(max(1L, parallel::detectCores(logical = TRUE)))
  }
  rmp_int(value, "runtime.workers")
}

# Until every renderer emits runtime.batching, a json without it gets these (COMMON defaults).
rmp_batching_defaults <- list(enabled = TRUE, max_rows = 256L)

rmp_bool <- function(value, path) {
  if (is.logical(value) && length(value) == 1 && !is.na(value)) return(value)
  text <- tolower(paste(format(value), collapse = ","))
  if (text %in% c("true", "false")) return(text == "true")
  rmp_config_error("config key '", path, "' must be true or false, got '", text, "'")
}

rmp_normalise_batching <- function(batching) {
  batching <- utils::modifyList(rmp_batching_defaults, batching %||% list())
  list(enabled = rmp_bool(batching$enabled, "runtime.batching.enabled"),
       max_rows = rmp_int(batching$max_rows, "runtime.batching.max_rows"))
}

# Batching scores concurrent requests in one call on their concatenated rows: right for
# predict(), which scores each row on its own; a scoring script may compute across rows, so it
# is batched only when the manifest declares it row-wise (scoring.rowwise).
rmp_batching_on <- function(cfg) {
  cfg$runtime$batching$enabled &&
    (is.null(cfg$scoring$script) || isTRUE(cfg$scoring$rowwise))
}

rmp_normalise_runtime <- function(cfg) {
  rt <- cfg$runtime
  rt$workers <- rmp_resolve_workers(rt$workers)
  for (key in c("threads", "max_body_bytes", "timeout_seconds", "port")) {
    rt[[key]] <- rmp_int(rt[[key]], paste0("runtime.", key))
  }
  rt$drain_seconds <- rmp_int(rt$drain_seconds, "runtime.drain_seconds", min = 0L)
  rt$batching <- rmp_normalise_batching(rt$batching)
  cfg$runtime <- rt
  cfg$input$max_rows <- rmp_int(cfg$input$max_rows, "input.max_rows")
  if (!cfg$input$extra_columns %in% c("ignore", "reject")) {
    rmp_config_error("config key 'input.extra_columns' must be 'ignore' or 'reject'")
  }
  kinds <- c("value", "class", "probabilities", "class_probabilities")
  if (!cfg$output$kind %in% kinds) {
    rmp_config_error("config key 'output.kind' must be one of ", paste(kinds, collapse = ", "))
  }
  cfg
}

rmp_load_config <- function(path = Sys.getenv("RMP_CONFIG", "/opt/rmodelpack/app/rmodelpack.json")) {
  if (!file.exists(path)) rmp_config_error("config file not found: ", path)
  cfg <- tryCatch(
    jsonlite::fromJSON(path, simplifyVector = FALSE),
    error = function(e) rmp_config_error("config file ", path, " is not valid JSON: ", conditionMessage(e))
  )
  for (key in rmp_required_keys) rmp_require(cfg, key)
  cfg <- rmp_normalise_runtime(rmp_apply_env(cfg))
  if (!file.exists(cfg$model$path)) rmp_config_error("model file not found: ", cfg$model$path)
  script <- cfg$scoring$script
  if (!is.null(script) && !file.exists(script)) rmp_config_error("scoring script not found: ", script)
  cfg
}
