"""Defences against false positives of the lists (issue 13, item 3).

**The negative bank.** When review decides a case is a false positive, the hashes that
matched (the picture's own PDQ or the variant of it that came within the list's radius,
which the server reads in the voucher's ``M`` once it opens) go into a per-platform
negative bank. A later match whose hash lies within :data:`NEGATIVE_RADIUS` bits of a
banked hash does not block: the same benign picture, re-sent or re-encoded, goes through.
The listed entries it matched are *disputed*: ``blindmatch disputes export`` writes them
per source (hotline, list, entry id, case, date — never the benign picture's hash, which
is the user's) for the hotline to review its entry.

**Flood quarantine.** A listed picture is re-shared by few accounts; an entry that blocks
more than ``flood_accounts`` distinct accounts within ``flood_window`` seconds is more
likely a benign picture listed by mistake, or a hash that collides with a popular one. It
is put in quarantine: its matches stop blocking at once, and a ``flood`` case (first in
every queue) asks a reviewer to look; ``lift`` ends the quarantine and, by default, exempts
the entry from further floods (a listed picture that really does circulate widely must not
be let through again at its next wave). The trade-off is explicit: between the flood and
the review, a listed picture that really went viral is not blocked — ``flood_accounts``
sets how much evidence that takes.

Both act only on what the server already learns at a blocked match; they never make a
sender's picture block that would not have blocked.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, func, select

from blindmatch.errors import CaseNotFound, InvalidArgument, InvalidCaseState
from blindmatch.store.db import write_transaction
from blindmatch.store.models import Case, EntryHit, FloodQuarantine, NegativeHash

#: A match this close (bits) to a banked hash does not block. PDQ's own guidance puts
#: re-encodes of one picture within ~10 bits; unrelated pictures sit near 128.
NEGATIVE_RADIUS = 10
DEFAULT_FLOOD_ACCOUNTS = 20
DEFAULT_FLOOD_WINDOW = 3600.0


def entry_key(ref: dict[str, Any]) -> str:
    """The key of one listed entry: SHA-256 of its ``[hotline, list, entry id]``."""
    text = json.dumps([ref["hotline"], ref["list"], ref["entry_id"]], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def _hamming(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


@dataclass(frozen=True)
class Screened:
    """What :meth:`Defences.screen` kept of each result's matches (a result whose matches
    are all gone no longer blocks), and the ids of the flood cases it opened."""

    kept: list[list[dict[str, Any]]]
    flood_cases: list[str] = field(default_factory=list)
    suppressed: int = 0


class Defences:
    def __init__(
        self,
        engine: Engine,
        *,
        negative_radius: int = NEGATIVE_RADIUS,
        flood_accounts: int = DEFAULT_FLOOD_ACCOUNTS,
        flood_window: float = DEFAULT_FLOOD_WINDOW,
    ) -> None:
        if not 0 <= negative_radius <= 32:
            raise InvalidArgument("the negative bank's radius is 0-32 bits")
        if flood_accounts < 1 or flood_window <= 0:
            raise InvalidArgument("flood quarantine needs a positive account count and window")
        self.engine = engine
        self.negative_radius = negative_radius
        self.flood_accounts = flood_accounts
        self.flood_window = flood_window

    # -- the send path ---------------------------------------------------------------------
    def screen(self, account: str, results: Sequence[Sequence[dict[str, Any]]]) -> Screened:
        """Screen the matches of each blocked result (``_refs_json`` dicts: ``distance``,
        ``refs``, ``probe`` hex) before the send is blocked: drop those near a banked hash
        and those whose every entry is in flood quarantine; count the rest toward floods."""
        now = datetime.now(UTC)
        with write_transaction(self.engine) as s:
            banked = [bytes.fromhex(p) for p in s.scalars(select(NegativeHash.pdq)) if p]
            quarantined = set(s.scalars(select(FloodQuarantine.entry_key)
                                        .where(FloodQuarantine.lifted_at.is_(None))))  # fmt: skip
            exempt = set(s.scalars(select(FloodQuarantine.entry_key)
                                   .where(FloodQuarantine.exempt.is_(True))))  # fmt: skip
            kept: list[list[dict[str, Any]]] = []
            suppressed = 0
            hit: dict[str, dict[str, Any]] = {}
            for matches in results:
                out = []
                for m in matches:
                    probe = bytes.fromhex(m["probe"]) if m.get("probe") else None
                    near = probe is not None and any(
                        _hamming(probe, b) <= self.negative_radius for b in banked
                    )
                    keys = {entry_key(r): r for r in m.get("refs", ())}
                    flooded = bool(keys) and set(keys) <= quarantined
                    if near or flooded:
                        suppressed += 1
                        continue
                    out.append(m)
                    hit.update(keys)
                kept.append(out)
            floods = []
            since = now - timedelta(seconds=self.flood_window)
            for key, ref in hit.items():
                s.add(EntryHit(entry_key=key, account=account, at=now))
                s.flush()
                n = s.scalar(select(func.count(func.distinct(EntryHit.account))).where(
                    EntryHit.entry_key == key, EntryHit.at >= since))  # fmt: skip
                if int(n or 0) > self.flood_accounts and key not in quarantined | exempt:
                    floods.append(self._quarantine(s, key, ref, int(n or 0), now))
                    quarantined.add(key)
        return Screened(kept, floods, suppressed)

    def _quarantine(self, s: Any, key: str, ref: dict[str, Any], n: int, now: datetime) -> str:
        from blindmatch.integrations.matrix.state import new_case_id

        old = s.get(FloodQuarantine, key)
        case_id = new_case_id()
        s.add(Case(id=case_id, kind="flood", account="-", room=None, event_id=None,
                   voucher_ids="[]", blobs="[]",
                   entry_refs=json.dumps([{"distance": 0, "refs": [ref]}], sort_keys=True),
                   evidence=json.dumps({"accounts": n, "window_seconds": self.flood_window})
                   .encode(), status="open", created_at=now))  # fmt: skip
        if old is not None:  # quarantined before and lifted: quarantined again
            old.since, old.accounts, old.case_id, old.lifted_at, old.lifted_by = (
                now, n, case_id, None, None)  # fmt: skip
        else:
            s.add(FloodQuarantine(entry_key=key, ref=json.dumps(ref, sort_keys=True), since=now,
                                  accounts=n, case_id=case_id, exempt=False))  # fmt: skip
        return case_id

    # -- review ----------------------------------------------------------------------------
    def bank_false_positive(self, case_id: str, reviewer: Any) -> int:
        """A case decided false positive: bank its matched hashes (the review hook
        ``Review.on_false_positive``). Returns how many hashes were added."""
        name = getattr(reviewer, "name", str(reviewer))
        with write_transaction(self.engine) as s:
            case = s.get(Case, case_id)
            if case is None:
                raise CaseNotFound(f"no case {case_id!r}")
            matches = json.loads(case.entry_refs)
            have = set(s.scalars(select(NegativeHash.pdq).where(NegativeHash.case_id == case_id)))
            added = 0
            for m in matches:
                probe = m.get("probe")
                if not probe or probe in have:
                    continue
                s.add(NegativeHash(pdq=probe, case_id=case_id,
                                   entry_refs=json.dumps(m.get("refs", []), sort_keys=True),
                                   reviewer=name, created_at=datetime.now(UTC)))  # fmt: skip
                have.add(probe)
                added += 1
            if case.kind == "flood":  # a flood found benign: the entry is disputed too
                for m in matches:
                    for r in m.get("refs", ()):
                        s.add(NegativeHash(pdq="", case_id=case_id,
                                           entry_refs=json.dumps([r], sort_keys=True),
                                           reviewer=name,
                                           created_at=datetime.now(UTC)))  # fmt: skip
        return added

    def disputes(self, *, include_exported: bool = False) -> list[dict[str, Any]]:
        """The disputed entries, one per (entry, case): what goes back to each source."""
        with self.engine.connect() as c:
            q = select(NegativeHash.id, NegativeHash.case_id, NegativeHash.entry_refs,
                       NegativeHash.created_at, NegativeHash.disputed_at)  # fmt: skip
            if not include_exported:
                q = q.where(NegativeHash.disputed_at.is_(None))
            out = []
            for row in c.execute(q.order_by(NegativeHash.id)):
                for r in json.loads(row.entry_refs):
                    decided = row.created_at.isoformat()
                    out.append({"hotline": r["hotline"], "list": r["list"],
                                "entry_id": r["entry_id"], "case": row.case_id,
                                "reason": "false_positive", "decided_at": decided,
                                "_row": row.id})  # fmt: skip
            return out

    def mark_disputed(self, rows: Sequence[int]) -> None:
        with write_transaction(self.engine) as s:
            for r in s.scalars(select(NegativeHash).where(NegativeHash.id.in_(list(rows)))):
                r.disputed_at = datetime.now(UTC)

    def quarantined(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            q = select(FloodQuarantine).where(FloodQuarantine.lifted_at.is_(None))
            return [{"entry_key": r.entry_key, "ref": json.loads(r.ref), "accounts": r.accounts,
                     "since": r.since.isoformat(), "case": r.case_id}
                    for r in c.execute(q.order_by(FloodQuarantine.since))]  # fmt: skip

    def lift(self, entry_key_or_case: str, reviewer: Any, *, exempt: bool = True) -> None:
        """End a flood quarantine (by entry key or by its case id): the entry blocks again.
        ``exempt`` (the default: a reviewer checked the entry and it is right — a listed
        picture that really is re-shared widely): it is never quarantined again; without it,
        the next flood quarantines it again."""
        name = getattr(reviewer, "name", str(reviewer))
        with write_transaction(self.engine) as s:
            row = s.get(FloodQuarantine, entry_key_or_case) or s.scalar(
                select(FloodQuarantine).where(FloodQuarantine.case_id == entry_key_or_case)
            )
            if row is None:
                raise CaseNotFound(f"no flood quarantine {entry_key_or_case!r}")
            if row.lifted_at is not None:
                raise InvalidCaseState("this quarantine was lifted already")
            row.lifted_at, row.lifted_by, row.exempt = datetime.now(UTC), name, exempt


__all__ = ["DEFAULT_FLOOD_ACCOUNTS", "DEFAULT_FLOOD_WINDOW", "NEGATIVE_RADIUS", "Defences",
           "Screened", "entry_key"]  # fmt: skip
