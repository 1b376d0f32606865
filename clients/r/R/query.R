final_states <- c("DONE", "FAILED", "CANCELLED")

query_path <- function(id, suffix = "") {
  paste0("/v1/queries/", utils::URLencode(id, reserved = TRUE), suffix)
}

query_spec <- function(sql, epsilon, delta, min_nodes, reference_date, laplace) {
  spec <- list(sql = sql)
  if (!is.null(epsilon)) spec$epsilon <- epsilon
  if (!is.null(delta)) spec$delta <- delta
  if (!is.null(min_nodes)) spec$min_nodes <- as.integer(min_nodes)
  if (!is.null(reference_date)) spec$reference_date <- reference_date
  if (isTRUE(laplace)) spec$mechanism <- "MECHANISM_LAPLACE"
  spec
}

#' Run a query on the network
#'
#' `fs_query()` sends a query to the coordinator, follows its progress until
#' the nodes' encrypted partials are summed and the result is released, and
#' returns the released table. Each query spends privacy budget (`epsilon`,
#' `delta`) at every node that answers; [fs_explain()] tells the cost first.
#'
#' The tibble has the columns described in [fs_result_tibble()]: the group
#' keys, then for every aggregate its value, `_ci_low`, `_ci_high` (the 95%
#' interval from the noise actually added) and `_suppressed`, and a logical
#' `suppressed` column; suppressed numbers are `NA`. Its attributes
#' `query_id`, `state`, `sql`, `epsilon`, `delta`, `rho` (the cost charged at
#' every node that answered, zCDP rho and (epsilon, delta)), `mechanism`,
#' `nodes` (partials summed) and `small_count_threshold` describe the release.
#'
#' `fs_get()` returns a query's current status in the same form without
#' waiting (a query not yet released has no rows; see its `state`
#' attribute), `fs_wait()` follows a query until it ends, `fs_cancel()`
#' cancels one, and `fs_queries()` lists your recent queries.
#'
#' @param con A connection from [fedstat_connect()].
#' @param sql The query (see docs/query-language.md of fedstat).
#' @param epsilon,delta Its privacy cost at every node that answers; default
#'   to the network's.
#' @param min_nodes Partials the release needs; defaults to the network's.
#' @param reference_date `"YYYY-MM-DD"` at which `age` is computed.
#' @param laplace Pure epsilon-DP with Laplace noise (`delta` unused).
#' @param deadline Seconds the coordinator waits for the nodes.
#' @param progress Show a progress bar while the query runs.
#' @param wait `FALSE` returns as soon as the query is submitted.
#' @param fresh `TRUE` asks the nodes again at full price. By default a
#'   question you had released before, while no node's data changed since, is
#'   answered from that release and charged nothing (the `reused_from`
#'   attribute names it).
#' @param id A query id (the `query_id` attribute).
#' @param limit How many queries to list (0: the coordinator's default).
#' @return `fs_query()`, `fs_get()`, `fs_wait()`, `fs_cancel()`: a tibble
#'   with attributes. `fs_queries()`: a tibble with `query_id`, `state`,
#'   `sql`, `epsilon`, `analyst`, `submitted`, `finished` and `error`.
#' @section Errors: A query the coordinator cannot parse or plan signals an
#'   error of class `fedstat_error_bad_request` with the coordinator's message;
#'   a query that ends without a release signals `fedstat_error_query_failed`
#'   (with `query_id` and `state`). Every error also has class `fedstat_error`.
#' @examples
#' \dontrun{
#' con <- fedstat_connect()
#' by_region <- fs_query(con, "SELECT region, COUNT(DISTINCT patient_id) FROM conditions
#'                             WHERE code = '44054006' GROUP BY region", epsilon = 0.5)
#' attr(by_region, "rho")
#' fs_get(con, attr(by_region, "query_id"))
#' }
#' @export
fs_query <- function(con, sql, epsilon = NULL, delta = NULL, min_nodes = NULL, reference_date = NULL,
                     laplace = FALSE, deadline = NULL, progress = interactive(), wait = TRUE,
                     fresh = FALSE) {
  body <- list(spec = query_spec(sql, epsilon, delta, min_nodes, reference_date, laplace))
  if (!is.null(con$cert)) {
    signed <- sign_query(con, body$spec)
    body$spec <- signed$spec
    body$analyst_signature <- signed$sig
  }
  if (!is.null(deadline)) body$deadline_ms <- as.character(round(deadline * 1000))
  if (isTRUE(fresh)) body$fresh <- TRUE
  st <- fs_call(con, "POST", "/v1/queries", body = body)
  if (!wait) return(status_tibble(st))
  fs_wait(con, chr(st$query_id), progress = progress)
}

#' @rdname fs_query
#' @export
fs_get <- function(con, id) {
  status_tibble(fs_call(con, "GET", query_path(id)))
}

#' @rdname fs_query
#' @export
fs_wait <- function(con, id, progress = interactive()) {
  bar <- if (progress) progress_bar(id) else NULL
  on.exit(if (!is.null(bar)) bar$close(), add = TRUE)
  last <- watch_stream(con, id, bar)
  while (is.null(last) || !(state_name(last$state) %in% final_states)) {
    if (!is.null(last)) Sys.sleep(0.5)
    last <- fs_call(con, "GET", query_path(id))
    if (!is.null(bar)) bar$update(last)
  }
  if (state_name(last$state) != "DONE") {
    stop_fedstat(sprintf("query %s %s: %s", id, tolower(state_name(last$state)), chr(last$error)),
                 "fedstat_error_query_failed", query_id = id, state = state_name(last$state), status_json = last)
  }
  status_tibble(last)
}

