# The workers' transport. nginx passes every request for R to a worker over SCGI (scgi_pass, one
# connection per request) instead of HTTP: httpuv's own work cost the worker 0.34-0.63 ms of
# CPU per request, about one predict(), against 0.12-0.21 ms for SCGI read and written here
# (benchmarks/README.md, "A lighter transport"). The request becomes the Rook environment the
# app (api.R) and plumber read.
#
# R's server sockets are TCP only and listen on every interface (serverSocket() takes no
# address), so a request must carry the token nginx's config holds (a fresh random one per
# start, in the run directory only): a connection without it is closed unanswered.

# R has 128 connections per process (125 usable), which the worker's own file reads share: past
# this many open SCGI connections the oldest one still without a complete request is dropped
# (nginx sends its whole request at once, so that is someone else's).
rmp_scgi_max_connections <- 64L
rmp_scgi_max_header_bytes <- 65536L
# readBin() allocates the whole size asked for on every call, so a first read asks for what a
# usual request needs (a 1 MiB ask per request made R collect, and grow, far more often), and
# later ones for the rest, at most 1 MiB at a time.
rmp_scgi_first_read_bytes <- 16384L
rmp_scgi_read_bytes <- 1048576L

rmp_scgi_new_token <- function() {
  # raw = TRUE: a device is not a regular file, and R warns on every start otherwise.
  con <- file("/dev/urandom", "rb", raw = TRUE)
  on.exit(close(con))
  paste(sprintf("%02x", as.integer(readBin(con, "raw", 24L))), collapse = "")
}

# A listening socket on `port`, or NULL when the port is taken.
rmp_try_listen <- function(port) {
  tryCatch(suppressWarnings(serverSocket(port)), error = function(e) NULL)
}

rmp_port_free <- function(port) {
  server <- rmp_try_listen(port)
  if (is.null(server)) return(FALSE)
  close(server)
  TRUE
}

# Below the kernel's ephemeral range, so no outgoing connection is given one of the ports.
rmp_scgi_port_range <- function() {
  range <- tryCatch(scan("/proc/sys/net/ipv4/ip_local_port_range", quiet = TRUE),
                    error = function(e) c(32768, 60999))
  c(10000L, as.integer(max(range[[1]], 10100L)) - 1L)
}

# One port per worker, consecutive from a random base, each free now. A replaced worker binds
# its predecessor's port again (nginx's upstream list is fixed for the server's life).
rmp_scgi_plan <- function(workers) {
  range <- rmp_scgi_port_range()
  for (attempt in seq_len(100L)) {
    ports <- range[[1]] + sample.int(range[[2]] - range[[1]] - workers, 1L) + seq_len(workers) - 1L
    if (all(vapply(ports, rmp_port_free, NA))) {
      return(list(ports = ports, token = rmp_scgi_new_token()))
    }
  }
  stop("found no free TCP ports for the workers' SCGI sockets in 100 tries")
}

# Sys.sleep() measures its wait on the wall clock, so a clock stepped back while it waits keeps
# it waiting until the clock has caught up (an hour's step, an hour). socketSelect() counts its
# own timeout: a wait is a select on one end of a loopback TCP pair that nothing writes to.
rmp_sleep <- function(seconds) {
  if (is.null(rmp_state$sleeper)) rmp_state$sleeper <- rmp_quiet_pair()
  # No pair to be had (no free port): Sys.sleep() rather than no supervisor at all.
  if (is.null(rmp_state$sleeper)) return(invisible(Sys.sleep(seconds)))
  woken <- socketSelect(list(rmp_state$sleeper$quiet), timeout = seconds)
  # Readable means the pair broke (its other end closed): a new one, rather than a busy loop.
  if (woken) {
    for (con in rmp_state$sleeper) try(close(con), silent = TRUE)
    rmp_state$sleeper <- NULL
  }
  invisible()
}

# Two connected ends; the listener is closed at once, and a stranger who connected first (the
# 24 bytes sent are not what arrives) is dropped.
rmp_quiet_pair <- function() {
  range <- rmp_scgi_port_range()
  for (attempt in seq_len(100L)) {
    port <- range[[1]] + sample.int(range[[2]] - range[[1]], 1L) - 1L
    server <- rmp_try_listen(port)
    if (is.null(server)) next
    pair <- tryCatch(rmp_connect_pair(server, port), error = function(e) NULL,
                     finally = close(server))
    if (!is.null(pair)) return(pair)
  }
  NULL
}

