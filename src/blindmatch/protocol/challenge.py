"""The second round of a format-4 voucher: the server's challenge and the client's answer.

``docs/protocol.md`` §11. Under a distance-checked table
(:class:`~blindmatch.protocol.table.DistanceParams`) a pair that opens gives the server
``rkey`` and the id of the probe key that opened (:func:`~blindmatch.protocol.voucher.key_id`)
— a *candidate* — but not the layers inside: those are under
:func:`~blindmatch.protocol.voucher.opened_key`, which also needs the key the distance
check discloses only when the client's hash is within ``R`` of the candidate's. So for
**every** voucher (opened or not: the sender must not tell a candidate from any other
picture) the server sends a :class:`Challenge` of exactly ``m`` slots. A slot names a pair
of the voucher (whose hash the client checks) and a committed record — the candidate's, or
for padding a uniformly chosen one — with its inclusion path. The client checks every path
against the table's record root and answers each slot with
:func:`~blindmatch.protocol.distance.respond` (:func:`answer_challenge`); the server tries
every disclosed key.

Wire format of a challenge (``m`` slots, fixed size for a table)::

    per slot:  u16 pair index ‖ u32 leaf index ‖ u8 path length ‖ path (32 B each,
               zero-padded to ⌈log₂ n_records⌉ digests) ‖ record (16,384 B)

and of an answer: ``m`` responses of ``64·(R + 1)`` bytes, in slot order.

Each response's randomness is a stream keyed by the opening seed and labelled with the slot's
pair index and the record's leaf digest: a server that sends the same slot twice gets the
same bytes, and one that sends another record gets fresh randomness — never the same ``ρ_j``
on two different encrypted distances (which would let it solve for ``κ``). The recipient
recomputes the answer from the seed and the image, as it recomputes the pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from blindmatch.errors import InvalidDistanceCheck
from blindmatch.protocol import _wire as w
from blindmatch.protocol.distance import (
    CIPHERTEXT_BYTES,
    ENCRYPTED_BITS_BYTES,
    EncryptedBits,
    Response,
    respond,
    response_bytes,
)
from blindmatch.protocol.hazmat.drbg import Drbg
from blindmatch.protocol.records import leaf_digest, max_path_length, verify_path
from blindmatch.protocol.table import DistanceParams

_ANSWER_LABEL = b"blindmatch/v4/opening/distance/"
_BAD = "the server's distance-check challenge does not verify against the table"


@dataclass(frozen=True)
class Slot:
    """One candidate slot: which pair's hash to check against which committed record."""

    pair: int
    leaf: int
    record: bytes
    path: tuple[bytes, ...]

    def __repr__(self) -> str:
        return f"Slot(pair={self.pair}, leaf={self.leaf})"


def slot_bytes(params: DistanceParams) -> int:
    return 2 + 4 + 1 + 32 * max_path_length(params.n_records) + ENCRYPTED_BITS_BYTES


def challenge_bytes(params: DistanceParams) -> int:
    """The size of every challenge under a table: ``m`` slots."""
    return params.slots * slot_bytes(params)


def answer_bytes(params: DistanceParams) -> int:
    """The size of every answer under a table: ``m · 64·(R + 1)``."""
    return params.slots * response_bytes(params.radius)


@dataclass(frozen=True)
class Challenge:
    slots: tuple[Slot, ...]

    def to_bytes(self, params: DistanceParams) -> bytes:
        depth = max_path_length(params.n_records)
        out = []
        for s in self.slots:
            path = b"".join(s.path).ljust(32 * depth, b"\0")
            out += [w.u16(s.pair), w.u32(s.leaf), w.u8(len(s.path)), path, s.record]
        return b"".join(out)

    @classmethod
    def from_bytes(cls, data: bytes, params: DistanceParams, n_pairs: int) -> Challenge:
        """Parse and check one challenge: exactly :func:`challenge_bytes`, every slot naming
        a pair of the voucher and a leaf of the table whose record its path proves; anything
        else raises :class:`~blindmatch.errors.InvalidDistanceCheck` (one message)."""
        if not isinstance(data, bytes) or len(data) != challenge_bytes(params):
            raise InvalidDistanceCheck(_BAD)
        depth = max_path_length(params.n_records)
        r = w.Reader(data, InvalidDistanceCheck, "distance-check challenge")
        slots = []
        for _ in range(params.slots):
            pair, leaf, length = r.u16(), r.u32(), r.u8()
            raw_path, record = r.take(32 * depth), r.take(ENCRYPTED_BITS_BYTES)
            if pair >= n_pairs or length > depth or any(raw_path[32 * length :]):
                raise InvalidDistanceCheck(_BAD)
            path = tuple(raw_path[32 * k : 32 * (k + 1)] for k in range(length))
            digest = leaf_digest(leaf, record)
            if not verify_path(params.records_root, params.n_records, leaf, digest, path):
                raise InvalidDistanceCheck(_BAD)
            slots.append(Slot(pair, leaf, record, path))
        r.end()
        return cls(tuple(slots))


def _trusted_bits(record: bytes) -> EncryptedBits:
    """A record whose inclusion path verified: the hotlines recomputed it, so its points
    are valid (a bad one would make the point arithmetic raise, never pass silently)."""
    cts = tuple(
        (record[o : o + 32], record[o + 32 : o + 64])
        for o in range(0, ENCRYPTED_BITS_BYTES, CIPHERTEXT_BYTES)
    )
    return EncryptedBits(cts)


def answer_challenge(
    challenge: Challenge,
    params: DistanceParams,
    *,
    opening_seed: bytes,
    header: bytes,
    kappa: bytes,
    pair_hashes: Sequence[bytes | None],
    own: bytes,
) -> bytes:
    """The client's answer: per slot, :func:`~blindmatch.protocol.distance.respond` with the
    hash the named pair carries (``own``, the image's hash, for a padding pair), the
    table's ``X`` and ``R``, and ``κ``. Deterministic in its arguments (see the module
    docstring); the same work for every slot whatever the distance."""
    out = []
    for s in challenge.slots:
        pdq = pair_hashes[s.pair] or own
        label = _ANSWER_LABEL + w.u16(s.pair) + leaf_digest(s.leaf, s.record)
        stream = Drbg(opening_seed, salt=header, label=label)
        resp = respond(
            _trusted_bits(s.record), pdq, public=params.public, radius=params.radius,
            key=kappa, stream=stream,
        )  # fmt: skip
        out.append(resp.to_bytes())
    return b"".join(out)


def parse_answer(data: object, params: DistanceParams) -> list[Response]:
    """Strict: exactly :func:`answer_bytes`, every point valid; else ``InvalidDistanceCheck``."""
    if not isinstance(data, bytes) or len(data) != answer_bytes(params):
        raise InvalidDistanceCheck("malformed distance-check answer")
    size = response_bytes(params.radius)
    return [
        Response.from_bytes(data[k * size : (k + 1) * size], radius=params.radius)
        for k in range(params.slots)
    ]


__all__ = [
    "Challenge",
    "Slot",
    "answer_bytes",
    "answer_challenge",
    "challenge_bytes",
    "parse_answer",
    "slot_bytes",
]
