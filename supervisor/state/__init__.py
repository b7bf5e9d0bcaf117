"""Distributed state in Redis: leases with fencing tokens, attempt counters, the audit stream.

Everything goes through `StateStore`; keys are built only in `supervisor.state.keys`, and
redis-py errors are translated only in `supervisor.state.connection`.
"""

from supervisor.state.attempts import AttemptState, Escalation
from supervisor.state.audit import AuditRecord
from supervisor.state.keys import Keys
from supervisor.state.leases import Holder, Lease
from supervisor.state.store import StateStore

__all__ = [
    "AttemptState",
    "AuditRecord",
    "Escalation",
    "Holder",
    "Keys",
    "Lease",
    "StateStore",
]
