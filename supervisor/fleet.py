"""The fleet file: which gateways to supervise and the thresholds for each (TOML, pydantic).

    [defaults]
    scan_interval = "60s"
    stale_after = "20m"
    lane_timeout = "2h"

    [[gateways]]
    name = "kitchen"
    url = "ws://127.0.0.1:18789"
    token_env = "KITCHEN_GATEWAY_TOKEN"   # or token_file = "/path/to/token"

Any `[defaults]` key may be set per gateway too. Tokens are read here, once, into `SecretStr`
and never leave the process: tasks pass gateway names, not tokens.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from supervisor.durations import Duration
from supervisor.errors import FleetFileError
from supervisor.escalation.config import PagingConfig, parse_paging
from supervisor.gateway.models import ALL_SCOPES, READ_SCOPE

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


class Policy(BaseModel):
    """Thresholds and behaviour, set in `[defaults]` and overridable per gateway."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    scan_interval: Duration = Field(60.0, description="How often each gateway is scanned.")
    stale_after: Duration = Field(
        1200.0,
        description="A zombie (running, no active run) quiet for longer than this gets recovered.",
    )
    held_after: Duration = Field(
        600.0,
        description="A message held behind a lane running since before the boot (verdict "
        "held) this long means the lane is dead: it is reset (never aborted, which would drop "
        "the message's run). A restart replay shows that shape for seconds only.",
    )
    lane_timeout: Duration = Field(
        7200.0,
        description="A live run older than this is `live_overdue` and may be aborted. "
        "Generous on purpose: long tool calls are legitimate (openclaw #140671).",
    )
    lane_timeouts: dict[str, Duration] = Field(
        default_factory=dict,
        description='Per session-key glob lane timeouts, e.g. {"agent:research:*" = "6h"}; '
        "the first matching pattern wins over lane_timeout.",
    )
    boot_margin: Duration = Field(
        5.0,
        description="On gateways without hasActiveRun, a run counts as started before the boot "
        "only if it started at least this long before it (absorbs clock rounding).",
    )
    clock_tolerance: Duration = Field(
        300.0,
        description="A row timestamp further than this in the gateway's future is inconsistent "
        "(verdict unknown).",
    )
    connect_timeout: Duration = Field(10.0, description="Time allowed for the WebSocket handshake.")
    call_timeout: Duration = Field(15.0, description="Time allowed for one request's answer.")
    max_frame_bytes: int = Field(
        32 * 1024 * 1024,
        gt=1024,
        description="Largest frame accepted from a gateway (a row is ~1.2 KB).",
    )
    dry_run: bool = Field(False, description="Detect and audit, but send nothing mutating.")
    max_attempts: int = Field(3, ge=1, description="Failed recovery attempts before escalating.")
    backoff_base: Duration = Field(30.0, description="Wait after the first failed attempt.")
    backoff_factor: float = Field(2.0, ge=1, description="Each further wait is this much longer.")
    backoff_max: Duration = Field(1800.0, description="Longest wait between attempts.")
    backoff_jitter: float = Field(
        0.2, ge=0, le=1, description="Random share added or taken off each wait."
    )
    zombie_breaker_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="When more than this share of a gateway's sessions look like zombies at "
        "once, suspect a bug: act on none and escalate. 1 turns the breaker off.",
    )
    zombie_breaker_min: int = Field(
        5, ge=1, description="The zombie breaker needs at least this many zombies to open."
    )
    unreachable_after: int = Field(
        2,
        ge=1,
        description="Consecutive failed scans of a gateway (unreachable, timeout, auth) before "
        "one escalation for it; it resolves when a scan succeeds again.",
    )
    boot_grace: Duration = Field(
        0.0,
        description="After a gateway boots, leave its sessions to its own restart recovery "
        "this long (off by default).",
    )

    def lane_timeout_for(self, key: str) -> float:
        """The lane timeout that applies to one session key."""
        for pattern, seconds in self.lane_timeouts.items():
            if fnmatch.fnmatchcase(key, pattern):
                return seconds
        return self.lane_timeout


_POLICY_KEYS = frozenset(Policy.model_fields)


