"""Async building blocks on a connected client: create, send, list, wait for rows."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from supervisor.gateway.client import GatewayClient
from tests.e2e.common import HarnessError


def running(row: Mapping[str, Any] | None) -> bool:
    return row is not None and row.get("status") == "running"


def finished(row: Mapping[str, Any] | None) -> bool:
    return (
        row is not None
        and row.get("status") not in (None, "running")
        and row.get("hasActiveRun") is not True
    )


# -- async building blocks (usable from async tests) -------------------------------------------


async def create_session(client: GatewayClient, key: str) -> dict[str, Any]:
    """`sessions.create {key}`: a session must exist before `sessions.send` accepts it."""
    payload = await client.call("sessions.create", {"key": key})
    if not isinstance(payload, dict) or payload.get("key") != key:
        raise HarnessError(f"sessions.create {key}: unexpected answer {payload!r}")
    return payload


async def send_message(client: GatewayClient, key: str, message: str) -> str:
    """`sessions.send {key, message}`; returns the run id."""
    payload = await client.call("sessions.send", {"key": key, "message": message})
    if not isinstance(payload, dict) or not payload.get("runId"):
        raise HarnessError(f"sessions.send {key}: unexpected answer {payload!r}")
    return str(payload["runId"])


async def list_raw_rows(client: GatewayClient, *, page: int = 200) -> dict[str, dict[str, Any]]:
    """Every row of `sessions.list`, raw, by key; pages through `hasMore`/`nextOffset`."""
    rows: dict[str, dict[str, Any]] = {}
    params: dict[str, Any] = {}
    for _ in range(1000):
        payload = await client.call("sessions.list", params)
        if not isinstance(payload, dict) or not isinstance(payload.get("sessions"), list):
            raise HarnessError(f"sessions.list: unexpected answer {str(payload)[:200]}")
        for row in payload["sessions"]:
            if isinstance(row, dict) and isinstance(row.get("key"), str):
                rows[row["key"]] = row
        if not payload.get("hasMore") or payload.get("nextOffset") is None:
            return rows
        params = {"limit": page, "offset": payload["nextOffset"]}
    raise HarnessError("sessions.list: more than 1000 pages")


async def wait_for_rows(
    client: GatewayClient,
    predicate: Callable[[dict[str, dict[str, Any]]], bool],
    *,
    timeout: float,
    what: str,
    interval: float = 0.25,
) -> dict[str, dict[str, Any]]:
    """Poll `sessions.list` until `predicate(rows by key)` holds; returns those rows."""
    deadline = time.monotonic() + timeout
    while True:
        rows = await list_raw_rows(client)
        if predicate(rows):
            return rows
        if time.monotonic() > deadline:
            brief = {k: _brief(r) for k, r in rows.items()}
            raise HarnessError(f"timed out after {timeout:g}s waiting for {what}; rows: {brief}")
        await asyncio.sleep(interval)


ROW_FIELDS = (
    "status",
    "hasActiveRun",
    "activeRunIds",
    "abortedLastRun",
    "startedAt",
    "endedAt",
    "sessionId",
)


def _brief(row: Mapping[str, Any]) -> dict[str, Any]:
    return {k: row.get(k) for k in ROW_FIELDS if k in row}


def row_facts(rows: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The fields that say what a session is doing (no `updatedAt`: gateways bump it alone)."""
    return {key: _brief(row) for key, row in rows.items()}
