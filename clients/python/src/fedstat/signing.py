"""Signing queries, standing series and statistical analyses with the
analyst's network key.

A client that holds the analyst's network certificate and key signs every
query and series it submits, as ``fedstat query`` and the Go client do
(docs/operations.md, "Analyst-signed queries"): the nodes then check who
asked and what themselves, and a coordinator cannot spend the analyst's
budget, claim another role or change the question. The message is the
network's signed envelope (crypto/envelope): a header of the signer's
binding (the coordinator's certificate name and the kind), the payload's
SHA-256, the time and a nonce, signed by the certificate key; the payload
is the protobuf encoding of the spec (internal/signedquery).
"""

import base64
import datetime
import hashlib
import os
import struct
import time
from typing import Any, Dict, List, Tuple

KIND_QUERY = "analyst-request"
KIND_SERIES = "analyst-series"
KIND_ANALYSIS = "analyst-analysis"
DEFAULT_EPSILON = 1.0
DEFAULT_DELTA = 1e-6

_MAGIC = b"FSEH"
_VERSION = 1
_SIG_DOMAIN = b"fedstat/envelope/v1 signature\x00"

# Field numbers and wire types of fedstat.types.v1.QuerySpec, SeriesSpec and
# AnalysisSpec (proto/fedstat/types/v1/types.proto), in field number order:
# "s" string, "d" double, "i" a varint (int32, int64 or enum), "rs" a
# repeated string.
_QUERY_FIELDS: List[Tuple[str, int, str]] = [
    ("sql", 1, "s"), ("epsilon", 2, "d"), ("delta", 3, "d"), ("mechanism", 4, "i"), ("min_nodes", 5, "i"),
    ("threshold", 6, "i"), ("reference_date", 7, "s"), ("partial_limit", 8, "i"), ("link_holders", 9, "i"),
    ("approval_wait_seconds", 40, "i"),
]
_SERIES_FIELDS: List[Tuple[str, int, str]] = [
    ("name", 1, "s"), ("table", 2, "s"), ("date_column", 3, "s"), ("every", 4, "s"), ("start", 5, "s"),
    ("periods", 6, "i"), ("max_periods_per_patient", 7, "i"), ("epsilon", 8, "d"), ("delta", 9, "d"),
    ("min_nodes", 10, "i"), ("where", 11, "s"), ("by", 12, "s"),
]
_ANALYSIS_FIELDS: List[Tuple[str, int, str]] = [
    ("method", 1, "s"), ("table", 2, "s"), ("where", 3, "s"), ("epsilon", 4, "d"), ("delta", 5, "d"),
    ("reference_date", 6, "s"), ("time", 8, "s"), ("status", 9, "s"), ("event", 10, "s"), ("width", 11, "d"),
    ("strata", 12, "s"), ("outcome", 13, "s"), ("covariates", 14, "rs"), ("factors", 15, "rs"), ("rounds", 16, "i"),
]
_MECHANISMS = {"MECHANISM_UNSPECIFIED": 0, "MECHANISM_GAUSSIAN": 1, "MECHANISM_LAPLACE": 2}


def _varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64  # two's complement, as protobuf encodes a negative int32 or int64
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode(spec: Dict[str, Any], fields: List[Tuple[str, int, str]]) -> bytes:
    """The protobuf encoding of spec (a dict of protobuf JSON field names),
    leaving out unset and zero fields as proto3 does. A field this client
    does not know is an error, so that nothing is sent unsigned."""
    known = {name for name, _, _ in fields}
    unknown = set(spec) - known
    if unknown:
        raise ValueError(f"cannot sign the spec: unknown field(s) {sorted(unknown)}")
    out = bytearray()
    for name, num, kind in fields:
        v = spec.get(name)
        if kind == "rs":
            if isinstance(v, str):
                raise ValueError(f"cannot sign the spec: {name} is a list of names, not {v!r}")
            for item in v or []:
                b = str(item).encode("utf-8")
                out += _varint(num << 3 | 2) + _varint(len(b)) + b
            continue
        if v is None or v == "" or v == 0:
            continue
        if kind == "s":
            b = str(v).encode("utf-8")
            out += _varint(num << 3 | 2) + _varint(len(b)) + b
        elif kind == "d":
            out += _varint(num << 3 | 1) + struct.pack("<d", float(v))
        else:
            if isinstance(v, str):
                v = _MECHANISMS[v]
            out += _varint(num << 3 | 0) + _varint(int(v))
    return bytes(out)


