"""Process settings, from the environment (prefix SUPERVISOR_) or a .env file."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "lane-supervisor"


class Settings(BaseSettings):
    """Settings of one supervisor process (CLI, worker, beat). Thresholds live in the fleet file."""

    model_config = SettingsConfigDict(
        env_prefix="SUPERVISOR_", env_file=".env", extra="ignore", frozen=True
    )

    redis_url: SecretStr | None = Field(
        None,
        description="Redis URL for locks, counters, audit and the Celery broker; unset: `up` and "
        "`heal` start an embedded server under the state dir.",
    )
    fleet: Path | None = Field(None, description="Path of the fleet file (TOML).")
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Where the device identity (mode 0600; unless `SUPERVISOR_DEVICE_KEY_FILE` "
        "names a shared one) and embedded Redis data live.",
    )
    device_key_file: Path | None = Field(
        None,
        description="The device identity's Ed25519 private key (PEM, mode 0600), read and never "
        "made: mount the same file on every host so all are one device, approved once per "
        "remote gateway. Unset: `<state dir>/device-ed25519.pem`, made on first use (one device "
        "per state dir).",
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING, ERROR.")
    log_json: bool = Field(False, description="Write logs as JSON lines.")
    key_prefix: str = Field("ls:", description="Prefix of every Redis key the supervisor writes.")
    dry_run: bool = Field(False, description="Global dry run: detect and audit, send nothing.")
    beat_max_loop_interval_s: float = Field(
        5.0, gt=0, description="Longest sleep of the beat between schedule checks."
    )
    beat_batch_s: float = Field(
        0.5,
        ge=0,
        description="Shortest sleep of the beat between ticks: every scan due by then goes "
        "out in one batch (one read of each, one write of all), so a scan may leave up to this "
        "late; 0 ticks for every due scan as redbeat does.",
    )
    beat_lock_timeout_s: float = Field(
        60.0,
        gt=0,
        description="How long the beat lock outlives a dead beat before another beat takes over.",
    )
    fleet_reload_s: float = Field(
        10.0, gt=0, description="How often beat re-reads the fleet file for added/removed gateways."
    )
    paging_tick_s: float = Field(
        30.0, gt=0, description="How often beat re-notifies and redelivers pages (paging tick)."
    )
    max_step_deliveries: int = Field(
        3,
        ge=1,
        description="A step task delivered more often than this (it keeps crashing its "
        "worker) is given up and its session escalated.",
    )
    lease_ttl_s: float = Field(
        300.0, gt=0, description="Lease on one session during one recovery attempt."
    )
    lease_margin_s: float = Field(
        2.0,
        gt=0,
        description="A step stops sending this long before its lease's TTL runs out (measured "
        "on the monotonic clock from before the lease was renewed), so a paused holder never "
        "acts after its lease could have passed to another worker (at most a tenth of the TTL).",
    )
    step_time_limit_s: float = Field(
        120.0,
        gt=0,
        description="Hard time limit of one recovery step task (the soft limit is three "
        "quarters of it). With act_window it must stay below the lease TTL: a worker refuses "
        "to start otherwise.",
    )
    wait_replicas: int = Field(
        1,
        ge=0,
        description="When the Redis server has replicas, this many (at most those connected) "
        "must acknowledge each fencing-token increment and step claim (WAIT) before the "
        "step goes on; 0 never waits.",
    )
    wait_timeout_s: float = Field(
        1.0,
        gt=0,
        description="Longest WAIT for replicas; fewer acknowledgements in time and the step "
        "does not act (retried by a later scan).",
    )
    verify_delay_s: float = Field(
        1.0, ge=0, description="Pause before verifying, for the gateway to settle."
    )
    flower_address: str = Field("127.0.0.1", description="Address Flower listens on (`up`).")
    flower_port: int = Field(5555, ge=1, le=65535, description="Flower's port (`up`).")
    flower_user: str = Field("admin", description="Flower basic-auth user (`up`).")
    flower_password: SecretStr | None = Field(
        None,
        description="Flower basic-auth password; unset: `up` generates one and prints it once.",
    )
    flower_max_tasks: int = Field(
        100_000,
        ge=1,
        description="Tasks Flower keeps in memory, the least recently heard of dropped first "
        "(Flower's --max_tasks, its own default). With periodic_events off only steps, "
        "escalations and page deliveries take room (README, Flower at fleet scale).",
    )
    periodic_events: bool = Field(
        False,
        description="Celery task events for the periodic tasks beat sends (scan_gateway, "
        "page_tick), so Flower lists them; off, Flower's memory keeps recoveries and pages "
        "rather than the last minutes of scans (~16 a second at 1,000 gateways). Read by "
        "workers and beat alike.",
    )
    summary_interval_s: float = Field(
        5.0,
        gt=0,
        description="How often `up` reads its summary from Redis: a terminal's live view is "
        "redrawn; other output (CI, a pipe) gets each new action and page, and the counts "
        "line when it changed or else every 12 intervals.",
    )
    metrics_dir: Path | None = Field(
        None,
        description="Where worker processes write Prometheus samples (one subdirectory per "
        "host) for `lane-supervisor metrics` to serve; unset: metrics stay in each process.",
    )
    metrics_address: str = Field(
        "127.0.0.1", description="Address `lane-supervisor metrics` listens on."
    )
    metrics_port: int = Field(9808, ge=1, le=65535, description="Port of /metrics.")
    metrics_user: str = Field("metrics", description="Basic-auth user of /metrics.")
    metrics_password: SecretStr | None = Field(
        None,
        description="Basic-auth password of /metrics; `metrics` refuses to start without one "
        "(`up` uses Flower's).",
    )
    worker_concurrency: int = Field(
        4,
        ge=1,
        description="Threads (or processes) of the worker `up` starts for the `scan` queue.",
    )
    worker_pool: Literal["threads", "prefork"] = Field(
        "threads",
        description="Pool of the `scan` worker `up` starts: threads (one process, ~100 MB) or "
        "prefork (a process per slot, ~90 MB each, and more than one core).",
    )
    act_concurrency: int = Field(
        2,
        ge=1,
        description="Processes (or threads) of the worker `up` starts for the `act` queue alone "
        "(steps and escalations never wait behind scans).",
    )
    act_workers: int = Field(
        1,
        ge=1,
        description="How many `act` workers `up` starts (each one process of `act_concurrency` "
        "threads): a threads process uses at most one core, ~40 steps a second here "
        "(BENCHMARKS.md); each more costs ~100 MB.",
    )
    act_pool: Literal["threads", "prefork"] = Field(
        "prefork",
        description="Pool of the `act` worker `up` starts: prefork (default: a process per "
        "slot, so Celery's hard time limit can kill a hung step and a step that kills its "
        "process is redelivered, as the chaos suite proves) or threads (one process, ~100 MB "
        "less, at most one core for every step, no hard time limit; BENCHMARKS.md).",
    )
    page_concurrency: int = Field(
        2,
        ge=1,
        description="Threads of the worker `up` starts for the `page` queue (deliveries, each "
        "bounded by its provider's retry.deadline).",
    )
    check_concurrency: int = Field(
        32, ge=1, description="Gateways scanned at once by one-shot commands (check)."
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings of this process, read once."""
    return Settings()
