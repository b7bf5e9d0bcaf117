"""The `lane-supervisor` command line. Commands only parse options and delegate.

Exit codes: 0 healthy, 1 a session needs (or was left needing) recovery, 2 a gateway is
unreachable or misconfigured, 64 usage or configuration error.
"""

from __future__ import annotations

import contextlib
import functools
import json
import sys
import time
from collections.abc import Callable, Iterator
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

# typer vendors its own click; its exceptions live here, not in a separate `click` package
from typer._click import exceptions as click_exc

from supervisor import __version__
from supervisor.errors import ConfigError, StateError

# Everything else is imported inside the command that needs it: `--help` must not pay for
# pydantic-settings, the fleet models, websockets, cryptography, rich, redis, httpx or Celery
# (tests/test_cli_imports.py holds this).
if TYPE_CHECKING:
    from rich.console import Console

    from supervisor.fleet import Fleet
    from supervisor.scan import GatewayReport
    from supervisor.settings import Settings


class Exit(IntEnum):
    OK = 0
    NEEDS_ACTION = 1
    GATEWAY_FAILED = 2
    USAGE = 64


app = typer.Typer(
    name="lane-supervisor",
    help="Find and heal OpenClaw sessions stuck 'running' with no live run (openclaw #59878).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain click help: rich help formatting alone costs ~0.1 s per start
    rich_markup_mode=None,
)


@functools.cache
def _out() -> Console:
    from rich.console import Console

    return Console()


@functools.cache
def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True)


def _settings(**overrides: Any) -> Settings:
    from supervisor.settings import Settings

    return Settings(**overrides)


def _load_fleet(path: str | Path) -> Fleet:
    from supervisor.fleet import load_fleet

    return load_fleet(path)


FleetOption = Annotated[
    Path | None,
    typer.Option(
        "--fleet",
        "-f",
        help="Fleet file (TOML). Default: $SUPERVISOR_FLEET.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print one JSON document.")]


def _fleet(path: Path | None, settings: Settings) -> Fleet:
    chosen = path or settings.fleet
    if chosen is None:
        raise ConfigError("no fleet file: pass --fleet FILE or set SUPERVISOR_FLEET")
    return _load_fleet(chosen)


def print_json(doc: Any) -> None:
    """`doc` on stdout, as `json.dumps(doc, indent=2)` would write it, at a seventh of the cost.

    The standard encoder drops to pure Python once `indent` is set: 0.5 s of a 200-gateway
    `check --json`. pydantic-core's encoder writes the very same text for what the commands
    print (printable ASCII, decimal floats; NaN and infinities as `json` spells them), and at
    worst a different spelling of the same values (`1e-7` for `1e-07`, DEL unescaped). Text it
    would leave unescaped (non-ASCII) goes to the standard encoder, so stdout stays ASCII.
    """
    from pydantic_core import to_json

    text = to_json(doc, indent=2, inf_nan_mode="constants").decode()
    if not text.isascii():
        text = json.dumps(doc, indent=2)
    sys.stdout.write(text + "\n")


def check_exit_code(reports: list[GatewayReport]) -> Exit:
    """2 if any gateway failed, else 1 if any session needs recovery, else 0."""
    if any(r.error for r in reports):
        return Exit.GATEWAY_FAILED
    if any(r.needs_action for r in reports):
        return Exit.NEEDS_ACTION
    return Exit.OK


#: a one-shot run over at least this many gateways shows a progress bar (on a terminal)
PROGRESS_MIN_GATEWAYS = 10


