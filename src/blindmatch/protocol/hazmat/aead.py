"""ChaCha20-Poly1305 (RFC 8439) sealing with a zero nonce under single-use keys.

Every key passed to :func:`seal` is derived fresh for exactly one message (a
pair key from HKDF over a fresh group element, or a per-voucher sub-key), so
a fixed all-zero nonce is safe *only* under that discipline. Output is
``ciphertext ‖ 16-byte tag``; :func:`open_sealed` returns ``None`` on any
authentication failure instead of raising, because the server tries many
keys per voucher and a failed trial is the normal case.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

KEY_BYTES = 32
TAG_BYTES = 16
_NONCE = bytes(12)


def seal(key: bytes, plaintext: bytes, aad: bytes = b"") -> bytes:
    """Encrypt and authenticate ``plaintext`` under a single-use 32-byte key."""
    return ChaCha20Poly1305(key).encrypt(_NONCE, plaintext, aad)


def open_sealed(key: bytes, sealed: bytes, aad: bytes = b"") -> bytes | None:
    """The plaintext, or ``None`` if the key, ciphertext or ``aad`` do not match."""
    if len(sealed) < TAG_BYTES:
        return None
    try:
        return ChaCha20Poly1305(key).decrypt(_NONCE, sealed, aad)
    except InvalidTag:
        return None
