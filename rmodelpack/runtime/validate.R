# Request bodies -> a validated data.frame, or an rmp_http_error listing every problem.
# The fast path parses with jsonlite's simplification; only when a column has the wrong JSON
# type does it re-read the rows one by one to say exactly which rows are wrong.

rmp_parse_json <- function(body_raw) {
  text <- rawToChar(body_raw)
  Encoding(text) <- "UTF-8"
  tryCatch(
    jsonlite::parse_json(text, simplifyVector = TRUE),
    error = function(e) rmp_abort(400L, "malformed_json", paste("malformed JSON:", conditionMessage(e)))
  )
}

rmp_rows_from_body <- function(parsed, key) {
  rows <- if (is.null(key)) parsed else parsed[[key]]
  if (is.list(parsed) && !is.data.frame(parsed) && !is.null(key) && !(key %in% names(parsed))) {
    rmp_abort(422L, "invalid_input", sprintf("expected a JSON object with a \"%s\" array of rows", key))
  }
  if (is.data.frame(rows)) return(rows)
  if (is.list(rows) && length(rows) == 0) rmp_abort(422L, "invalid_input", "no rows in the request")
  rmp_abort(422L, "invalid_input", "expected an array of row objects, e.g. [{\"col\": 1}]")
}

rmp_check_row_count <- function(df, max_rows) {
  if (nrow(df) > max_rows) {
    rmp_abort(413L, "too_many_rows",
              sprintf("the request has %d rows; at most %d are allowed", nrow(df), max_rows))
  }
}

rmp_json_type <- function(value) {
  if (is.null(value) || (length(value) == 1 && is.atomic(value) && is.na(value) && is.logical(value))) {
    return("null")
  }
  if (is.list(value)) return(if (is.null(names(value))) "array" else "object")
  if (length(value) != 1) return("array")
  switch(typeof(value), double = "number", integer = "number", logical = "boolean",
         character = "string", typeof(value))
}

rmp_expected_json_type <- function(type) {
  switch(type, number = "number", integer = "number", boolean = "boolean",
         string = "string", factor = "string")
}

rmp_column_class_ok <- function(x, type) {
  if (all(is.na(x)) && is.logical(x)) return(TRUE)
  switch(type,
    number = is.numeric(x), integer = is.numeric(x), boolean = is.logical(x),
    string = is.character(x), factor = is.character(x)
  )
}

# jsonlite's simplification coerces silently: true/false among numbers become 1/0, and numbers
# or booleans among strings become "1"/"TRUE". When that may have happened, check row by row.
rmp_maybe_coerced <- function(x, type, body_has_boolean) {
  switch(type,
    number = , integer = body_has_boolean,
    string = , factor = any(grepl("^(-?[0-9.]+([eE][-+]?[0-9]+)?|TRUE|FALSE)$", x)),
    FALSE
  )
}

rmp_has_boolean_token <- function(body_raw) {
  text <- rawToChar(body_raw)
  grepl("true", text, fixed = TRUE) || grepl("false", text, fixed = TRUE)
}

# Exact per-row type problems for one column, read from the unsimplified rows.
rmp_type_details <- function(raw_rows, column) {
  expected <- rmp_expected_json_type(column$type)
  details <- list()
  for (i in seq_along(raw_rows)) {
    got <- rmp_json_type(raw_rows[[i]][[column$name]])
    if (got != "null" && got != expected) {
      details[[length(details) + 1]] <- rmp_detail(i - 1L, column$name,
                                                   sprintf("expected %s, got %s", expected, got))
    }
  }
  details
}

rmp_raw_rows <- function(body_raw, key) {
  parsed <- jsonlite::parse_json(rawToChar(body_raw), simplifyVector = FALSE)
  if (is.null(key)) parsed else parsed[[key]]
}

rmp_value_details <- function(x, column) {
  name <- column$name
  rows <- function(bad) which(bad) - 1L
  problems <- list()
  add <- function(bad, problem) {
    for (row in rows(bad)) problems[[length(problems) + 1]] <<- rmp_detail(row, name, problem)
  }
  present <- !is.na(x)
  if (isTRUE(column$required)) add(!present, "required value is missing or null")
  if (column$type == "integer") add(present & x != round(x), "expected an integer")
  if (!is.null(column$min)) add(present & x < column$min, sprintf("must be >= %s", column$min))
  if (!is.null(column$max)) add(present & x > column$max, sprintf("must be <= %s", column$max))
  if (!is.null(column$levels)) {
    add(present & !(x %in% unlist(column$levels)),
        sprintf("unknown level; expected one of %s", paste(unlist(column$levels), collapse = ", ")))
  }
  if (!is.null(column$allowed)) {
    add(present & !(x %in% unlist(column$allowed)),
        sprintf("not allowed; expected one of %s", paste(unlist(column$allowed), collapse = ", ")))
  }
  problems
}

rmp_cast_column <- function(x, column) {
  if (all(is.na(x)) && is.logical(x)) {
    x <- switch(column$type, number = as.numeric(x), integer = as.integer(x),
                boolean = x, as.character(x))
  }
  switch(column$type,
    number = as.numeric(x), integer = as.integer(x), boolean = as.logical(x),
    string = as.character(x), factor = factor(x, levels = unlist(column$levels))
  )
}

rmp_missing_column_details <- function(df, columns) {
  details <- list()
  for (column in columns) {
    if (!(column$name %in% names(df)) && isTRUE(column$required)) {
      details[[length(details) + 1]] <- rmp_detail(NA, column$name, "required column is missing")
    }
  }
  details
}

rmp_extra_column_details <- function(df, columns) {
  known <- vapply(columns, function(column) column$name, "")
  lapply(setdiff(names(df), known), function(name) {
    rmp_detail(NA, name, "unknown column (input.extra_columns is reject)")
  })
}

# Returns a data.frame with exactly the schema's columns, typed as the schema says.
rmp_make_validator <- function(input) {
  columns <- input$columns
  reject_extra <- identical(input$extra_columns, "reject")
  function(df, body_raw, key) {
    n <- nrow(df)
    details <- rmp_missing_column_details(df, columns)
    if (reject_extra) details <- c(details, rmp_extra_column_details(df, columns))
    out <- vector("list", length(columns))
    names(out) <- vapply(columns, function(column) column$name, "")
    raw_rows <- NULL
    has_boolean <- rmp_has_boolean_token(body_raw)
    for (column in columns) {
      if (!(column$name %in% names(df))) {
        if (!isTRUE(column$required)) out[[column$name]] <- rmp_cast_column(rep(NA, n), column)
        next
      }
      x <- df[[column$name]]
      class_ok <- rmp_column_class_ok(x, column$type)
      if (!class_ok || rmp_maybe_coerced(x, column$type, has_boolean)) {
        if (is.null(raw_rows)) raw_rows <- rmp_raw_rows(body_raw, key)
        type_details <- rmp_type_details(raw_rows, column)
        if (!class_ok || length(type_details) > 0) {
          details <- c(details, type_details)
          next
        }
      }
      details <- c(details, rmp_value_details(x, column))
      out[[column$name]] <- rmp_cast_column(x, column)
    }
    if (length(details) > 0) {
      rmp_abort(422L, "invalid_input",
                sprintf("%d problem(s) in the input; rows are 0-based indices", length(details)),
                details)
    }
    structure(out, class = "data.frame", row.names = c(NA, -n))
  }
}
