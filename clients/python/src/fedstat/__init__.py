"""fedstat: a Python client of a fedstat network.

Connect to a coordinator with a bearer token or a client certificate, run
differentially private queries over the network's nodes and get the released
tables as pandas DataFrames::

    import fedstat
    fs = fedstat.Client("https://127.0.0.1:8443", token="fst_...", ca="pki/ca.crt")
    r = fs.query("SELECT sex, COUNT(*) FROM patients GROUP BY sex", epsilon=0.5)
    r.frame          # sex, count, count_ci_low, count_ci_high, count_suppressed, suppressed
    fs.budget()      # what is left at every node

Without arguments, Client() reads FEDSTAT_HTTP, FEDSTAT_TOKEN and FEDSTAT_CA,
the variables of the env file ``fedstat demo --serve`` writes.
"""

from .client import Client, Explanation, Result, StatsResult
from .errors import (AuthenticationError, BadRequest, BudgetExhausted, Conflict, FedstatError, NotFound,
                     PermissionDenied, PreconditionFailed, QueryFailed)
from .frames import result_frame

__version__ = "0.1.0"

__all__ = [
    "Client", "Result", "Explanation", "StatsResult", "result_frame",
    "FedstatError", "BadRequest", "AuthenticationError", "PermissionDenied", "NotFound", "Conflict",
    "PreconditionFailed", "BudgetExhausted", "QueryFailed",
]
