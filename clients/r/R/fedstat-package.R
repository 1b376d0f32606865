#' fedstat: client of a fedstat federated analytics network
#'
#' Runs differentially private queries on a fedstat network through its
#' coordinator's HTTP/JSON API and returns the released tables as tibbles.
#' Start with [fedstat_connect()], then [fs_query()], [fs_explain()] and
#' [fs_budget()].
#'
#' @keywords internal
"_PACKAGE"
