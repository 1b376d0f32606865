# Tests without a network: the coordinator's JSON as protobuf writes it
# (zeros left out, NaN as a string, int64 as strings).

result_json <- '{
  "columns": ["region", "patients"], "key_columns": 1,
  "rows": [
    {"keys": ["north"], "values": [{"value": 42.5, "ci_low": 38.25, "ci_high": 46.75, "display": "43"}]},
    {"keys": ["south"], "values": [{"display": "< 10", "suppressed": true}]},
    {"keys": ["west"], "values": [{"ci_high": 4.25, "display": "0"}]}
  ],
  "epsilon": 1, "delta": 1e-06, "rho": 0.0123, "nodes": 3, "small_count_threshold": 10
}'

test_that("a result has the CLI's CSV columns, numeric values and NA where suppressed", {
  res <- jsonlite::fromJSON(result_json, simplifyVector = FALSE)
  tbl <- fs_result_tibble(res)
  expect_s3_class(tbl, "tbl_df")
  expect_equal(names(tbl), c("region", "patients", "patients_ci_low", "patients_ci_high", "patients_suppressed", "suppressed"))
  expect_type(tbl$patients, "double")
  expect_type(tbl$patients_ci_low, "double")
  expect_type(tbl$suppressed, "logical")
  expect_equal(tbl$region, c("north", "south", "west"))
  expect_equal(tbl$patients, c(42.5, NA, 0))
  expect_equal(tbl$patients_ci_low, c(38.25, NA, 0))
  expect_equal(tbl$patients_ci_high, c(46.75, NA, 4.25))
  expect_equal(tbl$suppressed, c(FALSE, TRUE, FALSE))
  expect_equal(tbl$patients_suppressed, c(FALSE, TRUE, FALSE))
})

test_that("key names, several measures and special numbers", {
  res <- jsonlite::fromJSON('{"columns": ["code", "mean", "n"], "key_columns": 1,
    "key_names": {"E11": "Type 2 diabetes"},
    "rows": [{"keys": ["E11"], "values": [{"value": "NaN", "ci_low": "-Infinity", "ci_high": "Infinity"},
                                          {"display": "< 10", "suppressed": true}]}]}', simplifyVector = FALSE)
  tbl <- fs_result_tibble(res)
  expect_equal(names(tbl), c("code", "code_name", "mean", "mean_ci_low", "mean_ci_high", "mean_suppressed",
                             "n", "n_ci_low", "n_ci_high", "n_suppressed", "suppressed"))
  expect_equal(tbl$code_name, "Type 2 diabetes")
  expect_true(is.nan(tbl$mean))
  expect_equal(c(tbl$mean_ci_low, tbl$mean_ci_high), c(-Inf, Inf))
  expect_false(tbl$mean_suppressed)
  expect_true(tbl$n_suppressed && tbl$suppressed)
  expect_true(is.na(tbl$n))
})

test_that("an empty result keeps its columns", {
  tbl <- fs_result_tibble(list(columns = list("count"), key_columns = 0))
  expect_equal(nrow(tbl), 0)
  expect_equal(names(tbl), c("count", "count_ci_low", "count_ci_high", "count_suppressed", "suppressed"))
})

test_that("connections need an address and credentials", {
  old <- Sys.getenv(c("FEDSTAT_HTTP", "FEDSTAT_TOKEN", "FEDSTAT_CA"), unset = NA)
  Sys.unsetenv(names(old))
  on.exit(if (any(!is.na(old))) do.call(Sys.setenv, as.list(old[!is.na(old)])))
  expect_error(fedstat_connect(), "FEDSTAT_HTTP", class = "fedstat_error")
  expect_error(fedstat_connect("https://coordinator.test"), "no credentials", class = "fedstat_error")
  expect_error(fedstat_connect("https://coordinator.test", cert = "a.crt"), "both cert and key", class = "fedstat_error")
  con <- fedstat_connect("https://coordinator.test/", token = "fst_x")
  expect_equal(con$url, "https://coordinator.test")
  expect_output(print(con), "bearer token")
})

