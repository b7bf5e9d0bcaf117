"""The `[paging]` table of the fleet file: providers, routes, severities, re-notification.

    [paging]
    renotify_interval = "4h"            # an open incident is sent again this often ("0s": never)
    external_url = "https://ops.example.com/lane-supervisor"   # optional, shown as links

    [paging.severity]                   # these are the defaults
    stuck = "warning"
    escalated = "error"
    unreachable = "critical"
    breaker_open = "critical"

    [paging.retry]                      # HTTP retries inside one delivery; per provider too
    max_tries = 4
    base = "1s"
    cap = "30s"                         # a longer wait (Retry-After) is left to the caller
    timeout = "10s"

    [paging.providers.oncall]
    type = "pagerduty"
    routing_key_env = "PD_ROUTING_KEY"  # or routing_key_file

    [paging.providers.ops-slack]
    type = "slack"
    webhook_url_file = "secrets/slack-webhook-url"   # or webhook_url_env

    [paging.providers.hooks]
    type = "webhook"
    url = "https://hooks.example.com/lane"           # or url_env / url_file
    hmac_secret_env = "HOOK_HMAC_SECRET"             # optional
    headers = { "X-Team" = "infra" }
    headers_env = { "Authorization" = "HOOK_AUTH" }  # header values that are secrets

    [[paging.routes]]                   # the first route that matches wins
    name = "prod"
    match = { gateways = ["prod-*"], labels = { env = "prod" } }
    min_severity = "error"
    providers = ["oncall", "ops-slack"]

    [paging.default_route]              # required once any provider is defined
    providers = ["ops-slack"]

Secrets (routing keys, Slack webhook URLs, webhook URLs, HMAC secrets, secret headers) are
read here, once, from the environment or a file (relative to the fleet file), into `SecretStr`
fields that are excluded from dumps and reprs; a secret cannot be written inline except a
plain webhook `url`, which is then treated as one too. Every problem is a `FleetFileError`
naming the file and the field, never a secret's value.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from supervisor.core.durations import Duration
from supervisor.errors import FleetFileError
from supervisor.escalation.models import SEVERITY_RANK, Severity
from supervisor.secretfile import SecretFileError, read_secret_file

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_HEADER = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")
_HTTP_URL = re.compile(r"^https?://[^/\s]+(/\S*)?$")
DEFAULT_SIGNATURE_HEADER = "X-Lane-Supervisor-Signature"


class RetryPolicy(BaseModel):
    """HTTP retries inside one delivery: exponential backoff, honouring Retry-After."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_tries: int = Field(4, ge=1, le=20, description="HTTP requests per delivery at most.")
    base: Duration = Field(1.0, description="Wait after the first failed request.")
    factor: float = Field(2.0, ge=1, description="Each further wait is this much longer.")
    cap: Duration = Field(
        30.0,
        description="Longest wait inside a delivery; when the provider asks for longer "
        "(Retry-After), the delivery ends as retryable and the caller waits instead.",
    )
    jitter: float = Field(0.2, ge=0, le=1, description="Random share taken off each wait.")
    timeout: Duration = Field(
        10.0, gt=0, description="Time allowed for one HTTP request (each read, connect, write)."
    )
    deadline: Duration = Field(
        30.0,
        gt=0,
        description="Total time one delivery may take, every request and wait included: a "
        "provider that trickles bytes is cut off here (its connection shut down), and the "
        "delivery ends as retryable.",
    )


