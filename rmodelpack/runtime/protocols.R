# The standard inference protocols beside rmodelpack's own endpoints, for the one model this
# server holds: the Open Inference Protocol (REST, "v2": KServe, MLServer, Triton) and KServe v1.
# Spec: kserve/open-inference-protocol, specification/protocol/inference_rest.md.
# A request body becomes the same rows /predict takes and goes through the same validator and
# scorer; errors are the spec's {"error": "<message>"} with rmodelpack's code, request id and
# field-level details beside it. Also here: the output type chosen per request (?type=).

rmp_protocol_server_name <- "rmodelpack"

# Registered in api.R's route table (rmp_routes), which plumber and the nginx front share.
rmp_protocol_routes <- function() {
  model <- "/v2/models/<name>"
  versioned <- "/v2/models/<name>/versions/<version>"
  list(
    rmp_route("GET", "/v2/health/live", rmp_oip_live_handler),
    rmp_route("GET", "/v2/health/ready", rmp_oip_ready_handler),
    rmp_route("GET", "/v2", rmp_oip_server_handler),
    rmp_route("GET", model, rmp_oip_model_handler),
    rmp_route("GET", versioned, rmp_oip_model_handler),
    rmp_route("GET", paste0(model, "/ready"), rmp_oip_model_ready_handler),
    rmp_route("GET", paste0(versioned, "/ready"), rmp_oip_model_ready_handler),
    rmp_route("POST", paste0(model, "/infer"), rmp_oip_infer_handler),
    rmp_route("POST", paste0(versioned, "/infer"), rmp_oip_infer_handler),
    # KServe v1's model list. Its server liveness, GET /, is answered by nginx (rmp_front_routes).
    rmp_route("GET", "/v1/models", rmp_kserve_v1_models_handler),
    # :predict first: a front matching patterns in order must not take it for the GET route.
    rmp_route("POST", "/v1/models/<name>:predict", rmp_kserve_v1_predict_handler),
    rmp_route("GET", "/v1/models/<name>", rmp_kserve_v1_model_handler)
  )
}

# --- errors ---------------------------------------------------------------------------------------

# The spec's error is one string: for schema violations it names the offending fields itself
# (the first few); the other messages name them already.
rmp_protocol_error_json <- function(status, code, message, request_id, details = list()) {
  if (length(details) > 0 && identical(code, "invalid_input")) {
    named <- vapply(utils::head(details, 3L), function(d) {
      where <- if (is.null(d$row)) d$field else sprintf("%s (row %d)", d$field, d$row)
      paste0(where, ": ", d$problem)
    }, "")
    message <- paste0(message, ": ", paste(named, collapse = "; "),
                      if (length(details) > 3L) "; ..." else "")
  }
  body <- list(error = message, code = code, request_id = request_id, details = details)
  as.character(jsonlite::toJSON(body, auto_unbox = TRUE, null = "null", digits = NA))
}

# The spec answers a bad request with 400; the validator's 422 (schema violation) becomes 400
# here, with the same details.
rmp_protocol_guard <- function(handler) {
  as_400 <- function(req, res) {
    tryCatch(handler(req, res), rmp_http_error = function(e) {
      if (identical(e$status, 422L)) e$status <- 400L
      stop(e)
    })
  }
  rmp_guard(as_400, error_json = rmp_protocol_error_json)
}

rmp_bad_request <- function(message, details = list()) {
  rmp_abort(400L, "invalid_request", message, details)
}

# --- which model a path names ---------------------------------------------------------------------

# Path segments after /v2/models/ (or /v1/models/): the name, and the version when the path has
# /versions/<v>. Only this server's model and version exist; any other is a 404.
rmp_path_model <- function(path, prefix) {
  rest <- substring(path, nchar(prefix) + 1L)
  parts <- strsplit(rest, "/", fixed = TRUE)[[1]]
  name <- sub(":predict$", "", parts[[1]])
  version <- if (length(parts) >= 3 && parts[[2]] == "versions") parts[[3]] else NULL
  list(name = name, version = version)
}

rmp_check_model_path <- function(req, cfg, prefix) {
  wanted <- rmp_path_model(req$PATH_INFO, prefix)
  if (!identical(wanted$name, cfg$name)) {
    rmp_abort(404L, "model_not_found", sprintf(
      "no model named '%s'; this server holds '%s'", wanted$name, cfg$name
    ))
  }
  if (!is.null(wanted$version) && !identical(wanted$version, cfg$version)) {
    rmp_abort(404L, "model_version_not_found", sprintf(
      "model '%s' has no version '%s'; this server holds version %s",
      cfg$name, wanted$version, cfg$version
    ))
  }
  invisible(TRUE)
}

