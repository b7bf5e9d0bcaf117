"""The supervisor's Ed25519 device identity and the proof sent on every connect.

2026.3.24 grants no scopes to a token without a device identity, silently; loopback pairing of a
device is approved automatically, a remote gateway needs `openclaw devices approve` once. The key
is made once per state dir and kept in a 0600 file, so a gateway sees the same device every time.

Many hosts are one device when they all mount the same key (`SUPERVISOR_DEVICE_KEY_FILE`, a
secret made once with `openssl genpkey -algorithm ed25519`): each remote gateway is then
approved once for the whole deployment, not once per host. That file is only read, never made
(a secret mount is read-only, and a host that made its own key would silently be a new,
unapproved device), and read as warily as a token file: only a regular file (a symlink is
followed to one, as Kubernetes mounts secrets), nothing group or others may read, at most
`MAX_KEY_BYTES`; no error ever quotes a byte of it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from supervisor.errors import ConfigError
from supervisor.settings import Settings

KEY_FILE = "device-ed25519.pem"
#: an Ed25519 PKCS#8 PEM is 119 bytes; anything past this is not a key
MAX_KEY_BYTES = 16 * 1024


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass(frozen=True)
class DeviceIdentity:
    """An Ed25519 key pair and the device id the gateway derives from it."""

    private_key: Ed25519PrivateKey

    @property
    def public_key_raw(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )

    @property
    def device_id(self) -> str:
        return hashlib.sha256(self.public_key_raw).hexdigest()

    def __repr__(self) -> str:  # never print key material
        return f"DeviceIdentity(id={self.device_id[:12]}...)"

    def proof(
        self,
        *,
        client_id: str,
        client_mode: str,
        role: str,
        scopes: tuple[str, ...],
        token: str,
        nonce: str,
        signed_at_ms: int,
    ) -> dict[str, object]:
        """The `device` object of a connect request (v2 signature payload)."""
        payload = "|".join(
            [
                "v2",
                self.device_id,
                client_id,
                client_mode,
                role,
                ",".join(scopes),
                str(signed_at_ms),
                token,
                nonce,
            ]
        )
        signature = self.private_key.sign(payload.encode("utf-8"))
        return {
            "id": self.device_id,
            "publicKey": _b64url(self.public_key_raw),
            "signature": _b64url(signature),
            "signedAt": signed_at_ms,
            "nonce": nonce,
        }


def load_or_create_identity(state_dir: Path) -> DeviceIdentity:
    """The identity kept in `state_dir`, made (mode 0600) on first use."""
    path = state_dir / KEY_FILE
    try:
        if path.exists():
            mode = path.stat().st_mode & 0o777
            if mode & 0o077:
                raise ConfigError(
                    f"{path} is readable by others (mode {mode:o}): chmod 600 it or delete it"
                )
            key = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(key, Ed25519PrivateKey):
                raise ConfigError(f"{path} does not hold an Ed25519 private key")
            return DeviceIdentity(key)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # write aside, then link into place: link fails if another process got there first,
        # and a reader never sees a half-written key
        tmp = state_dir / f".{KEY_FILE}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        try:
            os.link(tmp, path)
        except FileExistsError:
            return load_or_create_identity(state_dir)
        finally:
            tmp.unlink(missing_ok=True)
        return DeviceIdentity(key)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot use the device identity at {path}: {exc}") from None


def identity_for(settings: Settings) -> DeviceIdentity:
    """This process's identity: the shared key file when one is named, else the state dir's."""
    if settings.device_key_file is not None:
        return load_identity_file(settings.device_key_file)
    return load_or_create_identity(settings.state_dir)


def _refuse(path: Path, reason: str) -> ConfigError:
    return ConfigError(f"cannot use the device key {path}: {reason}")


def load_identity_file(path: Path) -> DeviceIdentity:
    """The identity in `path` (an Ed25519 private key, PEM), which must exist; never made.

    Checks the opened descriptor, not the path, so a file swapped after a check is not read.
    """
    try:
        # O_NONBLOCK: a FIFO with no writer would block open() forever
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise _refuse(
            path,
            "no such file; make one with `openssl genpkey -algorithm ed25519 -out FILE` "
            "(chmod 600) and give every host the same file",
        ) from None
    except OSError as exc:
        raise _refuse(path, f"cannot read it: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _refuse(path, "it is not a regular file (a FIFO, device or directory)")
        mode = stat.S_IMODE(info.st_mode)
        if mode & 0o077:
            raise _refuse(path, f"group or others may read it (mode {mode:o}): chmod 600 it")
        data = b""
        while len(data) <= MAX_KEY_BYTES and (chunk := os.read(fd, MAX_KEY_BYTES + 1 - len(data))):
            data += chunk
    except OSError as exc:
        raise _refuse(path, f"cannot read it: {exc.strerror}") from None
    finally:
        os.close(fd)
    if len(data) > MAX_KEY_BYTES:
        raise _refuse(path, f"it is larger than {MAX_KEY_BYTES} bytes; not a key")
    key: object = None
    reason = ""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        reason = "the key is encrypted; give an unencrypted PKCS#8 PEM (openssl genpkey)"
    except (ValueError, UnsupportedAlgorithm):
        # cryptography's messages name no content today; they are still not passed on
        reason = "it does not hold a PEM private key"
    if reason:
        raise _refuse(path, reason)  # outside the handler: no __context__ back to the parse
    if not isinstance(key, Ed25519PrivateKey):
        raise _refuse(path, "it holds a private key that is not Ed25519")
    return DeviceIdentity(key)
