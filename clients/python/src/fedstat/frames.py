"""Conversion of the coordinator's JSON answers into pandas DataFrames.

The coordinator speaks protobuf's JSON form with the proto field names: a
number that is zero is left out of the JSON, NaN and infinities are the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"``, and 64-bit integers
are strings. :func:`number` reads all of these.

A released result becomes one row per group, with the column names of
``fedstat query --format csv``: the key columns (each followed by
``<key>_name`` when the network's value sets name its codes), then for every
aggregate ``<name>``, ``<name>_ci_low``, ``<name>_ci_high`` (floats, NaN
where suppressed) and ``<name>_suppressed`` (bool), and last a bool
``suppressed`` column that is True when any number of the row is suppressed.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Optional

import pandas as pd

_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def number(v: Any, default: float = 0.0) -> float:
    """Reads a protobuf-JSON double (absent means ``default``, 0 in proto3)."""
    if v is None:
        return default
    if isinstance(v, str):
        if v in _SPECIAL:
            return _SPECIAL[v]
        return float(v)
    return float(v)


def integer(v: Any, default: int = 0) -> int:
    """Reads a protobuf-JSON integer (int64 values arrive as strings)."""
    if v is None:
        return default
    return int(v)


def result_columns(result: Dict[str, Any]) -> List[str]:
    """The DataFrame's column names for a released result, in order."""
    cols = list(result.get("columns") or [])
    nkeys = integer(result.get("key_columns"))
    named = bool(result.get("key_names"))
    out: List[str] = []
    for c in cols[:nkeys]:
        out.append(c)
        if named:
            out.append(c + "_name")
    for c in cols[nkeys:]:
        out += [c, c + "_ci_low", c + "_ci_high", c + "_suppressed"]
    out.append("suppressed")
    return out


def result_frame(result: Dict[str, Any]) -> pd.DataFrame:
    """Converts a ``fedstat.types.v1.Result`` (protobuf JSON) to a DataFrame.

    Key columns are strings; value and interval columns are float64 with NaN
    where the number is suppressed (a count below the network's small-count
    threshold, or a statistic of such a count); the ``*_suppressed`` columns
    and ``suppressed`` are bool.
    """
    cols = list(result.get("columns") or [])
    nkeys = integer(result.get("key_columns"))
    names: Dict[str, str] = result.get("key_names") or {}
    named = bool(names)
    measures = cols[nkeys:]
    data: Dict[str, list] = {c: [] for c in result_columns(result)}
    for row in result.get("rows") or []:
        keys = list(row.get("keys") or [])
        for c, k in zip(cols[:nkeys], keys):
            data[c].append(k)
            if named:
                data[c + "_name"].append(names.get(k))
        any_suppressed = False
        values = row.get("values") or []
        for c, v in zip(measures, values):
            s = bool(v.get("suppressed", False))
            any_suppressed = any_suppressed or s
            if s:
                data[c].append(math.nan)
                data[c + "_ci_low"].append(math.nan)
                data[c + "_ci_high"].append(math.nan)
            else:
                data[c].append(number(v.get("value")))
                data[c + "_ci_low"].append(number(v.get("ci_low")))
                data[c + "_ci_high"].append(number(v.get("ci_high")))
            data[c + "_suppressed"].append(s)
        data["suppressed"].append(any_suppressed)
    frame = pd.DataFrame(data, columns=result_columns(result))
    for c in measures:
        for suffix in ("", "_ci_low", "_ci_high"):
            frame[c + suffix] = frame[c + suffix].astype("float64")
        frame[c + "_suppressed"] = frame[c + "_suppressed"].astype(bool)
    frame["suppressed"] = frame["suppressed"].astype(bool)
    for c in cols[:nkeys]:
        frame[c] = frame[c].astype(object)
    return frame


def _timestamp(ms: Any) -> Optional[pd.Timestamp]:
    n = integer(ms)
    if n <= 0:
        return None
    return pd.Timestamp(n, unit="ms", tz="UTC")


