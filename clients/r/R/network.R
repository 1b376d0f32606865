#' The network: budgets, nodes, catalogue and study tables
#'
#' `fs_budget()` returns your privacy budget at every node, as each node's own
#' ledger says: `node_id`, `spent_rho`, `limit_rho`, `left_rho`,
#' `left_epsilon` (what is left as epsilon at delta 1e-6), `total_spent_rho`
#' and `total_limit_rho` (the node's totals over every analyst), and `error`
#' when a node did not answer (its numbers are then `NA`). Operators may ask
#' for another analyst's.
#'
#' `fs_nodes()` lists the nodes: `node_id`, `alive`, `epoch`, `patients` (a
#' coarse count, never exact), `address`, `version` and `last_seen`; its
#' attributes `epoch` and `threshold` are the key epoch and the decryption
#' threshold.
#'
#' `fs_catalogue()` returns the public catalogue as a list: `regions`,
#' `studies`, `value_sets` and `populations` (denominators of rates).
#' `fs_studies()` lists the study tables' columns: `table`, `column`, `type`,
#' `min`, `max`, `levels` and `doc`.
#'
#' @inheritParams fs_query
#' @param analyst Another analyst (operators only).
#' @return A tibble (`fs_catalogue()`: a list).
#' @examples
#' \dontrun{
#' con <- fedstat_connect()
#' fs_budget(con)
#' fs_nodes(con)
#' }
#' @export
fs_budget <- function(con, analyst = NULL) {
  b <- fs_call(con, "GET", "/v1/budget", query = if (!is.null(analyst)) list(analyst = analyst))
  rows <- lapply(b$nodes, function(n) {
    err <- chr(n$error)
    spent <- if (nzchar(err)) NA_real_ else num(n$spent_rho)
    limit <- if (nzchar(err)) NA_real_ else num(n$limit_rho)
    list(node_id = chr(n$node_id), spent_rho = spent, limit_rho = limit, left_rho = limit - spent,
         left_epsilon = if (nzchar(err)) NA_real_ else epsilon_of(limit - spent, 1e-6),
         total_spent_rho = if (nzchar(err)) NA_real_ else num(n$total_spent_rho),
         total_limit_rho = if (nzchar(err)) NA_real_ else num(n$total_limit_rho), error = err)
  })
  tbl <- rows_tibble(rows, list(node_id = character(), spent_rho = numeric(), limit_rho = numeric(),
                                left_rho = numeric(), left_epsilon = numeric(), total_spent_rho = numeric(),
                                total_limit_rho = numeric(), error = character()))
  attr(tbl, "analyst") <- chr(b$analyst)
  tbl
}

#' @rdname fs_budget
#' @export
fs_nodes <- function(con) {
  n <- fs_call(con, "GET", "/v1/nodes")
  rows <- lapply(n$nodes, function(x) list(
    node_id = chr(x$node_id), alive = lgl(x$alive), epoch = num(x$epoch), patients = num(x$summary$patients),
    address = chr(x$address), version = chr(x$version), last_seen = ms_time(x$last_seen_unix_ms)))
  tbl <- rows_tibble(rows, list(node_id = character(), alive = logical(), epoch = numeric(), patients = numeric(),
                                address = character(), version = character(),
                                last_seen = as.POSIXct(character(), tz = "UTC")))
  attr(tbl, "epoch") <- num(n$epoch)
  attr(tbl, "threshold") <- int(n$threshold)
  tbl
}

#' @rdname fs_budget
#' @export
fs_catalogue <- function(con) {
  fs_call(con, "GET", "/v1/catalogue")
}

#' @rdname fs_budget
#' @export
fs_studies <- function(con) {
  s <- fs_call(con, "GET", "/v1/studies")
  rows <- list()
  for (t in s$studies) {
    for (c in t$columns) {
      lv <- if (length(c$levels)) c$levels else c$values
      rows[[length(rows) + 1]] <- list(table = chr(t$name), column = chr(c$name), type = chr(c$type),
                                       min = nullable(c$min), max = nullable(c$max),
                                       levels = paste(unlist(lv), collapse = ","), doc = chr(c$doc))
    }
  }
  rows_tibble(rows, list(table = character(), column = character(), type = character(), min = numeric(),
                         max = numeric(), levels = character(), doc = character()))
}

