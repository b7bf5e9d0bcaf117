"""One simulated gateway's state and its release line's behaviour (no sockets here).

What each line does is taken from measurements of the real gateways (shared/openclaw-gateway.md,
the README's "Release lines" table) and, where said, from the line's own package source; `LINES`
holds the differences, one `Line` per served release.
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
PAIRING_METHODS = ["device.pair.list", "device.pair.approve"]
#: every protocol-4 line measured lists sessions.describe (README, "Release lines")
METHODS_4 = [*METHODS_3, "sessions.describe", "sessions.subscribe"]
#: 2026.9.6 answers these but leaves them out of `features.methods` (`advertise: false` in its
#: method table, read from the package)
UNADVERTISED_9 = frozenset({"sessions.get"})
LIST_DEFAULT_LIMIT = 100
LIST_MAX_LIMIT = 1000
#: WebSocket close reasons are cut to 123 bytes (RFC 6455 control frame limit), measured
CLOSE_REASON_MAX = 123
SCOPE_UPGRADE_MESSAGE = "pairing required: device is asking for more scopes than currently approved"
#: the named global lanes 2026.9.6's `diagnostics.lanes` lists (measured), with maxConcurrent
GLOBAL_LANES = {
    "active-memory": 8,
    "background": 3,
    "cron": 8,
    "cron-nested": 8,
    "main": 32,
    "nested": 1,
    "subagent": 8,
    "system-agent": 1,
    "system-agent-inference": 1,
}


class Version(StrEnum):
    V2026_3_24 = "2026.3.24"
    V2026_5_28 = "2026.5.28"
    V2026_7_35 = "2026.7.35"
    V2026_9_6 = "2026.9.6"


@dataclass(frozen=True)
class Line:
    """What one release line does differently (measured unless the comment says otherwise)."""

    protocol: int
    #: rows carry `hasActiveRun`
    reports_active_runs: bool
    #: a live run's `activeRunIds`: "absent" (2026.5.28, 2026.9.6) or "listed" (2026.7.35)
    live_run_ids: str
    #: `activeRunIds: []` on rows with nothing active (2026.9.6); elsewhere the field is absent
    empty_run_ids: bool
    #: at restart: "keep" rows `running` (2026.3.24), "replay" the first interrupted session
    #: (2026.9.6), or "reconcile": interrupted rows become `failed` (2026.5.28, 2026.7.35)
    restart: str
    #: what an abort of a live run leaves: "stale" (row stays `running`), "killed", "timeout"
    abort_live: str
    #: what a model call that dies inside a live process leaves: "zombie" (row stays
    #: `running`, no active run: 2026.5.28), "timeout" (2026.7.35); not measured on 2026.3.24
    #: and 2026.9.6, where it is taken to be the bug's own shape ("zombie")
    died_in_process: str
    abort_params: frozenset[str]
    reset_params: frozenset[str]
    #: a reset gives the session a new sessionId (2026.3.24); not measured on 5.28/7.35
    reset_new_session_id: bool
    #: sessions.list pages (100 rows by default); 5.28/7.35 from their package source
    pages: bool
    #: a message sent to a zombie waits behind the dead lane (`held`) instead of running
    holds_messages: bool
    #: `hello-ok` reports the granted scopes in `auth`
    hello_auth: bool
    #: the token alone grants scopes to gateway-client/backend and cli/cli (2026.9.6)
    token_only_scopes: bool
    #: a paired device asking more scopes than approved waits for an approval
    scope_upgrade_approval: bool
    #: `diagnostics.lanes` exists
    lanes: bool
    #: restart recovery gives up on a session after this many replays charged without a
    #: started turn, and tombstones it (2026.9.6, measured: 3); None: no such recovery
    tombstone_after: int | None = None

    def methods(self) -> list[str]:
        methods = list(METHODS_4 if self.protocol >= 4 else METHODS_3)
        if self.scope_upgrade_approval or self.lanes:
            methods += PAIRING_METHODS
        if self.lanes:
            methods.append("diagnostics.lanes")
        if self.holds_messages:
            # older lines have chat.history too, but without `pendingInputs` (package source)
            methods.append("chat.history")
        return methods


_ABORT_4 = frozenset({"key", "runId", "agentId"})
LINES: dict[Version, Line] = {
    Version.V2026_3_24: Line(
        protocol=3, reports_active_runs=False, live_run_ids="absent", empty_run_ids=False,
        restart="keep", abort_live="stale", died_in_process="zombie",
        abort_params=frozenset({"key"}), reset_params=frozenset({"key"}),
        reset_new_session_id=True, pages=False, holds_messages=False, hello_auth=False,
        token_only_scopes=False, scope_upgrade_approval=False, lanes=False,
    ),
    Version.V2026_5_28: Line(
        protocol=4, reports_active_runs=True, live_run_ids="absent", empty_run_ids=False,
        restart="reconcile", abort_live="timeout", died_in_process="zombie",
        abort_params=_ABORT_4, reset_params=frozenset({"key", "reason"}),
        reset_new_session_id=False, pages=True, holds_messages=False, hello_auth=True,
        token_only_scopes=False, scope_upgrade_approval=True, lanes=False,
    ),
    Version.V2026_7_35: Line(
        protocol=4, reports_active_runs=True, live_run_ids="listed", empty_run_ids=False,
        restart="reconcile", abort_live="killed", died_in_process="timeout",
        abort_params=_ABORT_4, reset_params=frozenset({"key", "agentId", "reason"}),
        reset_new_session_id=False, pages=True, holds_messages=False, hello_auth=True,
        token_only_scopes=False, scope_upgrade_approval=True, lanes=False,
    ),
    Version.V2026_9_6: Line(
        protocol=4, reports_active_runs=True, live_run_ids="absent", empty_run_ids=True,
        restart="replay", abort_live="killed", died_in_process="zombie",
        abort_params=_ABORT_4 | {"clearQueued"},
        reset_params=frozenset({"key", "agentId", "reason", "expectedSessionId"}),
        reset_new_session_id=False, pages=True, holds_messages=True, hello_auth=True,
        token_only_scopes=True, scope_upgrade_approval=False, lanes=True, tombstone_after=3,
    ),
}  # fmt: skip


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
    #: openclaw #146692 (2026.9.4), built from the issue's description only (not reproduced on
    #: 2026.9.6): every session aborted before a restart comes back `running` with no active
    #: run (stale recovery/writer claims), and every turn to it fails with
    #: SESSION_WORK_START_CHANGED; a reset or `/new` clears it
    WORK_START_CHANGED = "work_start_changed"
    #: the same, as openclaw #140467 tells it: `/new` and `sessions.reset` answer ok and clear
    #: nothing on such a session: it stays stuck
    WORK_START_STUCK = "work_start_stuck"


#: faults of sessions, not of the connection: the session's state is the ladder's business
SESSION_FAULTS = frozenset(
    {FaultMode.RESET_NOOP, FaultMode.WORK_START_CHANGED, FaultMode.WORK_START_STUCK}
)
#: FaultMode.WORK_START_* turn refusal (the issue names the code; the message is 2026.9.6's own)
WORK_START_CHANGED_CODE = "SESSION_WORK_START_CHANGED"
#: what 2026.9.6 answers any turn to a tombstoned session (measured, code INVALID_REQUEST)
TOMBSTONE_REFUSAL = (
    'Session "{key}" ended during restart recovery. Use /new or /reset to start a replacement '
    "session."
)


class SimError(Exception):
    """An ok:false answer; on connect, `close_reason` is the reason the socket is closed with."""

    def __init__(
        self,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        close_reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code, self.message, self.details = code, message, details
        self.close_reason = close_reason

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
    #: the text of each held message, by run id
    held_text: dict[str, str] = field(default_factory=dict)
    #: 2026.9.6 `chat.history` `pendingInputs` items: every message that waited behind the
    #: lane, `queued`, then `interrupted` when a reset threw it away or `consumed` when it ran
    inputs: list[dict[str, Any]] = field(default_factory=list)
    #: reconciling lines: when the restart marks this interrupted row `failed` (gateway ms)
    reconcile_at: float | None = None
    last_run_id: str | None = None
    #: when the live run finishes by itself (gateway clock, ms); None: it hangs
    finishes_at: float | None = None
    transcript: list[str] = field(default_factory=list)
    #: FaultMode.WORK_START_*: aborted during this boot, so the next restart leaves it stuck
    aborted_this_boot: bool = False
    #: FaultMode.WORK_START_*: a stale recovery/writer claim; every turn fails
    stale_claim: bool = False
    #: restart replays of its interrupted turn charged without a started turn (2026.9.6)
    unstarted_replays: int = 0
    #: 2026.9.6's restart recovery gave up on it: `failed`, every turn refused until a reset
    tombstoned: bool = False


@dataclass
class PairingRequest:
    """A pending device pairing (scope upgrade) request, as `device.pair.list` shows it."""

    request_id: str
    device_id: str
    scopes: list[str]
    client_id: str
    client_mode: str
    ts: float

    def as_pending(self) -> dict[str, Any]:
        return {
            "requestId": self.request_id,
            "deviceId": self.device_id,
            "clientId": self.client_id,
            "clientMode": self.client_mode,
            "role": "operator",
            "roles": ["operator"],
            "scopes": list(self.scopes),
            "silent": False,
            "isRepair": True,
            "ts": int(self.ts),
        }


@dataclass
class DroppedMessage:
    """A message that waited behind a dead lane and was thrown away by a reset (2026.9.6)."""

    key: str
    run_id: str
    text: str
    at_ms: float


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
        reconcile_delay_s: float = 6.5,
        silent_backend_upgrade: bool = True,
    ) -> None:
        self.name = name
        self.version = Version(version)
        self.line = LINES[self.version]
        #: reconciling lines mark interrupted rows `failed` this long after a restart; until
        #: then they look like zombies (measured on 2026.5.28: 5-7 s after the ready line)
        self.reconcile_delay_s = reconcile_delay_s
        #: a gateway-client/backend device gets a scope upgrade without approval (measured on
        #: loopback); False models a gateway where that self-pairing does not apply
        self.silent_backend_upgrade = silent_backend_upgrade
        self.token = token
        self._clock = clock
        self.clock_skew_s = clock_skew_s
        self.auto_approve_devices = auto_approve_devices
        #: False simulates a token whose operator role lacks operator.admin
        self.grant_admin = grant_admin
        #: how long a normal message's run takes; None: runs hang (a fake model that never answers)
        self.run_duration_s = run_duration_s
        #: 2026.9.6 lists a held message's run in `activeRunIds` (`held`), but was also seen
        #: keeping the zombie shape while the message waited in `pendingInputs`: False
        #: shows that second shape (the message is then visible in chat.history only)
        self.held_listed = True
        self.sessions: dict[str, SimSession] = {}
        self.mutations: list[Mutation] = []
        self.calls: list[str] = []
        self.paired_devices: set[str] = set()
        #: the scopes each paired device was approved for
        self.device_scopes: dict[str, frozenset[str]] = {}
        self.pending_pairings: dict[str, PairingRequest] = {}
        #: messages a reset threw away while they waited behind a dead lane (2026.9.6)
        self.dropped_messages: list[DroppedMessage] = []
        #: idempotency keys of the sends this gateway took (a second one runs nothing)
        self.idempotency_keys: set[str] = set()
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
        return self.line.protocol

    def restart(self, *, replay: str = "off") -> None:
        """A crash and restart: every run this process held dies, its row stays `running`.

        Reconciling lines (2026.5.28, 2026.7.35) then mark each interrupted row `failed`
        `reconcile_delay_s` after the boot. `replay` (2026.9.6): "off" leaves them, "hang" makes
        the first (in key order) a live replay that never ends (blocking the rest, as
        measured), "finish" heals them all, "unstarted" makes the first a replay whose turn has
        not started yet (a crash within a second of the replay's start does that): after
        `tombstone_after` of those in a row the next boot tombstones the session instead
        (measured). Under FaultMode.WORK_START_* every session aborted since the last boot
        comes back stuck.
        """
        self.boot_ms = self.now_ms()
        self.boot_id = str(uuid.uuid4())
        interrupted = []
        for s in self.sessions.values():
            if s.live_run or s.held_runs:
                interrupted.append(s)
                s.live_run, s.held_runs, s.held_text, s.finishes_at = None, [], {}, None
                if self.line.restart == "replay":
                    s.aborted_last_run = True
                if self.line.restart == "reconcile":
                    s.reconcile_at = self.boot_ms + self.reconcile_delay_s * 1000
        if self.fault in (FaultMode.WORK_START_CHANGED, FaultMode.WORK_START_STUCK):
            for s in self.sessions.values():
                if s.aborted_this_boot:
                    self._stick(s)
        for s in self.sessions.values():
            s.aborted_this_boot = False
        limit = self.line.tombstone_after
        if limit is not None:
            for s in interrupted:
                if s.unstarted_replays >= limit:
                    self._tombstone(s)
            interrupted = [s for s in interrupted if not s.tombstoned]
        if self.line.restart == "replay" and interrupted and replay != "off":
            ordered = sorted(interrupted, key=lambda s: s.key)
            if replay in ("hang", "unstarted"):
                ordered[0].live_run = self._run_id()
                ordered[0].unstarted_replays = (
                    ordered[0].unstarted_replays + 1 if replay == "unstarted" else 0
                )
            else:
                for s in ordered:
                    s.unstarted_replays = 0
                    self._finish(s, "done")

    def _stick(self, s: SimSession) -> None:
        """FaultMode.WORK_START_*: the shape openclaw #146692 describes (rows `running`, no
        active run, every turn failing); its row fields beyond that are not known."""
        s.status, s.ended_at, s.live_run, s.finishes_at = "running", None, None, None
        s.held_runs, s.held_text = [], {}
        s.aborted_last_run, s.stale_claim = True, True
        s.updated_at = self.boot_ms

    def _tombstone(self, s: SimSession) -> None:
        """2026.9.6 gives up on the session's restart recovery (measured row)."""
        self._finish(s, "failed")
        s.aborted_last_run, s.tombstoned, s.unstarted_replays = False, True, 0

    def tick(self) -> None:
        """Finish runs whose time has come."""
        now = self.now_ms()
        for s in self.sessions.values():
            if s.live_run and s.finishes_at is not None and now >= s.finishes_at:
                self._finish(s, "done")
            if s.reconcile_at is not None and now >= s.reconcile_at and s.status == "running":
                self._finish(s, "failed")
                s.aborted_last_run = True

    def die_in_process(self, key: str) -> SimSession:
        """The live run of `key` dies while the gateway lives on (its model call failed): a
        zombie inside a live process on 2026.5.28, a row ended `timeout` on 2026.7.35."""
        s = self.sessions[key]
        if not s.live_run:
            raise ValueError(f"{key} has no live run to die")
        if self.line.died_in_process == "timeout":
            self._finish(s, "timeout")
        else:
            s.live_run, s.finishes_at = None, None
            s.updated_at = self.now_ms()
        return s

    def _finish(self, s: SimSession, status: str) -> None:
        self._settle_inputs(s, "consumed")
        s.status, s.live_run, s.held_runs, s.finishes_at = status, None, [], None
        s.held_text, s.reconcile_at = {}, None
        s.ended_at = s.updated_at = self.now_ms()

    def _run_id(self) -> str:
        return f"run-{uuid.uuid4().hex[:12]}"

    def _hold(self, s: SimSession, run: str, message: str) -> None:
        s.held_runs.append(run)
        s.held_text[run] = message
        s.inputs.append({
            "id": str(uuid.uuid4()), "acceptedAt": int(self.now_ms()), "state": "queued",
            "message": {"role": "user", "content": message, "timestamp": int(self.now_ms())},
            "runId": run,
        })  # fmt: skip

    @staticmethod
    def _settle_inputs(s: SimSession, state: str) -> None:
        for item in s.inputs:
            if item["state"] == "queued":
                item["state"] = state

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
            aborted_last_run=self.line.restart == "replay",
        )
        self.sessions[key] = s
        return s

    def add_stale_claim(self, key: str, *, age_s: float = 3600) -> SimSession:
        """openclaw #146692's shape (from the issue's description): a zombie row whose every
        turn fails with SESSION_WORK_START_CHANGED. Under FaultMode.WORK_START_STUCK a reset
        does not clear it; otherwise a reset or `/new` does."""
        s = self.add_zombie(key, age_s=age_s)
        s.aborted_last_run, s.stale_claim = True, True
        return s

    def add_tombstoned(self, key: str, *, age_s: float = 3600) -> SimSession:
        """A session whose restart recovery 2026.9.6 gave up on (measured): `failed`, nothing
        active, `restartRecoveryStatus: "tombstoned"`; every turn is refused until a reset."""
        s = self.add_zombie(key, age_s=age_s)
        self._tombstone(s)
        s.ended_at = s.updated_at = self.boot_ms + 1000
        return s

    # -- the protocol's answers ----------------------------------------------------------------

    def granted_scopes(
        self, client: dict[str, Any], requested: list[str], device_ok: bool, device_id: str | None
    ) -> list[str]:
        """The scopes a connect gets; raises SimError when a scope upgrade awaits approval."""
        scopes = [s for s in requested if s.startswith("operator.")]
        if not self.grant_admin:
            scopes = [s for s in scopes if s != "operator.admin"]
        ident = (client.get("id"), client.get("mode"))
        if device_ok and device_id:
            approved = self.device_scopes.get(device_id)
            if approved is None and device_id not in self.paired_devices:
                if self.auto_approve_devices:
                    self.paired_devices.add(device_id)
                    self.device_scopes[device_id] = frozenset(scopes)
            elif approved is not None and not set(scopes) <= approved:
                silent = self.silent_backend_upgrade and ident == ("gateway-client", "backend")
                if self.line.scope_upgrade_approval and not silent:
                    raise self._scope_upgrade_pending(device_id, scopes, client, approved)
                self.device_scopes[device_id] = approved | set(scopes)
        paired = device_ok and device_id in self.paired_devices
        # elsewhere the token alone grants nothing, silently (2026.3.24)
        allowed = paired or (self.line.token_only_scopes and ident in LIVE_CLIENTS)
        return scopes if allowed else []

    def _scope_upgrade_pending(
        self, device_id: str, scopes: list[str], client: dict[str, Any], approved: frozenset[str]
    ) -> SimError:
        """File (or, as measured, reuse the device's live) pending request; the refusal."""
        request = next(
            (
                r
                for r in self.pending_pairings.values()
                if r.device_id == device_id and sorted(r.scopes) == sorted(scopes)
            ),
            None,
        )
        if request is None:
            request = PairingRequest(
                request_id=str(uuid.uuid4()),
                device_id=device_id,
                scopes=list(scopes),
                client_id=str(client.get("id")),
                client_mode=str(client.get("mode")),
                ts=self.now_ms(),
            )
            self.pending_pairings[request.request_id] = request
        details = {
            "code": "PAIRING_REQUIRED",
            "reason": "scope-upgrade",
            "requestId": request.request_id,
            "remediationHint": "Review the requested scopes, then approve the pending upgrade.",
            "deviceId": device_id,
            "requestedRole": "operator",
            "requestedScopes": list(scopes),
            "approvedRoles": ["operator"],
            "approvedScopes": sorted(approved),
        }
        reason = f"{SCOPE_UPGRADE_MESSAGE} (requestId: {request.request_id})"
        return SimError(
            "NOT_PAIRED", SCOPE_UPGRADE_MESSAGE, details, close_reason=reason[:CLOSE_REASON_MAX]
        )

    def challenge_timestamp(self) -> object:
        return int(self.now_ms()) if self.challenge_ts is None else self.challenge_ts

    def hello(self, protocol: int, scopes: list[str]) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "type": "hello-ok",
            "protocol": protocol,
            "server": {"version": self.version.value, "connId": uuid.uuid4().hex[:8]},
            "features": {"methods": self.line.methods(), "events": []},
            "snapshot": {
                "uptimeMs": int(self.now_ms() - self.boot_ms)
                if self.uptime_ms is None
                else self.uptime_ms
            },
            "policy": {"maxPayload": 26_214_400, "tickIntervalMs": 30_000},
        }
        if self.version is Version.V2026_9_6:
            payload["server"]["bootId"] = self.boot_id
        if self.line.hello_auth:
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
            # its answer's shape is not measured: the row, as sessions.get gives it
            "sessions.describe": (self._get, "operator.read"),
            "sessions.abort": (self._abort, "operator.write"),
            "sessions.reset": (self._reset, "operator.admin"),
            "sessions.send": (self._send, "operator.write"),
            "sessions.subscribe": (lambda params, scopes: {"subscribed": True}, "operator.read"),
            "diagnostics.lanes": (self._lanes, "operator.read"),
            "chat.history": (self._history, "operator.read"),
            "device.pair.list": (self._pair_list, "operator.pairing"),
            "device.pair.approve": (self._pair_approve, "operator.pairing"),
        }.get(method)
        unadvertised = self.line.lanes and method in UNADVERTISED_9
        if handler is None or (method not in self.line.methods() and not unadvertised):
            raise SimError("INVALID_REQUEST", f"unknown method: {method}")
        fn, scope = handler
        implied = {
            "operator.read": {"operator.write", "operator.admin"},
            "operator.pairing": {"operator.admin"},
        }.get(scope, set())
        if scope not in scopes and not implied & set(scopes):
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
        line = self.line
        if line.reports_active_runs:
            held = s.held_runs if self.held_listed else []
            row["hasActiveRun"] = bool(s.live_run or held)
            if line.live_run_ids == "listed":
                # 2026.7.35 lists a live run's id too; rows with nothing active omit the field
                ids = ([s.live_run] if s.live_run else []) + held
                if ids:
                    row["activeRunIds"] = ids
            elif held:
                row["activeRunIds"] = list(held)
            elif not s.live_run and line.empty_run_ids:
                row["activeRunIds"] = []
            # elsewhere a live run's ids are not listed (measured): activeRunIds absent
        if self.version is Version.V2026_9_6:
            if s.last_run_id:
                row["lastRunId"] = s.last_run_id
            row["isMain"] = s.key.endswith(":main")
            if s.tombstoned:
                row["restartRecoveryStatus"] = "tombstoned"
        return row

    def _list(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        rows = [self.row(s) for s in sorted(self.sessions.values(), key=lambda s: s.key)]
        if not self.line.pages:
            return {"ts": int(self.now_ms()), "count": len(rows), "sessions": rows}
        # protocol-4 lines page (measured on 2026.9.6): 100 rows unless `limit` says otherwise
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

    def _history(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        """2026.9.6's `chat.history`: the transcript and, in `pendingInputs`, what waited
        behind the lane (20 a page at most, like the real one)."""
        allowed = {"sessionKey", "agentId", "limit", "maxChars", "maxBytes", "cursor", "offset"}
        unknown = set(params) - allowed
        if unknown:
            raise SimError("INVALID_REQUEST", f"unexpected property {sorted(unknown)[0]!r}")
        s = self.sessions.get(str(params.get("sessionKey")))
        if s is None:
            raise SimError("INVALID_REQUEST", "session not found")
        limit = params.get("limit", 200)
        limit = min(limit if isinstance(limit, int) and limit > 0 else 200, 20)
        items = [dict(i) for i in s.inputs[-limit:]]
        return {
            "sessionKey": s.key,
            "sessionId": s.session_id,
            "messages": [{"role": "user", "content": t} for t in s.transcript[-limit:]],
            "pendingInputs": {"items": items, "total": len(s.inputs)},
        }

    def _get(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        return {"session": self.row(self._session(params, {"key"}))}

    def _record(self, s: SimSession, method: str, params: dict[str, Any], outcome: str) -> None:
        self.mutations.append(
            Mutation(self.name, s.key, method, dict(params), s.session_id, outcome, self.now_ms())
        )

    def _abort(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        s = self._session(params, set(self.line.abort_params))
        s.aborted_this_boot = True
        run_id = params.get("runId")
        if not s.live_run or (run_id is not None and run_id != s.live_run):
            self._record(s, "sessions.abort", params, "no-active-run")
            return {"ok": True, "abortedRunId": None, "status": "no-active-run"}
        aborted = s.live_run
        if self.line.abort_live in ("killed", "timeout"):
            self._finish(s, self.line.abort_live)
            s.aborted_last_run = True
        else:
            # 2026.3.24: the run stops but the row stays `running` (stale), measured
            s.live_run, s.finishes_at = None, None
        self._record(s, "sessions.abort", params, "aborted")
        return {"ok": True, "abortedRunId": aborted, "status": "aborted"}

    def _clear(self, s: SimSession) -> None:
        # the messages waiting behind the lane go with it, never answered (measured, 2026.9.6)
        for run in s.held_runs:
            self.dropped_messages.append(
                DroppedMessage(s.key, run, s.held_text.get(run, ""), self.now_ms())
            )
        s.held_text = {}
        self._settle_inputs(s, "interrupted")
        s.reconcile_at = None
        s.status, s.started_at, s.ended_at = None, None, None
        s.live_run, s.held_runs, s.finishes_at = None, [], None
        s.aborted_last_run = False
        s.stale_claim, s.tombstoned, s.unstarted_replays = False, False, 0
        s.aborted_this_boot = False
        s.updated_at = self.now_ms()
        if self.line.reset_new_session_id:
            s.session_id = str(uuid.uuid4())

    def _reset(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        s = self._session(params, set(self.line.reset_params))
        expected = params.get("expectedSessionId")
        if expected is not None and expected != s.session_id:
            self._record(s, "sessions.reset", params, "session-changed")
            raise SimError(
                "INVALID_REQUEST",
                "session changed",
                {"reason": "session-changed", "sessionId": s.session_id},
            )
        if self.fault is FaultMode.RESET_NOOP or self._stuck(s):
            self._record(s, "sessions.reset", params, "noop")
            return {"ok": True, "key": s.key, "entry": self.row(s)}
        self._clear(s)
        self._record(s, "sessions.reset", params, "reset")
        return {"ok": True, "key": s.key, "entry": self.row(s)}

    def _stuck(self, s: SimSession) -> bool:
        """openclaw #140467: neither a reset nor `/new` clears a stale claim."""
        return s.stale_claim and self.fault is FaultMode.WORK_START_STUCK

    def _send(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        s = self._session(params, {"key", "message", "idempotencyKey"})
        message = params.get("message")
        if not isinstance(message, str):
            raise SimError("INVALID_REQUEST", "invalid params: message required")
        resets = message.strip() in {"/new", "/reset"}
        if s.tombstoned and not resets:
            self._record(s, "sessions.send", params, "refused")
            raise SimError("INVALID_REQUEST", TOMBSTONE_REFUSAL.format(key=s.key))
        if s.stale_claim and not resets:
            self._record(s, "sessions.send", params, "refused")
            raise SimError(
                WORK_START_CHANGED_CODE, f'Session "{s.key}" changed while starting work. Retry.'
            )
        idem = params.get("idempotencyKey")
        if isinstance(idem, str) and idem in self.idempotency_keys:
            # a second send with the same key runs nothing (measured on 2026.9.6)
            self._record(s, "sessions.send", params, "deduplicated")
            return {"runId": idem, "status": "in_flight"}
        run = idem if isinstance(idem, str) and idem else self._run_id()
        if isinstance(idem, str) and idem:
            self.idempotency_keys.add(idem)
        s.transcript.append(message)
        if resets:
            if self.version is Version.V2026_9_6 and "operator.admin" not in scopes:
                s.transcript.append("not authorized to reset")
                self._record(s, "sessions.send", params, "not-authorized")
            elif self._stuck(s):
                self._record(s, "sessions.send", params, "noop")
            else:
                self._clear(s)
                self._record(s, "sessions.send", params, "reset")
            return {"runId": run, "status": "started"}
        zombie = s.status == "running" and not s.live_run and not s.held_runs
        if self.line.holds_messages and zombie:
            # the gateway's own replay of the interrupted turn holds the message
            self._hold(s, run, message)
            s.updated_at = self.now_ms()
            self._record(s, "sessions.send", params, "held")
            self._announce(s, run, held=True)
        elif s.live_run or s.held_runs:
            if self.line.holds_messages:
                self._hold(s, run, message)
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

    def _lanes(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        """2026.9.6's `diagnostics.lanes`: the named global lanes (agent runs count in `main`)
        and one `dynamic` aggregate of the session lanes (null when there is none): counts
        per gateway, never per session (measured shape)."""
        live = [s for s in self.sessions.values() if s.live_run]
        held = [s for s in self.sessions.values() if s.held_runs]
        lanes = [
            {
                "lane": name,
                "activeCount": min(len(live), cap) if name == "main" else 0,
                "queuedCount": 0,
                "maxConcurrent": cap,
                "draining": False,
                "generation": 0,
                "blockedBy": None,
            }
            for name, cap in GLOBAL_LANES.items()
        ]
        busy = {s.key for s in live} | {s.key for s in held}
        dynamic = (
            {
                "laneCount": len(busy),
                "activeCount": len(live),
                "queuedCount": sum(len(s.held_runs) for s in held),
                "queuedLaneCount": len(held),
            }
            if busy
            else None
        )
        return {"ts": int(self.now_ms()), "lanes": lanes, "dynamic": dynamic}

    def _pair_list(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        paired = [
            {"deviceId": d, "role": "operator", "roles": ["operator"], "scopes": sorted(sc)}
            for d, sc in sorted(self.device_scopes.items())
        ]
        pending = [r.as_pending() for r in self.pending_pairings.values()]
        return {"pending": pending, "paired": paired}

    def _pair_approve(self, params: dict[str, Any], scopes: list[str]) -> dict[str, Any]:
        if set(params) - {"requestId"} or not isinstance(params.get("requestId"), str):
            raise SimError("INVALID_REQUEST", "invalid device.pair.approve params")
        request = self.pending_pairings.pop(params["requestId"], None)
        if request is None:
            raise SimError("INVALID_REQUEST", "unknown requestId")
        self.paired_devices.add(request.device_id)
        self.device_scopes[request.device_id] = frozenset(request.scopes)
        device = {
            "deviceId": request.device_id,
            "role": "operator",
            "roles": ["operator"],
            "scopes": list(request.scopes),
            "approvedAtMs": int(self.now_ms()),
        }
        return {"requestId": request.request_id, "device": device}

    def mutation_count(self, key: str | None = None, method: str | None = None) -> int:
        return sum(
            1
            for m in self.mutations
            if (key is None or m.key == key) and (method is None or m.method == method)
        )