def _field(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack(">H", len(b)) + b


def _header(coordinator: str, kind: str, payload: bytes, now_ns: int) -> bytes:
    return (_MAGIC + bytes([_VERSION]) + _field("") + struct.pack(">Q", 0) + _field(coordinator) + _field(kind)
            + hashlib.sha256(payload).digest() + struct.pack(">q", now_ns) + os.urandom(16))


class Signer:
    """The analyst's certificate and key (PEM files issued by the network
    CA), signing for the coordinator whose certificate name is
    ``coordinator``."""

    def __init__(self, cert: str, key: str, coordinator: str = "coordinator"):
        try:
            from cryptography import x509
            from cryptography.hazmat.primitives import serialization
        except ImportError as e:  # pragma: no cover - a dependency of the package
            raise ImportError("signing queries needs the 'cryptography' package") from e
        with open(cert, "rb") as f:
            self.certificate = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
        with open(key, "rb") as f:
            self._key = serialization.load_pem_private_key(f.read(), password=None)
        self.coordinator = coordinator

    def _sign(self, header: bytes) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        msg = _SIG_DOMAIN + header
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(msg, ec.ECDSA(hashes.SHA256()))
        if isinstance(self._key, ed25519.Ed25519PrivateKey):
            return self._key.sign(msg)
        raise ValueError(f"cannot sign with a {type(self._key).__name__}: the network's keys are ECDSA P-256 or Ed25519")

    def seal(self, payload: bytes, kind: str) -> Dict[str, Any]:
        """An AnalystSignature in protobuf JSON over payload."""
        header = _header(self.coordinator, kind, payload, time.time_ns())
        b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
        return {"request": {"header": b64(header), "payload": b64(payload), "signature": b64(self._sign(header))},
                "certificate": b64(self.certificate)}

    def sign_query(self, spec: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Returns spec with the network's defaults stated (epsilon, delta
        unless Laplace, today's reference date, as the coordinator would
        fill them in) and its signature."""
        spec = dict(spec)
        spec.setdefault("epsilon", DEFAULT_EPSILON)
        if spec.get("mechanism") != "MECHANISM_LAPLACE":
            spec.setdefault("delta", DEFAULT_DELTA)
        spec.setdefault("reference_date", datetime.datetime.now(datetime.timezone.utc).date().isoformat())
        return spec, self.seal(encode(spec, _QUERY_FIELDS), KIND_QUERY)

    def sign_series(self, spec: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Returns spec with the network's defaults stated (lifetime epsilon
        and delta, K = 1) and its signature."""
        spec = dict(spec)
        for k, v in (("epsilon", DEFAULT_EPSILON), ("delta", DEFAULT_DELTA), ("max_periods_per_patient", 1)):
            if not spec.get(k):
                spec[k] = v
        return spec, self.seal(encode(spec, _SERIES_FIELDS), KIND_SERIES)

    def sign_analysis(self, spec: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Returns a statistical analysis (the method and the request's
        fields but deadline_ms) with the network's defaults stated (epsilon
        and delta of the whole analysis, today's reference date) and its
        signature: every node checks each round against it."""
        spec = dict(spec)
        for k, v in (("epsilon", DEFAULT_EPSILON), ("delta", DEFAULT_DELTA)):
            if not spec.get(k):
                spec[k] = v
        spec.setdefault("reference_date", datetime.datetime.now(datetime.timezone.utc).date().isoformat())
        return spec, self.seal(encode(spec, _ANALYSIS_FIELDS), KIND_ANALYSIS)
