"""The fedstat client: a session with one coordinator's HTTP/JSON API."""

from __future__ import annotations

import json
import os
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import httpx
import pandas as pd

from . import frames
from .errors import FedstatError, QueryFailed, error_for
from .signing import Signer

#: States after which a query changes no more.
FINAL_STATES = ("DONE", "FAILED", "CANCELLED")


@dataclass
class Result:
    """A query: its status and, once released, its result.

    Attributes:
        query_id: the coordinator's id of the query.
        state: ``"PLANNED"``, ``"COLLECTING"``, ``"DECRYPTING"``, ``"DONE"``,
            ``"FAILED"`` or ``"CANCELLED"``.
        sql: the query.
        frame: the released table (see :func:`fedstat.frames.result_frame`);
            empty until the state is ``"DONE"``. Its ``attrs`` hold
            query_id, epsilon, delta and rho.
        epsilon, delta, rho: what the release charged at every node that
            answered ((epsilon, delta)-DP and zCDP rho).
        mechanism: the noise mechanism.
        nodes: how many nodes' partials were summed.
        small_count_threshold: counts below it are suppressed (0: none).
        node_status: each member's progress as the caller may see it.
        plan: a description of the plan (bounds, noise, cost).
        reused_from: set when the coordinator answered from an earlier
            release of your identical question (no node's data changed
            since): that query's id; nothing was charged.
        awaiting_approval: the nodes whose admin has not yet approved the
            query (it waits for them up to its approval wait).
        raw: the query's last status as the coordinator sent it.
    """

    query_id: str
    state: str
    sql: str = ""
    frame: pd.DataFrame = field(default_factory=pd.DataFrame)
    epsilon: float = 0.0
    delta: float = 0.0
    rho: float = 0.0
    mechanism: str = ""
    nodes: int = 0
    small_count_threshold: int = 0
    node_status: Dict[str, str] = field(default_factory=dict)
    plan: str = ""
    error: str = ""
    reused_from: str = ""
    awaiting_approval: List[str] = field(default_factory=list)
    raw: Dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_status(cls, st: Dict[str, Any]) -> "Result":
        """Builds a Result from a ``QueryStatus`` (protobuf JSON)."""
        res = st.get("result") or {}
        r = cls(query_id=st.get("query_id", ""), state=frames.state_name(st.get("state")),
                sql=(st.get("spec") or {}).get("sql", ""), plan=st.get("plan", ""), error=st.get("error", ""), raw=st,
                reused_from=st.get("reused_from", ""),
                awaiting_approval=[w.get("node_id", "") for w in st.get("awaiting_approval") or []],
                node_status={n.get("node_id", ""): n.get("status", "") for n in st.get("nodes") or []})
        if res:
            r.frame = frames.result_frame(res)
            r.epsilon, r.delta, r.rho = frames.number(res.get("epsilon")), frames.number(res.get("delta")), frames.number(res.get("rho"))
            r.mechanism = res.get("mechanism", "")
            r.nodes = frames.integer(res.get("nodes"))
            r.small_count_threshold = frames.integer(res.get("small_count_threshold"))
            r.frame.attrs.update(query_id=r.query_id, epsilon=r.epsilon, delta=r.delta, rho=r.rho, nodes=r.nodes,
                                  reused_from=r.reused_from)
        return r

    @property
    def done(self) -> bool:
        """True once the query has ended (released, failed or cancelled)."""
        return self.state in FINAL_STATES

    def __repr__(self) -> str:
        return (f"<fedstat.Result {self.query_id} {self.state}: {len(self.frame)} rows, "
                f"epsilon {self.epsilon:g}, delta {self.delta:g}, {self.nodes} nodes>")


