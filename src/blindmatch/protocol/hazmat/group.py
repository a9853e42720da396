"""ristretto255 group operations (RFC 9496) on 32-byte encodings, via ``rbcl``.

``rbcl`` bundles libsodium (≥ 1.0.18, the first release with ristretto255), so
no system library is needed. Points are canonical 32-byte encodings; scalars
are 32-byte little-endian integers reduced modulo the group order
``ℓ = 2^252 + 27742317777372353535851937790883648493``.

The identity element (all-zero encoding) is a valid ristretto255 encoding but
never a valid protocol value: :func:`is_valid_point` rejects it, and
:func:`mul` / :func:`base_mul` raise ``ValueError`` rather than return it.

Hash-to-group (:func:`hash_to_group`) is the RFC 9496 §4.3.4 one-way map
applied to ``SHA-512(domain ‖ message)`` (libsodium's
``crypto_core_ristretto255_from_hash``), with a caller-chosen domain label.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import os

import rbcl

from blindmatch.protocol.hazmat.rng import Rng, system_rng

# rbcl writes its bundled libsodium to a temporary file on import and never removes it (one
# ~2.7 MB file per process). Once loaded, the file is not needed on POSIX: remove it.
with contextlib.suppress(ImportError, AttributeError, OSError):
    os.unlink(importlib.import_module("rbcl._sodium").lib_path)

POINT_BYTES = 32
SCALAR_BYTES = 32
ORDER = 2**252 + 27742317777372353535851937790883648493
_IDENTITY = bytes(32)
_ONE = (1).to_bytes(32, "little")

#: The conventional ristretto255 generator ``G`` (encoding of the Ed25519 base point).
GENERATOR: bytes = rbcl.crypto_scalarmult_ristretto255_base(_ONE)


def is_valid_point(p: object) -> bool:
    """True iff ``p`` is 32 bytes, a canonical ristretto255 encoding, and not the identity."""
    if not isinstance(p, bytes) or len(p) != POINT_BYTES or p == _IDENTITY:
        return False
    return bool(rbcl.crypto_core_ristretto255_is_valid_point(p))


def reduce_scalar(wide: bytes) -> bytes:
    """Reduce 64 little-endian bytes modulo ``ℓ`` to a 32-byte scalar."""
    if len(wide) != 64:
        raise ValueError("reduce_scalar needs 64 bytes")
    return (int.from_bytes(wide, "little") % ORDER).to_bytes(32, "little")


def scalar_from_int(v: int) -> bytes:
    return (v % ORDER).to_bytes(32, "little")


def scalar_to_int(s: bytes) -> int:
    return int.from_bytes(s, "little")


def random_scalar(rng: Rng = system_rng) -> bytes:
    """A uniform non-zero scalar: 64 random bytes reduced mod ``ℓ`` (bias < 2^-250)."""
    while True:
        s = reduce_scalar(rng(64))
        if s != bytes(32):
            return s


def random_point(rng: Rng = system_rng) -> bytes:
    """A uniform group element: the one-way map of 64 random bytes."""
    return bytes(rbcl.crypto_core_ristretto255_from_hash(rng(64)))


def hash_to_group(domain: bytes, message: bytes) -> bytes:
    """``from_hash(SHA-512(domain ‖ message))``; ``domain`` must be prefix-free among callers."""
    return bytes(rbcl.crypto_core_ristretto255_from_hash(hashlib.sha512(domain + message).digest()))


def mul(scalar: bytes, point: bytes) -> bytes:
    """``scalar · point``. Raises ``ValueError`` for an invalid point or a zero result."""
    # libsodium decodes ``point`` (refusing non-canonical encodings) and refuses an
    # identity result, which also covers the identity input and a zero scalar.
    if not isinstance(point, bytes) or len(point) != POINT_BYTES:
        raise ValueError("not a valid ristretto255 point")
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255(scalar, point))
    except RuntimeError as e:
        raise ValueError("invalid point, or the product is the identity") from e


def base_mul(scalar: bytes) -> bytes:
    """``scalar · G``. Raises ``ValueError`` for a zero scalar."""
    try:
        return bytes(rbcl.crypto_scalarmult_ristretto255_base(scalar))
    except RuntimeError as e:
        raise ValueError("scalar multiplication gave the identity") from e


def add(p: bytes, q: bytes) -> bytes:
    """``p + q``. Both must already be valid points (outputs of :func:`mul` and friends):
    rbcl ignores libsodium's error code here, so an invalid input gives garbage, not an error.
    """
    return bytes(rbcl.crypto_core_ristretto255_add(p, q))


#: The identity element's encoding (all zero). Never a valid protocol value on the wire
#: (:func:`is_valid_point` refuses it), but an intermediate value may be the identity.
IDENTITY: bytes = _IDENTITY


def is_identity(p: bytes) -> bool:
    """True iff ``p`` is the identity's encoding."""
    return p == _IDENTITY


def sub(p: bytes, q: bytes) -> bytes:
    """``p − q``. As for :func:`add`, both must already be valid points or the identity
    (rbcl ignores libsodium's error code here); the result may be the identity."""
    return bytes(rbcl.crypto_core_ristretto255_sub(p, q))


def mul_total(scalar: bytes, point: bytes) -> bytes:
    """``scalar · point`` where ``point`` is a valid point *or the identity*, and the result
    may be the identity: never raises for such inputs (unlike :func:`mul`). For code that must
    not turn an input the other party chose into an error it can observe."""
    if point == _IDENTITY or int.from_bytes(scalar, "little") % ORDER == 0:
        return _IDENTITY
    return mul(scalar, point)  # a non-identity point times a non-zero scalar is not the identity