class _Provider(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    retry: RetryPolicy = Field(default_factory=RetryPolicy)


class PagerDutyProvider(_Provider):
    """PagerDuty Events API v2."""

    type: Literal["pagerduty"]
    base_url: str = Field("https://events.pagerduty.com", description="Events API host.")
    routing_key_env: str | None = None
    routing_key_file: Path | None = None
    routing_key: SecretStr = Field(exclude=True, repr=False)
    client: str = Field("lane-supervisor", description="Shown by PagerDuty as the event source.")

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        if not _HTTP_URL.match(value):
            raise ValueError("must be an http:// or https:// URL")
        return value.rstrip("/")


class WebhookProvider(_Provider):
    """A generic webhook receiving Alertmanager's webhook payload (version 4)."""

    type: Literal["webhook"]
    url_env: str | None = None
    url_file: Path | None = None
    url: SecretStr = Field(exclude=True, repr=False)
    hmac_secret_env: str | None = None
    hmac_secret_file: Path | None = None
    hmac_secret: SecretStr | None = Field(None, exclude=True, repr=False)
    signature_header: str = Field(
        DEFAULT_SIGNATURE_HEADER, description="Header carrying sha256=<hex HMAC of the body>."
    )
    headers: dict[str, str] = Field(default_factory=dict)
    headers_env: dict[str, str] = Field(
        default_factory=dict, description="Header name -> environment variable holding its value."
    )
    secret_headers: dict[str, SecretStr] = Field(default_factory=dict, exclude=True, repr=False)
    receiver: str | None = Field(None, description="The payload's `receiver`; default the name.")

    @field_validator("url")
    @classmethod
    def _url_is_http(cls, value: SecretStr) -> SecretStr:
        if not _HTTP_URL.match(value.get_secret_value()):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("signature_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER.match(value):
            raise ValueError("is not a valid HTTP header name")
        return value

    @field_validator("headers", "headers_env")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _HEADER.match(name):
                raise ValueError(f"{name!r} is not a valid HTTP header name")
        return value


class SlackProvider(_Provider):
    """A Slack incoming webhook: a short message per event, at most one per `min_interval`."""

    type: Literal["slack"]
    webhook_url_env: str | None = None
    webhook_url_file: Path | None = None
    webhook_url: SecretStr = Field(exclude=True, repr=False)
    min_interval: Duration = Field(
        1.0, description="Slack allows about one message per second per webhook."
    )

    @field_validator("webhook_url")
    @classmethod
    def _webhook_url_is_http(cls, value: SecretStr) -> SecretStr:
        if not _HTTP_URL.match(value.get_secret_value()):
            raise ValueError("must be an http:// or https:// URL")
        return value


ProviderConfig = Annotated[
    PagerDutyProvider | WebhookProvider | SlackProvider, Field(discriminator="type")
]

#: per provider type: (secret field, required, may be written inline in the fleet file)
_SECRETS: dict[str, tuple[tuple[str, bool, bool], ...]] = {
    "pagerduty": (("routing_key", True, False),),
    "webhook": (("url", True, True), ("hmac_secret", False, False)),
    "slack": (("webhook_url", True, False),),
}


class RouteMatch(BaseModel):
    """Gateway name globs (any may match) and label globs (all must match); empty matches all."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    gateways: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)

    def matches(self, gateway: str, labels: Mapping[str, str]) -> bool:
        if self.gateways and not any(fnmatch.fnmatchcase(gateway, g) for g in self.gateways):
            return False
        return all(
            name in labels and fnmatch.fnmatchcase(labels[name], pattern)
            for name, pattern in self.labels.items()
        )


class Route(BaseModel):
    """Where incidents of matching gateways go."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    match: RouteMatch = Field(default_factory=RouteMatch)
    providers: tuple[str, ...]
    min_severity: Severity = Field(
        "info", description="Incidents less severe than this skip the route."
    )

    def matches(self, gateway: str, labels: Mapping[str, str], severity: str) -> bool:
        if SEVERITY_RANK.get(severity, 2) < SEVERITY_RANK[self.min_severity]:
            return False
        return self.match.matches(gateway, labels)


class SeverityMap(BaseModel):
    """The severity each incident kind is sent with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    stuck: Severity = "warning"
    escalated: Severity = "error"
    unreachable: Severity = "critical"
    breaker_open: Severity = "critical"
    #: users' messages a reset dropped and that were not sent again: someone should answer them
    messages_dropped: Severity = "warning"

    def for_kind(self, kind: str) -> Severity:
        """The kind's severity; `error` for a kind this version does not know."""
        value = getattr(self, kind, None) if kind in SeverityMap.model_fields else None
        return value if value is not None else "error"


class PagingConfig(BaseModel):
    """A validated `[paging]` table; empty (no providers) means paging is off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    renotify_interval: Duration = Field(
        4 * 3600.0, description="An open incident is sent again this often; 0 turns it off."
    )
    external_url: str | None = Field(None, description="Link to this supervisor (UI, docs).")
    severity: SeverityMap = Field(default_factory=SeverityMap)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    routes: tuple[Route, ...] = ()
    default_route: Route | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.providers)

    def provider(self, name: str) -> PagerDutyProvider | WebhookProvider | SlackProvider:
        """The provider called `name`, or KeyError."""
        return self.providers[name]

    def severity_for(self, kind: str) -> Severity:
        return self.severity.for_kind(kind)

    @field_validator("external_url")
    @classmethod
    def _external_url_is_http(cls, value: str | None) -> str | None:
        if value is not None and not _HTTP_URL.match(value):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _routes_are_consistent(self) -> Self:
        seen: set[str] = set()
        for route in (*self.routes, *((self.default_route,) if self.default_route else ())):
            if route.name in seen:
                raise ValueError(f"duplicate route name {route.name!r}")
            seen.add(route.name)
            for name in route.providers:
                if name not in self.providers:
                    raise ValueError(f"route {route.name!r} names unknown provider {name!r}")
        if self.providers and self.default_route is None:
            raise ValueError(
                "set [paging.default_route] (providers = [] drops incidents no route matches)"
            )
        return self


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _problem(exc: ValidationError) -> tuple[str, str]:
    """(location, message) of the first validation error, in the fleet file's words."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    message = str(err["msg"]).removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
    elif err["type"] == "missing":
        message = "required key is missing"
    return _where(loc), message


def _read_secret(
    path: str,
    field: str,
    raw: Mapping[str, Any],
    environ: Mapping[str, str],
    *,
    required: bool,
    inline: bool,
) -> SecretStr | None:
    """`field` from `<field>_env`, `<field>_file` or (if allowed) inline; exactly one of them."""
    sources = [s for s in (field, f"{field}_env", f"{field}_file") if raw.get(s) is not None]
    if field in sources and not inline:
        raise FleetFileError(
            path,
            f"secrets do not belong in the fleet file: use {field}_env or {field}_file",
            field=field,
        )
    if len(sources) > 1 or (required and not sources):
        choices = " / ".join(([field] if inline else []) + [f"{field}_env", f"{field}_file"])
        raise FleetFileError(
            path, f"set exactly one of {choices}", field=sources[0] if sources else field
        )
    if not sources:
        return None
    source = sources[0]
    if source == field:
        value = str(raw[field]).strip()
    elif source.endswith("_env"):
        value = _read_env(path, source, str(raw[source]), environ)
    else:
        value = _read_file(path, source, Path(str(raw[source])))
    return SecretStr(value)


def _read_env(path: str, field: str, variable: str, environ: Mapping[str, str]) -> str:
    value = environ.get(variable, "").strip()
    if not value:
        raise FleetFileError(
            path, f"environment variable {variable} is not set or empty", field=field
        )
    return value


def _read_file(path: str, field: str, file: Path) -> str:
    file = file.expanduser()
    if not file.is_absolute():
        file = Path(path).parent / file
    try:
        return read_secret_file(file)
    except SecretFileError as exc:
        raise FleetFileError(path, f"{file}: {exc.reason}", field=field) from None


def _provider(
    path: str, name: str, raw: object, retry: Mapping[str, Any], environ: Mapping[str, str]
) -> PagerDutyProvider | WebhookProvider | SlackProvider:
    base = f"paging.providers.{name}"
    if not _NAME.match(name):
        raise FleetFileError(
            path, "a provider name is 1-63 letters, digits, '.', '_' or '-'", field=base
        )
    if not isinstance(raw, dict):
        raise FleetFileError(path, "must be a table", field=base)
    kind = raw.get("type")
    if kind not in _SECRETS:
        raise FleetFileError(path, "must be one of pagerduty, webhook, slack", field=f"{base}.type")
    data: dict[str, Any] = dict(raw)
    try:
        for field, required, inline in _SECRETS[str(kind)]:
            data[field] = _read_secret(path, field, raw, environ, required=required, inline=inline)
        if "secret_headers" in raw:
            raise FleetFileError(path, "unknown key (use headers_env)", field="secret_headers")
        env_headers = raw.get("headers_env") or {}
        if kind == "webhook" and isinstance(env_headers, dict):
            data["secret_headers"] = {
                header: SecretStr(_read_env(path, "headers_env", str(var), environ))
                for header, var in env_headers.items()
            }
    except FleetFileError as exc:
        raise FleetFileError(path, exc.problem, field=f"{base}.{exc.field}") from None
    own_retry = raw.get("retry", {})
    if not isinstance(own_retry, dict):
        raise FleetFileError(path, "must be a table", field=f"{base}.retry")
    data["retry"] = {**retry, **own_retry}
    data["name"] = name
    try:
        provider: PagerDutyProvider | WebhookProvider | SlackProvider
        if kind == "pagerduty":
            provider = PagerDutyProvider.model_validate(data)
        elif kind == "webhook":
            provider = WebhookProvider.model_validate(data)
        else:
            provider = SlackProvider.model_validate(data)
    except ValidationError as exc:
        loc, message = _problem(exc)
        raise FleetFileError(path, message, field=f"{base}.{loc}") from None
    return provider


def _check_routes(
    path: str, routes: list[dict[str, Any]], default: object, providers: Mapping[str, object]
) -> None:
    """Route names unique, providers known, a default route: located to the route's field.

    (`PagingConfig` checks the same, but a model validator cannot say where.)
    """
    seen: set[str] = set()
    for index, route in enumerate(routes):
        where = f"paging.routes[{index}]"
        name = route.get("name")
        if isinstance(name, str) and name in seen:
            raise FleetFileError(path, f"duplicate route name {name!r}", field=f"{where}.name")
        seen.add(str(name))
        _check_providers(path, route.get("providers"), providers, f"{where}.providers")
    if isinstance(default, dict):
        names = default.get("providers")
        _check_providers(path, names, providers, "paging.default_route.providers")
    elif providers:
        raise FleetFileError(
            path,
            "required once a provider is defined (providers = [] drops what no route matches)",
            field="paging.default_route",
        )


def _check_providers(path: str, names: object, known: Mapping[str, object], field: str) -> None:
    for name in names if isinstance(names, list) else ():
        if isinstance(name, str) and name not in known:
            raise FleetFileError(path, f"unknown provider {name!r}", field=field)


def parse_paging(raw: object, path: str, environ: Mapping[str, str] | None = None) -> PagingConfig:
    """Validate the fleet file's `[paging]` table (`{}` when absent: paging off).

    Secrets are read from `environ` (default `os.environ`) and files relative to `path`.
    Raises `FleetFileError(path, problem, field="paging....")`, never quoting a secret.
    """
    env = os.environ if environ is None else environ
    if not isinstance(raw, dict):
        raise FleetFileError(path, "must be a table ([paging])", field="paging")
    retry = raw.get("retry", {})
    if not isinstance(retry, dict):
        raise FleetFileError(path, "must be a table", field="paging.retry")
    raw_providers = raw.get("providers", {})
    if not isinstance(raw_providers, dict):
        raise FleetFileError(path, "must be a table of tables", field="paging.providers")
    providers = {
        name: _provider(path, str(name), table, retry, env) for name, table in raw_providers.items()
    }
    default_route = raw.get("default_route")
    if isinstance(default_route, dict):
        if "match" in default_route:
            raise FleetFileError(
                path,
                "the default route matches everything: no match",
                field="paging.default_route.match",
            )
        default_route = {"name": "default", **default_route}
    routes = raw.get("routes", [])
    if not isinstance(routes, list) or not all(isinstance(r, dict) for r in routes):
        raise FleetFileError(
            path, "must be an array of tables ([[paging.routes]])", field="paging.routes"
        )
    _check_routes(path, routes, default_route, providers)
    data = {**raw, "providers": providers, "default_route": default_route}
    if default_route is None:
        data.pop("default_route")
    try:
        return PagingConfig.model_validate(data)
    except ValidationError as exc:
        loc, message = _problem(exc)
        raise FleetFileError(path, message, field=f"paging.{loc}" if loc else "paging") from None