rmp_is_ready <- function(ctx) file.exists(file.path(ctx$run_dir, "ready"))

rmp_json_text <- function(value) {
  as.character(jsonlite::toJSON(value, auto_unbox = TRUE, null = "null", digits = NA))
}

# --- the Open Inference Protocol: health, server and model metadata -------------------------------

rmp_oip_live_handler <- function(ctx) {
  function(req, res) rmp_json_response(res, 200L, "{\"live\":true}")
}

# Ready while the server takes traffic: false while workers start and while draining.
rmp_oip_ready_handler <- function(ctx) {
  function(req, res) {
    if (rmp_is_ready(ctx)) rmp_json_response(res, 200L, "{\"ready\":true}")
    else rmp_json_response(res, 503L, "{\"ready\":false}")
  }
}

rmp_oip_server_handler <- function(ctx) {
  body <- rmp_json_text(list(name = rmp_protocol_server_name,
                             version = ctx$cfg$rmodelpack_version, extensions = I(character())))
  function(req, res) rmp_json_response(res, 200L, body)
}

rmp_oip_datatype <- function(type) {
  switch(type, number = "FP64", integer = "INT64", boolean = "BOOL", string = "BYTES",
         factor = "BYTES")
}

# Class names a fitted classifier carries, so metadata can list its probability outputs before
# any request; NULL when the model does not say (the outputs still come with each response).
rmp_model_classes <- function(model) {
  candidates <- list(model$levels, model$classes, model$forest$levels, model$lev,
                     model$obsLevels, attr(model, "ylevels"))
  for (classes in candidates) if (is.character(classes) && length(classes) > 0) return(classes)
  NULL
}

# The model object the scorer closes over (rmp_make_scorer), without a second copy in ctx.
rmp_served_model <- function(ctx) {
  get0("model", envir = environment(attr(ctx$predictor, "scorer")), inherits = FALSE)
}

rmp_oip_output_names <- function(kind, classes) {
  if (kind == "value") return("predictions")
  if (kind == "class") return("class")
  c("class", if (!is.null(classes)) paste0("prob_", classes))
}

rmp_oip_output_datatype <- function(name) {
  if (name == "class") "BYTES" else "FP64"
}

rmp_oip_model_metadata <- function(cfg, classes) {
  tensor <- function(name, datatype) list(name = name, datatype = datatype, shape = I(-1L))
  inputs <- lapply(cfg$input$columns, function(column) {
    tensor(column$name, rmp_oip_datatype(column$type))
  })
  names <- rmp_oip_output_names(if (cfg$output$kind == "value") "value" else "class_probabilities",
                                classes)
  outputs <- lapply(names, function(name) tensor(name, rmp_oip_output_datatype(name)))
  list(name = cfg$name, versions = I(cfg$version), platform = "R",
       inputs = inputs, outputs = outputs)
}

rmp_oip_model_handler <- function(ctx) {
  body <- rmp_json_text(rmp_oip_model_metadata(ctx$cfg, rmp_model_classes(rmp_served_model(ctx))))
  rmp_protocol_guard(function(req, res) {
    rmp_check_model_path(req, ctx$cfg, "/v2/models/")
    rmp_json_response(res, 200L, body)
  })
}

# The spec's $ready_model_response: {"name", "ready"}; 503 when not ready (as KServe answers).
rmp_oip_model_ready_handler <- function(ctx) {
  name <- ctx$cfg$name
  rmp_protocol_guard(function(req, res) {
    rmp_check_model_path(req, ctx$cfg, "/v2/models/")
    ready <- rmp_is_ready(ctx)
    rmp_json_response(res, if (ready) 200L else 503L,
                      rmp_json_text(list(name = name, ready = ready)))
  })
}

# --- the Open Inference Protocol: inference -------------------------------------------------------

# Datatypes an input tensor may have for each column type (a number column takes integers too;
# the validator checks an integer column's values are whole).
rmp_oip_numeric_types <- c("FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8",
                           "UINT64", "UINT32", "UINT16", "UINT8")

rmp_oip_accepts <- function(type) {
  switch(type, number = , integer = rmp_oip_numeric_types, boolean = "BOOL",
         string = , factor = "BYTES")
}

rmp_is_text <- function(x) is.character(x) && length(x) == 1 && !is.na(x)

