"""What private matching reveals about innocent images, as the evaluation measures it.

A scheme that runs the private protocol (:mod:`blindmatch.eval.private`) describes each
voucher it made with an :class:`Observation`; :func:`summarize` turns the observations
of every innocent image into the report's privacy figures (:class:`PrivacySummary`).

Innocent images are every distractor, and every edited listed picture taken against the
*other* listed pictures' entries (its own entry does not make it innocent-opening). Under
the block policy a voucher that opens shows the server its match layer: the image's PDQ
and the variant hashes in the hint (docs/protocol.md §2, §11 "Wire format of scheme 2"),
so one opened innocent voucher reveals ``256 × n`` PDQ bits, ``n`` the hint's first byte
(the image's own hash and its variant hashes).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PDQ_BITS = 256
ENTRIES_AT_SCALE = 5_000_000  # the list size the targets are stated at (issue 12)
NEAR_MISS = (32, 84)  # closest hash this many bits from some entry: a near miss (§11)


@dataclass(frozen=True)
class Observation:
    """One voucher, made and opened, seen from an innocent image's side.

    ``opened``: the server opened it (``ServerSession.open(...).opened``).
    ``innocent_open``: one of its probe keys is a list key of an entry of a picture other
    than the image's own (for a distractor: of any entry) — it would open were the image's
    own entry not listed. ``hashes``: the hashes its match layer carries (``n_variants``,
    the hint's first byte: the image's own PDQ and its variant hashes). ``closest_other``:
    the smallest Hamming distance from any of those hashes to an entry of another picture
    (for a distractor: any entry). ``attributed``: whether the probe keys explain the
    server's decision (``opened`` equals "some probe key is listed").
    """

    opened: bool
    innocent_open: bool
    hashes: int
    closest_other: int
    attributed: bool
    client_secs: float
    server_secs: float
    voucher_bytes: int
    #: Under the second distance check: the sampled bits an innocent *candidate* (a probe
    #: key equal to another entry's, the check not passing) shows the server, else 0.
    candidate_bits: int = 0

    @property
    def bits_revealed(self) -> int:
        """PDQ bits an innocent voucher shows the server: 256 per hash in the match layer when
        it opens; the key's sampled bits when it is only a candidate (distance check)."""
        return PDQ_BITS * self.hashes if self.innocent_open else self.candidate_bits


@dataclass(frozen=True)
class PrivacyRow:
    """The privacy figures of one group of innocent images."""

    group: str
    images: int
    opened: int  # innocent openings
    entries: int  # the entries each image was compared with
    bits: int  # PDQ bits revealed, summed over the group
    hashes: int  # hashes the group's match layers carry, summed (what one opening reveals)
    candidates: int = 0  # innocent candidates that did not open (distance check)

    @property
    def rate(self) -> float:
        """Innocent openings per image."""
        return self.opened / self.images if self.images else 0.0

    @property
    def bits_per_image(self) -> float:
        return self.bits / self.images if self.images else 0.0

    @property
    def scale(self) -> float:
        """From this list to a 5M-entry one, if openings grow with the number of entries."""
        return ENTRIES_AT_SCALE / self.entries if self.entries else 0.0

    @property
    def rate_at_scale(self) -> float:
        """Extrapolated: the per-image rate × 5M / entries compared."""
        return self.rate * self.scale

    @property
    def rate_at_scale_if_none(self) -> float:
        """The 95% upper bound at 5M when nothing opened (3 / images, the rule of three)."""
        return (3 / self.images) * self.scale if self.images else 0.0

    @property
    def bits_at_scale(self) -> float:
        return self.bits_per_image * self.scale

    @property
    def bits_at_scale_if_none(self) -> float:
        """The 95% upper bound at 5M when nothing opened: the openings' bound × the bits an
        opening of this group would reveal on average."""
        return (
            self.rate_at_scale_if_none * PDQ_BITS * self.hashes / self.images
            if self.images
            else 0.0
        )


@dataclass
class PrivacySummary:
    scheme: dict[str, Any]  # the table's lookup-key scheme (``describe()``)
    policy: str
    hotlines: list[tuple[str, str]]  # (hotline, jurisdiction) listing every picture
    listed: int  # listed pictures
    entries: int  # table entries (listed pictures' distinct PDQs that passed governance)
    table_bytes: int
    voucher_bytes: int
    client_ms_median: float
    server_ms_median: float
    vouchers: int
    unattributed: int  # vouchers whose opening the probe keys did not explain (should be 0)
    rows: list[PrivacyRow] = field(default_factory=list)
    # innocent openings per edit (edited listed pictures against other entries)
    per_edit: dict[str, tuple[int, int]] = field(default_factory=dict)  # edit -> (opened, n)
    #: The second distance check (``{"radius": R, "slots": m}``), or None.
    check: dict[str, int] | None = None


def _row(group: str, obs: Sequence[Observation], entries: int) -> PrivacyRow:
    return PrivacyRow(
        group,
        len(obs),
        sum(o.innocent_open for o in obs),
        entries,
        sum(o.bits_revealed for o in obs),
        sum(o.hashes for o in obs),
        sum(bool(o.candidate_bits) for o in obs),
    )


def summarize(
    distractors: Sequence[Observation],
    edited: Mapping[str, Sequence[Observation]],
    *,
    entries: int,
    **info: Any,
) -> PrivacySummary:
    """The report's privacy figures from every voucher of a run.

    Rows: every distractor (against all ``entries``); every edited listed picture (against
    the ``entries − 1`` others); the near misses of both (closest hash 32–84 bits from
    another picture's entry); and the innocent images whose closest hash is within 31 bits
    of another picture's entry (plaintext would match them too)."""
    flat = [o for obs in edited.values() for o in obs]
    everything = [*distractors, *flat]
    lo, hi = NEAR_MISS
    near_d = [o for o in distractors if lo <= o.closest_other <= hi]
    near_e = [o for o in flat if lo <= o.closest_other <= hi]
    close_d = [o for o in distractors if o.closest_other < lo]
    close_e = [o for o in flat if o.closest_other < lo]
    others = max(0, entries - 1)
    rows = [
        _row("distractors", distractors, entries),
        _row("edited listed pictures, against the other pictures' entries", flat, others),
        _row(f"near misses among distractors ({lo}–{hi} bits)", near_d, entries),
        _row(f"near misses among edited listed pictures ({lo}–{hi} bits)", near_e, others),
        _row(f"distractors within {lo - 1} bits of an entry", close_d, entries),
        _row(f"edited listed pictures within {lo - 1} bits of another entry", close_e, others),
    ]
    client = [o.client_secs for o in everything] or [0.0]
    server = [o.server_secs for o in everything] or [0.0]
    return PrivacySummary(
        entries=entries,
        client_ms_median=1000 * statistics.median(client),
        server_ms_median=1000 * statistics.median(server),
        vouchers=len(everything),
        unattributed=sum(not o.attributed for o in everything),
        voucher_bytes=max((o.voucher_bytes for o in everything), default=0),
        rows=rows,
        per_edit={t: (sum(o.innocent_open for o in obs), len(obs)) for t, obs in edited.items()},
        **info,
    )


__all__ = [
    "ENTRIES_AT_SCALE",
    "NEAR_MISS",
    "Observation",
    "PrivacyRow",
    "PrivacySummary",
    "summarize",
]
