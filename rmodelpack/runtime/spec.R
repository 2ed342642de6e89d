# Documents derived from the config: /metadata, /prototype, /openapi.json and /docs.

rmp_package_versions <- function(packages) {
  names <- unique(c(unlist(packages), "plumber", "httpuv", "jsonlite"))
  stats::setNames(lapply(names, function(p) utils::packageDescription(p)$Version), names)
}

rmp_metadata <- function(ctx) {
  cfg <- ctx$cfg
  list(
    name = cfg$name, version = cfg$version, description = cfg$description,
    sha256 = ctx$sha256, r_version = as.character(getRversion()),
    packages = rmp_package_versions(cfg$packages),
    input = list(columns = cfg$input$columns, max_rows = cfg$input$max_rows,
                 extra_columns = cfg$input$extra_columns),
    output = cfg$output,
    runtime = list(workers = cfg$runtime$workers, threads = cfg$runtime$threads,
                   omp_num_threads = Sys.getenv("OMP_NUM_THREADS"))
  )
}

rmp_r_type <- function(type) {
  switch(type, number = "double", integer = "integer", boolean = "logical",
         string = "character", factor = "factor")
}

# vetiver's /prototype shape: one cereal-style entry per input column.
rmp_prototype <- function(columns) {
  entries <- lapply(columns, function(column) {
    details <- if (column$type == "factor") list(levels = column$levels) else structure(list(), names = character())
    list(type = rmp_r_type(column$type), example = NULL, details = details)
  })
  stats::setNames(entries, vapply(columns, function(column) column$name, ""))
}

rmp_column_schema <- function(column) {
  schema <- switch(column$type,
    number = list(type = "number"), integer = list(type = "integer"),
    boolean = list(type = "boolean"), string = list(type = "string"),
    factor = list(type = "string", enum = column$levels)
  )
  if (!is.null(column$allowed)) schema$enum <- column$allowed
  if (!is.null(column$min)) schema$minimum <- column$min
  if (!is.null(column$max)) schema$maximum <- column$max
  if (column$type == "integer") {
    # The validator answers 422 beyond R's integer range; the document says so too.
    schema$minimum <- max(schema$minimum, -.Machine$integer.max)
    schema$maximum <- min(schema$maximum, .Machine$integer.max)
  }
  if (!isTRUE(column$required)) schema$nullable <- TRUE
  schema$example <- rmp_column_example(column)
  schema
}

# A valid value for the column (the documents' examples, and schemathesis' first cases).
rmp_column_example <- function(column) {
  switch(column$type,
    number = , integer = {
      value <- max(column$min, min(column$max, 0))
      if (column$type == "integer") ceiling(value) else value
    },
    boolean = FALSE,
    factor = column$levels[[1]],
    string = if (is.null(column$allowed)) "text" else column$allowed[[1]]
  )
}

rmp_row_schema <- function(input) {
  columns <- input$columns
  names <- vapply(columns, function(column) column$name, "")
  required <- names[vapply(columns, function(column) isTRUE(column$required), TRUE)]
  schema <- list(
    type = "object",
    properties = stats::setNames(lapply(columns, rmp_column_schema), names),
    additionalProperties = !identical(input$extra_columns, "reject")
  )
  if (length(required) > 0) schema$required <- I(required)
  schema
}

rmp_prediction_schema <- function(kind) {
  probabilities <- list(type = "object", additionalProperties = list(type = "number"))
  switch(kind,
    value = list(type = "number", nullable = TRUE),
    class = list(type = "string"),
    probabilities = probabilities,
    class_probabilities = list(type = "object", required = I(c("class", "probabilities")),
      properties = list(class = list(type = "string"), probabilities = probabilities)
    )
  )
}

rmp_error_schema <- function() {
  detail <- list(type = "object", properties = list(
    row = list(type = "integer", nullable = TRUE, description = "0-based row index"),
    field = list(type = "string"), problem = list(type = "string")
  ))
  list(type = "object", properties = list(error = list(type = "object", properties = list(
    status = list(type = "integer"), code = list(type = "string"),
    message = list(type = "string"), request_id = list(type = "string"),
    details = list(type = "array", items = detail)
  ))))
}

rmp_json_content <- function(schema) list(`application/json` = list(schema = schema))

rmp_ref <- function(name) list(`$ref` = paste0("#/components/schemas/", name))

rmp_error_responses <- function() {
  error <- list(content = rmp_json_content(rmp_ref("Error")))
  list(
    `400` = c(list(description = "malformed JSON, or an unknown ?type="), error),
    `413` = c(list(description = "body or row count over the limit"), error),
    `415` = c(list(description = "not application/json, or a compressed body"), error),
    `422` = c(list(description =
      "invalid input; details list the problems (the first 100; the message counts them all)"),
      error),
    `500` = c(list(description = "the scoring code failed"), error)
  )
}

