"""Committed encrypted records: the slots of the second distance check, bound to the list.

``docs/protocol.md`` §11 "Binding the slots to the list". Every listed hash ``h`` (a PDQ, a
companion, a hot companion) of a distance-checked table has one *record*: the 256
exponential-ElGamal encryptions of its ±1 bits under the table's distance key ``X``
(:class:`~blindmatch.protocol.distance.EncryptedBits`), with randomness drawn from a *leaf
seed* so that whoever holds the seed can recompute the record exactly:

* ``leaf seed = HKDF-SHA256(audit seed, salt="blindmatch/v1/record", info="leaf" ‖ u32 index)``
  — the audit seed is the server's; it gives a hotline the leaf seeds of the hashes that
  hotline lists (never anything to clients);
* ``r_i`` = the ``i``-th :func:`~blindmatch.protocol.hazmat.group.random_scalar` of the
  :class:`~blindmatch.protocol.hazmat.drbg.Drbg` ``(leaf seed, salt="blindmatch/v1/record",
  label="randomness")``; ``C_i = (r_i·G, ±G + r_i·X)``.

The records, in table order (entry by entry, each entry's :attr:`ListedEntry.hashes` in order),
are the leaves of a Merkle tree with RFC 6962 hashing — ``leaf digest = SHA-256(0x00 ‖
"blindmatch/v1/record\\0" ‖ u32 index ‖ record)``, ``node = SHA-256(0x01 ‖ left ‖ right)``, a
tree of ``n`` leaves split at the largest power of two below ``n`` — whose root the table
carries (:class:`~blindmatch.protocol.table.DistanceParams`), so every hotline's signature on
the manifest covers it. A client checks each slot's inclusion path against that root
(:func:`verify_path`) before answering it: the server can put only committed records in slots,
and a hotline that recomputed the records of the hashes it lists (:func:`record_from_public`)
and the root (:func:`merkle_root`) knows each of them encrypts ±1 bits of a hash that passed
governance.

Pure: no I/O. Randomness comes only from the seeds given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from blindmatch.errors import InvalidDistanceCheck
from blindmatch.protocol import _wire as w
from blindmatch.protocol.distance import DistanceKey, EncryptedBits, encrypt_bits
from blindmatch.protocol.hazmat.drbg import Drbg
from blindmatch.protocol.hazmat.kdf import hkdf_sha256

DOMAIN = b"blindmatch/v1/record"
_LEAF_PREFIX = b"\x00" + DOMAIN + b"\x00"
DIGEST_BYTES = 32
#: The longest inclusion path a table can need (2^32 leaves).
MAX_DEPTH = 32


def leaf_seed(audit_seed: bytes, index: int) -> bytes:
    """The seed of leaf ``index``'s randomness (what a hotline is given for its hashes)."""
    if not isinstance(audit_seed, bytes) or len(audit_seed) != 32:
        raise ValueError("an audit seed is 32 bytes")
    return hkdf_sha256(audit_seed, salt=DOMAIN, info=b"leaf" + w.u32(index))


def _stream(seed: bytes) -> Drbg:
    return Drbg(seed, salt=DOMAIN, label=b"randomness")


def record_with_key(dk: DistanceKey, pdq: bytes, seed: bytes) -> EncryptedBits:
    """The record of ``pdq`` under leaf seed ``seed``, computed with the secret (the server:
    two fixed-base multiplications per bit, ~12 ms)."""
    return dk.encrypt_bits(pdq, _stream(seed))


def record_from_public(public: bytes, pdq: bytes, seed: bytes) -> EncryptedBits:
    """The same record from the public key ``X`` alone (a hotline's audit; byte-identical to
    :func:`record_with_key`)."""
    return encrypt_bits(pdq, public, _stream(seed))