# watch_stream follows GET /v1/queries/{id}/watch (one QueryStatus a line)
# and returns the last status it read, or NULL when the stream could not be
# read (the caller then polls).
watch_stream <- function(con, id, bar) {
  req <- fs_request(con, "GET", query_path(id, "/watch"), timeout = Inf)
  buf <- raw()
  last <- NULL
  on_chunk <- function(chunk) {
    buf <<- c(buf, chunk)
    nl <- which(buf == as.raw(10L))
    if (length(nl)) {
      end <- nl[length(nl)]
      text <- rawToChar(buf[seq_len(end)])
      buf <<- buf[-seq_len(end)]
      for (line in strsplit(text, "\n", fixed = TRUE)[[1]]) {
        if (!nzchar(trimws(line))) next
        st <- jsonlite::fromJSON(line, simplifyVector = FALSE)
        if (is.null(st$query_id)) next # an error object: poll instead
        last <<- st
        if (!is.null(bar)) bar$update(st)
      }
    }
    TRUE
  }
  resp <- tryCatch(httr2::req_stream(req, on_chunk, buffer_kb = 1), error = function(e) NULL)
  if (is.null(resp) || httr2::resp_status(resp) %/% 100 != 2) return(NULL)
  last
}

# progress_bar shows on stderr, on one line rewritten in place, the query's
# state and how many of its nodes have answered, failed or returned their
# key-switch share (analysts see every node waiting until the collection is
# over).
progress_bar <- function(id) {
  width <- 0
  last <- ""
  list(
    update = function(st) {
      nodes <- st$nodes
      done <- sum(vapply(nodes, function(n) chr(n$status) %in% c("answered", "failed", "decrypted"), logical(1)))
      line <- sprintf("query %s: %s, %d/%d nodes", id, tolower(state_name(st$state)), done, length(nodes))
      waiting <- vapply(st$awaiting_approval, function(w) chr(w$node_id), character(1))
      if (length(waiting)) line <- paste0(line, ", waiting for approval at ", paste(waiting, collapse = ", "))
      if (line == last) return(invisible())
      last <<- line
      cat("\r", formatC(line, width = -width), sep = "", file = stderr())
      width <<- max(width, nchar(line))
    },
    close = function() if (width > 0) cat("\n", file = stderr())
  )
}

#' @rdname fs_query
#' @export
fs_cancel <- function(con, id) {
  status_tibble(fs_call(con, "POST", query_path(id, "/cancel")))
}

#' @rdname fs_query
#' @export
fs_queries <- function(con, limit = 0) {
  l <- fs_call(con, "GET", "/v1/queries", query = if (limit > 0) list(limit = limit))
  rows <- lapply(l$queries, function(q) list(
    query_id = chr(q$query_id), state = state_name(q$state), sql = chr(q$spec$sql), epsilon = num(q$spec$epsilon),
    analyst = chr(q$analyst), submitted = ms_time(q$submitted_unix_ms), finished = ms_time(q$finished_unix_ms),
    error = chr(q$error)))
  rows_tibble(rows, list(query_id = character(), state = character(), sql = character(), epsilon = numeric(),
                         analyst = character(), submitted = as.POSIXct(character(), tz = "UTC"),
                         finished = as.POSIXct(character(), tz = "UTC"), error = character()))
}

#' What a query would cost, without running it
#'
#' Plans a query exactly as [fs_query()] would and returns its cost at every
#' node that would answer and the noise its release would carry. No node is
#' asked and nothing is charged.
#'
#' @inheritParams fs_query
#' @return A list: `epsilon`, `delta`, `rho` (the cost at every node),
#'   `kind`, `cells` (released cells), `plan`, `noise` (a tibble: `measure`,
#'   `count`, `variance`, `sd`, `half_width` of each total's 95% interval,
#'   assuming `assumed_nodes` partials), `nodes` (a tibble: `node_id`,
#'   `rho`), `assumed_nodes` and `notes`.
#' @examples
#' \dontrun{
#' fs_explain(fedstat_connect(), "SELECT COUNT(*) FROM patients", epsilon = 0.5)$noise
#' }
#' @export
fs_explain <- function(con, sql, epsilon = NULL, delta = NULL, min_nodes = NULL, laplace = FALSE) {
  x <- fs_call(con, "POST", "/v1/explain", body = list(spec = query_spec(sql, epsilon, delta, min_nodes, NULL, laplace)))
  noise <- rows_tibble(lapply(x$noise, function(n) list(
    measure = chr(n$measure), count = lgl(n$count), variance = num(n$variance), sd = num(n$sd),
    half_width = num(n$half_width))),
    list(measure = character(), count = logical(), variance = numeric(), sd = numeric(), half_width = numeric()))
  nodes <- rows_tibble(lapply(x$nodes, function(n) list(node_id = chr(n$node_id), rho = num(n$rho))),
                       list(node_id = character(), rho = numeric()))
  list(epsilon = num(x$epsilon), delta = num(x$delta), rho = num(x$rho), kind = chr(x$kind), cells = int(x$cells),
       plan = chr(x$plan), noise = noise, nodes = nodes, assumed_nodes = int(x$assumed_nodes),
       notes = as.character(unlist(x$notes)))
}