# A shape's dimensions when it is [n] or [n, 1]: an array of whole, non-negative numbers within
# R's integer range (a larger n could not match data anyway); NULL otherwise.
rmp_shape_dims <- function(shape) {
  is_array <- is.list(shape) && is.null(names(shape)) && length(shape) %in% 1:2
  if (!is_array || !all(vapply(shape, function(d) is.numeric(d) && length(d) == 1, NA))) {
    return(NULL)
  }
  dims <- unlist(shape)
  if (any(!is.finite(dims) | dims < 0 | dims != round(dims) | dims > .Machine$integer.max)) {
    return(NULL)
  }
  if (length(dims) == 2 && dims[[2]] != 1) return(NULL)
  dims
}

rmp_is_array <- function(value) is.list(value) && is.null(names(value))

rmp_tensor_length <- function(tensor, where) {
  shape <- rmp_shape_dims(tensor[["shape"]])
  if (is.null(shape)) {
    rmp_bad_request(sprintf(
      "%s: shape %s is not a 1-D tensor; send one column per input with shape [n]",
      where, rmp_json_text(tensor[["shape"]])
    ))
  }
  n <- as.integer(shape[[1]])
  data <- tensor[["data"]]
  if (!rmp_is_array(data)) {
    rmp_bad_request(sprintf("%s: \"data\" must be an array of %d values", where, n))
  }
  # Row-major nesting ([[1], [2]] for shape [n, 1]) is allowed by the spec; flatten one level
  # (arrays only: an object is a bad value the validator names).
  if (length(data) > 0 && all(vapply(data, function(x) rmp_is_array(x) && length(x) == 1, NA))) {
    data <- lapply(data, `[[`, 1L)
  }
  if (length(data) != n) {
    rmp_bad_request(sprintf("%s: shape says %d values but \"data\" holds %d", where, n,
                            length(data)))
  }
  data
}

rmp_oip_input_data <- function(tensor, index, columns) {
  if (!rmp_is_object(tensor) || !rmp_is_text(tensor[["name"]])) {
    rmp_bad_request(sprintf("inputs[%d] needs a \"name\", a \"datatype\", a \"shape\" and \"data\"",
                            index - 1L))
  }
  twice <- anyDuplicated(names(tensor))
  if (twice > 0L) {
    rmp_bad_request(sprintf("inputs[%d] has the key \"%s\" more than once; send it once",
                            index - 1L, names(tensor)[[twice]]))
  }
  where <- sprintf("input '%s'", tensor[["name"]])
  column <- columns[[tensor[["name"]]]]
  if (!rmp_is_text(tensor[["datatype"]])) rmp_bad_request(sprintf("%s has no \"datatype\"", where))
  if (!is.null(column) && !(tensor[["datatype"]] %in% rmp_oip_accepts(column$type))) {
    rmp_bad_request(sprintf(
      "%s: datatype %s does not fit the %s column %s; send %s",
      where, tensor[["datatype"]], column$type, tensor[["name"]], rmp_oip_datatype(column$type)
    ), list(rmp_detail(NA, tensor[["name"]], sprintf("datatype %s; expected %s", tensor[["datatype"]],
                                                  rmp_oip_datatype(column$type)))))
  }
  rmp_check_parameters(tensor[["parameters"]], sprintf("%s: \"parameters\"", where))
  if (is.null(tensor[["shape"]])) rmp_bad_request(sprintf("%s has no \"shape\"", where))
  if (is.null(tensor[["data"]])) {
    rmp_bad_request(sprintf("%s has no \"data\" (binary tensor data is not supported)", where))
  }
  data <- rmp_tensor_length(tensor, where)
  # An input the model does not take is left out (input.extra_columns ignore), unchecked.
  if (!is.null(column)) rmp_oip_check_values(data, tensor[["datatype"]], where, tensor[["name"]])
  data
}

# What each numeric datatype holds (whole numbers only for the integer types), as the message
# gives it; the bounds are read back from the text.
rmp_oip_ranges <- c(
  FP16 = "-65504 to 65504", FP32 = "-3.4028235e+38 to 3.4028235e+38",
  INT8 = "-128 to 127", INT16 = "-32768 to 32767", INT32 = "-2147483648 to 2147483647",
  INT64 = "-9223372036854775808 to 9223372036854775807", UINT8 = "0 to 255",
  UINT16 = "0 to 65535", UINT32 = "0 to 4294967295", UINT64 = "0 to 18446744073709551615"
)