rmp_connect_pair <- function(server, port) {
  talk <- socketConnection("127.0.0.1", port, open = "r+b", blocking = TRUE, timeout = 5)
  quiet <- tryCatch(socketAccept(server, open = "r+b", blocking = TRUE, timeout = 5),
                    error = function(e) NULL)
  if (!is.null(quiet)) {
    token <- as.raw(sample.int(256L, 24L, replace = TRUE) - 1L)
    writeBin(token, talk)
    if (identical(readBin(quiet, "raw", 24L), token)) return(list(talk = talk, quiet = quiet))
    close(quiet)
  }
  close(talk)
  NULL
}

# The worker's listening socket; a replaced worker may find its port briefly taken.
rmp_scgi_listen <- function(port, token, max_body, timeout) {
  server <- NULL
  for (attempt in seq_len(50L)) {
    server <- rmp_try_listen(port)
    if (!is.null(server)) break
    rmp_sleep(0.1)
  }
  if (is.null(server)) stop(sprintf("cannot listen on SCGI port %d: it is taken", port))
  scgi <- new.env(parent = emptyenv())
  scgi$server <- server
  scgi$token <- token
  scgi$max_body <- max_body
  scgi$timeout <- timeout
  scgi$conns <- list()
  scgi$next_id <- 0L
  scgi
}

# Accepts the pending connections; returns their ids.
rmp_scgi_accept <- function(scgi) {
  accepted <- character()
  for (i in seq_len(16L)) {
    if (!socketSelect(list(scgi$server), timeout = 0)) break
    if (length(scgi$conns) >= rmp_scgi_max_connections) rmp_scgi_drop(scgi, rmp_scgi_evictee(scgi))
    con <- tryCatch(
      socketAccept(scgi$server, blocking = FALSE, open = "r+b", timeout = scgi$timeout),
      error = function(e) NULL
    )
    if (is.null(con)) break
    scgi$next_id <- scgi$next_id + 1L
    state <- new.env(parent = emptyenv())
    state$con <- con
    state$chunks <- list()
    state$size <- 0
    state$opened <- rmp_now()
    id <- as.character(scgi$next_id)
    scgi$conns[[id]] <- state
    accepted <- c(accepted, id)
  }
  accepted
}

# The oldest connection without a complete header, or else the oldest.
rmp_scgi_evictee <- function(scgi) {
  ids <- names(scgi$conns)
  headerless <- ids[vapply(ids, function(id) is.null(scgi$conns[[id]]$header), NA)]
  if (length(headerless)) headerless[[1L]] else ids[[1L]]
}

rmp_scgi_drop <- function(scgi, id) {
  state <- scgi$conns[[id]]
  if (is.null(state)) return(invisible())
  try(close(state$con), silent = TRUE)
  scgi$conns[[id]] <- NULL
}

# The request's header block, once it has all arrived: "<length>:" then NUL-separated names and
# values, then ",". NULL while incomplete; an error when it can never be valid.
rmp_scgi_header <- function(bytes) {
  colon <- match(as.raw(58L), bytes[seq_len(min(length(bytes), 8L))])
  if (is.na(colon)) {
    if (length(bytes) >= 8L) stop("no netstring length")
    return(NULL)
  }
  digits <- rawToChar(bytes[seq_len(colon - 1L)])
  if (!grepl("^[0-9]{1,6}$", digits)) stop("bad netstring length")
  size <- as.integer(digits)
  if (size > rmp_scgi_max_header_bytes) stop("header block too large")
  end <- colon + size + 1L
  if (length(bytes) < end) return(NULL)
  if (bytes[[end]] != as.raw(44L) || size == 0L || bytes[[end - 1L]] != as.raw(0L)) {
    stop("bad header block")
  }
  block <- bytes[(colon + 1L):(end - 1L)]
  nul <- block == as.raw(0L)
  if (!any(block == as.raw(10L))) {
    # The common case, in one call: NULs as line ends.
    fields <- strsplit(rawToChar(replace(block, nul, as.raw(10L))), "\n", fixed = TRUE)[[1]]
    fields <- c(fields, rep("", sum(nul) - length(fields)))
  } else {
    nul <- which(nul)
    starts <- c(1L, utils::head(nul, -1L) + 1L)
    fields <- vapply(seq_along(nul), function(i) {
      if (nul[[i]] > starts[[i]]) rawToChar(block[starts[[i]]:(nul[[i]] - 1L)]) else ""
    }, "")
  }
  if (length(fields) %% 2L != 0L) stop("bad header fields")
  values <- fields[c(FALSE, TRUE)]
  names(values) <- fields[c(TRUE, FALSE)]
  list(values = as.list(values), end = end)
}

