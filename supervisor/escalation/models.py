"""What the paging layer is handed (`IncidentEvent`) and what a provider reports (`DeliveryResult`).

Both are plain JSON without secrets, so a Celery task can return a result (Celery logs return
values) and the engine can audit it. An event carries the incident *kind*; the severity comes
from the `[paging.severity]` mapping and is filled in by the dispatcher, so operators change
who gets woken up in the fleet file, not in code.
"""

from __future__ import annotations

import hashlib
import shlex
from datetime import UTC, datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from supervisor.errors import DeliveryFailed, DeliveryRejected, DeliveryRetryable

Severity = Literal["info", "warning", "error", "critical"]
#: PagerDuty's severities, least to most urgent; a higher rank re-notifies at once
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2, "critical": 3}
#: longest string kept from the caller's details (an error message is a summary, not a log)
MAX_DETAIL_CHARS = 500

DetailValue = str | int | float | bool | None


class Action(StrEnum):
    """What a delivery tells the provider about the incident."""

    TRIGGER = "trigger"
    ACKNOWLEDGE = "acknowledge"
    RESOLVE = "resolve"


class Kind(StrEnum):
    """The incident kinds the engine raises; each maps to a severity in `[paging.severity]`."""

    STUCK = "stuck"  # a session stuck `running`, not yet given up on
    ESCALATED = "escalated"  # recovery failed max_attempts times: a human is needed
    UNREACHABLE = "unreachable"  # the gateway cannot be scanned
    BREAKER_OPEN = "breaker_open"  # too many zombies at once: recovery paused on the gateway


def dedup_key_for(gateway: str, key: str | None = None) -> str:
    """`<gateway>/<session key>` for a session incident, `<gateway>` for a gateway one.

    Gateway names cannot contain '/', so the two forms never collide and the first '/' splits
    them back apart (session keys may contain '/').
    """
    return gateway if key is None else f"{gateway}/{key}"


def fingerprint(dedup_key: str) -> str:
    """A short stable id of an incident (Alertmanager's `fingerprint` is 16 hex digits)."""
    return hashlib.sha256(dedup_key.encode()).hexdigest()[:16]


def rfc3339(ms: float) -> str:
    """`ms` since the epoch as an RFC 3339 UTC time with milliseconds."""
    text = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return text.replace("+00:00", "Z")


def clean_details(details: dict[str, object]) -> dict[str, DetailValue]:
    """The caller's details as JSON scalars, long strings cut (anything else becomes its str)."""
    out: dict[str, DetailValue] = {}
    for name, value in details.items():
        if value is None or isinstance(value, bool | int | float):
            out[str(name)] = value
        else:
            text = str(value)
            out[str(name)] = (
                text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "…"
            )
    return out