# A number its tensor's datatype cannot hold (0.5 in an INT64 tensor, 1e300 in an FP32 one) is
# refused as the tensor's error, not scored as the double it parsed to. Other values (strings,
# nulls) are the validator's to name.
rmp_oip_check_values <- function(data, datatype, where, name) {
  text <- rmp_oip_ranges[datatype]
  if (is.na(text)) return(invisible())
  range <- as.numeric(strsplit(text, " to ", fixed = TRUE)[[1]])
  numeric <- which(vapply(data, function(x) is.numeric(x) && length(x) == 1L, NA))
  x <- as.numeric(unlist(data[numeric], use.names = FALSE))
  whole <- !startsWith(datatype, "FP")
  # 2^63 - 1 and 2^64 - 1 round up to 2^63 and 2^64 as doubles, which do not fit.
  over <- if (datatype %in% c("INT64", "UINT64")) x >= range[[2]] else x > range[[2]]
  bad <- numeric[x < range[[1]] | over | is.nan(x) | (whole & x != round(x))]
  if (length(bad) == 0L) return(invisible())
  problem <- sprintf("does not fit %s (%s from %s)", datatype,
                     if (whole) "whole numbers" else "numbers", text)
  rmp_bad_request(sprintf("%s: %d value(s) in \"data\" %s", where, length(bad), problem),
                  rmp_capped_details(bad - 1L, function(row) rmp_detail(row, name, problem)))
}

# The spec's "parameters" are an object of key/value pairs; none changes what is computed here.
rmp_check_parameters <- function(parameters, where) {
  if (!is.null(parameters) && !(is.list(parameters) && !is.null(names(parameters)))) {
    rmp_bad_request(sprintf("%s must be an object of key/value pairs", where))
  }
}

# The request's "id" is echoed in the response, so it must be the spec's string.
rmp_oip_request_id <- function(parsed, req) {
  id <- parsed[["id"]]
  if (is.null(id)) return(rmp_request_id(req))
  if (!rmp_is_text(id)) rmp_bad_request("\"id\" must be a string (it is echoed in the response)")
  id
}

# The request's input tensors as the row objects the validator takes.
rmp_oip_rows <- function(parsed, columns, max_rows) {
  inputs <- if (rmp_is_object(parsed)) parsed[["inputs"]]
  if (!rmp_is_array(inputs) || length(inputs) == 0) {
    rmp_bad_request(paste("expected {\"inputs\": [{\"name\", \"datatype\", \"shape\",",
                          "\"data\"}, ...]} with one tensor per input column"))
  }
  data <- lapply(seq_along(inputs), function(i) rmp_oip_input_data(inputs[[i]], i, columns))
  names(data) <- vapply(inputs, function(tensor) tensor[["name"]], "")
  if (anyDuplicated(names(data))) {
    rmp_bad_request(sprintf("input '%s' is given twice", names(data)[anyDuplicated(names(data))]))
  }
  lengths <- lengths(data)
  if (length(unique(lengths)) > 1) {
    listed <- utils::head(sprintf("%s: %d", names(data), lengths), 20L)
    more <- if (length(data) > 20L) ", ..." else ""
    rmp_bad_request(sprintf(
      "the inputs differ in length (%s%s); every input needs one value per row",
      paste(listed, collapse = ", "), more
    ))
  }
  n <- lengths[[1]]
  if (n > max_rows) {
    rmp_abort(413L, "too_many_rows",
              sprintf("the request has %d rows; at most %d are allowed", n, max_rows))
  }
  rows <- lapply(seq_len(n), function(i) lapply(data, .subset2, i))
  structure(rows, inputs = names(data))
}

# What the validator says about columns, for a request without rows (it sees no keys then):
# every required input is there, and no other one when input.extra_columns is reject.
rmp_oip_check_inputs <- function(input_names, input) {
  known <- vapply(input$columns, function(column) column$name, "")
  required <- known[vapply(input$columns, function(column) isTRUE(column$required), NA)]
  found <- rmp_new_problems()
  found$add(rmp_capped_details(setdiff(required, input_names), function(name) {
    rmp_detail(NA, name, "required column is missing")
  }))
  if (identical(input$extra_columns, "reject")) {
    found$add(rmp_capped_details(setdiff(input_names, known), function(name) {
      rmp_detail(NA, name, "unknown column (input.extra_columns is reject)")
    }))
  }
  if (found$count > 0) {
    rmp_abort(400L, "invalid_input", rmp_problems_message(found, "input"), found$details)
  }
}

