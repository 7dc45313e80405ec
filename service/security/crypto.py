"""Personal data at rest: AES-256-GCM ciphertexts and keyed-hash blind indexes.

Both keys are derived from the service secret with HKDF, each for one purpose. A ciphertext is
bound to its row and field (associated data `users/<id>/<field>`), so it cannot be copied to
another user's row and decrypted there. Layout: version byte, 12-byte nonce, ciphertext + tag.
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from service.errors import ShopcastError

_VERSION = b"\x01"
_NONCE_BYTES = 12


class DecryptionError(ShopcastError):
    """A ciphertext did not authenticate: wrong key, wrong row, or tampered data."""

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"stored personal data {reason}: was SHOPCAST_SECRET_KEY changed, or the row altered?"
        )


def _derive(secret: str, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret.encode())


class PersonalDataCipher:
    """Encrypts personal fields and computes their blind indexes."""

    def __init__(self, secret: str) -> None:
        self._aead = AESGCM(_derive(secret, b"shopcast/pii-encryption/v1"))
        self._index_key = _derive(secret, b"shopcast/pii-blind-index/v1")

    def encrypt(self, plaintext: str, *, context: str) -> bytes:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return _VERSION + nonce + sealed

    def decrypt(self, blob: bytes, *, context: str) -> str:
        if not blob or blob[:1] != _VERSION:
            raise DecryptionError("unknown ciphertext format")
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        try:
            return self._aead.decrypt(nonce, sealed, context.encode()).decode()
        except InvalidTag as exc:
            raise DecryptionError("ciphertext did not authenticate") from exc

    def blind_index(self, kind: str, value: str) -> str:
        """A keyed hash of a normalized value: equal inputs match, the value is not revealed."""
        normalized = normalize_contact(kind, value)
        message = f"{kind}:{normalized}".encode()
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()


def normalize_contact(kind: str, value: str) -> str:
    """Email: trimmed and lower-cased; phone: digits with a leading `+` kept."""
    value = value.strip()
    if kind == "email":
        return value.lower()
    if kind == "phone":
        return ("+" if value.startswith("+") else "") + "".join(c for c in value if c.isdigit())
    return value
