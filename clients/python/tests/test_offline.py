"""Tests of the client without a network: the coordinator's JSON is given by
an httpx.MockTransport, shaped as protobuf's JSON form (zeros left out, NaN
as a string, int64 as strings)."""

import json
import math

import httpx
import pytest

import fedstat
from fedstat import frames

RESULT = {
    "columns": ["region", "patients"],
    "key_columns": 1,
    "rows": [
        {"keys": ["north"], "values": [{"value": 42.5, "ci_low": 38.25, "ci_high": 46.75, "display": "43", "variance": 4.1}]},
        {"keys": ["south"], "values": [{"display": "< 10", "suppressed": True}]},
        # A count released as exactly 0 with its interval clipped at 0: the
        # zeros are absent from protobuf's JSON.
        {"keys": ["west"], "values": [{"ci_high": 4.25, "display": "0"}]},
    ],
    "epsilon": 1,
    "delta": 1e-06,
    "rho": 0.0123,
    "mechanism": "gaussian",
    "nodes": 3,
    "small_count_threshold": 10,
}


def test_result_frame_columns_and_types():
    f = frames.result_frame(RESULT)
    assert list(f.columns) == ["region", "patients", "patients_ci_low", "patients_ci_high", "patients_suppressed", "suppressed"]
    for c in ("patients", "patients_ci_low", "patients_ci_high"):
        assert f[c].dtype == "float64", c
    assert f["suppressed"].dtype == bool and f["patients_suppressed"].dtype == bool
    assert list(f["region"]) == ["north", "south", "west"]
    assert f["patients"][0] == 42.5 and f["patients_ci_low"][0] == 38.25 and f["patients_ci_high"][0] == 46.75
    assert math.isnan(f["patients"][1]) and math.isnan(f["patients_ci_low"][1]) and math.isnan(f["patients_ci_high"][1])
    assert list(f["suppressed"]) == [False, True, False]
    assert f["patients"][2] == 0.0 and f["patients_ci_low"][2] == 0.0 and f["patients_ci_high"][2] == 4.25


def test_result_frame_key_names_and_several_measures():
    res = {
        "columns": ["code", "mean", "n"],
        "key_columns": 1,
        "key_names": {"E11": "Type 2 diabetes"},
        "rows": [{"keys": ["E11"], "values": [{"value": "NaN", "ci_low": "-Infinity", "ci_high": "Infinity"},
                                              {"display": "< 10", "suppressed": True}]}],
    }
    f = frames.result_frame(res)
    assert list(f.columns) == ["code", "code_name", "mean", "mean_ci_low", "mean_ci_high", "mean_suppressed",
                               "n", "n_ci_low", "n_ci_high", "n_suppressed", "suppressed"]
    assert f["code_name"][0] == "Type 2 diabetes"
    assert math.isnan(f["mean"][0]) and f["mean_ci_low"][0] == -math.inf and f["mean_ci_high"][0] == math.inf
    assert not f["mean_suppressed"][0] and f["n_suppressed"][0] and f["suppressed"][0]


def test_empty_result_keeps_columns():
    f = frames.result_frame({"columns": ["count"], "key_columns": 0})
    assert len(f) == 0 and list(f.columns) == ["count", "count_ci_low", "count_ci_high", "count_suppressed", "suppressed"]


def client_for(handler):
    return fedstat.Client("https://coordinator.test", token="fst_test", transport=httpx.MockTransport(handler))


def test_query_follows_the_watch_stream():
    seen = []

    def handler(req: httpx.Request) -> httpx.Response:
        seen.append((req.method, req.url.path, req.headers.get("authorization")))
        if req.method == "POST" and req.url.path == "/v1/queries":
            body = json.loads(req.content)
            assert body == {"spec": {"sql": "SELECT COUNT(*) FROM patients", "epsilon": 0.5}}
            return httpx.Response(200, json={"query_id": "q-1", "state": "STATE_PLANNED"})
        if req.url.path == "/v1/queries/q-1/watch":
            lines = [{"query_id": "q-1", "state": "STATE_COLLECTING", "nodes": [{"node_id": "node-1", "status": "waiting"}]},
                     {"query_id": "q-1", "state": "STATE_DONE", "spec": {"sql": "SELECT COUNT(*) FROM patients"},
                      "nodes": [{"node_id": "node-1", "status": "decrypted"}], "result": RESULT}]
            return httpx.Response(200, content="\n".join(json.dumps(x) for x in lines) + "\n")
        return httpx.Response(404, json={"error": "no route", "code": "NotFound"})

    with client_for(handler) as fs:
        r = fs.query("SELECT COUNT(*) FROM patients", epsilon=0.5, progress=False)
    assert r.query_id == "q-1" and r.state == "DONE" and r.done
    assert r.epsilon == 1 and r.delta == 1e-6 and r.rho == 0.0123 and r.nodes == 3
    assert r.frame.attrs["query_id"] == "q-1" and len(r.frame) == 3
    assert r.node_status == {"node-1": "decrypted"}
    assert all(auth == "Bearer fst_test" for _, _, auth in seen)