def budget_frame(budget: Dict[str, Any]) -> pd.DataFrame:
    """One row per node: the caller's spent and limit rho (zCDP) there, what
    is left as rho and as epsilon at delta 1e-6 (the CLI's conversion), the
    node's totals over every analyst, and ``error`` when a node did not
    answer (its numbers are then NaN)."""
    rows = []
    for n in budget.get("nodes") or []:
        err = n.get("error") or ""
        if err:
            rows.append({"node_id": n.get("node_id"), "spent_rho": math.nan, "limit_rho": math.nan, "left_rho": math.nan,
                         "left_epsilon": math.nan, "total_spent_rho": math.nan, "total_limit_rho": math.nan, "error": err})
            continue
        spent, limit = number(n.get("spent_rho")), number(n.get("limit_rho"))
        rows.append({"node_id": n.get("node_id"), "spent_rho": spent, "limit_rho": limit, "left_rho": limit - spent,
                     "left_epsilon": epsilon_of(limit - spent, 1e-6), "total_spent_rho": number(n.get("total_spent_rho")),
                     "total_limit_rho": number(n.get("total_limit_rho")), "error": ""})
    cols = ["node_id", "spent_rho", "limit_rho", "left_rho", "left_epsilon", "total_spent_rho", "total_limit_rho", "error"]
    return pd.DataFrame(rows, columns=cols)


def epsilon_of(rho: float, delta: float) -> float:
    """The epsilon of rho-zCDP at delta: rho + 2 sqrt(rho log(1/delta))."""
    if rho <= 0:
        return 0.0
    return rho + 2 * math.sqrt(rho * math.log(1 / delta))


def nodes_frame(nodes: Dict[str, Any]) -> pd.DataFrame:
    """One row per node: id, liveness, key epoch, coarse patient count
    (never exact), address and when the coordinator last heard from it."""
    rows = []
    for n in nodes.get("nodes") or []:
        rows.append({"node_id": n.get("node_id"), "alive": bool(n.get("alive", False)), "epoch": integer(n.get("epoch")),
                     "patients": integer((n.get("summary") or {}).get("patients")), "address": n.get("address", ""),
                     "version": n.get("version", ""), "last_seen": _timestamp(n.get("last_seen_unix_ms"))})
    cols = ["node_id", "alive", "epoch", "patients", "address", "version", "last_seen"]
    return pd.DataFrame(rows, columns=cols)


def queries_frame(listing: Dict[str, Any]) -> pd.DataFrame:
    """One row per query of a ``ListResponse``."""
    rows = []
    for q in listing.get("queries") or []:
        spec = q.get("spec") or {}
        rows.append({"query_id": q.get("query_id"), "state": state_name(q.get("state")), "sql": spec.get("sql", ""),
                     "epsilon": number(spec.get("epsilon")), "analyst": q.get("analyst", ""),
                     "submitted": _timestamp(q.get("submitted_unix_ms")), "finished": _timestamp(q.get("finished_unix_ms")),
                     "error": q.get("error", "")})
    cols = ["query_id", "state", "sql", "epsilon", "analyst", "submitted", "finished", "error"]
    return pd.DataFrame(rows, columns=cols)


def state_name(s: Any) -> str:
    """``"STATE_DONE"`` -> ``"DONE"`` (absent: ``"UNSPECIFIED"``)."""
    if not s:
        return "UNSPECIFIED"
    return str(s).removeprefix("STATE_")


