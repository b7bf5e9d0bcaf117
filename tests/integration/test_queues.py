"""The queue layout under a stuck paging provider: steps still run within seconds.

Real processes, started with the very command lines `up` uses (supervisor.up.child_commands):
the `scan`+`act` worker, the `act` worker and the `page` worker, with beat, a real valkey and
the simulator. Four gateways are down, so four pages go to a webhook on loopback that accepts
the connection and never answers; while the page worker is stuck in them, a zombie appears on
a healthy gateway and its recovery step must be picked up within `STEP_BOUND_S`.

With every task on one queue (the layout before), the deliveries take every worker process
and the step waits for a delivery to time out: the test fails.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from supervisor.redis_server import EmbeddedRedis
from supervisor.settings import Settings
from supervisor.simulator import SimGateway, SimulatorServer, Version
from supervisor.state import StateStore
from supervisor.up import child_commands
from tests.support.procs import base_env, free_port, process, wait_for

pytestmark = pytest.mark.integration

TOKEN = "canary-queues-token-4d1e"
#: from the zombie's appearance to its first step in the audit (scan interval 1 s)
STEP_BOUND_S = 10.0
DOWN = ("down1", "down2", "down3", "down4")


class SilentWebhook:
    """Accepts connections, reads the request, never answers; counts who is waiting."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.waiting = 0
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self._held.append(conn)
                self.waiting += 1

    def close(self) -> None:
        self.listener.close()
        with self._lock:
            for conn in self._held:
                conn.close()


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis(tmp_path / "valkey") as server:
        yield server


def test_a_stuck_provider_does_not_delay_a_step(tmp_path: Path, redis: EmbeddedRedis) -> None:
    sim = SimulatorServer()
    healthy = sim.add(SimGateway("healthy", version=Version.V2026_9_6, token=TOKEN))
    hook = SilentWebhook()
    stack = ExitStack()
    stack.enter_context(sim.running())  # its port is known from here on
    stack.callback(hook.close)
    (tmp_path / "token").write_text(TOKEN)
    (tmp_path / "token").chmod(0o600)
    lines = ['[defaults]\nscan_interval = "1s"\nstale_after = "0s"\nunreachable_after = 1\n']
    lines.append(
        f'[[gateways]]\nname = "healthy"\nurl = "{sim.url("healthy")}"\ntoken_file = "token"\n'
    )
    for name in DOWN:  # nothing listens there: one scan fails, one page each
        lines.append(
            f'[[gateways]]\nname = "{name}"\nurl = "ws://127.0.0.1:{free_port()}"\n'
            'token_file = "token"\nconnect_timeout = "0.5s"\n'
        )
    lines.append(
        f'[paging]\n[paging.retry]\nmax_tries = 1\ntimeout = "120s"\ndeadline = "120s"\n'
        f'[paging.providers.slow]\ntype = "webhook"\nurl = "{hook.url}"\n'
        '[paging.default_route]\nproviders = ["slow"]\n'
    )
    fleet = tmp_path / "fleet.toml"
    fleet.write_text("\n".join(lines))
    env = base_env(
        SUPERVISOR_REDIS_URL=redis.url,
        SUPERVISOR_FLEET=str(fleet),
        SUPERVISOR_STATE_DIR=str(tmp_path / "state"),
        SUPERVISOR_BEAT_MAX_LOOP_INTERVAL_S="1",
        SUPERVISOR_VERIFY_DELAY_S="0.2",
        SUPERVISOR_PAGE_CONCURRENCY="1",
    )
    commands = child_commands(Settings(worker_concurrency=2, act_concurrency=1,
                                       page_concurrency=1))  # fmt: skip
    with stack:
        for name in ("worker", "act", "page", "beat"):
            stack.enter_context(process(commands[name], env, tmp_path / f"{name}.log"))
        # the provider holds deliveries: the page worker (and, were pages on the shared
        # queue, every worker process) sits in them
        wait_for("deliveries stuck at the provider", lambda: hook.waiting >= 1, 60)
        store = StateStore.from_url(redis.url)
        stack.callback(store.close)
        appeared = time.monotonic()
        healthy.add_zombie("agent:main:z")

        def first_step() -> float | None:
            for record in store.audit.read(2000):
                if record.key == "agent:main:z" and record.step in {"abort", "reset"}:
                    return time.monotonic() - appeared
            return None

        elapsed = wait_for("the zombie's first step", first_step, 60)
        print(f"step picked up {elapsed:.2f}s after the zombie appeared; "
              f"{hook.waiting} deliveries held by the provider")  # fmt: skip
        assert elapsed <= STEP_BOUND_S, f"step waited {elapsed:.1f}s behind stuck pages"
        assert hook.waiting >= 1  # the provider still held them all the while
        wait_for("healed", lambda: healthy.sessions["agent:main:z"].status is None, 30)