def leaf_digest(index: int, record: bytes) -> bytes:
    """RFC 6962 leaf hash of record ``index``: ``SHA-256(0x00 ‖ domain ‖ u32 index ‖ record)``."""
    return hashlib.sha256(_LEAF_PREFIX + w.u32(index) + record).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two strictly below ``n`` (``n ≥ 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 Merkle tree hash of the leaf digests (``SHA-256("")`` for none)."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    level = list(leaves)
    # bottom-up: pair left to right; an odd last node moves up unchanged (same tree as the
    # RFC's recursive split at the largest power of two)
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


class MerkleTree:
    """Every level of the tree over ``leaves`` (digests), for inclusion paths."""

    __slots__ = ("_levels",)

    def __init__(self, leaves: Sequence[bytes]) -> None:
        if not leaves:
            raise ValueError("a Merkle tree needs at least one leaf")
        levels = [list(leaves)]
        while len(levels[-1]) > 1:
            level = levels[-1]
            nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
            if len(level) % 2:
                nxt.append(level[-1])
            levels.append(nxt)
        self._levels = levels

    @property
    def size(self) -> int:
        return len(self._levels[0])

    @property
    def root(self) -> bytes:
        return self._levels[-1][0]

    def path(self, index: int) -> tuple[bytes, ...]:
        """The sibling digests from leaf ``index`` up (an odd last node has none at a level)."""
        if not 0 <= index < self.size:
            raise IndexError("leaf index out of range")
        out = []
        for level in self._levels[:-1]:
            sibling = index ^ 1
            if sibling < len(level):
                out.append(level[sibling])
            index >>= 1
        return tuple(out)


def path_length(index: int, size: int) -> int:
    """How many digests the inclusion path of leaf ``index`` in a tree of ``size`` has."""
    n, length = size, 0
    while n > 1:
        if index ^ 1 < n:
            length += 1
        index >>= 1
        n = (n + 1) // 2
    return length


def max_path_length(size: int) -> int:
    """The longest inclusion path in a tree of ``size`` leaves: ``⌈log₂ size⌉``."""
    return (size - 1).bit_length() if size > 1 else 0


def verify_path(root: bytes, size: int, index: int, leaf: bytes, path: Sequence[bytes]) -> bool:
    """Whether ``leaf`` (a digest) is leaf ``index`` of the tree of ``size`` leaves with
    ``root``, by ``path`` (:meth:`MerkleTree.path`). Never raises on a well-typed input."""
    if not 0 <= index < size or len(path) != path_length(index, size):
        return False
    digest, n, k = leaf, size, 0
    for _ in range(MAX_DEPTH + 1):
        if n <= 1:
            break
        sibling = index ^ 1
        if sibling < n:
            if k >= len(path):
                return False
            digest = _node(digest, path[k]) if index % 2 == 0 else _node(path[k], digest)
            k += 1
        index >>= 1
        n = (n + 1) // 2
    return k == len(path) and digest == root


def audit_records(
    public: bytes,
    root: bytes,
    mine: Sequence[tuple[int, bytes, bytes]],
    leaves: Sequence[bytes],
) -> list[int]:
    """A hotline's audit before it signs: ``mine`` are ``(leaf index, listed hash, leaf
    seed)`` of the hashes it lists, ``leaves`` every leaf digest the server published.
    Returns the indices whose record does not recompute; raises
    :class:`~blindmatch.errors.InvalidDistanceCheck` if the leaves do not make ``root``."""
    if merkle_root(leaves) != root:
        raise InvalidDistanceCheck("the published leaves do not make the table's record root")
    bad = []
    for index, pdq, seed in mine:
        rec = record_from_public(public, pdq, seed).to_bytes()
        if not 0 <= index < len(leaves) or leaf_digest(index, rec) != leaves[index]:
            bad.append(index)
    return bad


__all__ = [
    "DIGEST_BYTES",
    "MAX_DEPTH",
    "MerkleTree",
    "audit_records",
    "leaf_digest",
    "leaf_seed",
    "max_path_length",
    "merkle_root",
    "path_length",
    "record_from_public",
    "record_with_key",
    "verify_path",
]