# Reads what a connection has; returns its request once complete: list(headers, body). The
# chunks are joined only to find the header and once the body is complete.
rmp_scgi_read <- function(scgi, id) {
  state <- scgi$conns[[id]]
  want <- if (is.null(state$header)) rmp_scgi_first_read_bytes else
    min(state$need - state$size, rmp_scgi_read_bytes)
  chunk <- tryCatch(readBin(state$con, "raw", want), error = function(e) raw(0))
  # Readable but empty: the peer closed (or reset) the connection.
  if (length(chunk) == 0L) return(rmp_scgi_drop(scgi, id))
  state$chunks[[length(state$chunks) + 1L]] <- chunk
  state$size <- state$size + length(chunk)
  if (is.null(state$header)) {
    bytes <- do.call(c, state$chunks)
    state$chunks <- list(bytes)
    header <- tryCatch(rmp_scgi_header(bytes), error = function(e) FALSE)
    if (isFALSE(header)) return(rmp_scgi_drop(scgi, id))
    if (is.null(header)) return(NULL)
    declared <- rmp_scgi_field(header$values, "CONTENT_LENGTH")
    if (!identical(rmp_scgi_field(header$values, "RMP_TOKEN"), scgi$token) ||
        !grepl("^[0-9]{0,12}$", declared, useBytes = TRUE)) {
      return(rmp_scgi_drop(scgi, id))
    }
    body_bytes <- as.numeric(paste0("0", declared))
    if (body_bytes > scgi$max_body) return(rmp_scgi_drop(scgi, id))
    state$header <- header
    state$need <- header$end + body_bytes
  }
  if (state$size < state$need) return(NULL)
  bytes <- if (length(state$chunks) == 1L) state$chunks[[1L]] else do.call(c, state$chunks)
  state$chunks <- list()
  end <- state$header$end
  body <- if (state$need > end) bytes[(end + 1L):state$need] else raw(0)
  list(headers = state$header$values, body = body)
}

# A header's value ("" when absent); exact names only (`$` would match a prefix).
rmp_scgi_field <- function(values, name) {
  value <- values[[name, exact = TRUE]]
  if (is.null(value)) "" else value
}

# The body as a Rook input stream (plumber may rewind and re-read it).
rmp_rook_input <- function(body) {
  input <- new.env(parent = emptyenv())
  input$read <- function(l = -1L) body
  input$rewind <- function() invisible(0L)
  input$read_lines <- function(n = -1L) {
    lines <- strsplit(rawToChar(body), "\r?\n")[[1]]
    if (n < 0L) lines else utils::head(lines, n)
  }
  input
}

# A Rook request: the fields nginx sends (nginx.conf.in), named as httpuv named them (its
# QUERY_STRING kept the "?").
rmp_scgi_passed_headers <- c("CONTENT_TYPE", "HTTP_CONTENT_ENCODING", "HTTP_HOST",
                             "HTTP_X_REQUEST_ID", "HTTP_X_RMP_IN_FLIGHT",
                             "HTTP_INFERENCE_HEADER_CONTENT_LENGTH")

rmp_scgi_request <- function(headers, body, con = NULL) {
  force(body)
  req <- new.env(parent = emptyenv())
  req$REQUEST_METHOD <- rmp_scgi_field(headers, "REQUEST_METHOD")
  req$PATH_INFO <- rmp_scgi_field(headers, "RMP_PATH")
  req$SCRIPT_NAME <- ""
  query <- rmp_scgi_field(headers, "QUERY_STRING")
  req$QUERY_STRING <- if (nzchar(query)) paste0("?", query) else ""
  for (name in rmp_scgi_passed_headers) {
    value <- rmp_scgi_field(headers, name)
    if (nzchar(value)) assign(name, value, envir = req)
  }
  req$rook.input <- rmp_rook_input(body)
  if (!is.null(con)) req$rmp.gone <- function() rmp_scgi_gone(con)
  req
}

