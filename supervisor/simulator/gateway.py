"""One simulated gateway's state and its version's behaviour (no sockets here).

What each version does is taken from measurements of the real gateways
(shared/openclaw-gateway.md, "How each method treats them").
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

LIVE_CLIENTS = {("gateway-client", "backend"), ("cli", "cli")}
MUTATING = {"sessions.abort", "sessions.reset", "sessions.send"}
METHODS_3 = ["health", "sessions.list", "sessions.abort", "sessions.reset", "sessions.send"]
METHODS_4 = [*METHODS_3, "sessions.get", "sessions.subscribe"]
LIST_DEFAULT_LIMIT = 100
LIST_MAX_LIMIT = 1000


class Version(StrEnum):
    V2026_3_24 = "2026.3.24"
    V2026_9_6 = "2026.9.6"


class FaultMode(StrEnum):
    NONE = "none"
    HANG = "hang"  # accept the socket, never send the challenge
    DROP = "drop"  # close the socket right after accepting it
    OVERLOAD = "overload"  # close (1000, no error frame) after the connect request
    GARBAGE = "garbage"  # answer requests with a frame that is not JSON
    OVERSIZED = "oversized"  # answer requests with a huge frame
    HANG_CALLS = "hang_calls"  # complete the handshake, then never answer
    #: sessions.reset answers ok and changes nothing (openclaw #126836)
    RESET_NOOP = "reset_noop"


class SimError(Exception):
    """An ok:false answer."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details

    def as_error(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            err["details"] = self.details
        return err


@dataclass
class SimSession:
    """One session row as the gateway holds it."""

    key: str
    session_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str | None = None
    started_at: float | None = None
    ended_at: float | None = None
    updated_at: float | None = None
    aborted_last_run: bool = False
    #: the run this gateway process is executing for the lane, if any
    live_run: str | None = None
    #: run ids of messages queued behind a lane being recovered (2026.9.6 "held")
    held_runs: list[str] = field(default_factory=list)
    last_run_id: str | None = None
    #: when the live run finishes by itself (gateway clock, ms); None: it hangs
    finishes_at: float | None = None
    transcript: list[str] = field(default_factory=list)


@dataclass
class Mutation:
    gateway: str
    key: str
    method: str
    params: dict[str, Any]
    session_id: str | None
    outcome: str
    at_ms: float


class SimGateway:
    """A gateway of one version: auth, scopes, rows, abort/reset/send, restart and faults."""

    def __init__(
        self,
        name: str,
        *,
        version: Version | str = Version.V2026_9_6,
        token: str = "sim-token",
        clock: Callable[[], float] = time.time,
        clock_skew_s: float = 0.0,
        auto_approve_devices: bool = True,
        grant_admin: bool = True,
        run_duration_s: float | None = 2.0,
        uptime_s: float = 3600.0,
    ) -> None:
        self.name = name
        self.version = Version(version)
        self.token = token
        self._clock = clock
        self.clock_skew_s = clock_skew_s
        self.auto_approve_devices = auto_approve_devices
        #: False simulates a token whose operator role lacks operator.admin
        self.grant_admin = grant_admin
        #: how long a normal message's run takes; None: runs hang (a fake model that never answers)
        self.run_duration_s = run_duration_s
        self.sessions: dict[str, SimSession] = {}
        self.mutations: list[Mutation] = []
        self.calls: list[str] = []
        self.paired_devices: set[str] = set()
        self.fault = FaultMode.NONE
        self.delay_s = 0.0
        self.boot_ms = self.now_ms() - uptime_s * 1000
        self.boot_id = str(uuid.uuid4())
        self.connects = 0
        #: connections' event sinks, called with (frame, for subscribers of sessions.subscribe only)
        self.listeners: list[Callable[[dict[str, Any], bool], None]] = []
        #: hostile-input knobs: when set, sent as the challenge's `ts` / the hello's `uptimeMs`
        #: as they are (json.dumps writes a 400-digit integer, Infinity and NaN faithfully)
        self.challenge_ts: object = None
        self.uptime_ms: object = None

    # -- clock and lifecycle ---------------------------------------------------------------

    def now_ms(self) -> float:
        return (self._clock() + self.clock_skew_s) * 1000

    @property
    def protocol(self) -> int:
        return 4 if self.version is Version.V2026_9_6 else 3

    def restart(self, *, replay: str = "off") -> None:
        """A crash and restart: every run this process held dies, its row stays `running`.

        `replay` (2026.9.6): "off" leaves them, "hang" makes the first (in key order) a live
        replay that never ends (blocking the rest, as measured), "finish" heals them all.
        """
        self.boot_ms = self.now_ms()
        self.boot_id = str(uuid.uuid4())
        interrupted = []
        for s in self.sessions.values():
            if s.live_run or s.held_runs:
                interrupted.append(s)
                s.live_run, s.held_runs, s.finishes_at = None, [], None
                if self.version is Version.V2026_9_6:
                    s.aborted_last_run = True
        if self.version is Version.V2026_9_6 and interrupted and replay != "off":
            ordered = sorted(interrupted, key=lambda s: s.key)
            if replay == "hang":
                ordered[0].live_run = self._run_id()
            else:
                for s in ordered:
                    self._finish(s, "done")

    def tick(self) -> None:
        """Finish runs whose time has come."""
        now = self.now_ms()
        for s in self.sessions.values():
            if s.live_run and s.finishes_at is not None and now >= s.finishes_at:
                self._finish(s, "done")

    def _finish(self, s: SimSession, status: str) -> None:
        s.status, s.live_run, s.held_runs, s.finishes_at = status, None, [], None
        s.ended_at = s.updated_at = self.now_ms()

    def _run_id(self) -> str:
        return f"run-{uuid.uuid4().hex[:12]}"

    # -- building scenarios ------------------------------------------------------------------

    def add_idle(self, key: str, *, status: str | None = "done", age_s: float = 600) -> SimSession:
        now = self.now_ms()
        s = SimSession(
            key=key,
            status=status,
            started_at=now - age_s * 1000,
            ended_at=now - age_s * 500,
            updated_at=now - age_s * 500,
        )
        self.sessions[key] = s
        return s

    def add_live(self, key: str, *, age_s: float = 60, hangs: bool = True) -> SimSession:
        """A run this process is executing (started `age_s` ago, within this boot)."""
        now = self.now_ms()
        started = max(now - age_s * 1000, self.boot_ms)
        run = self._run_id()
        s = SimSession(
            key=key,
            status="running",
            started_at=started,
            updated_at=started,
            live_run=run,
            last_run_id=run,
            finishes_at=None if hangs else now + (self.run_duration_s or 0) * 1000,
        )
        self.sessions[key] = s
        return s

    def add_zombie(self, key: str, *, age_s: float = 3600) -> SimSession:
        """A lane left `running` by a run that died before this gateway's boot."""
        now = self.now_ms()
        started = min(now - age_s * 1000, self.boot_ms - 60_000)
        s = SimSession(
            key=key,
            status="running",
            started_at=started,
            updated_at=started + 30_000,
            aborted_last_run=self.version is Version.V2026_9_6,
        )
        self.sessions[key] = s
        return s

    # -- the protocol's answers ----------------------------------------------------------------

    def granted_scopes(
        self, client: dict[str, Any], requested: list[str], device_ok: bool, device_id: str | None
    ) -> list[str]:
        if device_ok and device_id and self.auto_approve_devices:
            self.paired_devices.add(device_id)
        paired = device_ok and device_id in self.paired_devices
        if self.version is Version.V2026_9_6:
            allowed = (client.get("id"), client.get("mode")) in LIVE_CLIENTS or paired
        else:
            allowed = paired  # 2026.3.24: the token alone grants nothing, silently
        if not allowed:
            return []
        scopes = [s for s in requested if s.startswith("operator.")]
        if not self.grant_admin:
            scopes = [s for s in scopes if s != "operator.admin"]
        return scopes

    def challenge_timestamp(self) -> object:
        return int(self.now_ms()) if self.challenge_ts is None else self.challenge_ts

    def hello(self, protocol: int, scopes: list[str]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": "hello-ok",
            "protocol": protocol,
            "server": {"version": self.version.value, "connId": uuid.uuid4().hex[:8]},
            "features": {"methods": METHODS_4 if protocol >= 4 else METHODS_3, "events": []},
            "snapshot": {
                "uptimeMs": int(self.now_ms() - self.boot_ms)
                if self.uptime_ms is None
                else self.uptime_ms
            },
            "policy": {"maxPayload": 26_214_400, "tickIntervalMs": 30_000},
        }
        if self.version is Version.V2026_9_6:
            payload["server"]["bootId"] = self.boot_id
            payload["auth"] = {"role": "operator", "scopes": scopes}
        return payload

    def handle(self, method: str, params: dict[str, Any], scopes: list[str]) -> Any:
        """Answer one request (raises SimError for ok:false)."""
        self.tick()
        self.calls.append(method)
        if method == "health":
            return {"ok": True}
        handler = {
            "sessions.list": (self._list, "operator.read"),
            "sessions.get": (self._get, "operator.read"),
            "sessions.abort": (self._abort, "operator.write"),
            "sessions.reset": (self._reset, "operator.admin"),
            "sessions.send": (self._send, "operator.write"),
            "sessions.subscribe": (lambda params, scopes: {"subscribed": True}, "operator.read"),
        }.get(method)
        if handler is None or (
            self.protocol < 4 and method in ("sessions.get", "sessions.subscribe")
        ):
            raise SimError("INVALID_REQUEST", f"unknown method: {method}")
        fn, scope = handler
        if scope not in scopes and not (scope == "operator.read" and "operator.write" in scopes):
            raise SimError("INVALID_REQUEST", f"missing scope: {scope}")
        result = fn(params, scopes)
        return result

    def _session(self, params: dict[str, Any], allowed: set[str]) -> SimSession:
        unknown = set(params) - allowed
        if unknown:
            raise SimError(
                "INVALID_REQUEST", f"invalid params: unexpected property '{sorted(unknown)[0]}'"
            )
        key = params.get("key")
        if not isinstance(key, str) or not key:
            raise SimError("INVALID_REQUEST", "invalid params: key required")
        s = self.sessions.get(key)
        if s is None:
            raise SimError("INVALID_REQUEST", f"session not found: {key}")
        return s

    def row(self, s: SimSession) -> dict[str, Any]:
        row: dict[str, Any] = {"key": s.key, "sessionId": s.session_id, "kind": "direct"}
        if s.status is not None:
            row["status"] = s.status
        for name, value in (
            ("startedAt", s.started_at),
            ("endedAt", s.ended_at),
            ("updatedAt", s.updated_at),
        ):
            if value is not None:
                row[name] = int(value)
        row["abortedLastRun"] = s.aborted_last_run
        if self.version is Version.V2026_9_6:
            active = bool(s.live_run or s.held_runs)
            row["hasActiveRun"] = active
            if s.held_runs:
                row["activeRunIds"] = list(s.held_runs)
            elif not s.live_run:
                row["activeRunIds"] = []
            # a live run's ids are not listed (measured): activeRunIds absent
            if s.last_run_id:
                row["lastRunId"] = s.last_run_id
            row["isMain"] = s.key.endswith(":main")
        return row

    def _list(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        rows = [self.row(s) for s in sorted(self.sessions.values(), key=lambda s: s.key)]
        if self.version is Version.V2026_3_24:
            return {"ts": int(self.now_ms()), "count": len(rows), "sessions": rows}
        # 2026.9.6 pages (measured): 100 rows unless `limit` says otherwise
        limit = params.get("limit", LIST_DEFAULT_LIMIT)
        offset = params.get("offset", 0)
        if not isinstance(limit, int) or not isinstance(offset, int) or limit < 1 or offset < 0:
            raise SimError("INVALID_REQUEST", "invalid params: limit/offset")
        limit = min(limit, LIST_MAX_LIMIT)
        page = rows[offset : offset + limit]
        more = offset + limit < len(rows)
        return {
            "ts": int(self.now_ms()),
            "count": len(page),
            "sessions": page,
            "limitApplied": limit,
            "offset": offset,
            "hasMore": more,
            "nextOffset": offset + limit if more else None,
            "totalCount": len(rows),
        }

    def _get(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        return {"session": self.row(self._session(params, {"key"}))}

    def _record(self, s: SimSession, method: str, params: dict[str, Any], outcome: str) -> None:
        self.mutations.append(
            Mutation(self.name, s.key, method, dict(params), s.session_id, outcome, self.now_ms())
        )

    def _abort(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        allowed = {"key", "runId", "clearQueued"} if self.protocol >= 4 else {"key"}
        s = self._session(params, allowed)
        run_id = params.get("runId")
        if not s.live_run or (run_id is not None and run_id != s.live_run):
            self._record(s, "sessions.abort", params, "no-active-run")
            return {"ok": True, "abortedRunId": None, "status": "no-active-run"}
        aborted = s.live_run
        if self.version is Version.V2026_9_6:
            self._finish(s, "killed")
            s.aborted_last_run = True
        else:
            # 2026.3.24: the run stops but the row stays `running` (stale), measured
            s.live_run, s.finishes_at = None, None
        self._record(s, "sessions.abort", params, "aborted")
        return {"ok": True, "abortedRunId": aborted, "status": "aborted"}

    def _clear(self, s: SimSession) -> None:
        s.status, s.started_at, s.ended_at = None, None, None
        s.live_run, s.held_runs, s.finishes_at = None, [], None
        s.aborted_last_run = False
        s.updated_at = self.now_ms()
        if self.version is Version.V2026_3_24:
            s.session_id = str(uuid.uuid4())

    def _reset(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        allowed = {"key", "expectedSessionId", "reason"} if self.protocol >= 4 else {"key"}
        s = self._session(params, allowed)
        expected = params.get("expectedSessionId")
        if expected is not None and expected != s.session_id:
            self._record(s, "sessions.reset", params, "session-changed")
            raise SimError(
                "INVALID_REQUEST",
                "session changed",
                {"reason": "session-changed", "sessionId": s.session_id},
            )
        if self.fault is FaultMode.RESET_NOOP:
            self._record(s, "sessions.reset", params, "noop")
            return {"ok": True, "key": s.key, "entry": self.row(s)}
        self._clear(s)
        self._record(s, "sessions.reset", params, "reset")
        return {"ok": True, "key": s.key, "entry": self.row(s)}

    def _send(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        s = self._session(params, {"key", "message", "idempotencyKey"})
        message = params.get("message")
        if not isinstance(message, str):
            raise SimError("INVALID_REQUEST", "invalid params: message required")
        run = self._run_id()
        s.transcript.append(message)
        if message.strip() in {"/new", "/reset"}:
            if self.version is Version.V2026_9_6 and "operator.admin" not in scopes:
                s.transcript.append("not authorized to reset")
                self._record(s, "sessions.send", params, "not-authorized")
            else:
                self._clear(s)
                self._record(s, "sessions.send", params, "reset")
            return {"runId": run, "status": "started"}
        zombie = s.status == "running" and not s.live_run and not s.held_runs
        if self.version is Version.V2026_9_6 and zombie:
            # the gateway's own replay of the interrupted turn holds the message
            s.held_runs.append(run)
            s.updated_at = self.now_ms()
            self._record(s, "sessions.send", params, "held")
            self._announce(s, run, held=True)
        elif s.live_run or s.held_runs:
            s.held_runs.append(run) if self.version is Version.V2026_9_6 else None
            self._record(s, "sessions.send", params, "queued")
        else:
            now = self.now_ms()
            s.status, s.started_at, s.updated_at, s.ended_at = "running", now, now, None
            s.live_run, s.last_run_id = run, run
            dur = self.run_duration_s
            s.finishes_at = None if dur is None else now + dur * 1000
            self._record(s, "sessions.send", params, "started")
            self._announce(s, run)
        return {"runId": run, "status": "started"}

    def _announce(self, s: SimSession, run: str, *, held: bool = False) -> None:
        """What each version tells operator connections of a new message's run (measured):
        2026.3.24 an `agent` lifecycle start to every connection; 2026.9.6 an `agent` run_status
        event for a run that starts, nothing for one held behind a dead lane, and to
        connections that called `sessions.subscribe` a `sessions.changed` with the row."""
        frames: list[tuple[dict[str, Any], bool]] = []
        if self.version is Version.V2026_3_24:
            payload: dict[str, Any] = {
                "runId": run, "stream": "lifecycle", "sessionKey": s.key,
                "data": {"phase": "start", "startedAt": int(self.now_ms())},
            }  # fmt: skip
            frames.append(({"type": "event", "event": "agent", "payload": payload}, False))
        else:
            if not held:
                payload = {
                    "runId": run, "stream": "run_status", "sessionKey": s.key,
                    "data": {"phase": "preparing_workspace"},
                }  # fmt: skip
                frames.append(({"type": "event", "event": "agent", "payload": payload}, False))
            changed = {
                "sessionKey": s.key, "reason": "send", "ts": int(self.now_ms()),
                "sessionId": s.session_id, "session": self.row(s),
            }  # fmt: skip
            frames.append(
                ({"type": "event", "event": "sessions.changed", "payload": changed}, True)
            )
        for listener in list(self.listeners):
            for frame, subscribers_only in frames:
                listener(frame, subscribers_only)

    def mutation_count(self, key: str | None = None, method: str | None = None) -> int:
        return sum(
            1
            for m in self.mutations
            if (key is None or m.key == key) and (method is None or m.method == method)
        )