@contextlib.contextmanager
def progress(what: str, total: int) -> Iterator[Callable[..., None]]:
    """A transient progress bar on stderr when it is a terminal; yields `advance(*_)`."""
    if total < PROGRESS_MIN_GATEWAYS or not _err().is_terminal:
        yield lambda *_: None
        return
    from rich.progress import Progress

    with Progress(console=_err(), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda *_: bar.advance(task)


def run_check(fleet: Fleet, settings: Settings) -> list[GatewayReport]:
    import asyncio

    from supervisor.gateway.identity import identity_for
    from supervisor.scan import check_fleet

    identity = identity_for(settings)
    reports: list[GatewayReport] = []

    async def scan_all() -> None:
        # the reports are kept out of the task's result: when asyncio.run restores the SIGINT
        # handler, signal.getsignal reprs the old handler, the finished task and so its result,
        # every report in full (30-60 ms for a 200-gateway fleet)
        reports.extend(
            await check_fleet(
                fleet.gateways,
                identity,
                concurrency=settings.check_concurrency,
                on_done=advance,
            )
        )

    with progress("checking gateways", len(fleet.gateways)) as advance:
        asyncio.run(scan_all())
    return reports


@app.command()
def check(
    fleet: FleetOption = None,
    as_json: JsonOption = False,
    all_rows: Annotated[
        bool, typer.Option("--all", help="List every session, healthy ones too.")
    ] = False,
) -> int:
    """Read-only scan of every gateway in parallel. Never sends abort, reset or send.

    Exit 0: nothing needs action; 1: a session needs recovery (zombie, live_overdue);
    2: a gateway is unreachable or misconfigured; 64: usage or config error.
    """
    settings = _settings()
    reports = run_check(_fleet(fleet, settings), settings)
    if as_json:
        doc = {"gateways": [r.model_dump(mode="json") for r in reports]}
        print_json(doc)
    else:
        from supervisor.render import render_check

        render_check(_out(), reports, all_rows=all_rows)
    return int(check_exit_code(reports))


@app.command()
def heal(
    fleet: FleetOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Detect and audit; send nothing mutating.")
    ] = False,
    as_json: JsonOption = False,
) -> int:
    """One-shot detection plus the full recovery ladder, inline, without a worker.

    Same code, leases, counters and audit as the worker. Without SUPERVISOR_REDIS_URL it uses
    the embedded Redis under the state dir (the one `up` runs, or its own).
    Exit 0: all healthy afterwards; 1: something left unhealed or escalated; 2: a gateway is
    unreachable; 64: usage or config error.
    """
    from supervisor.recovery.runtime import build_engine, redis_url_for
    from supervisor.recovery.runtime import heal as heal_fleet
    from supervisor.render import render_actions, render_check

    settings = _settings()
    chosen = _fleet(fleet, settings)
    with redis_url_for(settings) as url:
        engine = build_engine(settings, url, fleet_path=Path(chosen.path), dry_run=dry_run)
        try:
            with progress("healing gateways", len(chosen.gateways)) as advance:
                actions = heal_fleet(
                    engine,
                    [g.name for g in chosen.gateways],
                    concurrency=settings.check_concurrency,
                    on_done=advance,
                )
        finally:
            engine.store.close()
    reports = run_check(chosen, settings)
    if as_json:
        doc = {
            "actions": [a.action() for a in actions],
            "gateways": [r.model_dump(mode="json") for r in reports],
        }
        print_json(doc)
    else:
        render_actions(_out(), [a.action() for a in actions])
        render_check(_out(), reports, all_rows=False)
    return int(check_exit_code(reports))


@app.command()
def recover(
    gateway: Annotated[str, typer.Argument(help="Gateway name as in the fleet file.")],
    key: Annotated[str, typer.Argument(help="Session key, e.g. agent:main:main.")],
    fleet: FleetOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Detect and audit; send nothing mutating.")
    ] = False,
    as_json: JsonOption = False,
) -> int:
    """Run one session through the ladder now (same checks, lease, counters and audit).

    Skips the backoff wait (you asked), not the safety checks: a live or healthy session is
    left alone, and an escalated one needs `clear` first. Exit 0: healthy afterwards;
    1: still needs recovery; 2: the gateway failed; 64: unknown gateway or config error.
    """
    import asyncio

    from supervisor.gateway.identity import identity_for
    from supervisor.recovery.runtime import build_engine, redis_url_for, run_ladder
    from supervisor.render import render_actions
    from supervisor.scan import check_fleet

    settings = _settings()
    chosen = _fleet(fleet, settings)
    try:
        spec = chosen.gateway(gateway)
    except KeyError:
        raise ConfigError(f"{chosen.path}: no gateway named {gateway!r}") from None
    with redis_url_for(settings) as url:
        engine = build_engine(settings, url, fleet_path=Path(chosen.path), dry_run=dry_run)
        try:
            actions = run_ladder(engine, gateway, only_key=key)
        finally:
            engine.store.close()
    (report,) = asyncio.run(check_fleet([spec], identity_for(settings)))
    session = next((s for s in report.sessions if s.key == key), None)
    if as_json:
        doc = {
            "actions": [a.action() for a in actions if a.key in (key, None)],
            "session": session.model_dump(mode="json") if session else None,
            "gateway": report.model_dump(mode="json", exclude={"sessions"}),
        }
        print_json(doc)
    else:
        render_actions(_out(), [a.action() for a in actions if a.key in (key, None)])
        if session is None:
            _out().print(f"{gateway} {key}: not listed by the gateway")
        else:
            _out().print(f"{gateway} {key}: {session.verdict} ({session.reason})")
    if report.error:
        return int(Exit.GATEWAY_FAILED)
    return int(Exit.NEEDS_ACTION if session is not None and session.needs_action else Exit.OK)