# nginx sends nothing after a request, and closes the connection when it gives up on it (its own
# 504 at timeout_seconds): a readable connection has been closed (or reset), and an answer
# written to it reaches no client.
rmp_scgi_gone <- function(con) {
  isTRUE(tryCatch(socketSelect(list(con), timeout = 0), error = function(e) TRUE))
}

rmp_scgi_reasons <- c(
  `200` = "OK", `400` = "Bad Request", `404` = "Not Found", `405` = "Method Not Allowed",
  `413` = "Payload Too Large", `415` = "Unsupported Media Type",
  `422` = "Unprocessable Entity", `500` = "Internal Server Error", `503` = "Service Unavailable"
)

rmp_scgi_response_bytes <- function(response) {
  status <- as.integer(response$status)
  body <- response$body
  if (is.character(body)) body <- charToRaw(enc2utf8(paste(body, collapse = "")))
  headers <- response$headers
  reason <- rmp_scgi_reasons[as.character(status)]
  lines <- c(
    sprintf("Status: %d %s", status, if (is.na(reason)) "Status" else reason),
    if (length(headers)) paste0(names(headers), ": ", unlist(headers, use.names = FALSE)),
    sprintf("Content-Length: %d", length(body))
  )
  c(charToRaw(paste0(paste(lines, collapse = "\r\n"), "\r\n\r\n")), body)
}

rmp_scgi_write <- function(con, response) {
  tryCatch(writeBin(rmp_scgi_response_bytes(response), con), error = function(e) NULL)
  try(close(con), silent = TRUE)
}

rmp_scgi_internal_error <- function(req) {
  list(status = 500L, headers = list(`Content-Type` = "application/json"),
       body = rmp_error_json(500L, "internal_error", "internal server error; see the server log",
                             rmp_request_id(req)))
}

# Answers one request: the app's answer now, or when its batch is scored (a deferred).
rmp_scgi_answer <- function(call, con, req) {
  # Forced now: the callbacks below may run after the caller's loop has moved on.
  force(con)
  force(req)
  response <- tryCatch(call(req), error = function(e) rmp_scgi_internal_error(req))
  if (inherits(response, "rmp_deferred")) {
    response$then(function(value) rmp_scgi_write(con, value),
                  function(reason) rmp_scgi_write(con, rmp_scgi_internal_error(req)))
  } else {
    rmp_scgi_write(con, response)
  }
}

# Connections that never completed a request within the timeout (nginx sends whole requests;
# this is someone else) are closed.
rmp_scgi_reap <- function(scgi) {
  limit <- rmp_now() - scgi$timeout
  for (id in names(scgi$conns)) {
    if (scgi$conns[[id]]$opened < limit) rmp_scgi_drop(scgi, id)
  }
}

# One round: waits up to `wait` seconds for the sockets, accepts, reads, and answers every
# request that is complete, in arrival order. `batcher$arriving` tells the batching front how
# many complete requests are still to come in this round (batch.R).
rmp_scgi_round <- function(scgi, wait, call, batcher) {
  ids <- names(scgi$conns)
  sockets <- c(list(scgi$server), lapply(ids, function(id) scgi$conns[[id]]$con))
  ready <- socketSelect(sockets, timeout = wait)
  readable <- ids[ready[-1L]]
  if (ready[[1L]]) {
    # nginx sends its request right after connecting: read the new ones in this round too.
    accepted <- rmp_scgi_accept(scgi)
    if (length(accepted)) {
      now <- socketSelect(lapply(accepted, function(id) scgi$conns[[id]]$con), timeout = 0)
      readable <- c(readable, accepted[now])
    }
  }
  requests <- list()
  for (id in readable) {
    if (is.null(scgi$conns[[id]])) next
    # Nothing a peer sends may end the worker: a read that fails drops that connection.
    request <- tryCatch(rmp_scgi_read(scgi, id), error = function(e) rmp_scgi_drop(scgi, id))
    if (!is.null(request)) {
      con <- scgi$conns[[id]]$con
      scgi$conns[[id]] <- NULL
      requests[[length(requests) + 1L]] <- list(con = con, req = rmp_scgi_request(
        request$headers, request$body, con
      ))
    }
  }
  for (k in seq_along(requests)) {
    if (!is.null(batcher)) batcher$arriving <- length(requests) - k
    rmp_scgi_answer(call, requests[[k]]$con, requests[[k]]$req)
  }
  if (!is.null(batcher)) batcher$arriving <- 0L
  invisible()
}
