"""The supervisor's Ed25519 device identity and the proof sent on every connect.

2026.3.24 grants no scopes to a token without a device identity, silently; loopback pairing of a
device is approved automatically, a remote gateway needs `openclaw devices approve` once. The key
is made once per state dir and kept in a 0600 file, so a gateway sees the same device every time.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from supervisor.errors import ConfigError

KEY_FILE = "device-ed25519.pem"


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
