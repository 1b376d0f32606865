#' Verify a release
#'
#' Checks that a released result is the decryption of the sum its nodes
#' committed to, with nothing but the network CA certificate: runs the
#' reference verifier, `fedstat verify --format json` (the checks need the
#' network's lattice cryptography), with the connection's address and
#' credentials.
#'
#' @param con A connection from [fedstat_connect()], with `ca` set (the
#'   network CA's certificate is the only thing the check trusts).
#' @param query_id The id of a released query.
#' @param network_config A node's or the coordinator's config file, for a
#'   query the nodes planned with their own catalogue (a study table, a value
#'   set): without it such a query is `"not_checked"`.
#' @param fedstat The fedstat binary. Defaults to `FEDSTAT_BIN`, then
#'   `fedstat` on the PATH.
#' @return A list: `verdict` is `"verified"`, `"verified_to_key_switch"`
#'   (the result key was withheld, so the decryption itself was not
#'   checked), `"not_verified"` (`reason` says what failed) or
#'   `"not_checked"`; with `senders` (the nodes whose partials are in the
#'   result), `decryptors`, `threshold`, `epoch`, `plan_bound`,
#'   `ranges_proven` (every sender's range proof verified),
#'   `ranges_checked` (the totals are the sum of the committed values),
#'   `withheld`, `query_id` and `checked_query_id` (the release a reused
#'   answer came from). An error of class `fedstat_error` when the verifier cannot run
#'   or reach the coordinator.
#' @examples
#' \dontrun{
#' r <- fs_query(con, "SELECT COUNT(*) FROM patients")
#' fs_verify(con, attr(r, "query_id"))$verdict
#' }
#' @export
fs_verify <- function(con, query_id, network_config = NULL, fedstat = Sys.getenv("FEDSTAT_BIN", "fedstat")) {
  if (is.null(con$ca)) {
    stop_fedstat("fs_verify needs the network CA certificate: connect with ca (or set FEDSTAT_CA)", "fedstat_error_config")
  }
  bin <- Sys.which(fedstat)
  if (!nzchar(bin)) {
    stop_fedstat(paste0("fs_verify runs the fedstat binary, and there is no ", fedstat,
                        ": install it on the PATH, or give fedstat (or set FEDSTAT_BIN)"), "fedstat_error_config")
  }
  env <- c(FEDSTAT_HTTP = con$url, FEDSTAT_CA = con$ca, FEDSTAT_COORDINATOR = "")
  if (!is.null(con$cert)) {
    env <- c(env, FEDSTAT_CERT = con$cert, FEDSTAT_KEY = con$key, FEDSTAT_TOKEN = "")
  } else {
    env <- c(env, FEDSTAT_TOKEN = con$token, FEDSTAT_CERT = "", FEDSTAT_KEY = "")
  }
  args <- c("verify", "--format", "json", "--server-name", con$coordinator)
  if (!is.null(network_config)) args <- c(args, "--network-config", network_config)
  errfile <- tempfile()
  on.exit(unlink(errfile), add = TRUE)
  out <- suppressWarnings(system2(bin, c(args, query_id), stdout = TRUE, stderr = errfile,
                                  env = paste0(names(env), "=", shQuote(env))))
  verdict <- tryCatch(jsonlite::fromJSON(paste(out, collapse = "\n"), simplifyVector = TRUE), error = function(e) NULL)
  if (is.null(verdict)) {
    err <- paste(readLines(errfile, warn = FALSE), collapse = "\n")
    stop_fedstat(paste0("fedstat verify ", query_id, ": ", if (nzchar(err)) err else "no verdict"), "fedstat_error")
  }
  verdict
}
