"""Tests against a running network (test/e2e TestClientsMatchCLI starts one).

They read the coordinator's settings from FEDSTAT_HTTP, FEDSTAT_TOKEN,
FEDSTAT_CA, FEDSTAT_CERT and FEDSTAT_KEY, and from FEDSTAT_CLIENT_EXPECTED a
JSON file of queries the CLI ran: {"queries": [{"name", "id", "sql", "cli"}]},
where "cli" is the output of `fedstat query --format json`. Without it they
are skipped.
"""

import json
import math
import os

import pytest

import fedstat

EXPECTED = os.environ.get("FEDSTAT_CLIENT_EXPECTED")
pytestmark = pytest.mark.skipif(not EXPECTED, reason="FEDSTAT_CLIENT_EXPECTED not set (no network to test against)")


@pytest.fixture(scope="module")
def expected():
    with open(EXPECTED) as f:
        return json.load(f)["queries"]


@pytest.fixture(scope="module", params=["token", "certificate"])
def fs(request):
    """A client with the analyst's bearer token, and one with the analyst's
    client certificate (mutual TLS) and no token."""
    if request.param == "token":
        c = fedstat.Client(os.environ["FEDSTAT_HTTP"], token=os.environ["FEDSTAT_TOKEN"], ca=os.environ["FEDSTAT_CA"])
    else:
        c = fedstat.Client(os.environ["FEDSTAT_HTTP"], ca=os.environ["FEDSTAT_CA"],
                           cert=os.environ["FEDSTAT_CERT"], key=os.environ["FEDSTAT_KEY"])
    yield c
    c.close()


def same(got, want):
    """Equal floats, or both missing (the CLI writes NaN as null)."""
    if want is None:
        return math.isnan(got)
    return got == want


def assert_matches_cli(r: fedstat.Result, cli: dict):
    cols, nkeys = cli["columns"], cli["key_columns"]
    f = r.frame
    assert len(f) == len(cli["rows"])
    for c in cols[nkeys:]:
        for suffix in ("", "_ci_low", "_ci_high"):
            assert f[c + suffix].dtype == "float64", c + suffix
        assert f[c + "_suppressed"].dtype == bool
    assert f["suppressed"].dtype == bool
    for i, row in enumerate(cli["rows"]):
        for c, k in zip(cols[:nkeys], row["keys"]):
            assert f[c].iloc[i] == k
        any_suppressed = False
        for c, v in zip(cols[nkeys:], row["values"]):
            s = v.get("suppressed", False)
            any_suppressed = any_suppressed or s
            assert bool(f[c + "_suppressed"].iloc[i]) == s, (c, i)
            if s:
                assert math.isnan(f[c].iloc[i]) and math.isnan(f[c + "_ci_low"].iloc[i]) and math.isnan(f[c + "_ci_high"].iloc[i])
                continue
            assert same(f[c].iloc[i], v["value"]), (c, i, f[c].iloc[i], v["value"])
            assert same(f[c + "_ci_low"].iloc[i], v.get("ci_low")), (c, i)
            assert same(f[c + "_ci_high"].iloc[i], v.get("ci_high")), (c, i)
        assert bool(f["suppressed"].iloc[i]) == any_suppressed
    # The charged cost and the release's metadata.
    assert r.epsilon == cli["epsilon"] and r.delta == cli["delta"] and r.rho == cli["rho"]
    assert r.nodes == cli["nodes"] and r.small_count_threshold == cli["small_count_threshold"]
    assert r.mechanism == cli.get("mechanism", "")


def test_same_numbers_as_the_cli(fs, expected):
    assert len(expected) >= 3
    suppressed = 0
    for q in expected:
        r = fs.get(q["id"])
        assert r.state == "DONE" and r.sql == q["sql"]
        assert_matches_cli(r, q["cli"])
        suppressed += int(r.frame["suppressed"].sum())
    assert suppressed > 0, "no suppressed cell among the CLI's queries: the comparison of missing values was not exercised"


def test_a_query_of_its_own(fs, capsys):
    sql = "SELECT sex, COUNT(*) AS patients FROM patients GROUP BY sex"
    x = fs.explain(sql, epsilon=0.5)
    before = fs.budget().set_index("node_id")["spent_rho"]
    # fresh: the R client's test asks the same question (the coordinator
    # would otherwise answer one of them from the other's release).
    r = fs.query(sql, epsilon=0.5, progress=True, fresh=True)
    after = fs.budget().set_index("node_id")["spent_rho"]
    assert r.state == "DONE" and r.nodes == 3 and r.epsilon == 0.5 and r.reused_from == ""
    assert set(r.frame["sex"]) >= {"female", "male"}
    ok = r.frame[~r.frame["suppressed"]]
    assert len(ok) >= 2
    assert (ok["patients_ci_low"] <= ok["patients"]).all() and (ok["patients"] <= ok["patients_ci_high"]).all()
    # Explain's prediction is what every node charged.
    assert r.rho == pytest.approx(x.rho, rel=1e-12)
    for node, spent in after.items():
        assert spent - before[node] == pytest.approx(x.rho, rel=1e-9), node
    # The progress bar went to stderr.
    assert r.query_id in capsys.readouterr().err
    # The release is listed among the caller's queries.
    assert r.query_id in set(fs.queries()["query_id"])
    # The same question again is answered from that release, charged nothing.
    again = fs.query(sql, epsilon=0.5, progress=False)
    assert again.reused_from == r.query_id and again.frame.attrs["reused_from"] == r.query_id
    assert again.frame.equals(r.frame)
    assert (fs.budget().set_index("node_id")["spent_rho"] == after).all()