# The names "outputs" asks for; NULL (every default output) when absent or empty, as the spec
# says for an absent one. A name asked twice is refused: it would repeat the tensor.
rmp_oip_requested_outputs <- function(parsed) {
  outputs <- parsed[["outputs"]]
  if (is.null(outputs) || identical(outputs, list())) return(NULL)
  ok <- rmp_is_array(outputs) &&
    all(vapply(outputs, function(o) rmp_is_object(o) && rmp_is_text(o[["name"]]), NA))
  if (!ok) rmp_bad_request("\"outputs\" must be an array of {\"name\": ...} objects")
  for (i in seq_along(outputs)) {
    rmp_check_parameters(outputs[[i]][["parameters"]], sprintf("outputs[%d]: \"parameters\"", i - 1L))
  }
  names <- vapply(outputs, function(output) output[["name"]], "")
  if (anyDuplicated(names)) {
    rmp_bad_request(sprintf("output '%s' is requested twice", names[anyDuplicated(names)]))
  }
  names
}

# Every output the prediction offers: name -> list(datatype, JSON texts of the values).
rmp_oip_tensors <- function(result, kind) {
  if (kind == "value") {
    return(list(predictions = list(datatype = "FP64", data = rmp_number_texts(rmp_value_numbers(result)))))
  }
  if (!is.matrix(result)) {
    return(list(class = list(datatype = "BYTES", data = rmp_string_texts(rmp_classes(result)))))
  }
  probs <- rmp_prob_matrix(result)
  tensors <- list(class = list(datatype = "BYTES", data = rmp_string_texts(rmp_classes(probs))))
  for (j in seq_len(ncol(probs))) {
    tensors[[paste0("prob_", colnames(probs)[[j]])]] <-
      list(datatype = "FP64", data = rmp_number_texts(probs[, j]))
  }
  tensors
}

rmp_oip_default_outputs <- function(kind, available) {
  switch(kind,
    value = "predictions",
    class = "class",
    probabilities = {
      probs <- grep("^prob_", available, value = TRUE)
      if (length(probs) > 0) probs else available
    },
    class_probabilities = available
  )
}

rmp_oip_select <- function(tensors, requested, kind) {
  available <- names(tensors)
  if (is.null(requested)) {
    if (identical(kind, "probabilities") && !any(startsWith(available, "prob_"))) {
      rmp_abort(400L, "bad_type", paste("type=prob: this model's scorer returns classes,",
                                        "not probabilities; use type=class"))
    }
    return(tensors[rmp_oip_default_outputs(kind, available)])
  }
  unknown <- setdiff(requested, available)
  if (length(unknown) > 0) {
    rmp_bad_request(sprintf("unknown output '%s'; this model's outputs: %s", unknown[[1]],
                            paste(available, collapse = ", ")))
  }
  tensors[requested]
}

rmp_oip_tensor_json <- function(name, tensor, n) {
  sprintf("{\"name\":%s,\"datatype\":\"%s\",\"shape\":[%d],\"data\":%s}",
          rmp_string_texts(name), tensor[["datatype"]], n, rmp_json_array(tensor[["data"]]))
}

rmp_oip_response_json <- function(cfg, id, tensors, n) {
  outputs <- vapply(names(tensors), function(name) {
    rmp_oip_tensor_json(name, tensors[[name]], n)
  }, "")
  sprintf("{\"model_name\":%s,\"model_version\":%s,\"id\":%s,\"outputs\":[%s]}",
          rmp_string_texts(cfg$name), rmp_string_texts(cfg$version), rmp_string_texts(id),
          paste(outputs, collapse = ","))
}

rmp_oip_infer_handler <- function(ctx) {
  cfg <- ctx$cfg
  columns <- stats::setNames(cfg$input$columns,
                             vapply(cfg$input$columns, function(column) column$name, ""))
  validate <- rmp_make_validator(cfg$input)
  scorer <- attr(ctx$predictor, "scorer")
  kind <- cfg$output$kind
  no_rows <- rmp_oip_empty_tensors(kind, rmp_model_classes(rmp_served_model(ctx)))
  rmp_protocol_guard(function(req, res) {
    rmp_check_model_path(req, cfg, "/v2/models/")
    # ?type= picks the default outputs, as on the other routes; "outputs" overrides it.
    as_kind <- rmp_request_kind(req, kind)
    rmp_oip_refuse_binary(req)
    body <- rmp_read_json_body(req)
    parsed <- rmp_parse_json(body)
    rows <- rmp_oip_rows(parsed, columns, cfg$input$max_rows)
    rmp_check_parameters(parsed[["parameters"]], "\"parameters\"")
    requested <- rmp_oip_requested_outputs(parsed)
    id <- rmp_oip_request_id(parsed, req)
    if (length(rows) == 0) rmp_oip_check_inputs(attr(rows, "inputs"), cfg$input)
    tensors <- if (length(rows) == 0) no_rows else rmp_oip_score(rows, body, validate, scorer, kind)
    selected <- rmp_oip_select(tensors, requested, as_kind)
    json <- rmp_oip_response_json(cfg, id, selected, length(rows))
    rmp_json_response(res, 200L, json, rows = length(rows))
  })
}