@app.command()
def status(
    fleet: FleetOption = None,
    as_json: JsonOption = False,
    watch: Annotated[
        float | None,
        typer.Option("--watch", "-w", help="Redraw every N seconds until Ctrl-C.", min=0.5),
    ] = None,
) -> int:
    """Per gateway, from the scans recorded in Redis: reachable, protocol, sessions by verdict,
    sessions under recovery or escalated, breakers, age of the last scan. Reads Redis only."""
    from rich.live import Live

    from supervisor.recovery.runtime import redis_url_for
    from supervisor.state import StateStore
    from supervisor.status import gateway_status, render_status

    settings = _settings()
    names: list[str] | None = None
    chosen = fleet or settings.fleet
    if chosen is not None:
        names = [g.name for g in _load_fleet(chosen).gateways]
    with redis_url_for(settings) as url, StateStore.from_url(url, prefix=settings.key_prefix) as st:
        rows = gateway_status(st, names)
        if as_json:
            print_json({"gateways": rows})
            return 0
        if watch is None:
            _out().print(render_status(rows))
            return 0
        with (
            Live(render_status(rows), console=_out(), refresh_per_second=4) as live,
            contextlib.suppress(KeyboardInterrupt),
        ):
            while True:
                time.sleep(watch)
                live.update(render_status(gateway_status(st, names)))
    return 0


def _audit_operator(
    store: Any, gateway: str, key: str | None, step: str, outcome: str, detail: str
) -> None:
    """Audit what an operator did from the command line."""
    from supervisor.state import AuditRecord

    store.audit.append(
        AuditRecord(
            ts_ms=int(time.time() * 1000),
            gateway=gateway,
            key=key,
            step=step,
            outcome=outcome,
            detail=f"{detail} (by an operator)",
        )
    )


@contextlib.contextmanager
def _state(settings: Settings) -> Iterator[Any]:
    """The state store on the configured (or embedded) Redis."""
    from supervisor.recovery.runtime import redis_url_for
    from supervisor.state import StateStore

    with redis_url_for(settings) as url, StateStore.from_url(url, prefix=settings.key_prefix) as st:
        yield st


@app.command()
def incidents(as_json: JsonOption = False) -> int:
    """List open incidents (one per dedup key: gateway/session or gateway), and silences."""
    from supervisor.render import render_incidents

    settings = _settings()
    with _state(settings) as st:
        open_ = [i.model_dump(mode="json", exclude={"leases"}) for i in st.incidents.list_open()]
        silences = [s.model_dump(mode="json") for s in st.silences.list()]
    if as_json:
        print_json({"incidents": open_, "silences": silences})
    else:
        render_incidents(_out(), open_, silences)
    return 0


@app.command()
def silence(
    target: Annotated[str, typer.Argument(help="GATEWAY, or GATEWAY/SESSION_KEY.")],
    duration: Annotated[
        str, typer.Option("--for", help="How long, e.g. 30m, 2h (it expires by itself).")
    ] = "2h",
    reason: Annotated[str, typer.Option("--reason", help="Why (kept in the audit).")] = "",
    actions: Annotated[
        bool, typer.Option("--actions", help="Also stop recovery actions, not only paging.")
    ] = False,
) -> int:
    """Suppress paging (and with --actions, recovery) for a gateway or one session."""
    from supervisor.core.durations import parse_duration

    try:
        seconds = parse_duration(duration)
    except ValueError as exc:
        raise ConfigError(f"--for {duration!r}: {exc}") from None
    settings = _settings()
    with _state(settings) as st:
        made = st.silences.silence(
            target, seconds, reason or "no reason given", also_actions=actions
        )
        _audit_operator(
            st, made.gateway, made.key, "silence",
            "silenced" + ("_with_actions" if actions else ""), f"for {duration}: {made.reason}",
        )  # fmt: skip
    _err().print(f"silenced {made.target} for {duration}" + (" (actions too)" if actions else ""))
    return 0


