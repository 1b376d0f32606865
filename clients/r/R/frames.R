# Conversion of the coordinator's JSON (protobuf's JSON form: zeros left out,
# NaN and infinities as strings, 64-bit integers as strings) into tibbles.

# num reads a protobuf-JSON double; absent is `default` (0 in proto3).
num <- function(v, default = 0) {
  if (is.null(v)) return(default)
  if (is.character(v)) {
    return(switch(v, "NaN" = NaN, "Infinity" = Inf, "-Infinity" = -Inf, as.numeric(v)))
  }
  as.numeric(v)
}

# nullable reads a plain JSON number that is null when not available.
nullable <- function(v) if (is.null(v)) NA_real_ else as.numeric(v)

int <- function(v, default = 0L) if (is.null(v)) default else as.integer(v)

chr <- function(v, default = "") if (is.null(v)) default else as.character(v)

lgl <- function(v) isTRUE(v)

state_name <- function(s) if (is.null(s) || !nzchar(s)) "UNSPECIFIED" else sub("^STATE_", "", s)

ms_time <- function(v) {
  n <- num(v)
  if (n <= 0) return(as.POSIXct(NA, tz = "UTC"))
  as.POSIXct(n / 1000, origin = "1970-01-01", tz = "UTC")
}

# result_columns lists a released result's columns, as
# `fedstat query --format csv` names them, and then `suppressed`.
result_columns <- function(res) {
  cols <- unlist(res$columns)
  nkeys <- int(res$key_columns)
  named <- length(res$key_names) > 0
  out <- character()
  for (c in cols[seq_len(nkeys)]) {
    out <- c(out, c, if (named) paste0(c, "_name"))
  }
  for (c in cols[setdiff(seq_along(cols), seq_len(nkeys))]) {
    out <- c(out, c, paste0(c, c("_ci_low", "_ci_high", "_suppressed")))
  }
  c(out, "suppressed")
}

#' Convert a released result to a tibble
#'
#' Turns a `fedstat.types.v1.Result` (the `result` of a query's status, as
#' parsed by `jsonlite::fromJSON(simplifyVector = FALSE)`) into one row per
#' group. The columns are those of `fedstat query --format csv`: the key
#' columns (character; each followed by `<key>_name` when the network's value
#' sets name its codes), then for every aggregate `<name>`,
#' `<name>_ci_low` and `<name>_ci_high` (double, `NA` where suppressed) and
#' `<name>_suppressed` (logical), and last `suppressed`, which is `TRUE` when
#' any number of the row is suppressed (a count below the network's
#' small-count threshold, or a statistic of one).
#'
#' @param res The result, a list.
#' @return A tibble.
#' @examples
#' res <- list(columns = list("region", "n"), key_columns = 1,
#'             rows = list(list(keys = list("north"), values = list(list(value = 41.2, ci_low = 37, ci_high = 45.4))),
#'                         list(keys = list("south"), values = list(list(display = "< 10", suppressed = TRUE)))))
#' fs_result_tibble(res)
#' @export
fs_result_tibble <- function(res) {
  cols <- unlist(res$columns)
  nkeys <- int(res$key_columns)
  names_map <- res$key_names
  named <- length(names_map) > 0
  keys <- cols[seq_len(nkeys)]
  measures <- cols[setdiff(seq_along(cols), seq_len(nkeys))]
  rows <- res$rows
  n <- length(rows)
  out <- list()
  for (j in seq_along(keys)) {
    labels <- vapply(rows, function(r) chr(r$keys[[j]]), character(1))
    out[[keys[j]]] <- labels
    if (named) {
      out[[paste0(keys[j], "_name")]] <- vapply(labels, function(l) chr(names_map[[l]], NA_character_), character(1),
                                                USE.NAMES = FALSE)
    }
  }
  any_suppressed <- rep(FALSE, n)
  for (j in seq_along(measures)) {
    m <- measures[j]
    vals <- lapply(rows, function(r) r$values[[j]])
    s <- vapply(vals, function(v) lgl(v$suppressed), logical(1))
    pick <- function(field) vapply(seq_len(n), function(i) if (s[i]) NA_real_ else num(vals[[i]][[field]]), numeric(1))
    out[[m]] <- pick("value")
    out[[paste0(m, "_ci_low")]] <- pick("ci_low")
    out[[paste0(m, "_ci_high")]] <- pick("ci_high")
    out[[paste0(m, "_suppressed")]] <- s
    any_suppressed <- any_suppressed | s
  }
  out$suppressed <- any_suppressed
  tibble::as_tibble(out[result_columns(res)])
}

# status_tibble makes a query's tibble from its status, with the release's
# metadata as attributes.
status_tibble <- function(st) {
  res <- st$result
  tbl <- if (length(res)) fs_result_tibble(res) else tibble::tibble()
  attr(tbl, "query_id") <- chr(st$query_id)
  attr(tbl, "state") <- state_name(st$state)
  attr(tbl, "sql") <- chr(st$spec$sql)
  attr(tbl, "error") <- chr(st$error)
  attr(tbl, "epsilon") <- num(res$epsilon)
  attr(tbl, "delta") <- num(res$delta)
  attr(tbl, "rho") <- num(res$rho)
  attr(tbl, "mechanism") <- chr(res$mechanism)
  attr(tbl, "nodes") <- int(res$nodes)
  attr(tbl, "small_count_threshold") <- int(res$small_count_threshold)
  attr(tbl, "reused_from") <- chr(st$reused_from)
  tbl
}

# rows_tibble binds a list of one-row lists into a tibble with the given
# columns (of the given prototypes when there is no row).
rows_tibble <- function(rows, proto) {
  if (!length(rows)) return(tibble::as_tibble(proto))
  cols <- lapply(names(proto), function(col) {
    do.call(c, lapply(rows, `[[`, col))
  })
  names(cols) <- names(proto)
  tibble::as_tibble(cols)
}

epsilon_of <- function(rho, delta) ifelse(rho <= 0, 0, rho + 2 * sqrt(pmax(rho, 0) * log(1 / delta)))
