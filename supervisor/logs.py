"""Log setup for every process: plain or JSON lines, each recovery line carrying its context.

Lines about a recovery carry `gateway`, `key`, `step` and `recovery_id` (passed with `extra=`);
in JSON mode they are fields, in plain mode they are appended as `key=value`. The formatter is a
few lines of our own rather than a dependency: the stdlib record already holds everything.
Celery is told not to take over the root logger (`worker_hijack_root_logger = False`), and its
`setup_logging` signal is connected so workers and beat use this same setup.
`LogFollower` streams the per-process log files of `up` (`up --logs`).
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

#: context fields a log call may pass with `extra=`
CONTEXT_FIELDS = ("gateway", "key", "step", "recovery_id", "outcome")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, context, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                doc[name] = value
        if record.exc_info:
            doc["exception"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str)


class ContextFormatter(logging.Formatter):
    """The usual text line, with the recovery context appended as key=value pairs."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        context = [
            f"{name}={getattr(record, name)}"
            for name in CONTEXT_FIELDS
            if getattr(record, name, None) is not None
        ]
        return f"{line} [{' '.join(context)}]" if context else line


def setup_logging(level: str = "INFO", *, json_lines: bool = False) -> None:
    """Configure the root logger once for this process (stderr)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter()
        if json_lines
        else ContextFormatter("[%(asctime)s: %(levelname)s/%(processName)s] %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


class LogFollower(threading.Thread):
    """Copies the new lines of each named log file to stderr, `name | line`, as they are
    written (`up --logs`: the children write their files, this streams them)."""

    def __init__(self, logs: dict[str, Path], stop: threading.Event, every_s: float) -> None:
        super().__init__(daemon=True, name="up-logs")
        self._logs = logs
        self._stop_event = stop
        self._every = every_s
        self._offsets = dict.fromkeys(logs, 0)
        self._partial = dict.fromkeys(logs, b"")

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.drain()
            self._stop_event.wait(self._every)
        self.drain()

    def drain(self) -> None:
        width = max(map(len, self._logs))
        for name, path in self._logs.items():
            try:
                with path.open("rb") as f:
                    f.seek(self._offsets[name])
                    chunk = f.read()
            except OSError:
                continue
            self._offsets[name] += len(chunk)
            *done, self._partial[name] = (self._partial[name] + chunk).split(b"\n")
            for raw in done:
                line = raw.decode(errors="replace")
                print(f"{name:<{width}} | {line}", file=sys.stderr, flush=True)
