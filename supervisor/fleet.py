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

from supervisor.core.policy import Policy
from supervisor.errors import ConfigError, FleetFileError
from supervisor.escalation.config import PagingConfig, parse_paging
from supervisor.gateway.models import ALL_SCOPES, READ_SCOPE
from supervisor.secretfile import SecretFileError, read_secret_file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")


_POLICY_KEYS = frozenset(Policy.model_fields)
#: the largest fleet file read (5,000 gateways take about 1 MB)
MAX_FLEET_BYTES = 16 * 1024 * 1024


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
        value = read_secret_file(file)
    except SecretFileError as exc:
        raise FleetFileError(
            path, f"token file {file}: {exc.reason}", gateway=name, field="token_file"
        ) from None
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
    """Read and validate a fleet file; whatever goes wrong is a `FleetFileError`.

    The fleet file is read like a secret file (regular files only, bounded, decode errors
    without content). An error nobody foresaw is still a `FleetFileError`, naming only its
    type: its message might quote a secret, and a caller that sees anything but a ConfigError
    would print a traceback (CLI) or stop supervising (worker, beat).
    """
    p = Path(path)
    unexpected: str | None = None
    try:
        text = read_secret_file(p, max_bytes=MAX_FLEET_BYTES, warn_readable=False, allow_empty=True)
        return parse_fleet(text, str(p), environ)
    except SecretFileError as exc:
        raise FleetFileError(str(p), f"the fleet file: {exc.reason}") from None
    except ConfigError:
        raise
    except Exception as exc:  # see the docstring
        unexpected = type(exc).__name__
    # raised outside the handler: no __context__ leads back to the original's message
    raise FleetFileError(str(p), f"cannot be loaded ({unexpected}); see the fleet file reference")
