"""Read a secret (token, routing key, webhook URL) from a file without trusting the file.

A secret file is written by hand, by a secrets manager or by a deploy tool, and any of them
can leave something odd there: a stray non-UTF-8 byte, a UTF-16 file from a Windows editor, a
path that names a FIFO or `/dev/zero`, a multi-gigabyte log by mistake. Reading it must never
hang, never exhaust memory, and above all never put a byte of its content into an error
message: Python's `UnicodeDecodeError` carries the offending bytes in its `str()` and `repr()`,
and from there they reach Celery's log line, the task-failed event Flower shows and the result
backend.

So `read_secret_file`:

* opens with `O_NONBLOCK` (a FIFO with no writer would block `open()` forever) and checks the
  *opened* descriptor with `fstat`: only a regular file is read; a FIFO, socket, device
  (`/dev/zero`, `/dev/stdin`) or directory is refused. A symlink is followed, but only to a
  regular file: Kubernetes mounts secrets as symlinks into `..data/`, so refusing symlinks
  would refuse the most common deployment, and checking the descriptor after `open` leaves no
  gap between check and read;
* reads at most `MAX_SECRET_BYTES` (64 KiB) plus one byte, and refuses a larger file;
* refuses UTF-16/UTF-32 (a BOM, or NUL bytes, which is what a UTF-16 file without a BOM looks
  like) and other control characters, and reports a UTF-8 decode error by byte offset only;
* strips surrounding whitespace (and a UTF-8 BOM), and refuses an empty result;
* logs one warning per file (per process) when group or others may read it.

Every refusal is a `SecretFileError` whose message names the file and the reason, never content.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

from supervisor.errors import ConfigError

log = logging.getLogger(__name__)

#: the largest secret file read; tokens and webhook URLs are well under 1 KiB
MAX_SECRET_BYTES = 64 * 1024

_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
#: whitespace allowed inside the file (stripped at the ends); every other C0 control is refused
_ALLOWED_CONTROLS = frozenset("\t\n\r")

_warned: set[str] = set()
_warned_lock = threading.Lock()


class SecretFileError(ConfigError):
    """A secret file that cannot be used; the message never holds a byte of its content."""

    def __init__(self, file: Path, reason: str) -> None:
        self.file = file
        self.reason = reason
        super().__init__(f"{file}: {reason}")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_secret_file(
    file: Path,
    *,
    max_bytes: int = MAX_SECRET_BYTES,
    warn_readable: bool = True,
    allow_empty: bool = False,
) -> str:
    """The secret held in `file`, stripped; `SecretFileError` (content-free) when unusable.

    `warn_readable=False, allow_empty=True` for files that are not secret but as little trusted
    (the fleet file).
    """
    try:
        fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise SecretFileError(file, f"cannot read it: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise SecretFileError(file, f"it is {_kind(info.st_mode)}; only a regular file is read")
        if info.st_size > max_bytes:
            raise SecretFileError(file, f"it is larger than {max_bytes} bytes")
        chunks: list[bytes] = []
        size = 0
        # the size may change under us (a file being written): read to the bound, not st_size
        while size <= max_bytes:
            try:
                chunk = os.read(fd, max_bytes + 1 - size)
            except OSError as exc:
                raise SecretFileError(file, f"cannot read it: {exc.strerror}") from None
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > max_bytes:
            raise SecretFileError(file, f"it is larger than {max_bytes} bytes")
    finally:
        os.close(fd)
    if warn_readable and info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        _warn_readable(file, info.st_mode)
    text = _decode(file, b"".join(chunks))
    if not text and not allow_empty:
        raise SecretFileError(file, "it is empty")
    return text


def _decode(file: Path, data: bytes) -> str:
    if data.startswith(_UTF16_32_BOMS):
        raise SecretFileError(file, "it is UTF-16 or UTF-32 (byte order mark); save it as UTF-8")
    if b"\x00" in data:
        raise SecretFileError(
            file, "it holds NUL bytes (UTF-16 without a byte order mark?); save it as UTF-8"
        )
    data = data.removeprefix(_UTF8_BOM)
    offset: int | None = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        # its str() and repr() quote the offending bytes: keep only where they are, and raise
        # outside the handler so the new error carries no __context__ pointing back at it
        offset = exc.start
    if offset is not None:
        raise SecretFileError(file, f"it is not valid UTF-8 (at byte offset {offset})")
    text = text.strip()
    for index, char in enumerate(text):
        if (ord(char) < 0x20 and char not in _ALLOWED_CONTROLS) or ord(char) == 0x7F:
            raise SecretFileError(file, f"it holds a control character (at character {index})")
    return text


def _warn_readable(file: Path, mode: int) -> None:
    key = str(file)
    with _warned_lock:
        if key in _warned:
            return
        _warned.add(key)
    log.warning(
        "secret file %s is readable by group or others (mode %o); chmod 600 it",
        file,
        stat.S_IMODE(mode),
    )