def test_waiting_for_approval_is_shown(capsys):
    waiting = {"query_id": "q-2", "state": "STATE_COLLECTING", "nodes": [{"node_id": "hospital-b", "status": "waiting"}],
               "awaiting_approval": [{"node_id": "hospital-b", "since_unix_ms": "1700000000000"}]}

    def handler(req: httpx.Request) -> httpx.Response:
        if req.method == "POST":
            assert json.loads(req.content).get("fresh") is True
            return httpx.Response(200, json={"query_id": "q-2", "state": "STATE_PLANNED"})
        if req.url.path == "/v1/queries/q-2/watch":
            done = {"query_id": "q-2", "state": "STATE_DONE", "reused_from": "", "result": RESULT}
            return httpx.Response(200, content=json.dumps(waiting) + "\n" + json.dumps(done) + "\n")
        return httpx.Response(200, json=waiting)

    assert fedstat.Result.from_status(waiting).awaiting_approval == ["hospital-b"]
    with client_for(handler) as fs:
        r = fs.query("SELECT COUNT(*) FROM patients", progress=True, fresh=True)
    assert r.state == "DONE" and r.awaiting_approval == []
    assert "waiting for approval at hospital-b" in capsys.readouterr().err


def test_failed_query_raises_with_the_coordinators_reason():
    def handler(req):
        if req.method == "POST":
            return httpx.Response(200, json={"query_id": "q-2"})
        if req.url.path.endswith("/watch"):
            return httpx.Response(200, content='{"query_id": "q-2", "state": "STATE_COLLECTING"}\n')
        # The stream ended before the query did: the client polls.
        return httpx.Response(200, json={"query_id": "q-2", "state": "STATE_FAILED",
                                         "error": "2 of 3 nodes answered, min_nodes is 3; nothing was decrypted"})

    with client_for(handler) as fs, pytest.raises(fedstat.QueryFailed) as e:
        fs.query("SELECT COUNT(*) FROM patients", progress=False)
    assert e.value.query_id == "q-2" and e.value.state == "FAILED"
    assert "nothing was decrypted" in str(e.value)


@pytest.mark.parametrize("status,cls", [(400, fedstat.BadRequest), (401, fedstat.AuthenticationError),
                                        (403, fedstat.PermissionDenied), (404, fedstat.NotFound),
                                        (429, fedstat.BudgetExhausted), (500, fedstat.FedstatError)])
def test_http_errors_carry_the_servers_message(status, cls):
    def handler(req):
        return httpx.Response(status, json={"error": f"coordinator says {status}", "code": "Whatever"})

    with client_for(handler) as fs, pytest.raises(cls) as e:
        fs.get("q-9")
    assert str(e.value) == f"coordinator says {status}" and e.value.status == status and e.value.code == "Whatever"


def test_budget_nodes_and_explain_frames():
    def handler(req):
        if req.url.path == "/v1/budget":
            return httpx.Response(200, json={"analyst": "alice", "nodes": [
                {"node_id": "node-1", "spent_rho": 0.25, "limit_rho": 1, "total_spent_rho": 0.5, "total_limit_rho": 10},
                {"node_id": "node-2", "error": "unreachable"}]})
        if req.url.path == "/v1/nodes":
            return httpx.Response(200, json={"epoch": "4", "threshold": 2, "nodes": [
                {"node_id": "node-1", "alive": True, "epoch": "4", "last_seen_unix_ms": "1764892800000",
                 "summary": {"patients": "1200"}}]})
        if req.url.path == "/v1/explain":
            return httpx.Response(200, json={"epsilon": 1, "delta": 1e-6, "rho": 0.01, "kind": "count", "cells": 1,
                                             "nodes": [{"node_id": "node-1", "rho": 0.01}], "assumed_nodes": 3,
                                             "noise": [{"measure": "COUNT(*)", "count": True, "variance": 9, "sd": 3,
                                                        "half_width": 5.88}]})
        return httpx.Response(404, json={"error": "no"})

    with client_for(handler) as fs:
        b = fs.budget()
        n = fs.nodes()
        x = fs.explain("SELECT COUNT(*) FROM patients", epsilon=1)
    assert b.attrs["analyst"] == "alice"
    assert b["left_rho"][0] == 0.75 and b["left_epsilon"][0] == pytest.approx(0.75 + 2 * math.sqrt(0.75 * math.log(1e6)))
    assert b["error"][1] == "unreachable" and math.isnan(b["spent_rho"][1])
    assert n.attrs == {"epoch": 4, "threshold": 2}
    assert n["patients"][0] == 1200 and bool(n["alive"][0]) and str(n["last_seen"][0]).startswith("2025-12-05")
    assert x.rho == 0.01 and x.noise["half_width"][0] == 5.88 and list(x.nodes["node_id"]) == ["node-1"]


