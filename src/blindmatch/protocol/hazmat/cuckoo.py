"""Cuckoo hashing with three candidate positions per key.

A key's positions are ``uint64_be(SHA-256(label ‖ seed ‖ j ‖ key)[:8]) mod n``
for ``j = 0, 1, 2`` (duplicates are allowed and harmless). Placement is the
usual random walk: put the key in a free candidate slot, else evict a random
occupant and re-place it, up to ``max_kicks`` evictions per insertion. The
table builder retries with a new seed (or more slots) on failure; at load 0.8
with three positions failures are rare.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from blindmatch.protocol.hazmat.rng import Rng, randbelow, system_rng

N_POSITIONS = 3
_LABEL = b"blindmatch/v1/cuckoo-position\x00"


def slot_positions(seed: bytes, key: bytes, n_slots: int) -> tuple[int, int, int]:
    """The three candidate slots of ``key`` in a table of ``n_slots``."""
    out = []
    for j in range(N_POSITIONS):
        d = hashlib.sha256(_LABEL + seed + bytes([j]) + key).digest()
        out.append(int.from_bytes(d[:8], "big") % n_slots)
    return out[0], out[1], out[2]


class CuckooFailure(ValueError):
    """The keys could not be placed; retry with another seed or more slots."""


def cuckoo_place(
    keys: Sequence[bytes],
    n_slots: int,
    seed: bytes,
    *,
    max_kicks: int = 500,
    rng: Rng = system_rng,
) -> list[int]:
    """Slot assignment ``slots[i]`` = index into ``keys`` or ``-1`` for an empty slot.

    ``keys`` must be distinct. Raises :class:`CuckooFailure` when an insertion
    needs more than ``max_kicks`` evictions.
    """
    if len(keys) > n_slots:
        raise CuckooFailure("more keys than slots")
    slots = [-1] * n_slots
    positions = [slot_positions(seed, k, n_slots) for k in keys]
    for i in range(len(keys)):
        cur = i
        for _ in range(max_kicks + 1):
            cands = positions[cur]
            free = next((p for p in cands if slots[p] == -1), None)
            if free is not None:
                slots[free] = cur
                break
            victim_pos = cands[randbelow(rng, N_POSITIONS)]
            slots[victim_pos], cur = cur, slots[victim_pos]
        else:
            raise CuckooFailure("cuckoo insertion exceeded max_kicks")
    return slots
