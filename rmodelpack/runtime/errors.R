# One JSON error shape for every error status:
# {"error": {"status", "code", "message", "request_id", "details": [{"row", "field", "problem"}]}}
# Rows in details are 0-based indices into the request's array of rows (null: the whole column).

rmp_http_error <- function(status, code, message, details = list()) {
  structure(
    class = c("rmp_http_error", "error", "condition"),
    list(message = message, call = NULL, status = status, code = code, details = details)
  )
}

rmp_abort <- function(status, code, message, details = list()) {
  stop(rmp_http_error(status, code, message, details))
}

rmp_detail <- function(row, field, problem) {
  list(row = if (is.na(row)) NULL else as.integer(row), field = field, problem = problem)
}

rmp_error_json <- function(status, code, message, request_id, details = list()) {
  body <- list(error = list(
    status = as.integer(status), code = code, message = message,
    request_id = request_id, details = details
  ))
  as.character(jsonlite::toJSON(body, auto_unbox = TRUE, null = "null", digits = NA))
}
