"""Hazardous materials: the primitives under :mod:`blindmatch.protocol`.

.. warning::

   This subpackage is full of land mines. Everything here is a low-level
   building block — ristretto255 group arithmetic, hash-to-group, key
   derivation, AEAD wrapping, Shamir secret sharing, cuckoo placement,
   deterministic (seeded) byte streams —
   that is only safe when composed exactly as :mod:`blindmatch.protocol`
   composes it (see ``docs/protocol.md``). Reusing a domain label, a key or
   a nonce, skipping a point validity check, or leaking a scalar breaks the
   protocol's privacy silently. Use the recipes in :mod:`blindmatch.protocol`
   (``build_table``, ``ClientSession``, ``ServerSession``) unless you are
   writing a new recipe and are prepared to have it reviewed.

Nothing here does I/O or logging. Randomness always comes from an injectable
``Rng`` (``os.urandom`` by default) so that known-answer tests can fix it.
"""

from blindmatch.protocol.hazmat.aead import open_sealed, seal
from blindmatch.protocol.hazmat.cuckoo import CuckooFailure, cuckoo_place, slot_positions
from blindmatch.protocol.hazmat.drbg import Drbg
from blindmatch.protocol.hazmat.group import (
    GENERATOR,
    POINT_BYTES,
    SCALAR_BYTES,
    add,
    base_mul,
    hash_to_group,
    is_valid_point,
    mul,
    random_point,
    random_scalar,
    reduce_scalar,
)
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.rng import Rng, SeededRng, system_rng
from blindmatch.protocol.hazmat.shamir import (
    ORDER,
    Share,
    interpolate_at,
    make_shares,
    recover_secret,
)

__all__ = [
    "GENERATOR",
    "ORDER",
    "POINT_BYTES",
    "SCALAR_BYTES",
    "CuckooFailure",
    "Drbg",
    "Rng",
    "SeededRng",
    "Share",
    "add",
    "base_mul",
    "cuckoo_place",
    "hash_to_group",
    "hkdf_sha256",
    "interpolate_at",
    "is_valid_point",
    "make_shares",
    "mul",
    "open_sealed",
    "random_point",
    "random_scalar",
    "recover_secret",
    "reduce_scalar",
    "seal",
    "slot_positions",
    "system_rng",
]
