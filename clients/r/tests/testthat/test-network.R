# Tests against a running network (test/e2e TestClientsMatchCLI starts one).
# They read FEDSTAT_HTTP, FEDSTAT_TOKEN, FEDSTAT_CA, FEDSTAT_CERT and
# FEDSTAT_KEY, and from FEDSTAT_CLIENT_EXPECTED a JSON file of the queries the
# CLI ran: {"queries": [{"name", "id", "sql", "cli"}]}, "cli" being the output
# of `fedstat query --format json`. Without it they are skipped.

expected_queries <- function() {
  path <- Sys.getenv("FEDSTAT_CLIENT_EXPECTED")
  skip_if(!nzchar(path), "FEDSTAT_CLIENT_EXPECTED not set (no network to test against)")
  jsonlite::fromJSON(path, simplifyVector = FALSE)$queries
}

connections <- function() {
  list(
    token = fedstat_connect(Sys.getenv("FEDSTAT_HTTP"), token = Sys.getenv("FEDSTAT_TOKEN"), ca = Sys.getenv("FEDSTAT_CA")),
    certificate = fedstat_connect(Sys.getenv("FEDSTAT_HTTP"), ca = Sys.getenv("FEDSTAT_CA"),
                                  cert = Sys.getenv("FEDSTAT_CERT"), key = Sys.getenv("FEDSTAT_KEY"))
  )
}

# same: equal numbers, or both missing (the CLI writes NaN as null).
same <- function(got, want) if (is.null(want)) is.na(got) else isTRUE(got == want)

expect_matches_cli <- function(tbl, cli, label) {
  cols <- unlist(cli$columns)
  nkeys <- cli$key_columns
  measures <- cols[setdiff(seq_along(cols), seq_len(nkeys))]
  expect_equal(nrow(tbl), length(cli$rows), label = label)
  for (m in measures) {
    for (suffix in c("", "_ci_low", "_ci_high")) expect_type(tbl[[paste0(m, suffix)]], "double")
    expect_type(tbl[[paste0(m, "_suppressed")]], "logical")
  }
  for (i in seq_along(cli$rows)) {
    row <- cli$rows[[i]]
    for (j in seq_len(nkeys)) expect_equal(tbl[[cols[j]]][i], row$keys[[j]])
    any_s <- FALSE
    for (j in seq_along(measures)) {
      m <- measures[j]
      v <- row$values[[j]]
      s <- isTRUE(v$suppressed)
      any_s <- any_s || s
      expect_identical(tbl[[paste0(m, "_suppressed")]][i], s)
      if (s) {
        expect_true(is.na(tbl[[m]][i]) && is.na(tbl[[paste0(m, "_ci_low")]][i]) && is.na(tbl[[paste0(m, "_ci_high")]][i]))
        next
      }
      expect_true(same(tbl[[m]][i], v$value), label = sprintf("%s %s row %d: %s vs %s", label, m, i, tbl[[m]][i], v$value))
      expect_true(same(tbl[[paste0(m, "_ci_low")]][i], v$ci_low), label = paste(label, m, "ci_low row", i))
      expect_true(same(tbl[[paste0(m, "_ci_high")]][i], v$ci_high), label = paste(label, m, "ci_high row", i))
    }
    expect_identical(tbl$suppressed[i], any_s)
  }
  # The charged cost and the release's metadata.
  expect_identical(attr(tbl, "epsilon"), as.numeric(cli$epsilon))
  expect_identical(attr(tbl, "delta"), as.numeric(cli$delta))
  expect_identical(attr(tbl, "rho"), as.numeric(cli$rho))
  expect_identical(attr(tbl, "nodes"), as.integer(cli$nodes))
  expect_identical(attr(tbl, "small_count_threshold"), as.integer(cli$small_count_threshold))
}

test_that("fs_get returns the CLI's numbers for the same query ids, with a token and with a certificate", {
  queries <- expected_queries()
  expect_gte(length(queries), 3)
  for (how in names(conns <- connections())) {
    suppressed <- 0
    for (q in queries) {
      tbl <- fs_get(conns[[how]], q$id)
      expect_equal(attr(tbl, "state"), "DONE")
      expect_equal(attr(tbl, "sql"), q$sql)
      expect_matches_cli(tbl, q$cli, paste(how, q$name))
      suppressed <- suppressed + sum(tbl$suppressed)
    }
    expect_gt(suppressed, 0)
  }
})