def test_network_views(fs):
    n = fs.nodes()
    assert sorted(n["node_id"]) == ["node-1", "node-2", "node-3"] and n["alive"].all()
    assert n.attrs["threshold"] == 2 and n.attrs["epoch"] >= 1
    b = fs.budget()
    assert b.attrs["analyst"] == "analyst" and (b["error"] == "").all() and (b["left_rho"] > 0).all()
    assert "zz-empty" in fs.catalogue()["regions"]
    assert list(fs.series().columns)[:3] == ["name", "table", "where"]
    st = fs.studies()
    assert set(st["table"]) == {"survival"} and list(st["column"]) == ["time", "status", "sex", "age"]


def test_errors_carry_the_coordinators_message(fs):
    with pytest.raises(fedstat.BadRequest, match="did you mean"):
        fs.query("SELECT COUNT(*) FROM conditions WHERE cod = 'x'", progress=False)
    with pytest.raises(fedstat.NotFound):
        fs.get("no-such-query")
    with pytest.raises(fedstat.NotFound):
        fs.forecast("no-such-series")
    with pytest.raises(fedstat.BadRequest, match="not a study table"):
        fs.stats("km", table="no_such_table", time="t", status="s")
    with pytest.raises(fedstat.AuthenticationError, match="unknown token"):
        with fedstat.Client(os.environ["FEDSTAT_HTTP"], token="fst_wrong", ca=os.environ["FEDSTAT_CA"]) as bad:
            bad.budget()


def test_certificate_client_signs_its_queries():
    """With the analyst's certificate the client signs every query: the
    coordinator runs it under the id derived from the signature (so it
    checked it), and refuses a spec other than the signed one, naming the
    signature."""
    import base64
    import hashlib

    c = fedstat.Client(os.environ["FEDSTAT_HTTP"], ca=os.environ["FEDSTAT_CA"],
                       cert=os.environ["FEDSTAT_CERT"], key=os.environ["FEDSTAT_KEY"])
    with c:
        sql = "SELECT COUNT(DISTINCT patient_id) AS n FROM conditions WHERE code = '38341003'"
        spec, sig = c._signer.sign_query({"sql": sql, "epsilon": 0.25})
        header = base64.b64decode(sig["request"]["header"])
        want = "q-" + hashlib.sha256(b"fedstat/analyst-request/v1 query id\x00" + header).digest()[:16].hex()
        st = c._call("POST", "/v1/queries", {"spec": spec, "analyst_signature": sig, "fresh": True})
        assert st["query_id"] == want
        r = c.wait(want, progress=False)
        assert r.state == "DONE" and r.nodes == 3
        _, sig2 = c._signer.sign_query({"sql": sql, "epsilon": 0.25})
        with pytest.raises(fedstat.FedstatError, match="analyst signature"):
            c._call("POST", "/v1/queries", {"spec": dict(spec, epsilon=4.0), "analyst_signature": sig2, "fresh": True})


def test_certificate_client_signs_its_analysis():
    """With the analyst's certificate the client signs a statistical
    analysis once: the coordinator runs each round under the id derived
    from the signature and the round (every node recomputes the round's
    query from the signed analysis), and refuses an analysis other than the
    signed one, naming the signature. The plain call signs too."""
    import base64
    import hashlib
    import struct

    c = fedstat.Client(os.environ["FEDSTAT_HTTP"], ca=os.environ["FEDSTAT_CA"],
                       cert=os.environ["FEDSTAT_CERT"], key=os.environ["FEDSTAT_KEY"])
    with c:
        spec, sig = c._signer.sign_analysis({"method": "linreg", "table": "survival", "outcome": "time",
                                             "covariates": ["age"], "factors": ["sex"], "epsilon": 20.0})
        header = base64.b64decode(sig["request"]["header"])
        want = "q-" + hashlib.sha256(b"fedstat/analyst-analysis/v1 round query id\x00" + header
                                     + struct.pack(">I", 1)).digest()[:16].hex()
        body = {k: v for k, v in spec.items() if k != "method"}
        r = c._call("POST", "/v1/stats/linreg", dict(body, analyst_signature=sig))
        assert r["queries"] == [want]
        _, sig2 = c._signer.sign_analysis(spec)
        with pytest.raises(fedstat.FedstatError, match="analyst signature"):
            c._call("POST", "/v1/stats/linreg", dict(body, epsilon=40.0, analyst_signature=sig2))
        res = c.stats("linreg", "survival", outcome="time", covariates=["age"], factors=["sex"], epsilon=20.0)
        assert len(res.queries) == 1 and list(res.estimates["name"])[-1] == "linreg.sex2"



def test_verify_release(fs, expected):
    """The client checks a release with the reference verifier (fedstat
    verify), over its own connection: the cohort count the CLI ran is the
    decryption of the sum its three nodes committed to."""
    if not os.environ.get("FEDSTAT_BIN"):
        pytest.skip("FEDSTAT_BIN not set (no fedstat binary to verify with)")
    cohort = next(q for q in expected if q["name"] == "cohort")
    v = fs.verify(cohort["id"])
    # "verified_to_key_switch" when the coordinator withheld the result key
    # (the totals hold a value the analyst was not given), saying why.
    assert v["verdict"] == "verified" or (v["verdict"] == "verified_to_key_switch" and v["withheld"]), v
    assert v["senders"] == ["node-1", "node-2", "node-3"], v
    assert len(v["decryptors"]) == v["threshold"] == 2, v
    with pytest.raises(fedstat.FedstatError):
        fs.verify("q-nosuch")
