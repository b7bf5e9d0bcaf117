"""A delivery has a total deadline: a provider that trickles bytes or never answers is cut off."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from supervisor.escalation.config import RetryPolicy
from supervisor.escalation.http import HttpPoster
from supervisor.escalation.models import Action, DeliveryStatus


@contextmanager
def slow_server(mode: str) -> Iterator[str]:
    """A loopback HTTP server that `trickle`s a response a byte at a time (each byte well
    within the read timeout), or is `silent` after reading the request."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            reply = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 100000
            for byte in reply:
                if stop.wait(0.05 if mode == "trickle" else 3600):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stop.set()
        listener.close()


@pytest.mark.parametrize("mode", ["trickle", "silent"])
def test_a_delivery_ends_at_its_deadline(mode: str) -> None:
    policy = RetryPolicy(max_tries=4, base=0.05, cap=5, timeout=2, deadline=1.0)
    poster = HttpPoster("slow", policy)
    done: list[object] = []

    def post() -> None:
        done.append(poster.post(url, b"{}", {}, action=Action.TRIGGER, dedup_key="gw/k"))

    with slow_server(mode) as url:
        started = time.monotonic()
        worker = threading.Thread(target=post, daemon=True)
        worker.start()
        worker.join(15)  # the bound of this test, not of the mechanism
        elapsed = time.monotonic() - started
    poster.close()
    assert done, f"the delivery was still running after {elapsed:.1f}s"
    (result,) = done
    assert result.status is DeliveryStatus.RETRYABLE  # type: ignore[attr-defined]
    assert "deadline" in str(result.reason)  # type: ignore[attr-defined]
    assert elapsed < policy.deadline + 0.5, f"took {elapsed:.2f}s, deadline {policy.deadline}s"