# The spec's binary data extension sends application/octet-stream (the kserve SDK does so by
# default), or JSON followed by raw bytes that the Inference-Header-Content-Length header marks;
# say what to send instead of a bare 415 (or a 400 about the bytes).
rmp_oip_refuse_binary <- function(req) {
  binary_type <- startsWith(tolower(req$CONTENT_TYPE %||% ""), "application/octet-stream")
  if (binary_type || !is.null(req$HTTP_INFERENCE_HEADER_CONTENT_LENGTH)) {
    rmp_abort(415L, "unsupported_media_type", paste(
      "binary tensor data is not supported; send JSON tensors (application/json), e.g. with",
      "kserve's InferInput.set_data_from_numpy(..., binary_data=False)"
    ))
  }
}

rmp_oip_score <- function(rows, body, validate, scorer, kind) {
  df <- validate(rows, body)
  tensors <- rmp_oip_tensors(rmp_unwrap_prediction(scorer(df)), kind)
  rmp_check_prediction_count(length(tensors[[1]]$data), nrow(df))
  tensors
}

# Zero-length tensors ([0] inputs) get zero-length outputs, as /predict answers [] to no rows,
# without calling the model: the outputs the model metadata lists.
rmp_oip_empty_tensors <- function(kind, classes) {
  names <- rmp_oip_output_names(if (kind == "value") "value" else "class_probabilities", classes)
  stats::setNames(lapply(names, function(name) {
    list(datatype = rmp_oip_output_datatype(name), data = character())
  }), names)
}

rmp_check_prediction_count <- function(predictions, rows) {
  if (predictions != rows) {
    rmp_abort(500L, "scoring_error", sprintf(
      "the scoring function returned %d predictions for %d rows", predictions, rows
    ))
  }
}

# --- KServe v1 ------------------------------------------------------------------------------------

# GET /v1/models lists the models the server holds: here, always the one model.
rmp_kserve_v1_models_handler <- function(ctx) {
  body <- rmp_json_text(list(models = I(ctx$cfg$name)))
  function(req, res) rmp_json_response(res, 200L, body)
}

rmp_kserve_v1_model_handler <- function(ctx) {
  cfg <- ctx$cfg
  rmp_protocol_guard(function(req, res) {
    rmp_check_model_path(req, cfg, "/v1/models/")
    ready <- rmp_is_ready(ctx)
    rmp_json_response(res, if (ready) 200L else 503L,
                      rmp_json_text(list(name = cfg$name, ready = ready)))
  })
}

# Instances are row objects, or arrays holding the input columns in the manifest's order.
rmp_kserve_v1_rows <- function(parsed, column_names) {
  instances <- if (rmp_is_object(parsed)) parsed[["instances"]]
  if (!is.list(instances) || !is.null(names(instances))) {
    rmp_bad_request(paste("expected {\"instances\": [...]} with one object",
                          "(or array of the input columns) per row"))
  }
  lapply(seq_along(instances), function(i) {
    instance <- instances[[i]]
    if (rmp_is_object(instance)) return(instance)
    if (is.list(instance) && length(instance) == length(column_names)) {
      return(stats::setNames(instance, column_names))
    }
    rmp_bad_request(sprintf(
      "instances[%d]: expected an object or an array of %d values (%s)",
      i - 1L, length(column_names), paste(column_names, collapse = ", ")
    ))
  })
}

rmp_kserve_v1_predict_handler <- function(ctx) {
  cfg <- ctx$cfg
  column_names <- vapply(cfg$input$columns, function(column) column$name, "")
  validate <- rmp_make_validator(cfg$input)
  predictor <- ctx$predictor
  kind <- cfg$output$kind
  rmp_protocol_guard(function(req, res) {
    rmp_check_model_path(req, cfg, "/v1/models/")
    as_kind <- rmp_request_kind(req, kind)
    body <- rmp_read_json_body(req)
    parsed <- rmp_parse_json(body)
    rows <- rmp_kserve_v1_rows(parsed, column_names)
    rmp_check_row_count(rows, cfg$input$max_rows)
    if (length(rows) == 0) return(rmp_json_response(res, 200L, "{\"predictions\":[]}", rows = 0L))
    df <- validate(rows, body)
    json <- rmp_predict_as(predictor, df, as_kind, kind)
    rmp_json_response(res, 200L, paste0("{\"predictions\":", json, "}"), rows = nrow(df))
  })
}