#' Standing surveillance series
#'
#' A series is a count released at every period under one lifetime budget
#' (the binary-tree mechanism); the coordinator runs it and keeps every
#' release. `fs_series()` without a name lists the series you may read; with
#' a name it returns that series' periods in long form: `period`, `first`,
#' `last`, `label`, `value`, `variance`, `ci_low`, `ci_high`, the running
#' `total`, `total_variance`, `total_ci_low`, `total_ci_high`, `suppressed`
#' and `late`. A suppressed period value (below the small-count threshold)
#' is `NA`; the running totals are kept.
#'
#' `fs_forecast()` returns quantile forecasts of a series from its released
#' periods (post-processing: it costs no budget), one row per location,
#' horizon and quantile. `fs_create_series()` registers a series; its
#' lifetime budget is charged once at every node.
#'
#' @inheritParams fs_query
#' @param name The series' name.
#' @param method The forecasting method (the coordinator's default if `NULL`).
#' @param table,date_column,every,start,periods,where,by,max_periods_per_patient
#'   The series' definition (see fedstat's SeriesSpec): each period releases
#'   the number of patients of `table` matching `where` whose `date_column`
#'   falls in the period (`every`: `"day"`, `"week"` or `"month"`), from
#'   `start` for `periods` periods, by `by` if given.
#' @return A tibble (`fs_create_series()`: the coordinator's description of
#'   the series, a list).
#' @examples
#' \dontrun{
#' con <- fedstat_connect()
#' fs_series(con)
#' covid <- fs_series(con, "covid-weekly")
#' fs_forecast(con, "covid-weekly")
#' }
#' @export
fs_series <- function(con, name = NULL) {
  if (is.null(name)) {
    l <- fs_call(con, "GET", "/v1/series")
    rows <- lapply(l$series, function(s) list(
      name = chr(s$spec$name), table = chr(s$spec$table), where = chr(s$spec$where), by = chr(s$spec$by),
      every = chr(s$spec$every), start = chr(s$spec$start), periods = int(s$spec$periods),
      released = int(s$released), state = chr(s$state), epsilon = num(s$spec$epsilon), rho = num(s$rho),
      owner = chr(s$owner), next_due = chr(s$next_due), error = chr(s$error)))
    return(rows_tibble(rows, list(name = character(), table = character(), where = character(), by = character(),
                                  every = character(), start = character(), periods = integer(),
                                  released = integer(), state = character(), epsilon = numeric(), rho = numeric(),
                                  owner = character(), next_due = character(), error = character())))
  }
  s <- fs_call(con, "GET", paste0("/v1/series/", utils::URLencode(name, reserved = TRUE)))
  rows <- list()
  for (p in s$periods) {
    for (v in p$values) {
      sup <- lgl(v$suppressed)
      hide <- function(x) if (sup) NA_real_ else num(x)
      rows[[length(rows) + 1]] <- list(
        period = int(p$index), first = chr(p$first), last = chr(p$last), label = chr(v$label),
        value = hide(v$value), variance = hide(v$variance), ci_low = hide(v$ci_low), ci_high = hide(v$ci_high),
        total = num(v$total), total_variance = num(v$total_variance), total_ci_low = num(v$total_ci_low),
        total_ci_high = num(v$total_ci_high), suppressed = sup, late = lgl(p$late))
    }
  }
  tbl <- rows_tibble(rows, list(period = integer(), first = character(), last = character(), label = character(),
                                value = numeric(), variance = numeric(), ci_low = numeric(), ci_high = numeric(),
                                total = numeric(), total_variance = numeric(), total_ci_low = numeric(),
                                total_ci_high = numeric(), suppressed = logical(), late = logical()))
  attr(tbl, "name") <- name
  attr(tbl, "state") <- chr(s$state)
  attr(tbl, "key_column") <- chr(s$key_column)
  attr(tbl, "rho") <- num(s$rho)
  tbl
}

#' @rdname fs_series
#' @export
fs_forecast <- function(con, name, method = NULL) {
  f <- fs_call(con, "GET", paste0("/v1/series/", utils::URLencode(name, reserved = TRUE), "/forecast"),
               query = if (!is.null(method)) list(method = method))
  rows <- lapply(f$rows, function(r) list(
    reference_date = chr(r$reference_date), horizon = int(r$horizon), target_end_date = chr(r$target_end_date),
    location = chr(r$location), output_type = chr(r$output_type), output_type_id = nullable(r$output_type_id),
    value = nullable(r$value)))
  tbl <- rows_tibble(rows, list(reference_date = character(), horizon = integer(), target_end_date = character(),
                                location = character(), output_type = character(), output_type_id = numeric(),
                                value = numeric()))
  attr(tbl, "method") <- chr(f$method)
  tbl
}

