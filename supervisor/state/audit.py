"""The audit trail: one capped, append-only Redis stream of what was decided and done.

Each record is one stream entry whose fields are the record's non-None fields, strings as they
are and everything else as JSON ("true", "12.5"), so `redis-cli XRANGE ls:audit - +` is
readable and pydantic parses the values back.

Failure contract: `append` raises `RedisUnavailable` and nothing else. Every redis-py failure
(unreachable, timeout, OOM, READONLY, even a foreign key of the wrong type) means the same to
the caller: the record was not written. The engine decides from that one exception whether to
go on (a read-only scan) or stop (a mutating step whose intent cannot be recorded).
Records hold no secrets by construction: no field is meant for tokens or URLs with passwords,
and `detail` is written by our own code from already-redacted errors.

The stream is capped with `XADD MAXLEN ~ maxlen` (approximate by default: Redis trims whole
internal nodes of ~100 entries, cheaply, so the length may exceed `maxlen` by up to a node).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis
from pydantic import BaseModel, ConfigDict, Field
from redis.typing import EncodableT, FieldT

from supervisor.errors import RedisUnavailable, StateError
from supervisor.state.connection import describe, translate_errors
from supervisor.state.keys import Keys

DEFAULT_MAXLEN = 100_000


class AuditRecord(BaseModel):
    """One thing the supervisor decided or did. `entry_id` is set on records read back."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    ts_ms: int
    gateway: str
    step: str
    outcome: str
    key: str | None = None
    verdict: str | None = None
    fencing_token: int | None = None
    duration_ms: float | None = None
    #: mutating steps: ms from the final read to the request (bounded by act_window)
    read_to_send_ms: float | None = None
    detail: str | None = None
    dry_run: bool | None = None
    recovery_id: str | None = None
    entry_id: str | None = Field(default=None, exclude=True)


def _fields(record: AuditRecord) -> dict[FieldT, EncodableT]:
    out: dict[FieldT, EncodableT] = {}
    for name, value in record.model_dump(exclude_none=True).items():
        out[name] = value if isinstance(value, str) else json.dumps(value)
    return out


def _records(entries: Any) -> list[AuditRecord]:
    """Records from XRANGE/XREVRANGE replies: [(id, {field: value}), ...] (decoded)."""
    return [
        AuditRecord.model_validate({**(fields or {}), "entry_id": str(entry_id)})
        for entry_id, fields in entries or ()
    ]


class AuditLog:
    """Append to and read the audit stream."""

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        *,
        maxlen: int = DEFAULT_MAXLEN,
        approximate: bool = True,
    ) -> None:
        if maxlen <= 0:
            raise ValueError("the audit stream needs a positive maxlen")
        self._client = client
        self._key = keys.audit
        self._maxlen = maxlen
        self._approximate = approximate
        self._where = describe(client)

    def append(self, record: AuditRecord) -> str:
        """Write `record`; the stream entry id. Raises RedisUnavailable only (see module doc)."""
        try:
            with translate_errors(self._where, f"append to {self._key}"):
                entry_id = self._client.xadd(
                    self._key,
                    _fields(record),
                    maxlen=self._maxlen,
                    approximate=self._approximate,
                )
        except RedisUnavailable:
            raise
        except StateError as exc:
            raise RedisUnavailable(str(exc)) from exc.__cause__
        return str(entry_id)

    def read(self, count: int, since_id: str | None = None) -> list[AuditRecord]:
        """Up to `count` records, OLDEST FIRST, strictly after `since_id` (from the start if None).

        Page through with `since_id=records[-1].entry_id`.
        """
        start = "-" if since_id is None else f"({since_id}"
        with translate_errors(self._where, f"read {self._key}"):
            entries = self._client.xrange(self._key, min=start, max="+", count=count)
        return _records(entries)

    def tail(self, count: int) -> list[AuditRecord]:
        """The newest `count` records, still oldest first (for `status` and tests)."""
        with translate_errors(self._where, f"read {self._key}"):
            entries = self._client.xrevrange(self._key, max="+", min="-", count=count)
        return _records(reversed(entries or []))

    def newest_matching(
        self, match: Callable[[AuditRecord], bool], count: int, *, page: int = 1000
    ) -> list[AuditRecord]:
        """The newest `count` records `match` accepts, oldest first, looking as far back as
        the stream goes (one session's story, `audit -g G -k K`, however old)."""
        found: list[AuditRecord] = []
        before = "+"
        while len(found) < count:
            with translate_errors(self._where, f"read {self._key}"):
                entries = self._client.xrevrange(self._key, max=before, min="-", count=page)
            if not entries:
                break
            found.extend(r for r in _records(entries) if match(r))
            last = entries[-1][0]
            before = "(" + (last.decode() if isinstance(last, bytes) else str(last))
        return list(reversed(found[:count]))

    def length(self) -> int:
        with translate_errors(self._where, f"read the length of {self._key}"):
            return int(self._client.xlen(self._key))
