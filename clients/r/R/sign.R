# Signing queries, standing series and statistical analyses with the
# analyst's network key, as
# `fedstat query` and the Go and Python clients do (docs/operations.md,
# "Analyst-signed queries"): the network's signed envelope (crypto/envelope)
# over the protobuf encoding of the spec (internal/signedquery).

sig_domain <- charToRaw("fedstat/envelope/v1 signature")

# Field numbers and wire types of fedstat.types.v1.QuerySpec, SeriesSpec and
# AnalysisSpec (proto/fedstat/types/v1/types.proto), in field number order:
# "s" string, "d" double, "i" varint, "rs" repeated string.
query_fields <- list(
  list("sql", 1, "s"), list("epsilon", 2, "d"), list("delta", 3, "d"), list("mechanism", 4, "i"),
  list("min_nodes", 5, "i"), list("threshold", 6, "i"), list("reference_date", 7, "s"),
  list("partial_limit", 8, "i"), list("link_holders", 9, "i"), list("approval_wait_seconds", 40, "i")
)
series_fields <- list(
  list("name", 1, "s"), list("table", 2, "s"), list("date_column", 3, "s"), list("every", 4, "s"),
  list("start", 5, "s"), list("periods", 6, "i"), list("max_periods_per_patient", 7, "i"),
  list("epsilon", 8, "d"), list("delta", 9, "d"), list("min_nodes", 10, "i"), list("where", 11, "s"),
  list("by", 12, "s")
)
analysis_fields <- list(
  list("method", 1, "s"), list("table", 2, "s"), list("where", 3, "s"), list("epsilon", 4, "d"),
  list("delta", 5, "d"), list("reference_date", 6, "s"), list("time", 8, "s"), list("status", 9, "s"),
  list("event", 10, "s"), list("width", 11, "d"), list("strata", 12, "s"), list("outcome", 13, "s"),
  list("covariates", 14, "rs"), list("factors", 15, "rs"), list("rounds", 16, "i")
)
mechanisms <- c(MECHANISM_UNSPECIFIED = 0, MECHANISM_GAUSSIAN = 1, MECHANISM_LAPLACE = 2)

pb_varint <- function(n) {
  n <- as.numeric(n)
  if (n < 0 || n != floor(n) || n >= 2^53) stop_fedstat(paste("cannot sign the value", n), "fedstat_error_config")
  out <- raw(0)
  repeat {
    b <- n %% 128
    n <- (n - b) / 128
    if (n > 0) {
      out <- c(out, as.raw(b + 128))
    } else {
      return(c(out, as.raw(b)))
    }
  }
}

# pb_encode is the protobuf encoding of spec (a list of protobuf JSON field
# names), leaving out unset and zero fields as proto3 does; a field it does
# not know is an error, so that nothing is sent unsigned.
pb_encode <- function(spec, fields) {
  names_known <- vapply(fields, function(f) f[[1]], "")
  unknown <- setdiff(names(spec), names_known)
  if (length(unknown) > 0) {
    stop_fedstat(paste("cannot sign the spec: unknown field(s)", paste(unknown, collapse = ", ")), "fedstat_error_config")
  }
  out <- raw(0)
  for (f in fields) {
    v <- spec[[f[[1]]]]
    num <- f[[2]]
    if (f[[3]] == "rs") {
      for (item in as.character(v)) {
        b <- charToRaw(enc2utf8(item))
        out <- c(out, pb_varint(num * 8 + 2), pb_varint(length(b)), b)
      }
      next
    }
    if (is.null(v) || identical(v, "") || (is.numeric(v) && v == 0)) next
    if (f[[3]] == "s") {
      b <- charToRaw(enc2utf8(as.character(v)))
      out <- c(out, pb_varint(num * 8 + 2), pb_varint(length(b)), b)
    } else if (f[[3]] == "d") {
      out <- c(out, pb_varint(num * 8 + 1), writeBin(as.double(v), raw(), size = 8, endian = "little"))
    } else {
      if (is.character(v)) v <- mechanisms[[v]]
      out <- c(out, pb_varint(num * 8), pb_varint(v))
    }
  }
  out
}

