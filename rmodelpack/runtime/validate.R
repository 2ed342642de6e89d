# Request bodies -> a validated data.frame, or an rmp_http_error listing every problem.
# The body is parsed without simplification (jsonlite's data.frame simplification costs more than
# the rest of the request) and each schema column is pulled out of the row objects and checked as
# one vector. The per-row details are only worked out once a vectorised check has failed.

rmp_parse_json <- function(body_raw) {
  # rawToChar() cannot hold a NUL byte, and no JSON text contains one.
  if (any(body_raw == as.raw(0L))) {
    rmp_abort(400L, "malformed_json", "malformed JSON: the body contains a NUL byte")
  }
  # One fixed search (about 2 us on a small body); only a hit is looked at closer.
  if (length(grepRaw(rmp_nul_escape, body_raw, fixed = TRUE)) > 0L) {
    rmp_refuse_nul_escape(body_raw)
  }
  tryCatch({
    text <- rawToChar(body_raw)
    Encoding(text) <- "UTF-8"
    jsonlite::parse_json(text, simplifyVector = FALSE)
  }, error = function(e) rmp_abort(400L, "malformed_json", paste("malformed JSON:", conditionMessage(e))))
}

rmp_nul_escape <- charToRaw("\\u0000")
rmp_backslash <- charToRaw("\\")

# jsonlite ends a string at the escape \u0000 ("ab\u0000c" parses as "ab"), so a value would
# silently change: such a body is refused, naming where. "\\u0000" (an escaped backslash, then
# the text u0000) is legal: the escape is real only when an odd run of backslashes ends at "u".
rmp_refuse_nul_escape <- function(body_raw) {
  for (at in grepRaw(rmp_nul_escape, body_raw, fixed = TRUE, all = TRUE)) {
    first <- at
    while (first > 1L && body_raw[[first - 1L]] == rmp_backslash) first <- first - 1L
    if ((at - first) %% 2L == 0L) {
      rmp_abort(400L, "malformed_json", sprintf(paste(
        "malformed JSON: the string escape \\u0000 (a NUL character) at byte offset %d cannot",
        "be served: R strings cannot hold NUL, so the value would be cut short there; remove it"
      ), at - 1L))
    }
  }
  invisible(FALSE)
}

rmp_is_object <- function(value) is.list(value) && !is.null(names(value))

# Returns the rows: an unnamed list of JSON objects (named lists).
rmp_rows_from_body <- function(parsed, key) {
  if (!is.null(key) && !(rmp_is_object(parsed) && key %in% names(parsed))) {
    rmp_abort(422L, "invalid_input", sprintf("expected a JSON object with a \"%s\" array of rows", key))
  }
  rows <- if (is.null(key)) parsed else parsed[[key]]
  # An empty array is a valid request with no rows (the handler answers []).
  if (is.list(rows) && is.null(names(rows)) && length(rows) == 0) return(list())
  if (!is.list(rows) || !is.null(names(rows)) || !all(vapply(rows, rmp_is_object, NA))) {
    rmp_abort(422L, "invalid_input", "expected an array of row objects, e.g. [{\"col\": 1}]")
  }
  rows
}

rmp_check_row_count <- function(rows, max_rows) {
  if (length(rows) > max_rows) {
    rmp_abort(413L, "too_many_rows",
              sprintf("the request has %d rows; at most %d are allowed", length(rows), max_rows))
  }
}

rmp_json_type <- function(value) {
  if (is.null(value)) return("null")
  if (is.list(value)) return(if (is.null(names(value))) "array" else "object")
  switch(typeof(value), double = "number", integer = "number", logical = "boolean",
         character = "string", typeof(value))
}

rmp_expected_json_type <- function(type) {
  switch(type, number = "number", integer = "number", boolean = "boolean",
         string = "string", factor = "string")
}

rmp_has_boolean_token <- function(body_raw) {
  text <- rawToChar(body_raw)
  grepl("true", text, fixed = TRUE) || grepl("false", text, fixed = TRUE)
}

# unlist() coerces silently (true among numbers becomes 1, 5 among strings becomes "5"), so
# beyond the vector's own type, look at the elements when such a mix is possible.
rmp_column_type_ok <- function(x, values, present, type, body_has_boolean) {
  switch(type,
    number = , integer = is.numeric(x) &&
      !(body_has_boolean && any(vapply(values[present], is.logical, NA))),
    boolean = is.logical(x),
    string = , factor = is.character(x) && all(vapply(values[present], is.character, NA))
  )
}

# Exact per-row type problems for one column.
rmp_type_details <- function(values, column) {
  expected <- rmp_expected_json_type(column$type)
  got <- vapply(values, rmp_json_type, "")
  bad <- which(got != "null" & got != expected)
  lapply(bad, function(i) {
    rmp_detail(i - 1L, column$name, sprintf("expected %s, got %s", expected, got[[i]]))
  })
}

