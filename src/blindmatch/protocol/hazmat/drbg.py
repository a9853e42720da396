"""A deterministic random bit generator: the ChaCha20 keystream under an HKDF-derived key.

``Drbg(seed, salt=…, label=…)`` is an :data:`~blindmatch.protocol.hazmat.rng.Rng` whose bytes
are the ChaCha20 (RFC 8439) keystream, block counter from 0, all-zero nonce, under the key
``HKDF-SHA256(seed, salt, label)``. Each ``(seed, salt, label)`` is one stream; the zero nonce
is safe because every label gives its own key. The stream is limited to 2^32 blocks
(256 GiB), far beyond any use here.

Used for the voucher's *opening*: everything a recipient must recompute is drawn from streams
keyed by the sender's opening seed (``docs/protocol.md`` §5). Anyone who knows the seed knows
every byte of every stream: only values that the seed's holder may know come from here.
ChaCha20 is ``cryptography``'s; HKDF is :func:`~blindmatch.protocol.hazmat.kdf.hkdf_sha256`.
"""

from __future__ import annotations

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms

from blindmatch.protocol.hazmat.kdf import hkdf_sha256

_NONCE = bytes(16)  # cryptography's ChaCha20 nonce: 4-byte LE block counter ‖ 12-byte nonce
_MAX_BYTES = 64 << 32


class Drbg:
    """One deterministic byte stream (see the module docstring)."""

    __slots__ = ("_enc", "_used")

    def __init__(self, seed: bytes, *, salt: bytes, label: bytes) -> None:
        if not isinstance(seed, bytes) or len(seed) < 32:
            raise ValueError("a DRBG seed is at least 32 bytes")
        key = hkdf_sha256(seed, salt=salt, info=label)
        self._enc = Cipher(algorithms.ChaCha20(key, _NONCE), mode=None).encryptor()
        self._used = 0

    def __call__(self, n: int) -> bytes:
        if n < 0 or self._used + n > _MAX_BYTES:
            raise ValueError("DRBG stream exhausted")
        self._used += n
        return self._enc.update(bytes(n))

    def __repr__(self) -> str:
        return "Drbg(<keyed>)"
