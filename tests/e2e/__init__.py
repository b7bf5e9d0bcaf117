"""End-to-end tests against real OpenClaw gateways on loopback, with a fake model that can hang.

The harness, one module per job (plain Python, no pytest; the fixtures live in `conftest.py`):

* `install`: `OpenClawInstall.locate()` finds Node and the installed openclaw packages (runs
  `scripts/ensure-openclaw.sh`, cached and near-instant once installed).
* `fake_model`: `FakeModelServer`, an OpenAI-compatible endpoint (`GET /v1/models`,
  `POST /v1/chat/completions`, streamed SSE or plain JSON). It answers at once with a short reply,
  except that it never answers (holds the request open) when the pending turn contains
  `HANG_MARKER`: that makes a run hang for as long as the test wants. `release_hung()` answers
  the held requests; `hang_enabled = False` stops holding new ones.
* `gateway`: `GatewayProcess`, one gateway of one version in a fresh HOME: config written and
  validated, started in its own process group, ready when its log says so and a client can list
  sessions. It can be SIGKILLed whole (its spawn broker included, found by `tagging`), restarted
  on the same port, and is always stopped at teardown (`stop()`, context manager, and an atexit
  sweep of every process this run started).
* `recipes`: `RealGateway`, a gateway plus `make_idle`, `make_hung`, `make_zombies`,
  `make_created`, `make_tombstoned` (2026.9.6 gives up a session's restart recovery),
  `deliver`; `lines` says what each release line does at restart.
* `rows`: async building blocks for async tests (`create_session`, `send_message`,
  `list_raw_rows`, `wait_for_rows`, `row_facts`).
* `factory`: `GatewayFactory`, independent gateways on demand, all stopped (and checked gone).
* `cli`: `write_fleet` and `run_supervisor` run the real `python -m supervisor` CLI against them.

Facts measured here (Node 24.21.0, 2 cores, offline), where they add to or differ from
shared/openclaw-gateway.md; the real gateway wins:

* `sessions.send` needs an existing session: a new key answers `INVALID_REQUEST "session not
  found"`. Create it first with `sessions.create {key}` (both versions; it runs nothing and
  leaves a row without `status`).
* A config written before the first start is kept as is by `--dev` (no dev agent is added), so
  the agent is the default `main`: keys are `agent:main:<name>` (`agent:dev:*` is refused with
  `Agent "dev" no longer exists in configuration`). Avoid `agent:main:main`, the main session.
* The provider is called with `POST /v1/chat/completions`, `stream: true`,
  `stream_options.include_usage`, a ~60 KB system prompt and ~12 tools (2026.9.6). The replay
  of an interrupted turn carries the original user message, so the fake hangs it again.
* Spawn to a working listing: 2026.9.6 about 8 s (about 11-12 s when restarting with
  interrupted turns), 2026.3.24 about 2 s. The ready lines are `[gateway] ready` and
  `[gateway] listening on ws://` (ANSI colours unless `NO_COLOR=1`).
* With `OPENCLAW_NO_RESPAWN=1`, 2026.3.24 is one `openclaw-gateway` process (without it, an
  `openclaw` parent respawns it) and, with `browser.enabled: false`, binds only its port P
  (else also P+2 for browser control). 2026.9.6 runs `openclaw-gateway` and a sqlite helper in
  its group and a spawn broker in a group of its own; all inherit the environment, which is how
  `kill()` finds the broker.
* Both write a log file under the shared `/tmp/openclaw/` unless `logging.file` is set (it is).
* Boot time: `snapshot.uptimeMs` counts from the process start, so on 2026.3.24 a run started
  less than `boot_margin` (5 s by default) before the kill is still classified `live` after the
  restart. `make_zombies` waits until the hung runs are old enough before killing.
* 2026.9.6 after the restart ("marked N startup-orphaned main session(s)"): interrupted rows get
  `abortedLastRun: true`, `hasActiveRun: false`, `activeRunIds: []` and an `updatedAt` of the
  new boot (so "quiet since" restarts with every boot); the one replayed, first in key order,
  gets `hasActiveRun: true` and, until a little after the replay really starts (log line
  "started interrupted main session", 3-5 s after the ready line), lists the replay's own run id
  in `activeRunIds` with a `startedAt` before the boot: the very shape of `held`. Then
  `activeRunIds` is omitted, and the rows stay so (watched for 200 s). `make_zombies` waits for
  that settled shape. 2026.3.24 leaves the rows as they were, `updatedAt` included.
* 2026.9.6 keeps a fresh gateway's first turn `running` with `hasActiveRun: true` and
  `startedAt: null` for up to ~4 s before it reaches the model.
* 2026.3.24 sometimes drops a `sessions.send` it answered `{"runId", "status": "started"}`: no
  run, no model call, an empty `chat.history`, a row without `status`, no log line. Seen on 1 of
  4 back-to-back create+send pairs in about half the tries, never with 1 s between sends.
  `deliver` waits for each turn to reach the model before the next send and resends a lost one.
* 2026.9.6 `sessions.list` returns at most 100 rows by default (`limitApplied`, `hasMore`,
  `nextOffset`); `rows()` pages through them with `offset`. 2026.3.24 returns every row.
* Startup network attempts (model catalog, pricing) fail in milliseconds offline; the update
  check is disabled (`update.checkOnStart: false`, `OPENCLAW_NO_AUTO_UPDATE=1`), heartbeats too
  (`agents.defaults.heartbeat.every: "0m"`), and Bonjour, channels and the canvas host by the
  environment variables documented for embedding.
"""
