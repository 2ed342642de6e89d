# Request bodies -> a validated data.frame, or an rmp_http_error listing every problem.
# The body is parsed without simplification (jsonlite's data.frame simplification costs more than
# the rest of the request) and each schema column is pulled out of the row objects and checked as
# one vector. The per-row details are only worked out once a vectorised check has failed.

rmp_parse_json <- function(body_raw) {
  # rawToChar() cannot hold a NUL byte, and no JSON text contains one.
  if (any(body_raw == as.raw(0L))) {
    rmp_abort(400L, "malformed_json", "malformed JSON: the body contains a NUL byte")
  }
  text <- rawToChar(body_raw)
  # yajl lets some invalid sequences through (overlong forms, encoded surrogates), and answers
  # that echo a key or an id would carry them: no longer UTF-8, so no longer JSON.
  if (!validUTF8(text)) {
    rmp_abort(400L, "malformed_json", "malformed JSON: the body is not valid UTF-8")
  }
  rmp_refuse_odd_structure(body_raw, text)
  # One fixed search (about 2 us on a small body); only a body with a \u escape is scanned.
  if (length(grepRaw(rmp_unicode_escape_start, body_raw, fixed = TRUE)) > 0L) {
    rmp_refuse_unsafe_escapes(body_raw)
  }
  parsed <- tryCatch({
    Encoding(text) <- "UTF-8"
    jsonlite::parse_json(text, simplifyVector = FALSE)
  }, error = function(e) rmp_abort(400L, "malformed_json", paste("malformed JSON:", conditionMessage(e))))
  rmp_refuse_duplicate_keys(parsed)
  parsed
}

# jsonlite builds nested values recursively: a body nested ~50,000 deep overflows R's protect
# stack after yajl has built its parse tree, which is then never freed (20-40 MB per request,
# until the worker is OOM-killed), and nesting in the hundreds overflows the C stack wherever a
# value is walked or echoed. No request of any route nests beyond a handful of levels.
rmp_max_json_depth <- 64L
# The depth is summed over this many brackets at a time (~20 bytes of vectors per bracket); a
# body up to this size may pass on one count of its bytes (rmp_plain_json).
rmp_depth_slice_bytes <- 65536L

# Too deep a nesting, comments, and a string left open at the end: yajl takes /* */ and //
# comments and a value followed by an unclosed string ({"data": [...]}" {...), none of them
# JSON, so a proxy that checked the body could read another value than the model scores. Each
# step is one regex pass in C over the text.
rmp_refuse_odd_structure <- function(body_raw, text) {
  if (rmp_plain_json(body_raw)) return(invisible())
  structure <- rmp_json_structure(text)
  if (grepl("\"", structure, fixed = TRUE)) {
    rmp_abort(400L, "malformed_json", "malformed JSON: a string is not closed")
  }
  if (grepl("/", structure, fixed = TRUE)) {
    rmp_abort(400L, "malformed_json",
              "malformed JSON: a comment (a / outside a string); JSON has no comments")
  }
  if (rmp_bracket_depth(charToRaw(structure), rmp_max_json_depth) > rmp_max_json_depth) {
    rmp_abort(400L, "malformed_json", sprintf(
      "malformed JSON: arrays and objects nested more than %d deep", rmp_max_json_depth))
  }
}

# The cheap case, one count of the bytes: no slash, no backslash, an even number of quotes (so
# every string is closed) and too few brackets to nest deeply. A large body has many brackets.
rmp_plain_json <- function(body_raw) {
  if (length(body_raw) > rmp_depth_slice_bytes) return(FALSE)
  counts <- tabulate(as.integer(body_raw), 125L)
  slashes <- counts[[0x2F]] + counts[[0x5C]]
  opens <- counts[[0x5B]] + counts[[0x7B]]
  slashes == 0L && counts[[0x22]] %% 2L == 0L && opens <= rmp_max_json_depth
}

# The brackets, slashes and unclosed quotes outside strings, in order. Escapes go first (a
# backslash and the byte after it, left to right, as JSON reads them), so the quotes left are the
# ones that open and close strings; then the strings go. Exact for JSON, whose only backslashes
# are in strings; anything else fails to parse anyway.
rmp_json_structure <- function(text) {
  if (grepl("\\", text, fixed = TRUE)) {
    text <- gsub("(?s)\\\\.", "", text, perl = TRUE, useBytes = TRUE)
  }
  text <- gsub("\"[^\"]*\"", "", text, perl = TRUE, useBytes = TRUE)
  gsub("[^][{}/\"]+", "", text, perl = TRUE, useBytes = TRUE)
}

