"""The state tests' fixtures are shared ones (`tests/support/fixtures.py`); `free_port` stays
here until the shared process helpers land in `tests/support/procs.py`."""

from __future__ import annotations

import socket


def free_port() -> int:
    """A loopback port nothing listens on (a tiny race, fine for tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