# --- the output type per request: ?type=class|prob ------------------------------------------------

rmp_output_types <- c(class = "class", prob = "probabilities")

# Every value the query string gives `key`, decoded (an undecodable one stays as sent).
rmp_query_values <- function(req, key) {
  query <- sub("^\\?", "", req$QUERY_STRING %||% "")
  if (!nzchar(query)) return(character())
  pairs <- strsplit(query, "&", fixed = TRUE)[[1]]
  keys <- vapply(pairs, function(pair) rmp_url_decode(sub("=.*$", "", pair)), "",
                 USE.NAMES = FALSE)
  values <- pairs[keys == key]
  vapply(values, function(pair) {
    if (grepl("=", pair, fixed = TRUE)) rmp_url_decode(sub("^[^=]*=", "", pair)) else ""
  }, "", USE.NAMES = FALSE)
}

rmp_url_decode <- function(text) {
  decoded <- httpuv::decodeURIComponent(text)
  if (is.na(decoded)) text else decoded
}

# Text from the request as it may appear in an error message: bytes that are not UTF-8 become
# <xx> (a JSON answer must be UTF-8).
rmp_printable <- function(text) {
  Encoding(text) <- "UTF-8"
  if (validUTF8(text)) text else iconv(text, "UTF-8", "UTF-8", sub = "byte")
}

rmp_query_param <- function(req, key) {
  values <- rmp_query_values(req, key)
  if (length(values) == 0) return(NULL)
  if (length(values) > 1) {
    rmp_abort(400L, "bad_type",
              sprintf("?%s= is given %d times; give it once", key, length(values)))
  }
  rmp_printable(values[[1]])
}

# The output.kind for this request: the manifest's, or the one ?type= asks for (classifiers).
rmp_request_kind <- function(req, default_kind) {
  type <- rmp_query_param(req, "type")
  if (is.null(type)) return(default_kind)
  if (identical(default_kind, "value")) {
    rmp_abort(400L, "bad_type", sprintf(
      "type=%s: this model predicts numbers (output.kind value); %s",
      type, "?type= (class, prob) is for classifiers"
    ))
  }
  if (!type %in% names(rmp_output_types)) {
    rmp_abort(400L, "bad_type", sprintf("unknown type '%s'; allowed: %s", type,
                                        paste(names(rmp_output_types), collapse = ", ")))
  }
  rmp_output_types[[type]]
}

# A scorer that returns classes only cannot give probabilities: that is the request's choice
# failing (400), not the model (500).
rmp_predict_as <- function(predictor, df, kind, default_kind) {
  if (identical(kind, default_kind)) return(predictor(df))
  tryCatch(predictor(df, kind), rmp_http_error = function(e) {
    if (identical(kind, "probabilities") && identical(e$code, "scoring_error")) {
      rmp_abort(400L, "bad_type", paste("type=prob: this model's scorer returns classes,",
                                        "not probabilities; use type=class"))
    }
    stop(e)
  })
}

# --- OpenAPI --------------------------------------------------------------------------------------

rmp_any_schema <- function() structure(list(), names = character())  # {} in JSON

