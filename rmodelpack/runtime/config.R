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

# A setting as its error names it: with the variable that overrides it, if one does.
rmp_setting_name <- function(path) {
  var <- names(rmp_env_overrides)[vapply(rmp_env_overrides, identical, TRUE, path)]
  if (length(var)) paste0("'", path, "' (", var[[1]], ")") else paste0("'", path, "'")
}

# bounds: the setting's range from the config's "bounds" (settings.py); an older config without
# it gets a lower bound of 1 and R's integer range.
rmp_int <- function(value, path, bounds = NULL) {
  low <- bounds$min %||% 1L
  high <- bounds$max %||% .Machine$integer.max
  number <- suppressWarnings(as.numeric(value))
  if (length(number) != 1 || is.na(number) || number != round(number) ||
      number < low || number > high) {
    rmp_config_error("config key ", rmp_setting_name(path), " must be a whole number from ",
                     format(low, scientific = FALSE), " to ", format(high, scientific = FALSE),
                     ", got '", paste(format(value), collapse = ","), "'")
  }
  as.integer(number)
}

rmp_resolve_workers <- function(value, bounds) {
  if (identical(as.character(value), "auto")) {
    return(max(1L, min(rmp_available_cores(), bounds$max %||% 64L)))
  }
  rmp_int(value, "runtime.workers", bounds)
}

# The cores this process may use: the cgroup's CPU quota when one is set (docker --cpus, a
# Kubernetes CPU limit), else the machine's. Natively and in docker, "auto" means this.
rmp_available_cores <- function() {
  cores <- parallel::detectCores(logical = TRUE)
  quota <- rmp_cgroup_cpu_quota()
  if (is.na(quota)) cores else min(cores, max(1L, ceiling(quota)))
}

# cgroup v2's cpu.max ("max 100000" or "50000 100000"), or v1's cfs quota and period; NA when
# unlimited or unreadable.
rmp_cgroup_cpu_quota <- function() {
  read_numbers <- function(path) {
    text <- tryCatch(readLines(path, n = 1L, warn = FALSE), error = function(e) character())
    if (!length(text)) return(numeric())
    suppressWarnings(as.numeric(strsplit(trimws(text[[1]]), "[[:space:]]+")[[1]]))
  }
  v2 <- read_numbers("/sys/fs/cgroup/cpu.max")
  if (length(v2) == 2L) return(if (is.na(v2[[1]]) || v2[[2]] <= 0) NA_real_ else v2[[1]] / v2[[2]])
  quota <- read_numbers("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
  period <- read_numbers("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
  if (length(quota) != 1L || length(period) != 1L || is.na(quota) || quota <= 0 ||
      is.na(period) || period <= 0) return(NA_real_)
  quota / period
}

# Until every renderer emits runtime.batching, a json without it gets these (COMMON defaults).
rmp_batching_defaults <- list(enabled = TRUE, max_rows = 256L)

rmp_bool <- function(value, path) {
  if (is.logical(value) && length(value) == 1 && !is.na(value)) return(value)
  text <- tolower(paste(format(value), collapse = ","))
  if (text %in% c("true", "false")) return(text == "true")
  rmp_config_error("config key ", rmp_setting_name(path), " must be true or false, got '",
                   text, "'")
}

rmp_normalise_batching <- function(batching, bounds) {
  batching <- utils::modifyList(rmp_batching_defaults, batching %||% list())
  list(enabled = rmp_bool(batching$enabled, "runtime.batching.enabled"),
       max_rows = rmp_int(batching$max_rows, "runtime.batching.max_rows",
                          bounds[["runtime.batching.max_rows"]]))
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
  bounds <- cfg$bounds %||% list(runtime.drain_seconds = list(min = 0L))
  rt$workers <- rmp_resolve_workers(rt$workers, bounds[["runtime.workers"]])
  for (key in c("threads", "max_body_bytes", "timeout_seconds", "drain_seconds", "port")) {
    path <- paste0("runtime.", key)
    rt[[key]] <- rmp_int(rt[[key]], path, bounds[[path]])
  }
  rt$batching <- rmp_normalise_batching(rt$batching, bounds)
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