def _age(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    if hours:
        return f"{hours}h{rest // 60:02d}m"
    return f"{rest // 60}m{rest % 60:02d}s" if rest >= 60 else f"{rest}s"


class IncidentEvent(BaseModel):
    """One thing to tell the providers about one incident."""

    model_config = ConfigDict(frozen=True)

    action: Action = Action.TRIGGER
    dedup_key: str = Field(min_length=1)
    gateway: str = Field(min_length=1)
    key: str | None = None
    kind: str = Field(min_length=1)
    #: None: the dispatcher fills it in from the config's severity mapping
    severity: Severity | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    details: dict[str, DetailValue] = Field(default_factory=dict)
    #: when the incident was opened, and when this event happened (ms since the epoch)
    started_ms: int
    ts_ms: int
    #: the incident's notification number: trigger 1, re-notifications 2, 3..., then resolve
    seq: int = 1

    @property
    def rank(self) -> int:
        """The severity's rank (higher is more urgent); -1 while the severity is unset."""
        return -1 if self.severity is None else SEVERITY_RANK[self.severity]

    @property
    def age_s(self) -> float | None:
        value = self.details.get("age_s")
        return (
            float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    @property
    def attempts(self) -> int | None:
        value = self.details.get("attempts")
        return (
            int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        )

    @property
    def last_error(self) -> str | None:
        value = self.details.get("last_error")
        return None if value is None else str(value)

    @property
    def summary(self) -> str:
        """One line a human understands at 3 a.m. (PagerDuty allows 1024 characters)."""
        gw, key = self.gateway, self.key or ""
        age = f" for {_age(self.age_s)}" if self.age_s is not None else ""
        if self.action is Action.RESOLVE:
            target = f"session {key} on gateway {gw}" if self.key else f"gateway {gw}"
            return f"Resolved: {target} is healthy again"
        if self.kind == Kind.STUCK:
            text = f"Session {key} on gateway {gw} is stuck running{age}"
        elif self.kind == Kind.ESCALATED:
            tries = f" after {self.attempts} recovery attempts" if self.attempts else ""
            text = f"Session {key} on gateway {gw} is still stuck{tries}{age}: needs a human"
        elif self.kind == Kind.UNREACHABLE:
            text = f"Gateway {gw} is unreachable{age}"
        elif self.kind == Kind.BREAKER_OPEN:
            text = f"Gateway {gw}: too many stuck sessions at once, automatic recovery paused"
        else:
            text = f"Gateway {gw}{' session ' + key if key else ''}: {self.kind}{age}"
        return (text + self._waiting())[:1024]

    def _waiting(self) -> str:
        """`; N messages waiting` when the engine said how many wait behind the lane(s),
        `; messages waiting: unknown` when it said it cannot tell, nothing when it did not say."""
        if "messages_waiting" not in self.details:
            return ""
        value = self.details["messages_waiting"]
        if isinstance(value, bool) or not isinstance(value, int):
            return "; messages waiting: unknown"
        return f"; {value} message{'' if value == 1 else 's'} waiting"

    @property
    def story(self) -> str:
        """The command that prints this incident's story from the audit stream, step by step
        (Flower keeps only its newest tasks in memory; the audit keeps ~100,000 records)."""
        command = f"lane-supervisor audit -g {shlex.quote(self.gateway)}"
        return command + (f" -k {shlex.quote(self.key)}" if self.key else "")

    def custom_details(self) -> dict[str, DetailValue]:
        """gateway, key, age_s, attempts, last_error, story first, then any other detail."""
        head: dict[str, DetailValue] = {
            "gateway": self.gateway,
            "key": self.key,
            "age_s": self.age_s,
            "attempts": self.attempts,
            "last_error": self.last_error,
            "story": self.story,
        }
        return {**head, **{k: v for k, v in self.details.items() if k not in head}}


class DeliveryStatus(StrEnum):
    OK = "ok"
    #: nothing to send for this action (e.g. acknowledge on an Alertmanager-style webhook)
    SKIPPED = "skipped"
    RETRYABLE = "retryable"
    PERMANENT = "permanent"


class DeliveryResult(BaseModel):
    """What one provider made of one event; `reason` never holds a secret."""

    model_config = ConfigDict(frozen=True)

    provider: str
    status: DeliveryStatus
    action: Action
    dedup_key: str
    route: str | None = None
    #: HTTP requests made (retries included); 0 when nothing was sent
    requests: int = 0
    http_status: int | None = None
    reason: str | None = None
    #: for a retryable failure: the wait the provider asked for (Retry-After), if any
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        """Delivered, or nothing needed delivering."""
        return self.status in (DeliveryStatus.OK, DeliveryStatus.SKIPPED)

    @property
    def retryable(self) -> bool:
        return self.status is DeliveryStatus.RETRYABLE

    def error(self) -> DeliveryFailed | None:
        """The matching exception for a failed delivery, None for a good one."""
        if self.ok:
            return None
        cls = DeliveryRetryable if self.retryable else DeliveryRejected
        return cls(
            self.provider,
            self.reason or self.status.value,
            route=self.route,
            http_status=self.http_status,
            retry_after_s=self.retry_after_s,
        )
