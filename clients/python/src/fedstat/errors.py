"""Exceptions raised by the fedstat client.

Every error the coordinator reports keeps its own text (``str(err)``), the
HTTP status (``err.status``) and the coordinator's error code
(``err.code``, a gRPC code name such as ``"InvalidArgument"``).
"""

from __future__ import annotations

from typing import Any, Optional


class FedstatError(Exception):
    """Base class of every error of this package.

    Attributes:
        message: the coordinator's message (or this client's own).
        status: the HTTP status of the answer, or None.
        code: the coordinator's error code (a gRPC code name), or None.
    """

    def __init__(self, message: str, status: Optional[int] = None, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class BadRequest(FedstatError):
    """The coordinator refused the request (HTTP 400): a query it cannot
    parse or plan, a parameter out of range. The message says where."""


class AuthenticationError(FedstatError):
    """No valid credentials (HTTP 401): an unknown token, or neither a token
    nor a client certificate."""


class PermissionDenied(FedstatError):
    """The credentials are valid but not allowed to do this (HTTP 403)."""


class NotFound(FedstatError):
    """No such query, series or method (HTTP 404), or one the caller may
    not read."""


class Conflict(FedstatError):
    """The thing already exists (HTTP 409), for example a series name."""


class PreconditionFailed(FedstatError):
    """The network cannot do it now (HTTP 412), for example too few nodes."""


class BudgetExhausted(FedstatError):
    """A limit was reached (HTTP 429): typically the privacy budget."""


class QueryFailed(FedstatError):
    """A query ended without a release (state FAILED or CANCELLED).

    Attributes:
        query_id: the query's id.
        state: ``"FAILED"`` or ``"CANCELLED"``.
        status_json: the query's last status, as the coordinator sent it.
    """

    def __init__(self, message: str, query_id: str, state: str, status_json: Any):
        super().__init__(message)
        self.query_id = query_id
        self.state = state
        self.status_json = status_json


_BY_STATUS = {
    400: BadRequest,
    401: AuthenticationError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    412: PreconditionFailed,
    429: BudgetExhausted,
}


def error_for(status: int, body: bytes) -> FedstatError:
    """Builds the exception for an HTTP answer that is not 2xx, from the
    coordinator's ``{"error": ..., "code": ...}`` body when it sent one."""
    message, code = "", None
    try:
        import json

        doc = json.loads(body.decode("utf-8"))
        if isinstance(doc, dict):
            message = str(doc.get("error") or "")
            code = doc.get("code")
    except (ValueError, UnicodeDecodeError):
        message = body.decode("utf-8", "replace").strip()[:500]
    if not message:
        message = f"HTTP {status}"
    return _BY_STATUS.get(status, FedstatError)(message, status=status, code=code)