test_that("a query of its own: explain, run with progress, budget charged as explained", {
  expected_queries()
  con <- connections()$certificate
  sql <- "SELECT sex, COUNT(*) AS patients FROM patients GROUP BY sex"
  x <- fs_explain(con, sql, epsilon = 0.5)
  before <- fs_budget(con)
  # fresh: the Python client's test asks the same question (the coordinator
  # would otherwise answer it from that release).
  tbl <- fs_query(con, sql, epsilon = 0.5, progress = TRUE, fresh = TRUE)
  after <- fs_budget(con)
  expect_equal(attr(tbl, "reused_from"), "")
  expect_equal(attr(tbl, "state"), "DONE")
  expect_equal(attr(tbl, "nodes"), 3L)
  expect_equal(attr(tbl, "epsilon"), 0.5)
  expect_true(all(c("female", "male") %in% tbl$sex))
  ok <- tbl[!tbl$suppressed, ]
  expect_gte(nrow(ok), 2)
  expect_true(all(ok$patients_ci_low <= ok$patients & ok$patients <= ok$patients_ci_high))
  expect_equal(attr(tbl, "rho"), x$rho, tolerance = 1e-12)
  expect_equal(after$node_id, before$node_id)
  expect_equal(after$spent_rho - before$spent_rho, rep(x$rho, nrow(after)), tolerance = 1e-9)
  expect_true(attr(tbl, "query_id") %in% fs_queries(con)$query_id)
  # The same question again is answered from that release, charged nothing.
  again <- fs_query(con, sql, epsilon = 0.5)
  expect_equal(attr(again, "reused_from"), attr(tbl, "query_id"))
  expect_equal(again$patients, tbl$patients)
  expect_equal(fs_budget(con)$spent_rho, after$spent_rho)
})

test_that("nodes, budget, catalogue, series and studies", {
  expected_queries()
  con <- connections()$token
  n <- fs_nodes(con)
  expect_equal(sort(n$node_id), c("node-1", "node-2", "node-3"))
  expect_true(all(n$alive))
  expect_equal(attr(n, "threshold"), 2L)
  b <- fs_budget(con)
  expect_equal(attr(b, "analyst"), "analyst")
  expect_true(all(b$error == "") && all(b$left_rho > 0))
  expect_true("zz-empty" %in% unlist(fs_catalogue(con)$regions))
  expect_equal(names(fs_series(con))[1:3], c("name", "table", "where"))
  st <- fs_studies(con)
  expect_equal(unique(st$table), "survival")
  expect_equal(st$column, c("time", "status", "sex", "age"))
})

test_that("errors carry the coordinator's message", {
  expected_queries()
  con <- connections()$token
  expect_error(fs_query(con, "SELECT COUNT(*) FROM conditions WHERE cod = 'x'"), "did you mean",
               class = "fedstat_error_bad_request")
  expect_error(fs_get(con, "no-such-query"), class = "fedstat_error_not_found")
  expect_error(fs_forecast(con, "no-such-series"), class = "fedstat_error_not_found")
  expect_error(fs_stats(con, "km", table = "no_such_table", time = "t", status = "s"), "not a study table",
               class = "fedstat_error_bad_request")
  bad <- fedstat_connect(Sys.getenv("FEDSTAT_HTTP"), token = "fst_wrong", ca = Sys.getenv("FEDSTAT_CA"))
  expect_error(fs_budget(bad), "unknown token", class = "fedstat_error_unauthenticated")
})

test_that("a certificate connection signs its queries, and a spec other than the signed one is refused", {
  expected_queries()
  con <- connections()$certificate
  sql <- "SELECT COUNT(DISTINCT patient_id) AS n FROM conditions WHERE code = '195662009'"
  r <- fs_query(con, sql, epsilon = 0.25, fresh = TRUE, progress = FALSE)
  expect_equal(attr(r, "nodes"), 3L)
  signed <- fedstat:::sign_query(con, list(sql = sql, epsilon = 0.25))
  body <- list(spec = signed$spec, analyst_signature = signed$sig, fresh = TRUE)
  body$spec$epsilon <- 4
  expect_error(fedstat:::fs_call(con, "POST", "/v1/queries", body = body), "analyst signature")
})

test_that("a certificate connection signs its analyses, and an analysis other than the signed one is refused", {
  expected_queries()
  con <- connections()$certificate
  fit <- fs_stats(con, "linreg", table = "survival", outcome = "time", covariates = "age", factors = "sex", epsilon = 20)
  expect_equal(length(fit$queries), 1L)
  expect_equal(utils::tail(fit$estimates$name, 1), "linreg.sex2")
  signed <- fedstat:::sign_analysis(con, list(method = "linreg", table = "survival", outcome = "time",
                                              covariates = "age", factors = "sex", epsilon = 20))
  body <- signed$spec
  body$method <- NULL
  body$covariates <- I(body$covariates)
  body$factors <- I(body$factors)
  body$epsilon <- 40
  body$analyst_signature <- signed$sig
  expect_error(fedstat:::fs_call(con, "POST", "/v1/stats/linreg", body = body), "analyst signature")
})


test_that("fs_verify checks a release with the reference verifier, with a token and with a certificate", {
  queries <- expected_queries()
  skip_if(!nzchar(Sys.getenv("FEDSTAT_BIN")), "FEDSTAT_BIN not set (no fedstat binary to verify with)")
  cohort <- Filter(function(q) q$name == "cohort", queries)[[1]]
  for (how in names(conns <- connections())) {
    v <- fs_verify(conns[[how]], cohort$id)
    # "verified_to_key_switch" when the coordinator withheld the result key
    # (the totals hold a value the analyst was not given), saying why.
    expect_true(identical(v$verdict, "verified") || (identical(v$verdict, "verified_to_key_switch") && nzchar(v$withheld)), label = how)
    expect_equal(v$senders, c("node-1", "node-2", "node-3"), label = how)
    expect_equal(length(v$decryptors), 2)
    expect_equal(v$threshold, 2)
    expect_error(fs_verify(conns[[how]], "q-nosuch"), class = "fedstat_error")
  }
})
