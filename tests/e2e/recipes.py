"""Sessions of every kind on a real gateway: idle, hung, zombies (the production recipe)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from supervisor.gateway.client import GatewayClient
from tests.e2e.common import (
    HANG_MARKER,
    RECONCILING_LINES,
    REPLAYS_AT_RESTART,
    HarnessError,
    session_key,
)
from tests.e2e.gateway import GatewayProcess
from tests.e2e.rows import (
    create_session,
    finished,
    list_raw_rows,
    running,
    send_message,
    wait_for_rows,
)


def hung_message(key: str) -> str:
    """The message `make_hung` sends: the fake model never answers it."""
    return f"[{key}] please wait: {HANG_MARKER}"


@dataclass(frozen=True)
class ZombieOutcome:
    """What a kill and restart made of the hung runs."""

    #: rows `running` whose run is dead (no active run on 2026.9.6; started before the boot)
    zombies: tuple[str, ...]
    #: 2026.9.6 only: the interrupted session the gateway replays (a live run, not a zombie)
    replaying: tuple[str, ...]
    #: seconds from the kill to a settled listing
    seconds: float


class RealGateway(GatewayProcess):
    """A real gateway plus the recipes that give it sessions of every kind."""

    async def deliver(
        self,
        client: GatewayClient,
        key: str,
        message: str,
        *,
        timeout: float = 60.0,
        lost_after: float = 4.0,
        attempts: int = 3,
    ) -> str:
        """Send `message` (it must contain `[key]`) and wait until its turn reached the model.

        2026.3.24 sometimes drops a `sessions.send` that it answered `started` (no run, nothing
        in the transcript, no log line), seen when sends to several new sessions follow each
        other closely. A send whose row, `lost_after` seconds later, is neither running nor
        shows a run started since the send is sent again (recorded in `lost_sends`). (2026.9.6
        keeps a fresh gateway's first turn `running` with `startedAt: null` for seconds before
        it reaches the model.) Returns the delivered run id.
        """
        tag = f"[{key}]"
        if tag not in message:
            raise HarnessError(f"deliver: the message must contain {tag!r} to be recognised")
        for _ in range(attempts):
            already = sum(tag in r.prompt for r in self.model.requests())
            sent_ms = client.gateway_now_ms()
            run_id = await send_message(client, key, message)
            sent = time.monotonic()
            while True:
                if sum(tag in r.prompt for r in self.model.requests()) > already:
                    return run_id
                waited = time.monotonic() - sent
                if waited > timeout:
                    raise HarnessError(
                        f"{self}: the turn sent to {key} never reached the model in {timeout:g}s"
                    )
                if waited > lost_after:
                    row = (await list_raw_rows(client)).get(key) or {}
                    started = row.get("startedAt")
                    working = row.get("status") == "running" or row.get("hasActiveRun") is True
                    ran = isinstance(started, int | float) and started >= sent_ms - 1000
                    if not working and not ran:
                        self.lost_sends.append((key, run_id))
                        break
                await asyncio.sleep(0.1)
        raise HarnessError(f"{self}: {attempts} sends to {key} were all dropped by the gateway")

    def make_created(self, *names: str) -> list[str]:
        """Sessions created and never sent anything (no status: verdict `idle`)."""
        keys = [session_key(n) for n in names]

        async def go() -> None:
            async with self.client() as client:
                for key in keys:
                    await create_session(client, key)

        self._run(go())
        return keys

    def make_idle(self, *names: str, timeout: float = 60.0) -> list[str]:
        """Sessions whose one normal turn finished (verdict `idle`); returns their keys."""
        keys = [session_key(n) for n in names]

        async def go() -> None:
            async with self.client() as client:
                for key in keys:
                    await create_session(client, key)
                    await self.deliver(client, key, f"[{key}] hello, answer briefly")
                await wait_for_rows(
                    client,
                    lambda rows: all(finished(rows.get(k)) for k in keys),
                    timeout=timeout,
                    what=f"turns of {keys} to finish",
                )

        self._run(go())
        return keys

    def make_hung(self, *names: str, timeout: float = 60.0) -> list[str]:
        """Sessions with a live run that never ends (the fake holds its model request)."""
        keys = [session_key(n) for n in names]

        async def go() -> None:
            async with self.client() as client:
                for key in keys:
                    await create_session(client, key)
                    await self.deliver(client, key, hung_message(key))
                await wait_for_rows(
                    client,
                    lambda rows: all(running(rows.get(k)) for k in keys),
                    timeout=timeout,
                    what=f"runs of {keys} to show as running",
                )

        self._run(go())
        self.model.wait_for(
            lambda reqs: all(
                any(r.state == "hanging" and f"[{k}]" in r.prompt for r in reqs) for k in keys
            ),
            timeout=timeout,
            what=f"model requests of {keys} to hang",
        )
        return keys

    def make_zombies(
        self,
        *names: str,
        age_before_kill: float = 6.5,
        settle_timeout: float = 90.0,
    ) -> ZombieOutcome:
        """Hang runs for `names`, SIGKILL the gateway, start it again.

        Every run hung at the kill is interrupted, not only these. `age_before_kill` keeps the
        runs' startedAt at least that long before the new boot (the supervisor's `boot_margin`
        is 5 s by default). On 2026.3.24 every such row stays a zombie; on 2026.9.6 the gateway
        replays the first interrupted session in key order, which hangs again on the fake, and
        the rest stay zombies. Returns once the rows have settled into that shape.
        """
        if self.version in RECONCILING_LINES:
            raise HarnessError(
                f"{self.version} marks interrupted rows failed at restart: no zombie to make "
                "this way (make_dead_in_process makes the zombies this line has)"
            )
        keys = self.make_hung(*names)
        rows = self.rows()
        newest = max(float(rows[k].get("startedAt") or time.time() * 1000) for k in keys)
        wait = newest / 1000 + age_before_kill - time.time()
        if wait > 0:
            time.sleep(wait)
        interrupted = sorted(k for k, row in rows.items() if running(row))
        began = time.monotonic()
        self.restart()
        expect_replay = self.version in REPLAYS_AT_RESTART
        replaying = interrupted[:1] if expect_replay else []
        zombies = [k for k in interrupted if k not in replaying]

        def settled(rows: dict[str, dict[str, Any]]) -> bool:
            if not all(running(rows.get(k)) for k in interrupted):
                return False
            if not expect_replay:
                return True
            return all(
                rows[k].get("hasActiveRun") is False and rows[k].get("activeRunIds") == []
                for k in zombies
            ) and all(
                rows[k].get("hasActiveRun") is True and rows[k].get("activeRunIds") is None
                for k in replaying
            )

        async def go() -> None:
            async with self.client() as client:
                await wait_for_rows(
                    client,
                    settled,
                    timeout=settle_timeout,
                    what="the restart to settle (zombies idle-less, the replay running)",
                )

        self._run(go())
        return ZombieOutcome(
            zombies=tuple(zombies),
            replaying=tuple(replaying),
            seconds=round(time.monotonic() - began, 2),
        )

    def make_tombstoned(self, name: str, *, max_boots: int = 8, timeout: float = 60.0) -> str:
        """A session 2026.9.6's restart recovery gave up on (openclaw #146692's line on 9.6).

        Hang a run, then SIGKILL the gateway again each time its restart recovery starts
        replaying the interrupted turn ("started interrupted main session"), before the replay's
        turn reaches the model. After 3 such replays without a started turn the next boot
        tombstones the session (measured): `status: "failed"`, `abortedLastRun: false`,
        `restartRecoveryStatus: "tombstoned"`, and every `sessions.send`, `chat.send` and
        `agent` to it is refused with INVALID_REQUEST "... ended during restart recovery. Use
        /new or /reset to start a replacement session." Needs a gateway with no other running
        session (the replay takes them one at a time, in key order). Returns the key.
        """
        if self.version not in REPLAYS_AT_RESTART:
            raise HarnessError(f"{self.version} does not replay interrupted turns at restart")
        others = [k for k, row in self.rows().items() if running(row)]
        if others:
            raise HarnessError(f"make_tombstoned needs a gateway with no running session: {others}")
        (key,) = self.make_hung(name)
        started = float(self.rows()[key].get("startedAt") or time.time() * 1000)
        wait = started / 1000 + 1.0 - time.time()
        if wait > 0:
            time.sleep(wait)
        replaying = f"started interrupted main session: {key}"
        for _ in range(max_boots):
            self.kill()
            offset = self.console_log.stat().st_size if self.console_log.exists() else 0
            self.start()
            deadline = time.monotonic() + timeout
            next_read = 0.0
            while time.monotonic() < deadline:
                if replaying in self._console_since(offset):
                    break  # killed before the replay's turn starts: the attempt is charged
                if time.monotonic() >= next_read:
                    # the boot that gives up logs nothing on the console (measured): read the row
                    if self.rows().get(key, {}).get("restartRecoveryStatus") == "tombstoned":
                        return key
                    next_read = time.monotonic() + 1.0
                time.sleep(0.02)
            else:
                raise HarnessError(f"{self}: no replay of {key} and no tombstone in {timeout:g}s")
        raise HarnessError(f"{self}: {key} not tombstoned after {max_boots} interrupted replays")

    def make_dead_in_process(self, *names: str, timeout: float = 30.0) -> DeadRuns:
        """Hang runs for `names`, then let their model calls die (the fake closes each
        connection unanswered, as a crashed provider or a network reset would) while the gateway
        lives on. Returns once no run of `names` is active any more.

        Measured: 2026.5.28 leaves every such row `running` with `hasActiveRun: false`, a zombie
        inside a live process, and a restart does not reconcile it (its transcript lock was
        released); 2026.7.35 ends them `timeout`.
        """
        keys = self.make_hung(*names)
        for key in keys:
            if not self.model.drop_hung(hung_message(key)):
                raise HarnessError(f"{self}: no held model request of {key} to drop")

        async def go() -> dict[str, dict[str, Any]]:
            async with self.client() as client:
                return await wait_for_rows(
                    client,
                    lambda rows: all(rows.get(k, {}).get("hasActiveRun") is False for k in keys),
                    timeout=timeout,
                    what=f"the runs of {keys} to end after their model calls died",
                )

        rows = self._run(go())
        return DeadRuns(
            zombies=tuple(k for k in keys if running(rows[k])),
            ended=tuple(k for k in keys if not running(rows[k])),
        )

    def restart_reconciled(self, keys: tuple[str, ...], *, timeout: float = 60.0) -> float:
        """SIGKILL and start a reconciling line again; wait until the gateway marked every one
        of `keys` (runs interrupted by the kill) no longer `running`. Returns the seconds from
        the ready gateway to the last reconciled row (rows are `running`, `hasActiveRun:
        false`, until then: a zombie's shape, for a few seconds)."""
        self.restart()
        began = time.monotonic()

        async def go() -> None:
            async with self.client() as client:
                await wait_for_rows(
                    client,
                    lambda rows: all(not running(rows.get(k)) for k in keys),
                    timeout=timeout,
                    what=f"the restart to reconcile {keys}",
                )

        self._run(go())
        return round(time.monotonic() - began, 2)


@dataclass(frozen=True)
class DeadRuns:
    """What became of runs whose model calls died inside a live gateway."""

    #: rows left `running` with no active run (2026.5.28)
    zombies: tuple[str, ...]
    #: rows the gateway ended itself (`timeout` on 2026.7.35)
    ended: tuple[str, ...]