test_that("an HTTP error carries the coordinator's message and class", {
  err <- tryCatch(fedstat:::stop_http(400L, charToRaw('{"error": "line 1: did you mean code?", "code": "InvalidArgument"}')),
                  error = function(e) e)
  expect_s3_class(err, "fedstat_error_bad_request")
  expect_s3_class(err, "fedstat_error")
  expect_equal(conditionMessage(err), "line 1: did you mean code?")
  expect_equal(err$status, 400L)
  expect_equal(err$code, "InvalidArgument")
  err <- tryCatch(fedstat:::stop_http(502L, charToRaw("bad gateway")), error = function(e) e)
  expect_equal(class(err)[1], "fedstat_error")
  expect_equal(conditionMessage(err), "bad gateway")
})

test_that("rows become typed columns, and no rows keep the columns' types", {
  proto <- list(node_id = character(), spent_rho = numeric(), last_seen = as.POSIXct(character(), tz = "UTC"))
  rows <- list(list(node_id = "node-1", spent_rho = 0.25, last_seen = fedstat:::ms_time("1764892800000")),
               list(node_id = "node-2", spent_rho = NA_real_, last_seen = fedstat:::ms_time(NULL)))
  tbl <- fedstat:::rows_tibble(rows, proto)
  expect_equal(tbl$node_id, c("node-1", "node-2"))
  expect_equal(tbl$spent_rho, c(0.25, NA))
  expect_s3_class(tbl$last_seen, "POSIXct")
  expect_equal(format(tbl$last_seen[1], "%Y-%m-%d", tz = "UTC"), "2025-12-05")
  empty <- fedstat:::rows_tibble(list(), proto)
  expect_equal(nrow(empty), 0)
  expect_equal(names(empty), names(proto))
  expect_type(empty$spent_rho, "double")
})

test_that("the progress line names the nodes whose admin has not approved", {
  bar <- fedstat:::progress_bar("q-2")
  st <- list(state = "STATE_COLLECTING", nodes = list(list(node_id = "hospital-b", status = "waiting")),
             awaiting_approval = list(list(node_id = "hospital-b", since_unix_ms = "1700000000000")))
  out <- capture.output(bar$update(st), type = "message")
  expect_match(paste(out, collapse = ""), "waiting for approval at hospital-b")
})

test_that("the signed payload is protobuf's encoding, byte for byte Go's", {
  q <- list(sql = "SELECT COUNT(*) FROM patients", epsilon = 0.5, delta = 1e-6, mechanism = "MECHANISM_LAPLACE",
            min_nodes = 3L, reference_date = "2024-01-01", approval_wait_seconds = 600)
  hex <- function(b) paste(as.character(b), collapse = "")
  expect_equal(hex(fedstat:::pb_encode(q, fedstat:::query_fields)), paste0(
    "0a1d53454c45435420434f554e54282a292046524f4d2070617469656e747311000000000000e03f198dedb5a0f7c6b03e",
    "200228033a0a323032342d30312d3031c002d804"))
  s <- list(name = "flu", table = "conditions", where = "code = '6142004'", by = "region", date_column = "onset_date",
            every = "week", start = "2026-01-05", periods = 52L, max_periods_per_patient = 1L, epsilon = 2,
            delta = 1e-6, min_nodes = 3L)
  expect_equal(hex(fedstat:::pb_encode(s, fedstat:::series_fields)), paste0(
    "0a03666c75120a636f6e646974696f6e731a0a6f6e7365745f6461746522047765656b2a0a323032362d30312d3035303438",
    "01410000000000000040498dedb5a0f7c6b03e50035a10636f6465203d202736313432303034276206726567696f6e"))
  expect_error(fedstat:::pb_encode(list(sql = "x", surprise = 1), fedstat:::query_fields), "unknown field")
  a <- list(method = "logit", table = "survival", where = "age > 50", epsilon = 2, delta = 1e-6,
            reference_date = "2026-01-05", time = "time", status = "status", event = "2", width = 30, strata = "sex",
            outcome = "status = 2", covariates = c("age", "time"), factors = "sex", rounds = 3L)
  expect_equal(hex(fedstat:::pb_encode(a, fedstat:::analysis_fields)), paste0(
    "0a056c6f6769741208737572766976616c1a08616765203e203530210000000000000040298dedb5a0f7c6b03e320a323032362d",
    "30312d3035420474696d654a06737461747573520132590000000000003e4062037365786a0a737461747573203d20327203616765",
    "720474696d657a03736578800103"))
  # Nanoseconds since 1970, big-endian: 2026-01-01T00:00:00.123Z.
  t <- as.POSIXct("2026-01-01 00:00:00", tz = "UTC") + 0.123
  expect_equal(hex(fedstat:::unix_nanos(t)), "18867251f54ed4c0")
})