# The deepest nesting of a run of brackets, or the first depth past `stop_at`.
rmp_bracket_depth <- function(brackets, stop_at = .Machine$integer.max) {
  depth <- deepest <- 0L
  slices <- ceiling(length(brackets) / rmp_depth_slice_bytes)
  for (from in seq(1L, by = rmp_depth_slice_bytes, length.out = slices)) {
    part <- brackets[from:min(length(brackets), from + rmp_depth_slice_bytes - 1L)]
    depths <- depth + cumsum((part == as.raw(0x5BL) | part == as.raw(0x7BL)) -
                               (part == as.raw(0x5DL) | part == as.raw(0x7DL)))
    depth <- depths[[length(depths)]]
    deepest <- max(deepest, depths)
    if (deepest > stop_at) break
  }
  deepest
}

# The body's object with a key twice (two "data" arrays, say): jsonlite keeps both and the first
# would be read, while other parsers keep the last (rows: rmp_duplicate_key_details).
rmp_refuse_duplicate_keys <- function(parsed) {
  twice <- anyDuplicated(names(parsed))
  if (twice > 0L) {
    rmp_abort(422L, "invalid_input", sprintf(
      "the key \"%s\" appears more than once in the body's object; send it once",
      names(parsed)[[twice]]))
  }
}

rmp_unicode_escape_start <- charToRaw("\\u")

# jsonlite (yajl) turns some \u escapes into another value without an error, so those are refused,
# naming where: \u0000 ends the string there ("ab\u0000c" parses as "ab"; R strings cannot hold
# NUL); a high surrogate not followed by a low one becomes "?" and swallows the next byte (a
# backslash, so "\uD800\\u0000" held a live \u0000, a quote or a letter); a lone low surrogate
# becomes bytes that are not UTF-8.
# Each match is one run of escaped backslashes (\\ pairs, consumed whole, possessively) with the
# escape of interest that may end it (\u0000 or a surrogate), or such an escape alone. The search
# resumes after a match and skips to the next backslash, so it never starts inside a run: the
# escapes found are exactly the live ones, in one linear pass ("\\u0000" is a backslash then the
# text u0000, never found). Other \u escapes are not found, so they separate a high surrogate
# from anything found after it.
rmp_unsafe_escape <- "\\\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})"
rmp_unicode_escape_pattern <- sprintf("(?:\\\\\\\\)++(?:%s)?|%s", rmp_unsafe_escape, rmp_unsafe_escape)

rmp_refuse_unsafe_escapes <- function(body_raw) {
  at <- rmp_unicode_escapes(body_raw)
  if (length(at) == 0L) return(invisible(FALSE))
  # Hex digits in lower case (setting bit 0x20 leaves 0-9 as they are).
  first_digit <- bitwOr(as.integer(body_raw[at + 2L]), 0x20L)
  second_digit <- bitwOr(as.integer(body_raw[at + 3L]), 0x20L)
  surrogate <- first_digit == 0x64L  # d
  high <- surrogate & second_digit %in% c(0x38L, 0x39L, 0x61L, 0x62L)  # 8 9 a b
  low <- surrogate & second_digit >= 0x63L  # c d e f
  nul <- rmp_is_nul_escape(body_raw, at)
  # A pair is a high escape with a low escape starting right where it ends.
  pair_after <- high & c(at[-1L] == at[-length(at)] + 6L, FALSE) & c(low[-1L], FALSE)
  pair_before <- c(FALSE, pair_after[-length(at)])
  problem <- character(length(at))
  problem[low & !pair_before] <- "low"
  problem[high & !pair_after] <- "high"
  problem[nul] <- "nul"
  bad <- which(nzchar(problem))
  if (length(bad) == 0L) return(invisible(FALSE))
  first <- bad[[1L]]
  escape <- rawToChar(body_raw[at[[first]] + 0:5])
  rmp_abort(400L, "malformed_json", rmp_unsafe_escape_message(problem[[first]], escape, at[[first]] - 1L))
}

# The 1-based byte positions of the backslash of each live \u0000 or surrogate escape, in order.
rmp_unicode_escapes <- function(body_raw) {
  text <- rawToChar(body_raw)
  found <- gregexpr(rmp_unicode_escape_pattern, text, perl = TRUE, useBytes = TRUE)[[1L]]
  if (found[[1L]] == -1L) return(integer())
  match_length <- attr(found, "match.length")
  escape_start <- (as.integer(found) + match_length - 6L)[match_length >= 6L]
  # A match of backslash pairs only has a backslash there, not the u of an escape.
  escape_start[body_raw[escape_start + 1L] == as.raw(0x75)]
}

rmp_is_nul_escape <- function(body_raw, at) {
  zero <- as.raw(0x30)
  body_raw[at + 2L] == zero & body_raw[at + 3L] == zero &
    body_raw[at + 4L] == zero & body_raw[at + 5L] == zero
}