def series_list_frame(listing: Dict[str, Any]) -> pd.DataFrame:
    """One row per standing series the caller may read."""
    rows = []
    for s in listing.get("series") or []:
        spec = s.get("spec") or {}
        rows.append({"name": spec.get("name"), "table": spec.get("table", ""), "where": spec.get("where", ""),
                     "by": spec.get("by", ""), "every": spec.get("every", ""), "start": spec.get("start", ""),
                     "periods": integer(spec.get("periods")), "released": integer(s.get("released")),
                     "state": s.get("state", ""), "epsilon": number(spec.get("epsilon")), "rho": number(s.get("rho")),
                     "owner": s.get("owner", ""), "next_due": s.get("next_due", ""), "error": s.get("error", "")})
    cols = ["name", "table", "where", "by", "every", "start", "periods", "released", "state", "epsilon", "rho",
            "owner", "next_due", "error"]
    return pd.DataFrame(rows, columns=cols)


_SERIES_NUMBERS = ["value", "variance", "ci_low", "ci_high", "total", "total_variance", "total_ci_low", "total_ci_high"]


def series_frame(series: Dict[str, Any]) -> pd.DataFrame:
    """A released series in long form: one row per period and label.

    ``value``, ``variance``, ``ci_low`` and ``ci_high`` are NaN where the
    period's value is suppressed (below the small-count threshold); the
    running totals are kept, as the coordinator keeps them.
    """
    rows = []
    for p in series.get("periods") or []:
        for v in p.get("values") or []:
            s = bool(v.get("suppressed", False))
            row = {"period": integer(p.get("index")), "first": p.get("first", ""), "last": p.get("last", ""),
                   "label": v.get("label", "")}
            for k in _SERIES_NUMBERS:
                row[k] = math.nan if s and not k.startswith("total") else number(v.get(k))
            row["suppressed"] = s
            row["late"] = bool(p.get("late", False))
            rows.append(row)
    cols = ["period", "first", "last", "label"] + _SERIES_NUMBERS + ["suppressed", "late"]
    return pd.DataFrame(rows, columns=cols)


def forecast_frame(forecast: Dict[str, Any]) -> pd.DataFrame:
    """A series forecast as quantile rows (the hubverse layout the
    coordinator serves)."""
    cols = ["reference_date", "horizon", "target_end_date", "location", "output_type", "output_type_id", "value"]
    rows = [{c: r.get(c) for c in cols} for r in forecast.get("rows") or []]
    frame = pd.DataFrame(rows, columns=cols)
    for c in ("output_type_id", "value"):
        frame[c] = frame[c].astype("float64")
    return frame


def _nullable(v: Any) -> float:
    return math.nan if v is None else float(v)


def estimates_frame(estimates: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """Statistics' estimates: name, value, standard error, 95% interval
    (all including the DP noise) and the noise's own standard error."""
    cols = ["name", "value", "se", "ci_low", "ci_high", "noise_se"]
    rows = [{"name": e.get("name"), **{c: _nullable(e.get(c)) for c in cols[1:]}} for e in estimates]
    return pd.DataFrame(rows, columns=cols)


def curves_frame(curves: Iterable[Dict[str, Any]]) -> pd.DataFrame:
    """Kaplan-Meier curves in long form: stratum, time, survival and its
    95% interval."""
    rows = []
    for c in curves:
        for t, s, lo, hi in zip(c.get("times") or [], c.get("survival") or [], c.get("lower") or [], c.get("upper") or []):
            rows.append({"stratum": c.get("stratum", ""), "time": _nullable(t), "survival": _nullable(s),
                         "lower": _nullable(lo), "upper": _nullable(hi)})
    return pd.DataFrame(rows, columns=["stratum", "time", "survival", "lower", "upper"])


def studies_frame(studies: Dict[str, Any]) -> pd.DataFrame:
    """The catalogue's study tables, one row per column."""
    rows = []
    for t in studies.get("studies") or []:
        for c in t.get("columns") or []:
            rows.append({"table": t.get("name"), "column": c.get("name"), "type": c.get("type", ""),
                         "min": _nullable(c.get("min")), "max": _nullable(c.get("max")),
                         "levels": ",".join(c.get("levels") or c.get("values") or []), "doc": c.get("doc", "")})
    return pd.DataFrame(rows, columns=["table", "column", "type", "min", "max", "levels", "doc"])