rmp_post_operation <- function(summary, request_schema, response_schema, parameters = NULL) {
  list(post = Filter(Negate(is.null), list(
    summary = summary,
    parameters = parameters,
    requestBody = list(required = TRUE, content = rmp_json_content(request_schema)),
    responses = c(
      list(`200` = list(description = "predictions, in input order",
                        content = rmp_json_content(response_schema))),
      rmp_error_responses()
    )
  )))
}

# Classifiers take ?type=class|prob (protocols.R); the response then has that shape.
rmp_type_parameters <- function(kind) {
  if (identical(kind, "value")) return(NULL)
  list(list(name = "type", `in` = "query", required = FALSE,
            description = paste0("class or prob; default: the manifest's output.kind (", kind, ")"),
            schema = list(type = "string", enum = I(names(rmp_output_types)))))
}

# The manifest's shape, and for classifiers the shapes ?type= can ask for.
rmp_prediction_schemas <- function(kind) {
  if (identical(kind, "value")) return(rmp_prediction_schema(kind))
  kinds <- unique(c(kind, unname(rmp_output_types)))
  list(oneOf = lapply(kinds, rmp_prediction_schema))
}

# `readiness`: the route answers 503 while the server starts or drains.
rmp_get_operation <- function(summary, readiness = FALSE) {
  responses <- list(`200` = list(description = "OK"))
  if (readiness) responses[["503"]] <- list(description = "not ready: starting or draining")
  list(get = list(summary = summary, responses = responses))
}

rmp_openapi <- function(cfg) {
  rows <- list(type = "array", items = rmp_ref("Row"), maxItems = cfg$input$max_rows)
  predictions <- list(type = "array", items = rmp_ref("Prediction"))
  paths <- list(
    `/predict` = rmp_post_operation(
      "Score rows given as JSON records or as {\"data\": [...]}",
      list(oneOf = list(rows, list(type = "object", required = I("data"),
                                   properties = list(data = rows)))),
      list(type = "object", properties = list(predictions = predictions)),
      rmp_type_parameters(cfg$output$kind)
    ),
    `/score` = rmp_post_operation(
      "Reference-compatible scoring: {\"df\": [...]} in, a bare array out",
      list(type = "object", required = I("df"), properties = list(df = rows)),
      predictions,
      rmp_type_parameters(cfg$output$kind)
    ),
    `/healthz` = rmp_get_operation("Liveness"),
    `/readyz` = rmp_get_operation("Readiness: 200 once every worker is up, 503 while draining",
                                 readiness = TRUE),
    `/metadata` = rmp_get_operation("Model name, version, sha256, R and package versions"),
    `/ping` = rmp_get_operation("vetiver-compatible ping"),
    `/prototype` = rmp_get_operation("vetiver-compatible input prototype"),
    `/metrics` = rmp_get_operation("Prometheus metrics")
  )
  paths <- c(paths, rmp_protocol_openapi_paths(cfg))
  list(
    openapi = "3.0.3",
    info = list(title = cfg$name, version = cfg$version, description = cfg$description),
    paths = paths,
    components = list(schemas = list(
      Row = rmp_row_schema(cfg$input),
      Prediction = rmp_prediction_schemas(cfg$output$kind),
      Error = rmp_error_schema()
    ))
  )
}

rmp_html_escape <- function(x) {
  x <- gsub("&", "&amp;", x, fixed = TRUE)
  x <- gsub("<", "&lt;", x, fixed = TRUE)
  gsub(">", "&gt;", x, fixed = TRUE)
}

rmp_docs_html <- function(cfg) {
  cell <- function(x) if (is.null(x)) "" else rmp_html_escape(paste(unlist(x), collapse = ", "))
  rows <- vapply(cfg$input$columns, function(column) sprintf(
    "<tr><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td><td>%s</td></tr>",
    cell(column$name), cell(column$type), cell(isTRUE(column$required)), cell(column$min),
    cell(column$max), cell(c(column$levels, column$allowed))
  ), "")
  paste0(
    "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>", cell(cfg$name),
    " API</title></head><body>\n<h1>", cell(cfg$name), " ", cell(cfg$version), "</h1>\n<p>",
    cell(cfg$description), "</p>\n",
    "<p>POST <code>/predict</code> with <code>[{...}]</code> or <code>{\"data\": [{...}]}</code>;",
    " POST <code>/score</code> with <code>{\"df\": [{...}]}</code>. At most ",
    cfg$input$max_rows, " rows. Output: ", cell(cfg$output$kind), ".",
    " Machine-readable spec: <a href=\"openapi.json\">openapi.json</a>.</p>\n",
    "<table border=\"1\"><tr><th>column</th><th>type</th><th>required</th><th>min</th>",
    "<th>max</th><th>levels / allowed</th></tr>\n", paste(rows, collapse = "\n"),
    "\n</table>\n</body></html>\n"
  )
}