rmp_unsafe_escape_message <- function(problem, escape, offset) {
  switch(problem,
    nul = sprintf(paste(
      "malformed JSON: the string escape \\u0000 (a NUL character) at byte offset %d cannot",
      "be served: R strings cannot hold NUL, so the value would be cut short there; remove it"
    ), offset),
    high = sprintf(paste(
      "malformed JSON: the string escape %s at byte offset %d: a high surrogate must be followed",
      "immediately by a low-surrogate escape (\\uDC00-\\uDFFF), or the JSON parser would change",
      "the string; write the character itself in UTF-8 or as a full pair such as \\ud83e\\udd80"
    ), escape, offset),
    low = sprintf(paste(
      "malformed JSON: the string escape %s at byte offset %d: a low surrogate must come right",
      "after a high-surrogate escape (\\uD800-\\uDBFF), or the JSON parser would change the",
      "string; write the character itself in UTF-8 or as a full pair such as \\ud83e\\udd80"
    ), escape, offset)
  )
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

# An answer lists at most this many problems, and only these are worked out: a body of 1,000 rows
# with every field wrong has 13,000, at ~77 us each to describe and send, so a few clients
# sending such bodies took a second of a worker per request. The message counts them all.
rmp_max_details <- 100L

# Details for the first rmp_max_details of `at` (made by make(i)); attribute "problems" counts all.
rmp_capped_details <- function(at, make) {
  structure(lapply(utils::head(at, rmp_max_details), make), problems = length(at))
}

rmp_problem_count <- function(details) attr(details, "problems") %||% length(details)

# Collects details across checks: at most rmp_max_details kept, every problem counted.
rmp_new_problems <- function() {
  found <- new.env(parent = emptyenv())
  found$details <- list()
  found$count <- 0L
  found$add <- function(details) {
    room <- rmp_max_details - length(found$details)
    if (room > 0L) found$details <- c(found$details, utils::head(details, room))
    found$count <- found$count + rmp_problem_count(details)
  }
  found
}

rmp_problems_message <- function(found, what) {
  listed <- if (found$count > length(found$details)) {
    sprintf("; the first %d are listed", length(found$details))
  } else {
    ""
  }
  sprintf("%d problem(s) in the %s%s", found$count, what, listed)
}

# Exact per-row type problems for one column.
rmp_type_details <- function(values, column) {
  expected <- rmp_expected_json_type(column$type)
  got <- vapply(values, rmp_json_type, "")
  bad <- which(got != "null" & got != expected)
  rmp_capped_details(bad, function(i) {
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
  found <- rmp_new_problems()
  for (check in checks) {
    bad <- check$bad(x, present)
    if (any(bad)) {
      found$add(rmp_capped_details(which(bad) - 1L, function(row) {
        rmp_detail(row, name, check$problem)
      }))
    }
  }
  structure(found$details, problems = found$count)
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

# A key twice in one row object: jsonlite keeps both and the columns would be read from the
# first, while other parsers (Python's, Go's) keep the last, so what a proxy checked could differ
# from what the model scores. One vectorised test; the details only when it fails.
rmp_duplicate_key_details <- function(rows) {
  keys <- unlist(lapply(rows, names), use.names = FALSE)
  row_of <- rep.int(seq_along(rows), lengths(rows))
  pairs <- row_of * (length(keys) + 1) + match(keys, keys)
  if (anyDuplicated(pairs) == 0L) return(list())
  problem <- "the key appears more than once in this row; send it once"
  rmp_capped_details(which(duplicated(pairs)), function(i) {
    rmp_detail(row_of[[i]] - 1L, keys[[i]], problem)
  })
}

rmp_extra_column_details <- function(rows, known) {
  extra <- setdiff(unique(unlist(lapply(rows, names), use.names = FALSE)), known)
  rmp_capped_details(extra, function(name) {
    rmp_detail(NA, name, "unknown column (input.extra_columns is reject)")
  })
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
    found <- rmp_new_problems()
    found$add(rmp_duplicate_key_details(rows))
    for (i in seq_along(validators)) {
      checked <- validators[[i]](rows, has_boolean)
      if (length(checked$details) > 0) found$add(checked$details)
      if (!is.null(checked$value)) out[[i]] <- checked$value
    }
    if (reject_extra) found$add(rmp_extra_column_details(rows, names))
    if (found$count > 0) {
      rmp_abort(422L, "invalid_input",
                paste0(rmp_problems_message(found, "input"), "; rows are 0-based indices"),
                found$details)
    }
    structure(out, class = "data.frame", row.names = c(NA_integer_, -length(rows)))
  }
}
