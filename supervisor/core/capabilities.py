"""What one gateway offers, decided from its hello and the shape of its rows, never from a
version string alone.

Each capability is `yes`, `no` or `unknown`. The evidence, strongest first:

* the rows of the listing (`hasActiveRun` present on a row; `activeRunIds` absent on a live run,
  `[]` on a row with nothing active);
* `features.methods` of the hello (which calls exist at all);
* the measured release-line table (README, "Release lines"), for what neither of the above can
  show: restart reconciliation, which parameters `sessions.abort` and `sessions.reset` take. It
  is used only for an exact, measured server version whose protocol matches the hello's; any
  other version (60-odd releases lie between the measured ones) is `unknown` there.

Where two pieces of evidence disagree (a version the table says lists a live run's ids, with a
live row that lists none) the capability is `unknown`: detection then leaves the rows it affects
`unknown` instead of guessing. Pure: no I/O, imports nothing of the project beyond core.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from supervisor.core.rows import SessionRow, UnreadableRow


class Tri(StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"


def _tri(flag: bool) -> Tri:
    return Tri.YES if flag else Tri.NO


@dataclass(frozen=True)
class _Measured:
    """A measured release line's facts the rows and methods cannot show."""

    protocol: int
    has_active_run: bool
    #: a live run's row lists its run id in `activeRunIds`
    live_run_ids: bool
    #: a row with nothing active carries `activeRunIds: []`
    idle_run_ids: bool
    #: interrupted rows come back `failed` after a restart (not `running`)
    restart_reconciles: bool
    abort_by_run_id: bool
    reset_expected_session_id: bool


#: exact measured versions only (README "Release lines", shared/openclaw-gateway.md)
MEASURED: dict[str, _Measured] = {
    "2026.3.24": _Measured(
        protocol=3, has_active_run=False, live_run_ids=False, idle_run_ids=False,
        restart_reconciles=False, abort_by_run_id=False, reset_expected_session_id=False,
    ),
    "2026.5.28": _Measured(
        protocol=4, has_active_run=True, live_run_ids=False, idle_run_ids=False,
        restart_reconciles=True, abort_by_run_id=True, reset_expected_session_id=False,
    ),
    "2026.7.35": _Measured(
        protocol=4, has_active_run=True, live_run_ids=True, idle_run_ids=False,
        restart_reconciles=True, abort_by_run_id=True, reset_expected_session_id=False,
    ),
    "2026.9.6": _Measured(
        protocol=4, has_active_run=True, live_run_ids=False, idle_run_ids=True,
        restart_reconciles=False, abort_by_run_id=True, reset_expected_session_id=True,
    ),
}  # fmt: skip

#: `2026.9.6`, optionally with build metadata (`+sha`); a pre-release (`-beta.1`) is not measured
_VERSION = re.compile(r"^v?(\d{4}\.\d{1,2}\.\d{1,4})(?:\+[0-9A-Za-z.-]*)?$")


@dataclass(frozen=True)
class Capabilities:
    """One gateway's capabilities at one listing."""

    #: running rows carry `hasActiveRun` (the authoritative "is anything running")
    has_active_run: Tri
    #: a live run's row lists its run id in `activeRunIds` (7.35 yes; 5.28, 9.6 no: null/absent)
    active_run_ids_live: Tri
    #: a row with nothing active lists `activeRunIds: []` (9.6 yes, on zombies too)
    active_run_ids_idle: Tri
    #: after a restart, interrupted rows come back `failed` (5.28, 7.35) instead of `running`
    restart_reconciles: Tri
    diagnostics_lanes: Tri
    sessions_describe: Tri
    sessions_get: Tri
    abort_by_run_id: Tri
    reset_expected_session_id: Tri
    #: the measured line the server version matched (None: not a measured version)
    line: str | None = None
    #: why a capability is unknown or contradicted, in words
    notes: tuple[str, ...] = ()

    @property
    def held_is_known(self) -> bool:
        """Listed run ids on a running row with an active run are messages waiting (9.6,
        5.28), not the live run itself (7.35): only then is `held` told from `live`."""
        return self.has_active_run is Tri.YES and self.active_run_ids_live is Tri.NO

    @property
    def counts_waiting(self) -> Tri:
        """The rows say how many messages wait behind a held or zombie lane: a held row lists
        them, and a zombie's `activeRunIds: []` proves none."""
        if self.has_active_run is Tri.NO:
            return Tri.NO
        if self.held_is_known and self.active_run_ids_idle is Tri.YES:
            return Tri.YES
        if Tri.NO in (self.active_run_ids_live, self.active_run_ids_idle):
            # 7.35 lists a live run's own id; 5.28 lists nothing on a zombie
            return Tri.NO if self.has_active_run is Tri.YES else Tri.UNKNOWN
        return Tri.UNKNOWN

    def as_dict(self) -> dict[str, str | list[str] | None]:
        """The JSON form `check --json` prints."""
        return {
            "has_active_run": self.has_active_run.value,
            "active_run_ids_live": self.active_run_ids_live.value,
            "active_run_ids_idle": self.active_run_ids_idle.value,
            "restart_reconciles": self.restart_reconciles.value,
            "diagnostics_lanes": self.diagnostics_lanes.value,
            "sessions_describe": self.sessions_describe.value,
            "sessions_get": self.sessions_get.value,
            "abort_by_run_id": self.abort_by_run_id.value,
            "reset_expected_session_id": self.reset_expected_session_id.value,
            "counts_waiting": self.counts_waiting.value,
            "line": self.line,
            "notes": list(self.notes),
        }

    @classmethod
    def assumed(cls, protocol: int, reports_active_runs: bool) -> Capabilities:
        """What detection assumed before capabilities existed: protocol 4 or `hasActiveRun`
        seen means the 9.6 shapes, else the 3.24 ones (tests and fuzzers that build a view by
        hand; a scan always uses `decide`)."""
        del protocol
        u = Tri.UNKNOWN
        if reports_active_runs:
            return cls(Tri.YES, Tri.NO, Tri.YES, u, u, u, u, u, u)
        return cls(Tri.NO, Tri.NO, Tri.NO, u, u, u, u, u, u)


