"""An async client for one OpenClaw gateway: handshake, device proof, scope check, typed calls.

All transport failures are translated here, once, into the `GatewayError` tree
(`supervisor.errors`); callers never see a websockets or OS exception. Messages name the
gateway, never its token.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import ipaddress
import itertools
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from types import TracebackType
from typing import Any, Protocol, Self
from urllib.parse import urlsplit

import websockets
import websockets.asyncio.client
from pydantic import SecretStr
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
    PayloadTooBig,
)

from supervisor import __version__
from supervisor.core.policy import Policy
from supervisor.core.rows import SessionRow, UnreadableRow
from supervisor.errors import (
    ApprovalPending,
    DeviceNotPaired,
    GatewayCallError,
    GatewayError,
    GatewayOverloaded,
    GatewayTimeout,
    GatewayUnreachable,
    MethodMissing,
    MissingScope,
    ProtocolError,
    TokenMismatch,
)
from supervisor.gateway.identity import DeviceIdentity
from supervisor.gateway.models import READ_SCOPE, Hello, ListAnswer, parse_rows, read_list_answer

log = logging.getLogger(__name__)


class Target(Protocol):
    """What the client needs of a gateway (`fleet.GatewaySpec` is one): the gateway package
    does not import the fleet file's module, which imports it."""

    @property
    def name(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def token(self) -> SecretStr: ...
    @property
    def client_id(self) -> str: ...
    @property
    def client_mode(self) -> str: ...
    @property
    def scopes(self) -> tuple[str, ...]: ...
    @property
    def policy(self) -> Policy: ...


MIN_PROTOCOL = 3
MAX_PROTOCOL = 4
_MISSING_SCOPE = re.compile(r"missing scope:?\s*(operator\.[a-z]+)", re.I)
#: rows asked for per later page of sessions.list (2026.9.6's first page is 100 by default)
LIST_PAGE_SIZE = 200
#: a gateway that keeps saying hasMore past this is broken (200,000 sessions at 200 a page)
MAX_LIST_PAGES = 1000
#: a `sessions.changed` row with an active run whose id it does not give
UNKNOWN_RUN = "?"
#: run events remembered per connection (a step's connection lives for seconds)
_MAX_RUN_EVENTS = 10_000
#: events that carry a session's run: 2026.3.24 `agent` lifecycle, 2026.9.6 `agent` and `chat`
_RUN_EVENTS = frozenset({"agent", "chat"})
#: phases and states of a run event that end a run
_RUN_ENDS = frozenset(
    {"end", "error", "aborted", "abort", "done", "final", "completed", "failed", "killed",
     "timeout", "cancelled", "canceled", "stopped"}
)  # fmt: skip
#: events read while waiting for one answer before we call the gateway broken
_MAX_EVENTS_PER_WAIT = 10_000


def map_gateway_error(gateway: str, method: str, error: object) -> GatewayError:
    """The most specific `GatewayError` for an `ok:false` answer."""
    if not isinstance(error, dict):
        return ProtocolError(gateway, f"{method}: ok:false without an error object")
    code = str(error.get("code") or "ERROR")
    message = str(error.get("message") or "")
    details = error.get("details") if isinstance(error.get("details"), dict) else {}
    assert isinstance(details, dict)
    detail_code = str(details.get("code") or details.get("reason") or "")
    text = f"{code} {detail_code} {message}".lower()
    if "token_mismatch" in text or "token mismatch" in text:
        return TokenMismatch(gateway, f"{method}: the gateway refused the token ({code})")
    if details.get("code") == "PAIRING_REQUIRED" and details.get("reason") in _UPGRADES:
        return _approval_pending(gateway, method, details)
    if "not_paired" in text or "device identity" in text or "pairing required" in text:
        return DeviceNotPaired(
            gateway,
            f"{method}: {message or code}; approve this device on the gateway host with "
            "`openclaw devices approve`",
        )
    scope = _MISSING_SCOPE.search(message)
    if scope:
        return MissingScope(
            gateway, f"{method}: missing scope {scope.group(1)}", missing=[scope.group(1)]
        )
    if "unknown method" in text or code in {"METHOD_NOT_FOUND", "UNKNOWN_METHOD"}:
        return MethodMissing(gateway, method)
    reason = details.get("reason")
    return GatewayCallError(
        gateway,
        method,
        code,
        message,
        reason=str(reason) if reason is not None else None,
        retryable=bool(error.get("retryable")),
    )


#: refusals of a paired device that asks for more than it was approved for (2026.5.28, measured)
_UPGRADES = frozenset({"scope-upgrade", "role-upgrade"})
_REQUEST_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


def _approval_pending(gateway: str, method: str, details: dict[str, Any]) -> ApprovalPending:
    """One clear state: which request waits, and the two ways to approve it. The id is read from
    the details, never the close reason (cut at 123 bytes); while it is pending the gateway gives
    every retry the same id (measured), so scanning on files no new request."""
    raw = details.get("requestId")
    request_id = raw if isinstance(raw, str) and _REQUEST_ID.match(raw) else None
    wanted = details.get("requestedScopes")
    approved = details.get("approvedScopes")

    def scopes(value: object) -> str:
        if not isinstance(value, list):
            return "?"
        return ",".join(s for s in value if isinstance(s, str) and _SCOPE_NAME.match(s)) or "-"

    where = request_id or "<id from `openclaw devices list`>"
    return ApprovalPending(
        gateway,
        f"{method}: approval pending: this device asks for scopes {scopes(wanted)} but is "
        f"approved for {scopes(approved)} (request {request_id or 'unknown'}); approve it on "
        f"the gateway host with `openclaw devices approve {where}`, or from a connection "
        f'holding operator.pairing with device.pair.approve {{"requestId": "{where}"}}',
        request_id=request_id,
    )


_SCOPE_NAME = re.compile(r"^[a-z]+\.[a-z]+$")


def _finite(value: object) -> float | None:
    """A JSON number as a finite float, else None (a 400-digit integer overflows float,
    1e400 is infinite, NaN compares false with everything: all found by fuzzing)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _boot_time(
    uptime: object, gateway_now_ms: float, max_uptime_ms: float = math.inf
) -> float | None:
    """The boot time from `uptimeMs`, or None when it is missing or not a sane number."""
    value = _finite(uptime)
    if value is None or value < 0 or value > max_uptime_ms:
        return None
    return gateway_now_ms - value


def clock_offset(ts: object, received_ms: float, max_offset_ms: float) -> float | None:
    """Gateway clock minus ours from the challenge's `ts`; None when it cannot be believed.

    A `ts` in seconds or microseconds is off by decades, not by a skew: taken at face value it
    moves every row's age by as much (a live run on 2026.3.24 became a zombie)."""
    value = _finite(ts)
    if value is None:
        return None
    offset = value - received_ms
    return offset if abs(offset) <= max_offset_ms else None


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


#: (gateway, url) pairs already warned about in this process
_warned_plain: set[tuple[str, str]] = set()


def _warn_plain_ws(name: str, url: str) -> None:
    """Once per gateway and process: a token sent over plain ws:// beyond this host."""
    if not url.startswith("ws://") or _is_loopback(url) or (name, url) in _warned_plain:
        return
    _warned_plain.add((name, url))
    log.warning(
        "gateway %r: %s is plain ws:// to another host; the token crosses the network "
        "unencrypted (use wss://, or a tunnel to a loopback address)",
        name,
        url,
    )


_REDIRECTS = frozenset({300, 301, 302, 303, 307, 308})


class _NoRedirects(websockets.asyncio.client.connect):
    """websockets' connect, which follows redirects by itself, told to follow none: the
    connect frame carries the token, and a redirect would hand it to whoever it names."""

    def process_redirect(self, exc: Exception) -> Exception | str:
        return exc


class GatewayClient:
    """One connection to one gateway. Use as `async with GatewayClient(spec, identity) as gw:`."""

    def __init__(
        self,
        spec: Target,
        identity: DeviceIdentity | None,
        *,
        scopes: tuple[str, ...] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.name = spec.name
        self._identity = identity
        #: what we ask for: the fleet file's `scopes` (all three by default)
        self._scopes = spec.scopes if scopes is None else scopes
        self._clock = clock
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        #: ids of pending sessions.list requests, whose answers the reader types from their text
        self._listing: set[str] = set()
        self._ids = itertools.count(1)
        self._broken: GatewayError | None = None
        self.hello: Hello | None = None
        self.events_seen = 0
        #: runs seen starting on our socket: (session key, run id, monotonic time received)
        self.run_events: deque[tuple[str, str, float]] = deque(maxlen=_MAX_RUN_EVENTS)
        #: per page of the last listing: monotonic time its request was sent, rows before it
        self.pages_sent_at: list[float] = []
        self.pages_start: list[int] = []
        #: bytes of every frame received so far (bounds a listing's total size)
        self.bytes_received = 0

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- connection ------------------------------------------------------------------------

    async def connect(self) -> Hello:
        """Open the socket, answer the challenge and return what the gateway said of itself."""
        policy = self.spec.policy
        _warn_plain_ws(self.name, self.spec.url)
        try:
            async with asyncio.timeout(policy.connect_timeout):
                self._ws = await _NoRedirects(
                    self.spec.url,
                    max_size=policy.max_frame_bytes,
                    open_timeout=None,  # the surrounding timeout covers the whole handshake
                    proxy=None,
                    compression=None,
                )
                challenge = await self._read_challenge()
                self.hello = await self._handshake(challenge)
        except TimeoutError:
            await self._abandon()
            raise GatewayTimeout(
                self.name, f"no complete handshake within {policy.connect_timeout:g}s"
            ) from None
        except GatewayError:
            await self._abandon()
            raise
        except InvalidURI as exc:
            await self._abandon()
            raise GatewayUnreachable(self.name, f"bad URL: {exc}") from exc
        except InvalidStatus as exc:
            await self._abandon()
            status = exc.response.status_code
            if status in _REDIRECTS:
                raise ProtocolError(
                    self.name,
                    f"the gateway answered the upgrade with a redirect (HTTP {status}); "
                    "redirects are not followed: put the final URL in the fleet file",
                ) from None
            raise GatewayUnreachable(
                self.name, f"cannot connect to {self.spec.url}: {exc}"
            ) from exc
        except (OSError, InvalidHandshake) as exc:
            await self._abandon()
            raise GatewayUnreachable(
                self.name, f"cannot connect to {self.spec.url}: {exc}"
            ) from exc
        self._reader = asyncio.create_task(self._read_loop(), name=f"gateway-reader-{self.name}")
        return self.hello

    async def _recv_frame(self) -> dict[str, Any]:
        return self._decode(await self._recv_raw())

    async def _recv_raw(self) -> str | bytes:
        assert self._ws is not None
        try:
            raw = await self._ws.recv()
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from exc
        self.bytes_received += len(raw)
        return raw

    def _decode(self, raw: str | bytes) -> dict[str, Any]:
        if isinstance(raw, bytes):
            raise ProtocolError(self.name, "binary frame received; the protocol uses JSON text")
        try:
            frame = json.loads(raw)
        except (ValueError, RecursionError):
            # RecursionError: a frame nested thousands of levels deep (found by fuzzing)
            raise ProtocolError(self.name, f"malformed frame (not JSON): {raw[:80]!r}") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("type"), str):
            raise ProtocolError(self.name, f"malformed frame (no type): {raw[:80]!r}")
        return frame

    def _closed_error(self, exc: ConnectionClosed) -> GatewayError:
        rcvd = exc.rcvd
        if isinstance(exc.__cause__, PayloadTooBig) or (
            rcvd is None and exc.sent and exc.sent.code == 1009
        ):
            return ProtocolError(
                self.name,
                f"frame larger than max_frame_bytes ({self.spec.policy.max_frame_bytes} bytes)",
            )
        if self.hello is None:
            # 2026.9.6 closes with 1000 and no error frame when over capacity during connect
            code = rcvd.code if rcvd else None
            return GatewayOverloaded(
                self.name, f"connection closed during connect (code {code}); retry with backoff"
            )
        code = rcvd.code if rcvd else None
        reason = rcvd.reason if rcvd else ""
        return GatewayUnreachable(self.name, f"connection closed (code {code} {reason})".strip())

    async def _read_challenge(self) -> dict[str, Any]:
        for _ in range(100):
            frame = await self._recv_frame()
            if frame.get("type") == "event" and frame.get("event") == "connect.challenge":
                payload = frame.get("payload")
                if not isinstance(payload, dict) or not isinstance(payload.get("nonce"), str):
                    raise ProtocolError(self.name, "connect.challenge without a nonce")
                return payload
            if frame.get("type") != "event":
                raise ProtocolError(
                    self.name, f"expected connect.challenge, got a {frame.get('type')!r} frame"
                )
        raise ProtocolError(self.name, "no connect.challenge among the first 100 frames")

    async def _handshake(self, challenge: dict[str, Any]) -> Hello:
        received_ms = self._clock() * 1000
        offset = clock_offset(
            challenge.get("ts"), received_ms, self.spec.policy.max_clock_offset * 1000
        )
        token = self.spec.token.get_secret_value()
        params: dict[str, Any] = {
            "minProtocol": MIN_PROTOCOL,
            "maxProtocol": MAX_PROTOCOL,
            "client": {
                "id": self.spec.client_id,
                "version": __version__,
                "platform": "linux",
                "mode": self.spec.client_mode,
            },
            "role": "operator",
            "scopes": list(self._scopes),
            "auth": {"token": token},
        }
        if self._identity is not None:
            params["device"] = self._identity.proof(
                client_id=self.spec.client_id,
                client_mode=self.spec.client_mode,
                role="operator",
                scopes=self._scopes,
                token=token,
                nonce=str(challenge["nonce"]),
                signed_at_ms=int(self._clock() * 1000),
            )
        request_id = f"c{next(self._ids)}"
        await self._send({"type": "req", "id": request_id, "method": "connect", "params": params})
        while True:
            frame = await self._recv_frame()
            if frame.get("type") == "res" and frame.get("id") == request_id:
                break
        if not frame.get("ok"):
            raise map_gateway_error(self.name, "connect", frame.get("error"))
        payload = frame.get("payload")
        if not isinstance(payload, dict):
            raise ProtocolError(self.name, "hello without a payload")
        if offset is None:
            log.warning(
                "gateway %r: connect.challenge ts is missing or more than %gs from our clock; "
                "its clock is unknown, so verdicts that need it stay unknown",
                self.name,
                self.spec.policy.max_clock_offset,
            )
        return self._parse_hello(
            payload, offset or 0.0, self._clock() * 1000, clock_known=offset is not None
        )

    def _parse_hello(
        self, payload: dict[str, Any], offset_ms: float, now_ms: float, *, clock_known: bool = True
    ) -> Hello:
        protocol = payload.get("protocol")
        if not isinstance(protocol, int) or not MIN_PROTOCOL <= protocol <= MAX_PROTOCOL:
            raise ProtocolError(self.name, f"unsupported protocol {protocol!r} in hello")

        def obj(value: object) -> dict[str, Any]:
            return value if isinstance(value, dict) else {}

        snapshot, server = obj(payload.get("snapshot")), obj(payload.get("server"))
        features, auth = obj(payload.get("features")), payload.get("auth")
        boot = (
            _boot_time(
                snapshot.get("uptimeMs"), now_ms + offset_ms, self.spec.policy.max_uptime * 1000
            )
            if clock_known
            else None  # `now - uptime` in a clock we do not know is no boot time
        )
        methods = features.get("methods")
        scopes = auth.get("scopes") if isinstance(auth, dict) else None
        return Hello(
            protocol=protocol,
            boot_time_ms=boot,
            boot_id=str(server["bootId"]) if server.get("bootId") else None,
            server_version=str(server["version"]) if server.get("version") else None,
            methods=frozenset(m for m in methods if isinstance(m, str))
            if isinstance(methods, list)
            else None,
            scopes=tuple(s for s in scopes if isinstance(s, str))
            if isinstance(scopes, list)
            else None,
            clock_offset_ms=offset_ms,
            clock_known=clock_known,
        )

    async def _send(self, frame: dict[str, Any]) -> None:
        assert self._ws is not None
        try:
            await self._ws.send(json.dumps(frame, separators=(",", ":")))
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from exc

    async def _read_loop(self) -> None:
        try:
            while True:
                raw = await self._recv_raw()
                if self._listing and isinstance(raw, str) and self._deliver_listing(raw):
                    continue
                frame = self._decode(raw)
                kind = frame.get("type")
                if kind == "res":
                    future = self._pending.pop(str(frame.get("id")), None)
                    if future is not None and not future.done():
                        future.set_result(frame)
                elif kind == "event":
                    self.events_seen += 1
                    self._note_run(frame)
        except GatewayError as exc:
            self._fail_all(exc)
        except Exception as exc:  # pragma: no cover - defensive: never leave callers waiting
            self._fail_all(ProtocolError(self.name, f"reader failed: {exc!r}"))

    def _note_run(self, frame: dict[str, Any]) -> None:
        """Remember a run seen on a session: the only witness of one that starts between our
        final read and our mutating request (2026.3.24 leaves no trace of it in the rows)."""
        event = frame.get("event")
        if event not in _RUN_EVENTS and event != "sessions.changed":
            return
        payload = frame.get("payload")
        if not isinstance(payload, dict):
            return
        if event == "sessions.changed":
            self._note_changed(payload)
            return
        key, run_id = payload.get("sessionKey"), payload.get("runId")
        if not (isinstance(key, str) and isinstance(run_id, str)):
            return
        data = payload.get("data")
        phase = data.get("phase") if isinstance(data, dict) else None
        state = payload.get("state")
        # the end of a run (ours aborting it, or a reset doing so) is no new run
        if (isinstance(phase, str) and phase.lower() in _RUN_ENDS) or (
            isinstance(state, str) and state.lower() in _RUN_ENDS
        ):
            return
        self.run_events.append((key, run_id, time.monotonic()))

    def _note_changed(self, payload: dict[str, Any]) -> None:
        """2026.9.6 says nothing on `agent` of a message held behind a dead lane; to a
        connection that called `sessions.subscribe` it sends `sessions.changed` with the row,
        whose `activeRunIds` holds the message's run (measured)."""
        row = payload.get("session")
        key = payload.get("sessionKey")
        if not isinstance(row, dict) or not isinstance(key, str):
            return
        now = time.monotonic()
        ids = row.get("activeRunIds")
        if isinstance(ids, list):
            for run_id in ids:
                if isinstance(run_id, str):
                    self.run_events.append((key, run_id, now))
        elif row.get("hasActiveRun") is True:
            self.run_events.append((key, UNKNOWN_RUN, now))

    def runs_started_since(
        self, key: str, since: float, known: Iterable[str] = (), *, unnamed: bool = True
    ) -> list[str]:
        """Run ids seen on `key` after monotonic time `since`, other than `known` ones;
        `unnamed`: count an active run whose id the gateway did not say (`UNKNOWN_RUN`)."""
        skip = set(known)
        if not unnamed:
            skip.add(UNKNOWN_RUN)
        found: list[str] = []
        for session_key, run_id, at in self.run_events:
            if session_key == key and at >= since and run_id not in skip and run_id not in found:
                found.append(run_id)
        return found

    def page_sent_at(self, index: int | None) -> float:
        """When the request for the page of the last listing that holds row `index` was sent
        (monotonic): the row is at least that fresh. None: the listing's first page."""
        if not self.pages_sent_at:
            return time.monotonic()
        if index is None:
            return self.pages_sent_at[0]
        page = bisect.bisect_right(self.pages_start, index) - 1
        return self.pages_sent_at[max(page, 0)]

    def _deliver_listing(self, raw: str) -> bool:
        """Hand a pending sessions.list its answer typed from the text; False: not such a one."""
        answer = read_list_answer(raw)
        if answer is None:
            return False
        request_id = str(answer.id)
        if request_id not in self._listing:
            return False  # an answer of that shape to another call: read the ordinary way
        self._listing.discard(request_id)
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(answer)
        return True

    def _fail_all(self, exc: GatewayError) -> None:
        self._broken = exc
        for future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
        self._pending.clear()

    async def _abandon(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()

    async def close(self) -> None:
        """Close the socket and stop the reader; safe to call twice."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
            self._reader = None
        await self._abandon()
        self._fail_all(GatewayUnreachable(self.name, "client closed"))

    # -- calls -----------------------------------------------------------------------------

    def gateway_now_ms(self) -> float:
        """Now, in the gateway's clock (ours plus the offset measured at the challenge)."""
        offset = self.hello.clock_offset_ms if self.hello else 0.0
        return self._clock() * 1000 + offset

    async def call(
        self, method: str, params: dict[str, Any] | None = None, *, timeout: float | None = None
    ) -> Any:
        """Send one request and return its payload, or raise the mapped error."""
        return self._payload(method, await self._request(method, params, timeout=timeout))

    def _payload(self, method: str, frame: dict[str, Any]) -> Any:
        if not frame.get("ok"):
            raise map_gateway_error(self.name, method, frame.get("error"))
        return frame.get("payload")

    async def _request(
        self,
        method: str,
        params: dict[str, Any] | None,
        *,
        timeout: float | None = None,
        listing: bool = False,
    ) -> Any:
        """Send one request and return its answer frame (a `ListAnswer` if `listing` allows)."""
        if self.hello is None or self._ws is None:
            raise GatewayUnreachable(self.name, "not connected")
        if self._broken is not None:
            raise self._broken
        if not self.hello.has_method(method):
            raise MethodMissing(self.name, method)
        request_id = f"r{next(self._ids)}"
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        if listing:
            self._listing.add(request_id)
        limit = self.spec.policy.call_timeout if timeout is None else timeout
        try:
            await self._send(
                {"type": "req", "id": request_id, "method": method, "params": params or {}}
            )
            async with asyncio.timeout(limit):
                frame = await future
        except TimeoutError:
            raise GatewayTimeout(self.name, f"{method}: no answer within {limit:g}s") from None
        finally:
            self._pending.pop(request_id, None)
            self._listing.discard(request_id)
        return frame

    async def list_sessions(self) -> list[SessionRow | UnreadableRow]:
        """Every session row, all pages; rows that cannot be read come back as `UnreadableRow`.

        2026.9.6 answers at most 100 rows per call with `hasMore`/`nextOffset` (measured); a
        later page is asked for with `limit` and `offset` only then, since 2026.3.24 pages
        nothing. Rows are deduplicated by key across pages (the docs say to), first one wins.
        """
        params: dict[str, Any] = {}
        seen: set[str] = set()
        out: list[SessionRow | UnreadableRow] = []
        self.pages_sent_at, self.pages_start = [], []
        policy = self.spec.policy
        start_bytes = self.bytes_received
        for _ in range(MAX_LIST_PAGES):
            self.pages_sent_at.append(time.monotonic())
            self.pages_start.append(len(out))
            rows, has_more, next_offset = await self._list_page(params, start_bytes)
            if len(out) + len(rows) > policy.max_sessions:
                raise ProtocolError(
                    self.name, f"sessions.list holds more than max_sessions ({policy.max_sessions})"
                )
            for row in rows:
                if row.key is not None:
                    if row.key in seen:
                        continue
                    seen.add(row.key)
                out.append(row)
            if not has_more:
                return out
            if not isinstance(next_offset, int) or isinstance(next_offset, bool):
                raise ProtocolError(self.name, "sessions.list says hasMore without a nextOffset")
            if next_offset <= int(params.get("offset", 0)):
                raise ProtocolError(self.name, "sessions.list nextOffset does not advance")
            params = {"limit": LIST_PAGE_SIZE, "offset": next_offset}
        raise ProtocolError(self.name, f"sessions.list has more than {MAX_LIST_PAGES} pages")

    async def _list_page(
        self, params: dict[str, Any], start_bytes: int
    ) -> tuple[Sequence[SessionRow | UnreadableRow], Any, Any]:
        """One sessions.list page: its rows, and its `hasMore` and `nextOffset` as sent.

        The usual answer comes typed from its text (`read_list_answer`); any other is decoded
        and its rows parsed one by one where need be (`parse_rows`), with the same result.
        `start_bytes`: `bytes_received` when the listing began (its `max_listing_bytes`).
        """
        answer = await self._request("sessions.list", params, listing=True)
        if isinstance(answer, ListAnswer):
            self._check_listing_bytes(start_bytes)
            return answer.payload.sessions, answer.payload.hasMore, answer.payload.nextOffset
        payload = self._payload("sessions.list", answer)
        self._check_listing_bytes(start_bytes)
        rows = payload.get("sessions") if isinstance(payload, dict) else payload
        if not isinstance(rows, list):
            raise ProtocolError(self.name, "sessions.list answer holds no list of sessions")
        if not isinstance(payload, dict):
            return parse_rows(rows), None, None
        return parse_rows(rows), payload.get("hasMore"), payload.get("nextOffset")

    def _check_listing_bytes(self, start_bytes: int) -> None:
        limit = self.spec.policy.max_listing_bytes
        if self.bytes_received - start_bytes > limit:
            raise ProtocolError(
                self.name, f"sessions.list is larger than max_listing_bytes ({limit} bytes)"
            )

    async def diagnostics_lanes(self) -> Any:
        """`diagnostics.lanes` (2026.9.x): the gateway's lane counts, as sent (one call, bounded
        by `call_timeout`; `supervisor.core.lanes.parse_lanes` reads it)."""
        return await self.call("diagnostics.lanes", {})

    async def verify_scopes(self, required: Iterable[str] = (READ_SCOPE,)) -> tuple[str, ...]:
        """Fail loudly when a needed scope is missing; returns the scopes known to be granted.

        2026.9.6 reports granted scopes in hello-ok. 2026.3.24 says nothing and grants none to
        an unpaired device, so a read call is the only way to find out.
        """
        assert self.hello is not None
        needed = tuple(required)
        if self.hello.scopes is not None:
            missing = [s for s in needed if s not in self.hello.scopes]
            if missing:
                hint = (
                    "the gateway granted no scopes: connect as client gateway-client/backend or "
                    "approve this device (`openclaw devices approve`)"
                    if not self.hello.scopes
                    else f"granted: {', '.join(self.hello.scopes)}"
                )
                raise MissingScope(
                    self.name, f"missing scope {', '.join(missing)} ({hint})", missing=missing
                )
            return self.hello.scopes
        try:
            await self.call("sessions.list", {})
        except MissingScope as exc:
            raise DeviceNotPaired(
                self.name,
                "connected but granted no scopes (this gateway does so silently for an unpaired "
                "device): approve this device on the gateway host with `openclaw devices approve`",
            ) from exc
        return (READ_SCOPE,)