# The value checks a column needs, each list(bad = function(x, present), problem = text),
# built once per column so a request only runs the checks its schema asks for.
rmp_value_checks <- function(column) {
  checks <- list()
  add <- function(bad, problem) checks[[length(checks) + 1]] <<- list(bad = bad, problem = problem)
  if (isTRUE(column$required)) add(function(x, present) !present, "required value is missing or null")
  if (column$type %in% c("number", "integer")) {
    # 1e400 parses as Inf; the model would score it
    add(function(x, present) present & !is.finite(x), "must be a finite number")
  }
  if (column$type == "integer") {
    add(function(x, present) present & is.finite(x) & x != round(x), "expected an integer")
    # as.integer() turns these into NA with only a warning
    add(function(x, present) present & is.finite(x) & abs(x) > .Machine$integer.max,
        sprintf("outside the integer range (±%d)", .Machine$integer.max))
  }
  min <- column$min
  max <- column$max
  if (!is.null(min)) add(function(x, present) present & x < min, sprintf("must be >= %s", min))
  if (!is.null(max)) add(function(x, present) present & x > max, sprintf("must be <= %s", max))
  for (key in c("levels", "allowed")) {
    choices <- unlist(column[[key]])
    if (is.null(choices)) next
    problem <- sprintf("%s; expected one of %s",
                       if (key == "levels") "unknown level" else "not allowed",
                       paste(choices, collapse = ", "))
    add(local({
      set <- choices
      function(x, present) present & !(x %in% set)
    }), problem)
  }
  checks
}

rmp_value_details <- function(x, present, checks, name) {
  details <- list()
  for (check in checks) {
    bad <- check$bad(x, present)
    if (any(bad)) {
      details <- c(details, lapply(which(bad) - 1L, rmp_detail, field = name, problem = check$problem))
    }
  }
  details
}

rmp_na_of <- function(type) {
  switch(type, number = NA_real_, integer = NA_real_, boolean = NA, NA_character_)
}

rmp_cast_column <- function(x, column) {
  switch(column$type,
    number = as.numeric(x), integer = as.integer(x), boolean = as.logical(x),
    string = as.character(x), factor = factor(x, levels = unlist(column$levels))
  )
}

rmp_key_in_any_row <- function(rows, name) any(vapply(rows, function(row) name %in% names(row), NA))

# The common case in one cheap test: x holds a value of the right type for every row (no null,
# no array) and all of them pass the column's checks. FALSE means "look closer", not "invalid".
rmp_fast_check <- function(column) {
  lo <- if (is.null(column$min)) -Inf else column$min
  hi <- if (is.null(column$max)) Inf else column$max
  whole <- column$type == "integer"
  levels <- unlist(column$levels)
  allowed <- unlist(column$allowed)
  switch(rmp_expected_json_type(column$type),
    number = function(x, values, n, body_has_boolean) {
      length(x) == n && is.numeric(x) && !body_has_boolean && all(is.finite(x)) &&
        all(x >= lo & x <= hi) &&
        (!whole || all(x == round(x) & abs(x) <= .Machine$integer.max))
    },
    boolean = function(x, values, n, body_has_boolean) length(x) == n && is.logical(x),
    string = function(x, values, n, body_has_boolean) {
      length(x) == n && is.character(x) && all(vapply(values, is.character, NA)) &&
        (is.null(levels) || all(x %in% levels)) && (is.null(allowed) || all(x %in% allowed))
    }
  )
}

# Returns function(rows, body_has_boolean) -> list(value = typed column or NULL, details = list).
rmp_column_validator <- function(column) {
  name <- column$name
  checks <- rmp_value_checks(column)
  fast_check <- rmp_fast_check(column)
  na <- rmp_na_of(column$type)
  function(rows, body_has_boolean) {
    values <- lapply(rows, .subset2, name)
    x <- unlist(values, recursive = FALSE, use.names = FALSE)
    if (fast_check(x, values, length(rows), body_has_boolean)) {
      return(list(value = rmp_cast_column(x, column)))
    }
    present <- lengths(values) > 0L
    if (is.null(x) && !rmp_key_in_any_row(rows, name)) {
      if (isTRUE(column$required)) {
        return(list(details = list(rmp_detail(NA, name, "required column is missing"))))
      }
      return(list(value = rmp_cast_column(rep(na, length(rows)), column)))
    }
    if (is.null(x)) x <- na[0]
    if (is.list(x) || !rmp_column_type_ok(x, values, present, column$type, body_has_boolean)) {
      return(list(details = rmp_type_details(values, column)))
    }
    if (!all(present)) {
      full <- rep(na, length(rows))
      full[present] <- x
      x <- full
    }
    details <- rmp_value_details(x, present, checks, name)
    if (length(details) > 0) return(list(details = details))
    list(value = rmp_cast_column(x, column))
  }
}

rmp_extra_column_details <- function(rows, known) {
  extra <- setdiff(unique(unlist(lapply(rows, names), use.names = FALSE)), known)
  lapply(extra, function(name) rmp_detail(NA, name, "unknown column (input.extra_columns is reject)"))
}

# Returns function(rows, body_raw) -> a data.frame with exactly the schema's columns, typed as
# the schema says.
rmp_make_validator <- function(input) {
  columns <- input$columns
  names <- vapply(columns, function(column) column$name, "")
  validators <- lapply(columns, rmp_column_validator)
  reject_extra <- identical(input$extra_columns, "reject")
  function(rows, body_raw) {
    has_boolean <- rmp_has_boolean_token(body_raw)
    out <- vector("list", length(columns))
    names(out) <- names
    details <- list()
    for (i in seq_along(validators)) {
      checked <- validators[[i]](rows, has_boolean)
      if (length(checked$details) > 0) details <- c(details, checked$details)
      if (!is.null(checked$value)) out[[i]] <- checked$value
    }
    if (reject_extra) details <- c(details, rmp_extra_column_details(rows, names))
    if (length(details) > 0) {
      rmp_abort(422L, "invalid_input",
                sprintf("%d problem(s) in the input; rows are 0-based indices", length(details)),
                details)
    }
    structure(out, class = "data.frame", row.names = c(NA_integer_, -length(rows)))
  }
}
