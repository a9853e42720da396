"""HKDF-SHA256 (RFC 5869), written on ``hmac.digest`` for speed.

The server derives one key per voucher pair (~100 per voucher), so the
per-call object set-up of ``cryptography``'s HKDF class would dominate; this
two-HMAC implementation is checked against ``cryptography``'s HKDF and the
RFC 5869 vectors in ``tests/vectors/protocol/kdf.json``.
"""

from __future__ import annotations

import hmac

_HASH_LEN = 32


def hkdf_sha256(ikm: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF-Extract then HKDF-Expand with SHA-256; ``length`` ≤ 255·32 bytes."""
    if not 0 < length <= 255 * _HASH_LEN:
        raise ValueError("bad HKDF output length")
    prk = hmac.digest(salt if salt else bytes(_HASH_LEN), ikm, "sha256")
    out = b""
    block = b""
    i = 1
    while len(out) < length:
        block = hmac.digest(prk, block + info + bytes([i]), "sha256")
        out += block
        i += 1
    return out[:length]