class GatewaySpec(BaseModel):
    """One gateway as written in the fleet file (policy keys merged in later)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    url: str
    token_env: str | None = None
    token_file: Path | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    client_id: str = Field(
        "gateway-client",
        description="Client id sent on connect; 2026.9.6 grants token-only scopes only to "
        "gateway-client/backend and cli/cli.",
    )
    client_mode: str = "backend"
    scopes: tuple[str, ...] = Field(
        ALL_SCOPES,
        description="Operator scopes asked for on connect. Without operator.admin the "
        "supervisor cannot reset a lane (nor send /new on 2026.9.6): such zombies escalate.",
    )
    policy: Policy
    token: SecretStr = Field(exclude=True, repr=False)

    @field_validator("name")
    @classmethod
    def _name_is_a_slug(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                "must be 1-63 letters, digits, '.', '_' or '-' (it names Redis keys and tasks)"
            )
        return value

    @field_validator("scopes")
    @classmethod
    def _known_scopes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [s for s in value if s not in ALL_SCOPES]
        if unknown:
            raise ValueError(f"unknown scope {unknown[0]!r}; use some of {', '.join(ALL_SCOPES)}")
        if READ_SCOPE not in value:
            raise ValueError("operator.read is needed to list sessions")
        return value

    @field_validator("url")
    @classmethod
    def _url_is_websocket(cls, value: str) -> str:
        if not re.match(r"^wss?://[^/\s:]+(:\d{1,5})?(/\S*)?$", value):
            raise ValueError("must be a ws:// or wss:// URL such as ws://127.0.0.1:18789")
        return value


class Fleet(BaseModel):
    """A validated fleet: defaults plus gateways, each with its effective policy and token."""

    model_config = ConfigDict(frozen=True)

    path: str
    defaults: Policy
    gateways: tuple[GatewaySpec, ...]
    #: where escalations go ([paging]); empty: the audit stream only
    paging: PagingConfig = Field(default_factory=PagingConfig)

    def gateway(self, name: str) -> GatewaySpec:
        """The gateway called `name`, or KeyError."""
        for spec in self.gateways:
            if spec.name == name:
                return spec
        raise KeyError(name)

    @model_validator(mode="after")
    def _names_unique(self) -> Self:
        seen: set[str] = set()
        for spec in self.gateways:
            if spec.name in seen:
                raise FleetFileError(self.path, "duplicate gateway name", gateway=spec.name)
            seen.add(spec.name)
        return self


def _first_error(path: str, exc: ValidationError, gateway: str | None) -> FleetFileError:
    err = exc.errors()[0]
    loc = [str(p) for p in err["loc"] if not isinstance(p, int)]
    field = ".".join(loc) or None
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required key is missing"
    return FleetFileError(path, message, gateway=gateway, field=field)


def _read_token(path: str, name: str, raw: dict[str, Any], environ: dict[str, str]) -> SecretStr:
    token_env, token_file = raw.get("token_env"), raw.get("token_file")
    if (token_env is None) == (token_file is None):
        raise FleetFileError(
            path, "set exactly one of token_env or token_file", gateway=name, field="token_env"
        )
    if token_env is not None:
        value = environ.get(str(token_env), "").strip()
        if not value:
            raise FleetFileError(
                path,
                f"environment variable {token_env} is not set or empty",
                gateway=name,
                field="token_env",
            )
        return SecretStr(value)
    file = Path(str(token_file)).expanduser()
    if not file.is_absolute():
        file = Path(path).parent / file
    try:
        value = file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise FleetFileError(
            path, f"cannot read token file {file}: {exc.strerror}", gateway=name, field="token_file"
        ) from None
    if not value:
        raise FleetFileError(path, f"token file {file} is empty", gateway=name, field="token_file")
    return SecretStr(value)


def parse_fleet(text: str, path: str, environ: dict[str, str] | None = None) -> Fleet:
    """Validate fleet-file text; every problem is a `FleetFileError` naming file, gateway, field."""
    env = dict(os.environ) if environ is None else environ
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise FleetFileError(path, f"not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"defaults", "gateways", "paging"})
    if unknown:
        raise FleetFileError(path, "unknown top-level key", field=unknown[0])
    raw_defaults = data.get("defaults", {})
    if not isinstance(raw_defaults, dict):
        raise FleetFileError(path, "must be a table", field="defaults")
    try:
        defaults = Policy.model_validate(raw_defaults)
    except ValidationError as exc:
        err = _first_error(path, exc, None)
        raise FleetFileError(path, err.problem, field=f"defaults.{err.field}") from None
    raw_gateways = data.get("gateways", [])
    if not isinstance(raw_gateways, list) or not all(isinstance(g, dict) for g in raw_gateways):
        raise FleetFileError(path, "must be an array of tables ([[gateways]])", field="gateways")
    specs = []
    for index, raw in enumerate(raw_gateways):
        name = str(raw.get("name", f"#{index + 1}"))
        if "name" not in raw:
            raise FleetFileError(path, "required key is missing", gateway=name, field="name")
        if "policy" in raw or "token" in raw:
            key = "policy" if "policy" in raw else "token"
            raise FleetFileError(path, "unknown key", gateway=name, field=key)
        overrides = {k: v for k, v in raw.items() if k in _POLICY_KEYS}
        own = {k: v for k, v in raw.items() if k not in _POLICY_KEYS}
        try:
            policy = Policy.model_validate({**raw_defaults, **overrides})
            token = _read_token(path, name, raw, env)
            specs.append(GatewaySpec.model_validate({**own, "policy": policy, "token": token}))
        except ValidationError as exc:
            raise _first_error(path, exc, name) from None
    paging = parse_paging(data.get("paging", {}), path, env)
    try:
        return Fleet(path=path, defaults=defaults, gateways=tuple(specs), paging=paging)
    except ValidationError as exc:  # pragma: no cover - the model validator raises directly
        raise _first_error(path, exc, None) from None


def load_fleet(path: str | Path, environ: dict[str, str] | None = None) -> Fleet:
    """Read and validate a fleet file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise FleetFileError(str(p), f"cannot read the fleet file: {exc.strerror}") from None
    return parse_fleet(text, str(p), environ)