@dataclass
class Explanation:
    """What a query would cost and how much noise its release would carry
    (``Client.explain``); nothing was run or charged.

    Attributes:
        epsilon, delta, rho: the cost at every node that answers.
        kind: the query's policy kind (count, sum, ...).
        cells: the number of released cells.
        plan: a description of the plan.
        noise: one row per measure: measure, count, variance, sd and
            half_width (of each total's 95% interval), assuming
            ``assumed_nodes`` partials.
        nodes: one row per node that would be charged: node_id, rho.
        notes: what the prediction does not cover.
    """

    epsilon: float
    delta: float
    rho: float
    kind: str
    cells: int
    plan: str
    noise: pd.DataFrame
    nodes: pd.DataFrame
    assumed_nodes: int
    notes: List[str]
    raw: Dict[str, Any]


@dataclass
class StatsResult:
    """A statistical analysis run by the coordinator (``Client.stats``).

    Attributes:
        estimates: name, value, se, ci_low, ci_high, noise_se (intervals
            include the DP noise).
        curves: Kaplan-Meier curves (km only): stratum, time, survival,
            lower, upper.
        queries: the ids of the queries the analysis ran, in order.
        epsilon, delta: the cost of the whole analysis.
        n: the released number of rows (linreg), else NaN.
    """

    method: str
    table: str
    estimates: pd.DataFrame
    curves: pd.DataFrame
    queries: List[str]
    epsilon: float
    delta: float
    n: float
    note: str
    raw: Dict[str, Any]