def test_series_suppressed_periods_are_missing():
    s = {"periods": [{"index": 0, "first": "2024-01-01", "last": "2024-01-07", "values": [
        {"label": "north", "value": 3.5, "variance": 2, "ci_low": 1, "ci_high": 6, "total": 3.5, "suppressed": True},
        {"label": "south", "value": 20, "variance": 2, "ci_low": 17, "ci_high": 23, "total": 20}]}]}
    f = frames.series_frame(s)
    assert math.isnan(f["value"][0]) and f["total"][0] == 3.5 and bool(f["suppressed"][0])
    assert f["value"][1] == 20 and not f["suppressed"][1]


def test_credentials_are_required(monkeypatch):
    monkeypatch.delenv("FEDSTAT_TOKEN", raising=False)
    monkeypatch.delenv("FEDSTAT_HTTP", raising=False)
    with pytest.raises(fedstat.FedstatError, match="FEDSTAT_HTTP"):
        fedstat.Client()
    with pytest.raises(fedstat.FedstatError, match="no credentials"):
        fedstat.Client("https://coordinator.test")
    with pytest.raises(fedstat.FedstatError, match="both cert= and key="):
        fedstat.Client("https://coordinator.test", cert="a.crt")


def test_signed_spec_encoding_is_protobufs():
    """The signed payload is the protobuf encoding of the spec, byte for byte
    what Go's proto.Marshal writes (the expected bytes come from it)."""
    from fedstat import signing

    q = {"sql": "SELECT COUNT(*) FROM patients", "epsilon": 0.5, "delta": 1e-6, "mechanism": "MECHANISM_LAPLACE",
         "min_nodes": 3, "reference_date": "2024-01-01", "approval_wait_seconds": 600, "partial_limit": -5}
    assert signing.encode(q, signing._QUERY_FIELDS).hex() == (
        "0a1d53454c45435420434f554e54282a292046524f4d2070617469656e747311000000000000e03f198dedb5a0f7c6b03e"
        "200228033a0a323032342d30312d303140fbffffffffffffffff01c002d804")
    s = {"name": "flu", "table": "conditions", "where": "code = '6142004'", "by": "region", "date_column": "onset_date",
         "every": "week", "start": "2026-01-05", "periods": 52, "max_periods_per_patient": 1, "epsilon": 2.0,
         "delta": 1e-6, "min_nodes": 3}
    assert signing.encode(s, signing._SERIES_FIELDS).hex() == (
        "0a03666c75120a636f6e646974696f6e731a0a6f6e7365745f6461746522047765656b2a0a323032362d30312d3035303438"
        "01410000000000000040498dedb5a0f7c6b03e50035a10636f6465203d202736313432303034276206726567696f6e")
    with pytest.raises(ValueError, match="unknown field"):
        signing.encode({"sql": "SELECT 1", "surprise": 1}, signing._QUERY_FIELDS)
    a = {"method": "logit", "table": "survival", "where": "age > 50", "epsilon": 2.0, "delta": 1e-6,
         "reference_date": "2026-01-05", "time": "time", "status": "status", "event": "2", "width": 30, "strata": "sex",
         "outcome": "status = 2", "covariates": ["age", "time"], "factors": ["sex"], "rounds": 3}
    assert signing.encode(a, signing._ANALYSIS_FIELDS).hex() == (
        "0a056c6f6769741208737572766976616c1a08616765203e203530210000000000000040298dedb5a0f7c6b03e320a323032362d"
        "30312d3035420474696d654a06737461747573520132590000000000003e4062037365786a0a737461747573203d20327203616765"
        "720474696d657a03736578800103")
    with pytest.raises(ValueError, match="list of names"):
        signing.encode({"covariates": "age"}, signing._ANALYSIS_FIELDS)


def test_signer_header_and_signature(tmp_path):
    """A signature is the network's envelope: the header binds the
    coordinator's name and the kind, carries the payload's SHA-256, and the
    ECDSA signature over the domain and the header verifies."""
    import base64
    import datetime
    import hashlib

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    from fedstat import signing

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
            .sign(key, hashes.SHA256()))
    (tmp_path / "a.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "a.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    signer = signing.Signer(str(tmp_path / "a.crt"), str(tmp_path / "a.key"), "coord-1")
    spec, sig = signer.sign_query({"sql": "SELECT COUNT(*) FROM patients"})
    assert spec["epsilon"] == 1.0 and spec["delta"] == 1e-6 and len(spec["reference_date"]) == 10
    header = base64.b64decode(sig["request"]["header"])
    payload = base64.b64decode(sig["request"]["payload"])
    assert header[:5] == b"FSEH\x01"
    assert b"\x00\x07coord-1\x00\x0fanalyst-request" in header
    assert hashlib.sha256(payload).digest() in header
    assert base64.b64decode(sig["certificate"]) == cert.public_bytes(serialization.Encoding.DER)
    key.public_key().verify(base64.b64decode(sig["request"]["signature"]), b"fedstat/envelope/v1 signature\x00" + header,
                            ec.ECDSA(hashes.SHA256()))
    _, ssig = signer.sign_series({"name": "flu", "table": "conditions", "date_column": "onset_date", "every": "week",
                                  "start": "2026-01-05", "periods": 4, "epsilon": 1.0})
    assert b"analyst-series" in base64.b64decode(ssig["request"]["header"])