#' @rdname fs_series
#' @export
fs_create_series <- function(con, name, table, date_column, every, start, periods, epsilon, where = NULL,
                             by = NULL, max_periods_per_patient = NULL, delta = NULL, min_nodes = NULL) {
  spec <- list(name = name, table = table, date_column = date_column, every = every, start = start,
               periods = as.integer(periods), epsilon = epsilon)
  if (!is.null(where)) spec$where <- where
  if (!is.null(by)) spec$by <- by
  if (!is.null(max_periods_per_patient)) spec$max_periods_per_patient <- as.integer(max_periods_per_patient)
  if (!is.null(delta)) spec$delta <- delta
  if (!is.null(min_nodes)) spec$min_nodes <- as.integer(min_nodes)
  body <- list(spec = spec)
  if (!is.null(con$cert)) {
    signed <- sign_series(con, spec)
    body <- list(spec = signed$spec, analyst_signature = signed$sig)
  }
  fs_call(con, "POST", "/v1/series", body = body)
}

#' Statistical analyses on a study table
#'
#' Runs a method on one of the catalogue's study tables: `"km"` (Kaplan-Meier
#' curves), `"cox"` (proportional hazards), `"logit"` (logistic regression)
#' or `"linreg"` (linear regression). Every round of the method is an
#' ordinary query of yours, planned, charged and audited like any other;
#' `epsilon` and `delta` are the budget of the whole analysis. A connection
#' with the analyst's certificate and key signs the analysis once, and every
#' node checks each round against it.
#'
#' @inheritParams fs_query
#' @param method `"km"`, `"cox"`, `"logit"` or `"linreg"`.
#' @param table A study table (see [fs_studies()]).
#' @param ... The request's other fields: `where`, `reference_date`,
#'   `deadline_ms`, `time`, `status`, `event`, `width`, `strata`, `outcome`,
#'   `covariates` and `factors` (character vectors), `rounds`.
#' @return A list: `estimates` (a tibble: `name`, `value`, `se`, `ci_low`,
#'   `ci_high`, `noise_se`; intervals include the DP noise), `curves` (km: a
#'   tibble with `stratum`, `time`, `survival`, `lower`, `upper`), `queries`
#'   (the ids of the analysis' queries), `epsilon`, `delta`, `n` (linreg's
#'   released number of rows) and `note`.
#' @examples
#' \dontrun{
#' fit <- fs_stats(fedstat_connect(), "logit", table = "trial", outcome = "event",
#'                 covariates = c("age"), factors = c("arm"), epsilon = 2)
#' fit$estimates
#' }
#' @export
fs_stats <- function(con, method, table, epsilon = NULL, delta = NULL, ...) {
  body <- c(list(table = table, epsilon = epsilon, delta = delta), list(...))
  body <- body[!vapply(body, is.null, logical(1))]
  if (!is.null(con$cert)) {
    # The analysis is signed once; every node checks each round against it.
    deadline <- body$deadline_ms
    body$deadline_ms <- NULL
    signed <- sign_analysis(con, c(list(method = method), body))
    body <- signed$spec
    body$method <- NULL
    body$analyst_signature <- signed$sig
    body$deadline_ms <- deadline
  }
  for (k in intersect(names(body), c("covariates", "factors"))) body[[k]] <- I(as.character(body[[k]]))
  r <- fs_call(con, "POST", paste0("/v1/stats/", utils::URLencode(method, reserved = TRUE)), body = body)
  est <- rows_tibble(lapply(r$estimates, function(e) list(
    name = chr(e$name), value = nullable(e$value), se = nullable(e$se), ci_low = nullable(e$ci_low),
    ci_high = nullable(e$ci_high), noise_se = nullable(e$noise_se))),
    list(name = character(), value = numeric(), se = numeric(), ci_low = numeric(), ci_high = numeric(),
         noise_se = numeric()))
  curves <- list()
  for (k in r$curves) {
    n <- length(k$times)
    for (i in seq_len(n)) {
      curves[[length(curves) + 1]] <- list(stratum = chr(k$stratum), time = nullable(k$times[[i]]),
                                           survival = nullable(k$survival[[i]]), lower = nullable(k$lower[[i]]),
                                           upper = nullable(k$upper[[i]]))
    }
  }
  curves <- rows_tibble(curves, list(stratum = character(), time = numeric(), survival = numeric(),
                                     lower = numeric(), upper = numeric()))
  list(method = chr(r$method), table = chr(r$table), estimates = est, curves = curves,
       queries = as.character(unlist(r$queries)), epsilon = num(r$epsilon), delta = num(r$delta),
       n = nullable(r$n), note = chr(r$note))
}