class Client:
    """A connection to a fedstat coordinator's HTTP/JSON API.

    Args:
        url: the coordinator's HTTPS address, e.g. ``"https://127.0.0.1:8443"``.
            Defaults to the environment variable ``FEDSTAT_HTTP``.
        token: a bearer token. Defaults to ``FEDSTAT_TOKEN`` when neither
            ``token`` nor ``cert`` is given.
        ca: the network CA's certificate (PEM file) that the coordinator's
            certificate must chain to. Defaults to ``FEDSTAT_CA``, and to the
            system's trusted CAs without it.
        cert, key: a client certificate and its key (PEM files) issued by the
            network CA, for mutual TLS instead of a token. The client then
            also signs every query and series with that key (as ``fedstat
            query`` does), so that the nodes check who asked and what
            themselves; nodes with ``require_analyst_signature`` answer only
            signed queries.
        coordinator_name: the name on the coordinator's certificate, which
            a signature is bound to. Defaults to
            ``FEDSTAT_COORDINATOR_NAME``, then ``"coordinator"``.
        timeout: seconds to wait for an answer (a query's progress stream
            waits as long as the query runs).
        transport: an httpx transport to use instead of the network (for
            tests, e.g. ``httpx.MockTransport``).

    A Client holds a connection pool: close it with :meth:`close` or use it
    in a ``with`` block. It is not meant for use by several threads at once.
    """

    def __init__(self, url: Optional[str] = None, token: Optional[str] = None, ca: Optional[str] = None,
                 cert: Optional[str] = None, key: Optional[str] = None, timeout: float = 60.0,
                 transport: Optional[httpx.BaseTransport] = None, coordinator_name: Optional[str] = None):
        url = url or os.environ.get("FEDSTAT_HTTP")
        if not url:
            raise FedstatError("no coordinator address: pass url= or set FEDSTAT_HTTP")
        if token is None and cert is None:
            token = os.environ.get("FEDSTAT_TOKEN") or None
        if ca is None:
            ca = os.environ.get("FEDSTAT_CA") or None
        if (cert is None) != (key is None):
            raise FedstatError("a client certificate needs both cert= and key=")
        if token is None and cert is None:
            raise FedstatError("no credentials: pass token= (or set FEDSTAT_TOKEN), or cert= and key=")
        self.url = url.rstrip("/")
        self._token, self._ca, self._cert, self._key = token, ca, cert, key
        self._server_name = coordinator_name or os.environ.get("FEDSTAT_COORDINATOR_NAME") or "coordinator"
        self._signer: Optional[Signer] = None
        if cert:
            name = coordinator_name or os.environ.get("FEDSTAT_COORDINATOR_NAME") or "coordinator"
            self._signer = Signer(cert, key, name)
        ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
        if cert:
            ctx.load_cert_chain(cert, key)
        headers = {"Accept": "application/json", "User-Agent": "fedstat-python/0.1"}
        if token:
            headers["Authorization"] = "Bearer " + token
        self._http = httpx.Client(base_url=self.url, headers=headers, verify=ctx, timeout=timeout,
                                  transport=transport)

    def verify(self, query_id: str, *, network_config: Optional[str] = None, fedstat_bin: Optional[str] = None,
               timeout: float = 300.0) -> Dict[str, Any]:
        """Checks that a released result is the decryption of the sum its nodes committed to.

        Runs ``fedstat verify --format json`` (the reference verifier: the
        checks need the network's lattice cryptography) with this client's
        address and credentials, and the network CA (``ca=`` of the client)
        as the only thing it trusts. Returns its verdict as a dict:
        ``verdict`` is "verified", "verified_to_key_switch" (the coordinator
        withheld the result key, so the decryption itself was not checked),
        "not_verified" (``reason`` says what failed) or "not_checked" (the
        nodes planned with another catalogue: give ``network_config``, a
        node's or the coordinator's config file); with ``senders`` (the
        nodes whose partials are in the result), ``decryptors``,
        ``threshold``, ``epoch``, ``plan_bound``, ``ranges_proven`` (every
        sender's range proof verified: its values within the plan's
        bounds), ``ranges_checked`` (the totals are the sum of the committed
        values), ``withheld``, ``query_id`` and ``checked_query_id`` (the
        release a reused answer came from).

        ``fedstat_bin`` is the fedstat binary: defaults to FEDSTAT_BIN, then
        ``fedstat`` on the PATH. Raises FedstatError when it cannot be run
        or cannot reach the coordinator.
        """
        import shutil
        import subprocess

        if not self._ca:
            raise FedstatError("verify needs the network CA certificate: give ca= to the client (or set FEDSTAT_CA)")
        binary = fedstat_bin or os.environ.get("FEDSTAT_BIN") or shutil.which("fedstat")
        if not binary:
            raise FedstatError("verify runs the fedstat binary: install it on the PATH, or give fedstat_bin= (or set FEDSTAT_BIN)")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FEDSTAT_")}
        env.update({"FEDSTAT_HTTP": self.url, "FEDSTAT_CA": self._ca})
        if self._cert:
            env.update({"FEDSTAT_CERT": self._cert, "FEDSTAT_KEY": self._key})
        else:
            env["FEDSTAT_TOKEN"] = self._token
        args = [binary, "verify", "--format", "json", "--server-name", self._server_name]
        if network_config:
            args += ["--network-config", network_config]
        try:
            run = subprocess.run(args + [query_id], env=env, capture_output=True, text=True, timeout=timeout)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FedstatError(f"fedstat verify could not run: {e}") from e
        try:
            return json.loads(run.stdout)
        except ValueError:
            raise FedstatError(f"fedstat verify {query_id}: {run.stderr.strip() or 'no verdict (exit status %d)' % run.returncode}")

    def close(self) -> None:
        """Closes the connection pool."""
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<fedstat.Client {self.url}>"

    # -- plumbing --

    def _call(self, method: str, path: str, body: Any = None, params: Optional[Dict[str, Any]] = None) -> Any:
        try:
            resp = self._http.request(method, path, json=body, params=params)
        except httpx.HTTPError as e:
            raise FedstatError(f"{method} {self.url}{path}: {e}") from e
        if resp.status_code // 100 != 2:
            raise error_for(resp.status_code, resp.content)
        if not resp.content:
            return {}
        return resp.json()

    # -- queries --

    def query(self, sql: str, epsilon: Optional[float] = None, delta: Optional[float] = None,
              min_nodes: Optional[int] = None, reference_date: Optional[str] = None, laplace: bool = False,
              deadline: Optional[float] = None, progress: bool = True, wait: bool = True,
              fresh: bool = False) -> Result:
        """Runs a query and returns its released result.

        Args:
            sql: the query (docs/query-language.md).
            epsilon, delta: its privacy cost at every node that answers;
                default to the network's.
            min_nodes: partials the release needs (default the network's).
            reference_date: YYYY-MM-DD at which ``age`` is computed.
            laplace: pure epsilon-DP with Laplace noise (delta unused).
            deadline: seconds the coordinator waits for the nodes.
            progress: show a progress bar (tqdm) while it runs.
            wait: False returns at once after submitting (``Result.state``
                is then not final; fetch it later with :meth:`get` or
                :meth:`wait`).
            fresh: ask the nodes again at full price. By default a question
                you had released before, while no node's data changed since,
                is answered from that release and charged nothing
                (``Result.reused_from`` names it).

        Raises:
            BadRequest: the coordinator cannot parse or plan the query.
            QueryFailed: it ended without a release (for example fewer
                nodes answered than min_nodes, or a node's budget is spent).
        """
        body: Dict[str, Any] = {"spec": _query_spec(sql, epsilon, delta, min_nodes, reference_date, laplace)}
        if self._signer:
            body["spec"], body["analyst_signature"] = self._signer.sign_query(body["spec"])
        if deadline is not None:
            body["deadline_ms"] = str(int(deadline * 1000))
        if fresh:
            body["fresh"] = True
        st = self._call("POST", "/v1/queries", body)
        if not wait:
            return Result.from_status(st)
        return self.wait(st.get("query_id", ""), progress=progress)

    def get(self, query_id: str) -> Result:
        """Returns a query's status, with its result once released. It does
        not wait and does not raise for a failed query (see ``state``)."""
        return Result.from_status(self._call("GET", "/v1/queries/" + quote(query_id, safe="")))

    def wait(self, query_id: str, progress: bool = True) -> Result:
        """Follows a query's progress until it ends and returns its result.

        Raises:
            QueryFailed: the query ended without a release.
        """
        bar = _Progress(query_id) if progress else None
        last: Optional[Dict[str, Any]] = None
        try:
            path = "/v1/queries/" + quote(query_id, safe="") + "/watch"
            try:
                with self._http.stream("GET", path, timeout=httpx.Timeout(self._http.timeout.connect, read=None)) as resp:
                    if resp.status_code // 100 != 2:
                        raise error_for(resp.status_code, resp.read())
                    for line in resp.iter_lines():
                        if not line.strip():
                            continue
                        last = json.loads(line)
                        if bar:
                            bar.update(last)
            except httpx.HTTPError:
                last = None  # the stream broke: poll below
            # A stream that ended early (a restart, a proxy) is followed by polling.
            while last is None or frames.state_name(last.get("state")) not in FINAL_STATES:
                if last is not None:
                    time.sleep(0.5)
                last = self._call("GET", "/v1/queries/" + quote(query_id, safe=""))
                if bar:
                    bar.update(last)
        finally:
            if bar:
                bar.close()
        r = Result.from_status(last)
        if r.state != "DONE":
            raise QueryFailed(f"query {query_id} {r.state.lower()}: {r.error}", query_id, r.state, last)
        return r

    def cancel(self, query_id: str) -> Result:
        """Cancels a query that has not been released."""
        return Result.from_status(self._call("POST", "/v1/queries/" + quote(query_id, safe="") + "/cancel"))

    def queries(self, limit: int = 0) -> pd.DataFrame:
        """Your recent queries (all queries for an operator), newest first:
        query_id, state, sql, epsilon, analyst, submitted, finished, error."""
        params = {"limit": limit} if limit else None
        return frames.queries_frame(self._call("GET", "/v1/queries", params=params))

    def explain(self, sql: str, epsilon: Optional[float] = None, delta: Optional[float] = None,
                min_nodes: Optional[int] = None, laplace: bool = False) -> Explanation:
        """Says what a query would cost and how wide its intervals would be,
        without running it: no node is asked and nothing is charged."""
        x = self._call("POST", "/v1/explain", {"spec": _query_spec(sql, epsilon, delta, min_nodes, None, laplace)})
        noise = pd.DataFrame([{"measure": n.get("measure", ""), "count": bool(n.get("count", False)),
                               "variance": frames.number(n.get("variance")), "sd": frames.number(n.get("sd")),
                               "half_width": frames.number(n.get("half_width"))} for n in x.get("noise") or []],
                             columns=["measure", "count", "variance", "sd", "half_width"])
        nodes = pd.DataFrame([{"node_id": n.get("node_id"), "rho": frames.number(n.get("rho"))} for n in x.get("nodes") or []],
                             columns=["node_id", "rho"])
        return Explanation(epsilon=frames.number(x.get("epsilon")), delta=frames.number(x.get("delta")),
                           rho=frames.number(x.get("rho")), kind=x.get("kind", ""), cells=frames.integer(x.get("cells")),
                           plan=x.get("plan", ""), noise=noise, nodes=nodes,
                           assumed_nodes=frames.integer(x.get("assumed_nodes")), notes=list(x.get("notes") or []), raw=x)

    # -- the network --

    def budget(self, analyst: Optional[str] = None) -> pd.DataFrame:
        """Your privacy budget at every node, as each node's ledger says:
        node_id, spent_rho, limit_rho, left_rho, left_epsilon (at delta
        1e-6), total_spent_rho, total_limit_rho, error. Operators may ask
        for another analyst."""
        b = self._call("GET", "/v1/budget", params={"analyst": analyst} if analyst else None)
        frame = frames.budget_frame(b)
        frame.attrs["analyst"] = b.get("analyst", "")
        return frame

    def nodes(self) -> pd.DataFrame:
        """The network's nodes: node_id, alive, epoch, patients (coarse),
        address, version, last_seen. ``attrs`` holds the key epoch and the
        decryption threshold."""
        n = self._call("GET", "/v1/nodes")
        frame = frames.nodes_frame(n)
        frame.attrs.update(epoch=frames.integer(n.get("epoch")), threshold=frames.integer(n.get("threshold")))
        return frame

    def catalogue(self) -> Dict[str, Any]:
        """The public catalogue: regions, study names, value sets and the
        population of each region (denominators of rates), as a dict."""
        return self._call("GET", "/v1/catalogue")

    def studies(self) -> pd.DataFrame:
        """The catalogue's study tables, one row per column: table, column,
        type, min, max, levels, doc."""
        return frames.studies_frame(self._call("GET", "/v1/studies"))

    # -- standing series --

    def series(self, name: Optional[str] = None) -> pd.DataFrame:
        """Without a name, the series you may read (one row each); with a
        name, that series' released periods in long form (period, first,
        last, label, value, variance, ci_low, ci_high, running totals,
        suppressed, late)."""
        if name is None:
            return frames.series_list_frame(self._call("GET", "/v1/series"))
        s = self._call("GET", "/v1/series/" + quote(name, safe=""))
        frame = frames.series_frame(s)
        frame.attrs.update(name=name, state=s.get("state", ""), key_column=s.get("key_column", ""),
                           rho=frames.number(s.get("rho")))
        return frame

    def create_series(self, name: str, table: str, date_column: str, every: str, start: str, periods: int,
                      epsilon: float, where: str = "", by: str = "", max_periods_per_patient: int = 0,
                      delta: float = 0.0, min_nodes: int = 0) -> Dict[str, Any]:
        """Registers a standing series (its lifetime budget is charged once
        at every node); returns the coordinator's description of it."""
        spec: Dict[str, Any] = {"name": name, "table": table, "date_column": date_column, "every": every,
                                "start": start, "periods": periods, "epsilon": epsilon}
        for k, v in (("where", where), ("by", by), ("max_periods_per_patient", max_periods_per_patient),
                     ("delta", delta), ("min_nodes", min_nodes)):
            if v:
                spec[k] = v
        body: Dict[str, Any] = {"spec": spec}
        if self._signer:
            body["spec"], body["analyst_signature"] = self._signer.sign_series(spec)
        return self._call("POST", "/v1/series", body)

    def forecast(self, name: str, method: Optional[str] = None) -> pd.DataFrame:
        """Quantile forecasts of a series from its released periods
        (post-processing: free): reference_date, horizon, target_end_date,
        location, output_type, output_type_id, value."""
        f = self._call("GET", "/v1/series/" + quote(name, safe="") + "/forecast",
                       params={"method": method} if method else None)
        frame = frames.forecast_frame(f)
        frame.attrs.update(series=f.get("series", name), method=f.get("method", ""), notes=f.get("notes") or {})
        return frame

    # -- statistics --

    def stats(self, method: str, table: str, **params: Any) -> StatsResult:
        """Runs a statistical method on a study table: ``"km"``, ``"cox"``,
        ``"logit"`` or ``"linreg"``. Every round is an ordinary query of
        yours; epsilon and delta are the budget of the whole analysis. A
        client with the analyst's certificate and key signs the analysis,
        and every node checks each round against it.

        Keyword arguments are the request's fields: where, epsilon, delta,
        reference_date, deadline_ms, time, status, event, width, strata,
        outcome, covariates (list), factors (list), rounds.
        """
        body = {"table": table, **{k: v for k, v in params.items() if v is not None}}
        if self._signer:
            # The analysis is signed once; every node checks each round.
            deadline = body.pop("deadline_ms", None)
            spec, sig = self._signer.sign_analysis({"method": method, **body})
            body = {k: v for k, v in spec.items() if k != "method"}
            body["analyst_signature"] = sig
            if deadline is not None:
                body["deadline_ms"] = deadline
        r = self._call("POST", "/v1/stats/" + quote(method, safe=""), body)
        n = r.get("n")
        return StatsResult(method=r.get("method", method), table=r.get("table", table),
                           estimates=frames.estimates_frame(r.get("estimates") or []),
                           curves=frames.curves_frame(r.get("curves") or []), queries=list(r.get("queries") or []),
                           epsilon=float(r.get("epsilon", 0)), delta=float(r.get("delta", 0)),
                           n=float("nan") if n is None else float(n), note=r.get("note", ""), raw=r)


