#' Connect to a fedstat coordinator
#'
#' Describes a session with a coordinator's HTTP/JSON API: its address and the
#' credentials to send. Nothing is sent until a function such as [fs_query()]
#' uses it.
#'
#' Authenticate with a bearer token, or with a client certificate issued by
#' the network CA (mutual TLS). `ca` is the network CA's certificate that the
#' coordinator's certificate must chain to. Without arguments the connection
#' reads the variables that `fedstat demo --serve` writes into its env file:
#' `FEDSTAT_HTTP`, `FEDSTAT_TOKEN` and `FEDSTAT_CA`.
#'
#' @param url The coordinator's HTTPS address, such as
#'   `"https://127.0.0.1:8443"`. Defaults to the environment variable
#'   `FEDSTAT_HTTP`.
#' @param token A bearer token. Defaults to `FEDSTAT_TOKEN` when neither
#'   `token` nor `cert` is given.
#' @param ca The network CA's certificate (a PEM file). Defaults to
#'   `FEDSTAT_CA`, and to the system's trusted CAs without it.
#' @param cert,key A client certificate and its private key (PEM files), for
#'   mutual TLS instead of a token. The connection then also signs every
#'   query and standing series with that key, as `fedstat query` does, so
#'   that each node checks who asked and what; nodes with
#'   `require_analyst_signature` answer only signed queries.
#' @param timeout Seconds to wait for an answer (a running query is followed
#'   as long as it runs).
#' @param coordinator_name The name on the coordinator's certificate, which a
#'   signature is bound to. Defaults to `FEDSTAT_COORDINATOR_NAME`, then
#'   `"coordinator"`.
#' @return A `fedstat_connection` object.
#' @seealso [fs_query()], [fs_budget()], [fs_nodes()]
#' @examples
#' \dontrun{
#' con <- fedstat_connect("https://127.0.0.1:8443", token = "fst_...", ca = "pki/ca.crt")
#' con <- fedstat_connect(ca = "pki/ca.crt", cert = "pki/analyst.crt", key = "pki/analyst.key")
#' }
#' @export
fedstat_connect <- function(url = Sys.getenv("FEDSTAT_HTTP"), token = NULL, ca = NULL,
                            cert = NULL, key = NULL, timeout = 60,
                            coordinator_name = Sys.getenv("FEDSTAT_COORDINATOR_NAME", "coordinator")) {
  if (is.null(url) || !nzchar(url)) {
    stop_fedstat("no coordinator address: give url or set FEDSTAT_HTTP", "fedstat_error_config")
  }
  if (is.null(token) && is.null(cert)) {
    token <- env_or_null("FEDSTAT_TOKEN")
  }
  if (is.null(ca)) {
    ca <- env_or_null("FEDSTAT_CA")
  }
  if (is.null(cert) != is.null(key)) {
    stop_fedstat("a client certificate needs both cert and key", "fedstat_error_config")
  }
  if (is.null(token) && is.null(cert)) {
    stop_fedstat("no credentials: give token (or set FEDSTAT_TOKEN), or cert and key", "fedstat_error_config")
  }
  for (f in c(ca, cert, key)) {
    if (!file.exists(f)) stop_fedstat(paste0("no such file: ", f), "fedstat_error_config")
  }
  if (!nzchar(coordinator_name)) coordinator_name <- "coordinator"
  structure(list(url = sub("/+$", "", url), token = token, ca = ca, cert = cert, key = key, timeout = timeout,
                 coordinator = coordinator_name),
            class = "fedstat_connection")
}

#' @rdname fedstat_connect
#' @param x A `fedstat_connection`.
#' @param ... Ignored.
#' @export
print.fedstat_connection <- function(x, ...) {
  how <- if (!is.null(x$cert)) paste("client certificate", x$cert) else "bearer token"
  cat("<fedstat connection to ", x$url, " with a ", how, ">\n", sep = "")
  invisible(x)
}

env_or_null <- function(name) {
  v <- Sys.getenv(name)
  if (nzchar(v)) v else NULL
}

# fs_request builds an httr2 request for a path of the API.
fs_request <- function(con, method, path, body = NULL, query = NULL, timeout = con$timeout) {
  stopifnot(inherits(con, "fedstat_connection"))
  req <- httr2::request(paste0(con$url, path))
  req <- httr2::req_method(req, method)
  req <- httr2::req_headers(req, Accept = "application/json")
  req <- httr2::req_user_agent(req, "fedstat-r/0.1")
  if (!is.null(con$token)) {
    req <- httr2::req_headers(req, Authorization = paste("Bearer", con$token))
  }
  opts <- list()
  if (!is.null(con$ca)) opts$cainfo <- con$ca
  if (!is.null(con$cert)) {
    opts$sslcert <- con$cert
    opts$sslkey <- con$key
  }
  if (length(opts)) req <- do.call(httr2::req_options, c(list(req), opts))
  if (length(query)) req <- do.call(httr2::req_url_query, c(list(req), query))
  if (!is.null(body)) {
    json <- jsonlite::toJSON(body, auto_unbox = TRUE, digits = NA, null = "null")
    req <- httr2::req_body_raw(req, charToRaw(enc2utf8(as.character(json))), type = "application/json")
  }
  if (is.finite(timeout)) req <- httr2::req_timeout(req, timeout)
  httr2::req_error(req, is_error = function(resp) FALSE)
}

# fs_call sends a request and returns the decoded JSON answer, or signals the
# coordinator's error.
fs_call <- function(con, method, path, body = NULL, query = NULL) {
  req <- fs_request(con, method, path, body = body, query = query)
  resp <- tryCatch(httr2::req_perform(req), error = function(e) {
    stop_fedstat(paste0(method, " ", con$url, path, ": ", conditionMessage(e)), "fedstat_error_transport")
  })
  raw <- httr2::resp_body_raw(resp)
  status <- httr2::resp_status(resp)
  if (status %/% 100 != 2) {
    stop_http(status, raw)
  }
  if (!length(raw)) {
    return(list())
  }
  jsonlite::fromJSON(rawToChar(raw), simplifyVector = FALSE)
}

# Error classes by HTTP status; every one also has class fedstat_error.
http_classes <- c("400" = "fedstat_error_bad_request", "401" = "fedstat_error_unauthenticated",
                  "403" = "fedstat_error_forbidden", "404" = "fedstat_error_not_found",
                  "409" = "fedstat_error_conflict", "412" = "fedstat_error_precondition",
                  "429" = "fedstat_error_exhausted")

stop_http <- function(status, raw) {
  msg <- ""
  code <- NULL
  doc <- tryCatch(jsonlite::fromJSON(rawToChar(raw), simplifyVector = FALSE), error = function(e) NULL)
  if (is.list(doc)) {
    if (!is.null(doc$error)) msg <- doc$error
    code <- doc$code
  } else if (length(raw)) {
    msg <- substr(trimws(rawToChar(raw)), 1, 500)
  }
  if (!nzchar(msg)) msg <- paste("HTTP", status)
  cls <- http_classes[as.character(status)]
  stop_fedstat(msg, if (is.na(cls)) character() else unname(cls), status = status, code = code)
}

# stop_fedstat signals an error of class fedstat_error (and class), carrying
# the HTTP status and the coordinator's error code when known.
stop_fedstat <- function(message, class = character(), ...) {
  cnd <- structure(c(list(message = message, call = NULL), list(...)),
                   class = c(class, "fedstat_error", "error", "condition"))
  stop(cnd)
}