rmp_protocol_openapi_paths <- function(cfg) {
  model <- paste0("/v2/models/", cfg$name)
  versioned <- paste0(model, "/versions/", cfg$version)
  datatypes <- unique(c(rmp_oip_numeric_types, "BOOL", "BYTES"))
  tensor <- list(type = "object", required = I(c("name", "datatype", "shape", "data")),
                 properties = list(name = list(type = "string"),
                                   datatype = list(type = "string", enum = I(datatypes)),
                                   shape = list(type = "array", minItems = 1L, maxItems = 2L,
                                                items = list(type = "integer", minimum = 0L)),
                                   data = list(type = "array", items = rmp_any_schema())))
  # An optional field sent as null is taken as absent (clients serialise None so).
  parameters <- list(type = "object", nullable = TRUE)
  input_tensor <- tensor
  input_tensor$properties$parameters <- parameters
  # Another input is ignored like another column, unless input.extra_columns is reject.
  if (identical(cfg$input$extra_columns, "reject")) {
    input_tensor$properties$name$enum <- I(vapply(cfg$input$columns, function(c) c$name, ""))
  }
  infer_request <- list(type = "object", required = I("inputs"), properties = list(
    id = list(type = "string", nullable = TRUE),
    parameters = parameters,
    inputs = list(type = "array", minItems = 1L, items = input_tensor),
    outputs = list(type = "array", nullable = TRUE, uniqueItems = TRUE, items = list(
      type = "object", required = I("name"),
      properties = list(name = list(type = "string"), parameters = parameters)))
  ))
  infer_response <- list(type = "object", properties = list(
    model_name = list(type = "string"), model_version = list(type = "string"),
    id = list(type = "string"), outputs = list(type = "array", items = tensor)
  ))
  infer <- rmp_post_operation(
    "Open Inference Protocol: one 1-D tensor per input column; outputs selects the results",
    infer_request, infer_response, rmp_type_parameters(cfg$output$kind)
  )
  n_columns <- length(cfg$input$columns)
  v1_request <- list(type = "object", required = I("instances"), properties = list(
    instances = list(type = "array", maxItems = cfg$input$max_rows, items = list(oneOf = list(
      rmp_ref("Row"),
      list(type = "array", minItems = n_columns, maxItems = n_columns, items = rmp_any_schema(),
           description = "the input columns' values, in the order of components.schemas.Row")
    )))
  ))
  v1_response <- list(type = "object", properties = list(
    predictions = list(type = "array", items = rmp_ref("Prediction"))
  ))
  paths <- list(
    `/v2/health/live` = rmp_get_operation("Open Inference Protocol: server liveness"),
    `/v2/health/ready` = rmp_get_operation("Open Inference Protocol: server readiness",
                                          readiness = TRUE),
    `/v2` = rmp_get_operation("Open Inference Protocol: server metadata")
  )
  for (base in c(model, versioned)) {
    paths[[base]] <- rmp_get_operation("Open Inference Protocol: model metadata (inputs, outputs)")
    paths[[paste0(base, "/ready")]] <- rmp_get_operation("Open Inference Protocol: model readiness",
                                                           readiness = TRUE)
    paths[[paste0(base, "/infer")]] <- infer
  }
  paths[["/"]] <- rmp_get_json_operation(
    "KServe v1: server liveness",
    rmp_object_schema(status = list(type = "string", enum = I("alive")))
  )
  paths[["/v1/models"]] <- rmp_get_json_operation(
    "KServe v1: the models this server holds (its one model)",
    rmp_object_schema(models = list(type = "array", minItems = 1L, maxItems = 1L,
                                    items = list(type = "string", enum = I(cfg$name))))
  )
  paths[[paste0("/v1/models/", cfg$name)]] <- rmp_get_operation("KServe v1: {\"name\", \"ready\"}",
                                                                 readiness = TRUE)
  paths[[paste0("/v1/models/", cfg$name, ":predict")]] <- rmp_post_operation(
    "KServe v1: {\"instances\": [...]} in, {\"predictions\": [...]} out", v1_request, v1_response,
    rmp_type_parameters(cfg$output$kind)
  )
  stats::setNames(lapply(names(paths), function(path) {
    kserve_v1 <- path == "/" || startsWith(path, "/v1/")
    rmp_protocol_operation(paths[[path]], if (kserve_v1) "kserve-v1" else
      "open-inference-protocol", names_model = grepl("^/v[12]/models/", path))
  }), names(paths))
}

# An object schema whose every property is required.
rmp_object_schema <- function(...) {
  properties <- list(...)
  list(type = "object", required = I(names(properties)), properties = properties)
}

rmp_get_json_operation <- function(summary, schema) {
  operation <- rmp_get_operation(summary)
  operation$get$responses[["200"]]$content <- rmp_json_content(schema)
  operation
}

# The protocols' own error body ({"error": "<message>", ...}), their 404 for another model or
# version (on paths that name one), and a tag per protocol.
rmp_protocol_operation <- function(operation, tag, names_model = TRUE) {
  error <- list(type = "object", required = I("error"), properties = list(
    error = list(type = "string"), code = list(type = "string"),
    request_id = list(type = "string"),
    details = rmp_error_schema()$properties$error$properties$details
  ))
  lapply(operation, function(method) {
    method$tags <- I(tag)
    if (names_model) method$responses[["404"]] <- list(description = "no such model or version")
    for (status in setdiff(names(method$responses), "200")) {
      method$responses[[status]]$content <- rmp_json_content(error)
    }
    # The front (nginx) answers some requests itself, in rmodelpack's own shape: a body over
    # runtime.max_body_bytes (413), a NUL in the query (400).
    for (status in intersect(c("400", "413"), names(method$responses))) {
      method$responses[[status]]$content <- rmp_json_content(list(oneOf = list(error,
                                                                                rmp_ref("Error"))))
    }
    method
  })
}