@app.command()
def unsilence(
    target: Annotated[str, typer.Argument(help="GATEWAY or GATEWAY/SESSION_KEY.")],
) -> int:
    """Lift a silence before it expires."""
    from supervisor.state.silences import parse_target

    settings = _settings()
    with _state(settings) as st:
        lifted = st.silences.unsilence(target)
        if lifted:
            gateway, key = parse_target(target)
            _audit_operator(st, gateway, key, "silence", "unsilenced", "lifted by an operator")
    _err().print(f"{target}: " + ("silence lifted" if lifted else "no silence"))
    return 0 if lifted else 1


@app.command()
def audit(
    as_json: JsonOption = False,
    limit: Annotated[int, typer.Option("--limit", "-n", help="Newest records to show.")] = 50,
    gateway: Annotated[
        str | None, typer.Option("--gateway", "-g", help="Only this gateway's records.")
    ] = None,
    key: Annotated[
        str | None,
        typer.Option("--key", "-k", help="Only this session's records (its recoveries' story)."),
    ] = None,
) -> int:
    """Print the audit trail (the durable record of every decision and action).

    With -g/-k it looks back through the whole stream for that gateway's or session's records:
    the story of a recovery Flower no longer holds (a page names the command)."""
    from supervisor.recovery.runtime import redis_url_for
    from supervisor.render import render_audit
    from supervisor.state import AuditRecord, StateStore

    def wanted(r: AuditRecord) -> bool:
        return (gateway is None or r.gateway == gateway) and (key is None or r.key == key)

    settings = _settings()
    with redis_url_for(settings) as url, StateStore.from_url(url, prefix=settings.key_prefix) as st:
        if gateway is None and key is None:
            records = st.audit.tail(limit)
        else:
            records = st.audit.newest_matching(wanted, limit)
    docs = [r.model_dump(mode="json", exclude_none=True) for r in records]
    if as_json:
        print_json({"records": docs})
    else:
        render_audit(_out(), docs)
    return 0


@app.command()
def clear(
    gateway: Annotated[str, typer.Argument(help="Gateway name as in the fleet file.")],
    key: Annotated[str, typer.Argument(help="Session key, e.g. agent:main:main.")],
) -> int:
    """Operator's "try again": close the session's episode (attempts, escalation, heal budget)
    and resolve its incident; the next scan decides afresh."""
    from supervisor.recovery.closing import close_episode
    from supervisor.recovery.runtime import build_engine, redis_url_for

    settings = _settings()
    with redis_url_for(settings) as url:
        engine = build_engine(settings, url)
        st = engine.store
        episode = st.episodes.open_episodes(gateway).get(key)
        flapping = st.budgets.is_flapping(gateway, key)
        if episode is None and not flapping:
            _err().print(f"{gateway} {key}: no open episode (nothing to clear)")
            return 1
        resolved = close_episode(
            engine, gateway, key, episode.session_id if episode else None,
            healed=False, forget_budget=True,
        )  # fmt: skip
        _audit_operator(
            st, gateway, key, "clear", "operator_cleared",
            "attempts, escalation and heal budget cleared"
            + ("; incident resolved" if resolved else ""),
        )  # fmt: skip
    _err().print(f"{gateway} {key}: cleared; the next scan decides afresh")
    return 0


@app.command()
def up(
    fleet: FleetOption = None,
    logs: Annotated[
        bool,
        typer.Option("--logs", help="Stream every process's log lines instead of the summary."),
    ] = False,
) -> int:
    """Run Redis (embedded unless SUPERVISOR_REDIS_URL), a worker, beat and Flower.

    With no fleet file it runs a demo fleet of simulated gateways holding zombies, scanned every
    10 s, so you can watch them healed in Flower. The terminal shows a compact summary; each
    process logs to <state dir>/logs/<name>.log. Ctrl-C or SIGTERM stops everything.
    """
    from supervisor.state.connection import mask_url
    from supervisor.up import Plan, run_up

    def announce(plan: Plan) -> None:
        _err().print(f"fleet:  {plan.fleet}", highlight=False)
        _err().print(f"redis:  {mask_url(plan.redis_url)}", highlight=False)
        _err().print(f"flower: {plan.flower_url}  (user {plan.flower_user})", highlight=False)
        if plan.password_generated:
            _err().print(f"flower password (shown once): {plan.flower_password}", highlight=False)
        _err().print(f"metrics: {plan.metrics_url}  (same password)", highlight=False)
        _err().print("audit:  lane-supervisor audit   (Ctrl-C stops everything)", highlight=False)

    return run_up(_settings(), fleet, announce=announce, stream_logs=logs, console=_err())


