"""Typed views of what gateways send. Unknown fields are ignored: new ones appear over time."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from supervisor.core.rows import SessionRow, UnreadableRow

#: scopes the supervisor may ask for, and which methods need them (shared doc, "Auth and scopes")
READ_SCOPE = "operator.read"
WRITE_SCOPE = "operator.write"
ADMIN_SCOPE = "operator.admin"
ALL_SCOPES = (READ_SCOPE, WRITE_SCOPE, ADMIN_SCOPE)


def parse_row(raw: object) -> SessionRow | UnreadableRow:
    """One row, or the reason it is unreadable (never raises)."""
    if not isinstance(raw, dict):
        return UnreadableRow(key=None, problem=f"row is a {type(raw).__name__}, not an object")
    key = raw.get("key") if isinstance(raw.get("key"), str) else None
    try:
        return SessionRow.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        return UnreadableRow(key=key, problem=f"{where}: {err['msg']}")


_ROWS: TypeAdapter[list[SessionRow]] = TypeAdapter(list[SessionRow])


def parse_rows(raws: list[Any]) -> list[SessionRow | UnreadableRow]:
    """`[parse_row(raw) for raw in raws]`, in one validation call when every row is readable.

    The usual listing is all readable rows: validating the list at once spares a Python call
    per row (a scan's hot path). A listing with any unreadable row is parsed row by row.
    """
    try:
        return [*_ROWS.validate_python(raws)]
    except ValidationError:
        return [parse_row(raw) for raw in raws]


class _ReadablePage(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    sessions: list[SessionRow]
    # kept as sent: the client reads them with the same checks whichever way the frame came
    hasMore: Any = None
    nextOffset: Any = None


class ListAnswer(BaseModel):
    """A successful `sessions.list` answer whose every row is readable, typed from its text."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["res"]
    id: Any = None
    ok: Literal[True]
    payload: _ReadablePage


_LIST_ANSWER: TypeAdapter[ListAnswer] = TypeAdapter(ListAnswer)


def read_list_answer(text: str) -> ListAnswer | None:
    """The frame as a `ListAnswer` in one pass over its JSON text, or None for any other frame.

    The scan's hot path: parsing the text straight into typed rows costs about what
    `json.loads` alone does, half of `json.loads` followed by `parse_rows`. None (an error
    answer, an event, an unreadable row, a payload of another shape, or text this parser
    refuses, e.g. a lone surrogate `json.loads` would accept) sends the frame down the ordinary
    path, `json.loads` then `parse_rows`, so every such frame is read exactly as before.
    """
    try:
        return _LIST_ANSWER.validate_json(text)
    except ValueError:  # ValidationError, also for text that is not JSON at all
        return None


class Hello(BaseModel):
    """What a gateway said about itself on connect, with its clock translated to ours."""

    model_config = ConfigDict(frozen=True)

    protocol: int
    #: gateway-clock ms at which the gateway booted (its `now - uptimeMs`), if it said
    boot_time_ms: float | None = None
    boot_id: str | None = None
    server_version: str | None = None
    #: None when the gateway did not list its methods
    methods: frozenset[str] | None = None
    #: None when the gateway did not report scopes (2026.3.24 never does)
    scopes: tuple[str, ...] | None = None
    #: gateway clock minus our clock, estimated from the challenge's `ts`
    clock_offset_ms: float = 0.0
    #: False when the challenge's `ts` was missing, not finite or out of range: then the
    #: offset above is a guess (0) and verdicts that need the gateway's clock are unknown
    clock_known: bool = True

    def has_method(self, method: str) -> bool:
        """False only when the gateway listed its methods and this one is not among them."""
        return self.methods is None or method in self.methods

    @property
    def boot_marker(self) -> str | None:
        """A value that changes when the gateway restarts (bootId, else boot time to 1 s)."""
        if self.boot_id:
            return self.boot_id
        if self.boot_time_ms is not None:
            return f"t{round(self.boot_time_ms / 1000)}"
        return None