def _query_spec(sql: str, epsilon: Optional[float], delta: Optional[float], min_nodes: Optional[int],
                reference_date: Optional[str], laplace: bool) -> Dict[str, Any]:
    """A QuerySpec in protobuf JSON, with only the fields the caller set."""
    spec: Dict[str, Any] = {"sql": sql}
    for name, v in (("epsilon", epsilon), ("delta", delta), ("min_nodes", min_nodes), ("reference_date", reference_date)):
        if v is not None:
            spec[name] = v
    if laplace:
        spec["mechanism"] = "MECHANISM_LAPLACE"
    return spec


class _Progress:
    """A tqdm bar over a query's nodes: a node counts once it has answered,
    failed or given its key-switch share. (Analysts see every node waiting
    until the collection is over; the state is shown beside the bar.)"""

    def __init__(self, query_id: str):
        from tqdm.auto import tqdm

        self._bar = tqdm(total=0, desc=f"query {query_id}", unit="node", leave=True)
        self._done = 0

    def update(self, st: Dict[str, Any]) -> None:
        nodes = st.get("nodes") or []
        if nodes and self._bar.total != len(nodes):
            self._bar.total = len(nodes)
            self._bar.refresh()
        done = sum(1 for n in nodes if n.get("status") in ("answered", "failed", "decrypted"))
        if done > self._done:
            self._bar.update(done - self._done)
            self._done = done
        state = frames.state_name(st.get("state")).lower()
        waiting = [w.get("node_id", "") for w in st.get("awaiting_approval") or []]
        if waiting:
            # A node's admin must approve first (hours or days, up to the
            # query's approval wait).
            state += ", waiting for approval at " + ", ".join(waiting)
        self._bar.set_postfix_str(state)

    def close(self) -> None:
        self._bar.close()