@app.command()
def metrics() -> int:
    """Serve Prometheus /metrics for every worker process (SUPERVISOR_METRICS_DIR), basic auth.

    Listens on SUPERVISOR_METRICS_ADDRESS:SUPERVISOR_METRICS_PORT (default 127.0.0.1:9808);
    needs SUPERVISOR_METRICS_PASSWORD. SIGTERM or Ctrl-C stops it.
    """
    import signal
    import threading

    from supervisor.exporter import serve

    settings = _settings()
    if settings.metrics_password is None:
        raise ConfigError("set SUPERVISOR_METRICS_PASSWORD: /metrics is served with basic auth")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        serve(
            settings.metrics_address,
            settings.metrics_port,
            settings.metrics_user,
            settings.metrics_password.get_secret_value(),
            metrics_dir=settings.metrics_dir,
            stop=stop,
        )
    return 0


@app.command()
def simulate(
    directory: Annotated[
        Path, typer.Option("--dir", help="Where to write fleet.toml and its token file.")
    ] = Path("./simulated-fleet"),
    gateways: Annotated[
        int, typer.Option(help="Bulk gateways to add (0: only the demo pair).")
    ] = 0,
    sessions: Annotated[int, typer.Option(help="Sessions per bulk gateway.")] = 100,
    port: Annotated[int, typer.Option(help="Loopback port (0: any free one).")] = 0,
    stale_after: Annotated[str, typer.Option(help="stale_after written to the fleet file.")] = "0s",
) -> int:
    """Run simulated gateways (both versions, with zombies) until Ctrl-C, and write a fleet file."""
    import signal
    import threading

    from supervisor.simulator import SimulatorServer
    from supervisor.simulator.demo import populate_bulk, populate_demo, write_fleet

    server = SimulatorServer(port=port)
    populate_demo(server)
    if gateways:
        populate_bulk(server, gateways, sessions)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with server.running():
        path = write_fleet(server, directory, stale_after=stale_after)
        _err().print(f"simulating {len(server.gateways)} gateways on port {server.port}")
        _err().print(f"fleet file: {path}   (lane-supervisor check --fleet {path})")
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()
    return 0


@app.command()
def demo(
    as_json: JsonOption = False,
) -> int:
    """Start the simulated demo fleet, check it, and show what the supervisor sees."""
    import tempfile

    from supervisor.render import render_check
    from supervisor.simulator import SimulatorServer
    from supervisor.simulator.demo import populate_demo, write_fleet

    server = SimulatorServer()
    populate_demo(server)
    with server.running(), tempfile.TemporaryDirectory() as tmp:
        fleet = _load_fleet(write_fleet(server, Path(tmp), stale_after="20m"))
        settings = _settings(state_dir=Path(tmp) / "state")
        reports = run_check(fleet, settings)
    if as_json:
        print_json({"gateways": [r.model_dump(mode="json") for r in reports]})
    else:
        render_check(_out(), reports, all_rows=True)
    return int(check_exit_code(reports))


fleet_app = typer.Typer(help="Fleet file commands.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(fleet_app, name="fleet")


@fleet_app.command("validate")
@app.command("fleet-validate", hidden=True)
def fleet_validate(path: Annotated[Path, typer.Argument(help="Fleet file to check.")]) -> int:
    """Validate a fleet file (tokens and paging included) and print the gateways it names."""
    fleet = _load_fleet(path)
    for spec in fleet.gateways:
        _out().print(f"{spec.name}\t{spec.url}")
    _err().print(f"{path}: {len(fleet.gateways)} gateway(s), valid")
    return 0


@app.command()
def version() -> None:
    """Print the version."""
    _out().print(__version__)


def main(argv: list[str] | None = None) -> None:
    """Entry point: maps errors to exit codes, never shows a traceback for expected ones."""
    try:
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:  # --help and friends
        raise SystemExit(exc.exit_code) from None
    except click_exc.UsageError as exc:
        _err().print(f"usage error: {exc.format_message()}", highlight=False)
        raise SystemExit(Exit.USAGE) from None
    except ConfigError as exc:
        _err().print(f"error: {exc}", highlight=False, markup=False)
        raise SystemExit(Exit.USAGE) from None
    except StateError as exc:
        _err().print(f"error: {exc}", highlight=False, markup=False)
        raise SystemExit(Exit.GATEWAY_FAILED) from None
    except typer.Abort:
        raise SystemExit(130) from None
    raise SystemExit(int(code) if isinstance(code, int) else 0)