def measured_line(server_version: str | None) -> str | None:
    """The measured line an exact server version names, if any."""
    if not server_version:
        return None
    m = _VERSION.match(server_version.strip())
    if m is None or m.group(1) not in MEASURED:
        return None
    return m.group(1)


def _has_method(methods: frozenset[str] | None, method: str) -> Tri:
    if methods is None:
        return Tri.UNKNOWN
    return _tri(method in methods)


def _combine(table: Tri, evidence: Tri, what: str, notes: list[str]) -> Tri:
    """The rows win over the table when they say something; a contradiction is unknown."""
    if evidence is Tri.UNKNOWN:
        return table
    if table is not Tri.UNKNOWN and table is not evidence:
        notes.append(f"{what}: the rows say {evidence.value}, the measured line {table.value}")
        return Tri.UNKNOWN
    return evidence


def decide(
    *,
    protocol: int,
    server_version: str | None,
    methods: frozenset[str] | None,
    rows: Iterable[SessionRow | UnreadableRow],
    expected_session_id_refused: bool = False,
) -> Capabilities:
    """The capabilities of a gateway from its hello and one listing.

    `expected_session_id_refused`: this gateway's `sessions.reset` refused `expectedSessionId`
    at run time (what the recovery step learns); it overrides the table.
    """
    notes: list[str] = []
    line = measured_line(server_version)
    facts = MEASURED.get(line) if line else None
    if facts is not None and facts.protocol != protocol:
        notes.append(
            f"server version {server_version} speaks protocol {facts.protocol} where measured, "
            f"this gateway {protocol}: the measured line is not used"
        )
        facts, line = None, None
    elif facts is None:
        notes.append(
            f"server version {server_version or 'not reported'} is not a measured line: "
            "restart reconciliation and abort/reset parameters are unknown"
        )

    def table(name: str) -> Tri:
        return Tri.UNKNOWN if facts is None else _tri(bool(getattr(facts, name)))

    any_row = carries = live_absent = idle_empty = idle_absent = False
    for r in rows:
        if not isinstance(r, SessionRow):
            continue
        any_row = True
        if r.has_active_run is None:
            continue
        carries = True
        if r.has_active_run:
            if r.active_run_ids is None:
                live_absent = True
        elif r.active_run_ids is None:
            idle_absent = True
        elif not r.active_run_ids:
            idle_empty = True

    # every protocol-4 line measured carries hasActiveRun: a row without it is then unknown
    if carries or protocol >= 4:
        has_active_run = Tri.YES
    elif any_row:
        has_active_run = Tri.NO
    else:
        has_active_run = table("has_active_run")
    if has_active_run is Tri.NO:
        live_ids = idle_ids = Tri.NO
    else:
        # held rows list their waiting runs on every line: only a live row without ids speaks
        live_ids = _combine(
            table("live_run_ids"),
            Tri.NO if live_absent else Tri.UNKNOWN,
            "activeRunIds of a live run",
            notes,
        )
        if idle_empty:
            idle_ids = Tri.YES
        elif facts is not None:
            idle_ids = table("idle_run_ids")
        else:
            idle_ids = Tri.NO if idle_absent else Tri.UNKNOWN
    reset_esid = table("reset_expected_session_id")
    if expected_session_id_refused:
        reset_esid = Tri.NO
    return Capabilities(
        has_active_run=has_active_run,
        active_run_ids_live=live_ids,
        active_run_ids_idle=idle_ids,
        restart_reconciles=table("restart_reconciles"),
        diagnostics_lanes=_has_method(methods, "diagnostics.lanes"),
        sessions_describe=_has_method(methods, "sessions.describe"),
        sessions_get=_has_method(methods, "sessions.get"),
        abort_by_run_id=table("abort_by_run_id"),
        reset_expected_session_id=reset_esid,
        line=line,
        notes=tuple(notes),
    )
