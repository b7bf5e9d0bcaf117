"""Reading the messages held behind a dead lane, and sending them again once it is healed.

2026.9.6 lists what waits behind a lane in `chat.history`'s `pendingInputs` (measured): each
item has the user's message, `acceptedAt`, the run id that `activeRunIds` shows, and a
`state` (`queued` while it waits; `interrupted` once a reset threw it away). Older lines have
no `pendingInputs` (checked in their package source): there the text cannot be read, so those
messages can only be reported.

A gateway's answer is untrusted input: anything that is not a plain user text the gateway did
not cut (`__openclaw.truncated`, or a content we do not understand) counts as not readable and
is reported, never resent half.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from supervisor.errors import GatewayCallError, GatewayError
from supervisor.gateway.client import GatewayClient
from supervisor.state.held import HeldMessage

log = logging.getLogger(__name__)

#: chat.history's largest `maxChars`: the gateway cuts longer texts (then they are not resent)
MAX_CHARS = 500_000
#: pending inputs come 20 a page at most (the gateway's own cap); one page is read
PAGE = 20
#: the pending input states that mean the message was thrown away unanswered
LOST_STATES = frozenset({"interrupted"})


def idempotency_key(gateway: str, run_id: str) -> str:
    """The key a redelivery is sent with: the gateway answers a second send with the same key
    `in_flight` and runs nothing (measured on 2026.9.6), so a retried step cannot send twice."""
    return f"lane-supervisor-redeliver:{gateway}:{run_id}"


def _text(message: object) -> str | None:
    """The plain text of a user's pending message, or None when it is not one we can resend."""
    if not isinstance(message, Mapping) or message.get("role") != "user":
        return None
    meta = message.get("__openclaw")
    if isinstance(meta, Mapping) and meta.get("truncated"):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        parts = []
        for part in content:
            if not isinstance(part, Mapping) or part.get("type") != "text":
                return None  # an attachment or a tool part: not ours to resend by text
            text = part.get("text")
            if not isinstance(text, str):
                return None
            parts.append(text)
        return "".join(parts)
    return None


async def pending_inputs(client: GatewayClient, key: str) -> dict[str, Mapping[str, Any]] | None:
    """Run id -> pending input item, as chat.history lists them; None when the gateway has no
    `chat.history` with `pendingInputs` (or would not answer)."""
    assert client.hello is not None
    methods = client.hello.methods
    if methods is not None and "chat.history" not in methods:
        return None
    params = {"sessionKey": key, "limit": PAGE, "maxChars": MAX_CHARS}
    try:
        payload = await client.call("chat.history", params)
    except GatewayCallError as exc:
        log.warning("%s: chat.history refused (%s); held messages not readable", client.name, exc)
        return None
    except GatewayError as exc:
        log.warning("%s: chat.history failed (%s); held messages not readable", client.name, exc)
        return None
    pending = payload.get("pendingInputs") if isinstance(payload, Mapping) else None
    items = pending.get("items") if isinstance(pending, Mapping) else None
    if not isinstance(items, list):
        return None
    out: dict[str, Mapping[str, Any]] = {}
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("runId"), str):
            out.setdefault(item["runId"], item)
    return out


def _users(
    listed: Mapping[str, Mapping[str, Any]] | None, states: frozenset[str]
) -> list[tuple[float, str]]:
    """(acceptedAt, run id) of the users' messages in these states, oldest first. The
    gateway's own restart-recovery prompt is listed too (`provenance.kind`
    `internal_system`): it is not a user's message, and resending it is the gateway's business."""
    out = []
    for run_id, item in (listed or {}).items():
        message = item.get("message")
        if item.get("state") not in states or not isinstance(message, Mapping):
            continue
        provenance = message.get("provenance")
        if isinstance(provenance, Mapping) and str(provenance.get("kind", "")).startswith(
            "internal"
        ):
            continue
        accepted = item.get("acceptedAt")
        if message.get("role") == "user":
            out.append((float(accepted) if isinstance(accepted, int | float) else 0.0, run_id))
    return sorted(out)


def waiting_run_ids(listed: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    """Run ids of the users' messages still waiting (`queued`), oldest first."""
    return [run_id for _, run_id in _users(listed, frozenset({"queued"}))]


def arrived_after(
    listed: Mapping[str, Mapping[str, Any]] | None, since_ms: float | None, known: set[str]
) -> list[HeldMessage]:
    """The users' messages the gateway lists lost (`interrupted`) that were accepted after
    `since_ms` (our read before the reset) and are not recorded: a message that raced the
    reset. Older interrupted ones belong to earlier resets and are never picked up."""
    if since_ms is None:
        return []
    late = [r for t, r in _users(listed, LOST_STATES) if t >= since_ms and r not in known]
    return held_messages(tuple(late), listed, keep_text=True)


def held_messages(
    run_ids: tuple[str, ...],
    listed: Mapping[str, Mapping[str, Any]] | None,
    *,
    keep_text: bool,
) -> list[HeldMessage]:
    """One record per held run id (those the row listed), with what the gateway let us read."""
    out = []
    for run_id in run_ids:
        item = (listed or {}).get(run_id)
        if item is None:
            out.append(HeldMessage(run_id=run_id))
            continue
        accepted = item.get("acceptedAt")
        sent_at = float(accepted) if isinstance(accepted, int | float) else None
        text = _text(item.get("message"))
        out.append(
            HeldMessage(
                run_id=run_id,
                sent_at_ms=sent_at,
                text=text if keep_text else None,
                chars=None if text is None else len(text),
            )
        )
    return out


def oldest(messages: list[HeldMessage]) -> float | None:
    times = [m.sent_at_ms for m in messages if m.sent_at_ms is not None]
    return min(times) if times else None