be_u16 <- function(n) as.raw(c(n %/% 256, n %% 256))

# be_digits writes a non-negative integer held exactly as base-256 digits
# (most significant first) into `width` big-endian bytes.
be_bytes <- function(digits, width) {
  digits <- c(rep(0, max(0, width - length(digits))), digits)
  as.raw(utils::tail(digits, width))
}

# unix_nanos is now in nanoseconds since 1970 as 8 big-endian bytes: the
# milliseconds (exact in a double) times 10^6, multiplied out in base 256.
unix_nanos <- function(now = Sys.time()) {
  ms <- floor(as.numeric(now) * 1000)
  digits <- numeric(0)
  while (ms > 0) {
    digits <- c(ms %% 256, digits)
    ms <- ms %/% 256
  }
  carry <- 0
  for (i in rev(seq_along(digits))) {
    x <- digits[i] * 1e6 + carry
    digits[i] <- x %% 256
    carry <- x %/% 256
  }
  while (carry > 0) {
    digits <- c(carry %% 256, digits)
    carry <- carry %/% 256
  }
  be_bytes(digits, 8)
}

field_bytes <- function(s) {
  b <- charToRaw(enc2utf8(s))
  c(be_u16(length(b)), b)
}

# sign_envelope signs payload (kind, for the coordinator named coordinator)
# with the key in key_file and returns an AnalystSignature as a list for
# the JSON body.
sign_envelope <- function(payload, kind, coordinator, cert_file, key_file) {
  key <- openssl::read_key(key_file)
  cert <- openssl::read_cert(cert_file)
  header <- c(charToRaw("FSEH"), as.raw(1), field_bytes(""), raw(8), field_bytes(coordinator),
              field_bytes(kind), as.raw(openssl::sha256(payload)), unix_nanos(), openssl::rand_bytes(16))
  signature <- openssl::signature_create(c(sig_domain, as.raw(0), header), hash = openssl::sha256, key = key)
  b64 <- function(b) openssl::base64_encode(b, linebreaks = FALSE)
  list(request = list(header = b64(header), payload = b64(payload), signature = b64(signature)),
       certificate = b64(openssl::write_der(cert)))
}

# sign_query returns spec with the network's defaults stated (epsilon, delta
# unless Laplace, today's reference date) and its signature.
sign_query <- function(con, spec) {
  if (is.null(spec$epsilon)) spec$epsilon <- 1
  if (is.null(spec$delta) && !identical(spec$mechanism, "MECHANISM_LAPLACE")) spec$delta <- 1e-6
  if (is.null(spec$reference_date)) spec$reference_date <- format(Sys.time(), "%Y-%m-%d", tz = "UTC")
  list(spec = spec, sig = sign_envelope(pb_encode(spec, query_fields), "analyst-request", con$coordinator, con$cert, con$key))
}

# sign_series returns spec with the network's defaults stated (lifetime
# epsilon and delta, K = 1) and its signature.
sign_series <- function(con, spec) {
  if (is.null(spec$epsilon)) spec$epsilon <- 1
  if (is.null(spec$delta)) spec$delta <- 1e-6
  if (is.null(spec$max_periods_per_patient)) spec$max_periods_per_patient <- 1L
  list(spec = spec, sig = sign_envelope(pb_encode(spec, series_fields), "analyst-series", con$coordinator, con$cert, con$key))
}

# sign_analysis returns a statistical analysis (the method and the
# request's fields but deadline_ms) with the network's defaults stated
# (epsilon and delta of the whole analysis, today's reference date) and its
# signature: every node checks each round against it.
sign_analysis <- function(con, spec) {
  if (is.null(spec$epsilon)) spec$epsilon <- 1
  if (is.null(spec$delta)) spec$delta <- 1e-6
  if (is.null(spec$reference_date)) spec$reference_date <- format(Sys.time(), "%Y-%m-%d", tz = "UTC")
  list(spec = spec, sig = sign_envelope(pb_encode(spec, analysis_fields), "analyst-analysis", con$coordinator, con$cert, con$key))
}
