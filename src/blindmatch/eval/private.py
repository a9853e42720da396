"""Private matching as an evaluation scheme: the code the Matrix integration runs.

``private`` measures what the messenger blocks, not a model of it:

* **list side**: :func:`blindmatch.protocol.prepare_table` (default lookup-key scheme, the
  block policy) over the listed pictures' PDQs. Governance admits only hashes listed by
  two hotlines in two jurisdictions, so every picture is listed under two pretend
  hotlines (:data:`HOTLINES`), as ``build_table_dir`` does for the Matrix tests and demo;
  the manifest is signed by throwaway keys and the client verifies it
  (:func:`~blindmatch.protocol.verify_table`) before it makes a voucher;
* **client**: :func:`blindmatch.private.query_hashes` on the image's pixels (the recipe
  the Matrix client's ``hash_image`` and ``voucher make`` call) and
  ``ClientSession.make_voucher(pdq, confidence=, variants=, commitment=, opening_seed=)``
  as the Matrix client's ``make_voucher`` calls it;
* **server**: ``ServerSession.open(voucher, account=…)``; a listed picture's distance is
  the distance ``OpenResult.matches`` reports for its entries (``NO_MATCH`` otherwise).
* **with the second distance check** (``+check`` schemes, docs/protocol.md §11): the table
  is distance-checked (k = 40 lookup keys, radius 31, ``m`` candidate slots), and the
  exchange is the two rounds the messenger runs: ``ServerSession.begin(voucher)``, the
  client's ``answer_for_image(verified, challenge, seed, pdq, …)``, then
  ``ServerSession.finish(pending, answer, account=…)``.

The harness forks its query workers after :meth:`PrivateScheme.prepare`; the table,
signed manifest, trust and server key are kept as bytes, and each process makes its own
``ClientSession`` and ``ServerSession`` from them on first use (so the scheme also works
when it is pickled rather than forked).

For the privacy figures (:mod:`blindmatch.eval.privacy`) each voucher is also described
by the client's own probe keys (``table.scheme.probe_variants``, the computation
``make_voucher`` runs): which listed pictures' list keys they equal, so an edited listed
picture's voucher can be judged against the *other* pictures' entries.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from blindmatch.eval.privacy import Observation, PrivacySummary, summarize
from blindmatch.eval.schemes import NO_MATCH, Scheme
from blindmatch.hashing import pdq_from_rgb

# Two pretend hotlines in two jurisdictions: the governance rule (min_hotlines = 2,
# distinct jurisdictions) admits a hash only when both list it, so both list every picture.
HOTLINES = (("eval-hotline-a", "XA"), ("eval-hotline-b", "XB"))
LIST_NAME = "eval-listed"


_LAST_QUERY: list[Any] = [b"", None, 0.0]


def _query_hashes(rgb: np.ndarray, companions: bool) -> tuple[Any, float]:
    """``query_hashes(rgb, companions=)`` and the seconds it took, computed once when
    private schemes of a run see the same picture one after the other (the client recipe
    depends on the list only through ``companions``); each scheme's client time counts
    the computation in full."""
    from blindmatch.private import query_hashes

    pixels = np.ascontiguousarray(rgb)
    key = hashlib.sha256(pixels.tobytes()).digest() + repr((pixels.shape, companions)).encode()
    if _LAST_QUERY[0] != key:
        start = time.perf_counter()
        found = query_hashes(pixels, companions=companions)
        _LAST_QUERY[:] = [key, found, time.perf_counter() - start]
    return _LAST_QUERY[1], _LAST_QUERY[2]


class PrivateScheme(Scheme):
    """Private matching under the block policy with the default lookup-key scheme.

    ``companions``: the list is built from the pictures, so every entry carries its
    companion hash (``private+companion``); otherwise it is a list of bare PDQs, as a
    hotline's hash list is (``private``). ``hot``: every listed picture is in the hot tier
    as well, with its hot companions (:mod:`blindmatch.hashing.hot`; ``private+hot``).
    The client is the same either way."""

    name, bits = "private", 256
    #: The lookup keys of a distance-checked table (short: the check decides, not the key).
    CHECK_KEY_BITS = 40

    def __init__(
        self, *, companions: bool = False, hot: bool = False, check: int = 0, key_bits: int = 40
    ) -> None:
        """``check``: ``m`` candidate slots of the second distance check (0: no check), with
        ``key_bits`` lookup keys."""
        from blindmatch.protocol import MATCH_DISTANCE

        self.companions = companions or hot
        self.hot = hot
        self.check = check
        self.key_bits = key_bits if check else 72
        if hot:
            self.name = "private+hot"
        elif companions:
            self.name = "private+companion"
        if check:
            self.name += "+check" if check == 1 else f"+check{check}"
            if key_bits != self.CHECK_KEY_BITS:
                self.name += f"-k{key_bits}"
        self.threshold = MATCH_DISTANCE  # what ServerSession confirms a candidate at
        self._n = 0
        self._blobs: dict[str, Any] = {}
        self._pdqs = np.zeros((0, 32), dtype=np.uint8)
        self._keymap: dict[bytes, tuple[int, ...]] = {}
        self._entries = 0
        self._describe: dict[str, Any] = {}
        self._pid = -1
        self._sessions: Any = None
        self._accounts = itertools.count()
        self._last: tuple[set[int], list[bytes], Observation] | None = None

    def __getstate__(self) -> dict[str, Any]:  # sessions are per process, made from bytes
        state = dict(self.__dict__)
        state.update(_pid=-1, _sessions=None, _last=None, _accounts=None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._accounts = itertools.count()

    # -- the list ------------------------------------------------------------------------

    def list_item(self, rgb: np.ndarray) -> bytes:
        """The listed picture's PDQ, as ``robust`` lists it; with companions followed by its
        companion hash (:mod:`blindmatch.hashing.canonical`), and in the hot tier by its
        hot companions (:mod:`blindmatch.hashing.hot`)."""
        from blindmatch.hashing.canonical import companion_pdq
        from blindmatch.hashing.hot import hot_companions

        pdq = bytes.fromhex(pdq_from_rgb(rgb).hex)
        if not self.companions:
            return pdq
        item = pdq + bytes.fromhex(companion_pdq(rgb).hex)
        if self.hot:
            item += b"".join(bytes.fromhex(h.hex) for h in hot_companions(rgb))
        return item

    def list_bytes(self, item: Any) -> int:
        """The device table's bytes per listed picture once prepared (the PDQ before)."""
        table = self._blobs.get("table")
        return len(table) // self._n if table and self._n else len(item)

    def prepare(self, items: Sequence[Any]) -> None:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        from blindmatch.private.trust import public_key_bytes, sign_by_all
        from blindmatch.protocol import (
            HotlineList,
            Policy,
            TrustedHotline,
            TrustPolicy,
            accept_without_log,
            format_issued,
            prepare_table,
        )

        self._n = len(items)
        self._pid, self._sessions, self._last = -1, None, None
        # hashes per listed picture, as rows of equal length: a picture with fewer hot
        # companions is padded with copies of its own PDQ (no distance changes)
        per = max((len(p) // 32 for p in items), default=1)
        self._pdqs = (
            np.frombuffer(b"".join(p + p[:32] * (per - len(p) // 32) for p in items),
                          dtype=np.uint8).reshape(-1, per, 32)
            if items else np.zeros((0, per, 32), dtype=np.uint8)
        )  # fmt: skip
        if not items:
            self._blobs = {}
            return

        def entry(i: int, p: bytes) -> tuple[Any, ...]:
            if not self.companions:
                return (str(i), bytes(p))
            hashes = [bytes(p[j : j + 32]) for j in range(0, len(p), 32)]
            if not self.hot:
                return (str(i), hashes[0], (hashes[1],))
            return (str(i), hashes[0], (hashes[1],), tuple(hashes[2:]))

        entries = tuple(entry(i, p) for i, p in enumerate(items))
        lists = [HotlineList(h, j, LIST_NAME, "1", entries) for h, j in HOTLINES]
        checked: dict[str, Any] = {}
        if self.check:
            from blindmatch.batch import parallel_records
            from blindmatch.protocol import MATCH_DISTANCE, VariantProbeLSH

            checked = dict(
                scheme=VariantProbeLSH(k=self.key_bits),
                distance_radius=MATCH_DISTANCE,
                distance_slots=self.check,
                records=parallel_records(),
            )
        prep = prepare_table(
            lists,
            policy=Policy.BLOCK,
            min_hotlines=len(HOTLINES),
            issued=format_issued(datetime.now(UTC)),
            **checked,
        )

        platform = Ed25519PrivateKey.generate()
        keys = {h: (Ed25519PrivateKey.generate(), j) for h, j in HOTLINES}
        trust = TrustPolicy(
            platform_key=public_key_bytes(platform),
            hotlines={h: TrustedHotline(public_key_bytes(k), j) for h, (k, j) in keys.items()},
            log_check=accept_without_log,
            min_hotlines=len(HOTLINES),
        )
        self._blobs = {
            "table": prep.table.to_bytes(),
            "manifest": sign_by_all(prep, platform, keys),
            "secret": prep.server_secret.to_bytes(),
            "trust": trust,
            "records": prep.records,
        }
        scheme = prep.table.scheme
        keymap: dict[bytes, list[int]] = defaultdict(list)
        for i, p in enumerate(items):
            for k in {
                k for j in range(0, len(p), 32) for k in scheme.list_keys(bytes(p[j : j + 32]))
            }:
                keymap[k].append(i)
        self._keymap = {k: tuple(v) for k, v in keymap.items()}
        self._entries = prep.manifest.n_entries
        self._describe = scheme.describe()

    # -- a client's image --------------------------------------------------------------

    def _session(self) -> Any:
        """This process's client and server sessions (made once per process)."""
        if self._pid != os.getpid() or self._sessions is None:
            from blindmatch.protocol import (
                AccountSecret,
                ClientSession,
                ServerSecret,
                ServerSession,
                Table,
                verify_table,
            )

            b = self._blobs
            verified = verify_table(b["table"], b["manifest"], b["trust"])
            client = ClientSession(verified, AccountSecret.generate())
            secret, table = ServerSecret.from_bytes(b["secret"]), Table.from_bytes(b["table"])
            server = ServerSession(secret, table, records=b["records"] or None)
            self._sessions = (client, server)
            self._pid = os.getpid()
        return self._sessions

    def distances(self, rgb: np.ndarray) -> tuple[np.ndarray, int]:
        from blindmatch.protocol import (
            QueryHash,
            answer_for_image,
            new_opening_seed,
            variants_for_table,
        )

        out = np.full(self._n, NO_MATCH, dtype=np.int32)
        self._last = None
        if not self._n:
            return out, 0
        client, server = self._session()
        (pdq, confidence, variants), hashing = _query_hashes(rgb, client.verified.has_companions)
        start = time.perf_counter()
        seed = new_opening_seed()
        commitment = hashlib.sha256(np.ascontiguousarray(rgb).tobytes()).digest()
        voucher = client.make_voucher(
            pdq,
            confidence=confidence,
            variants=variants,
            commitment=commitment,
            opening_seed=seed,
        )
        made = time.perf_counter()
        # one account per voucher: no account reaches the threshold, nothing is released
        account = f"eval-{os.getpid()}-{next(self._accounts)}"
        if self.check:
            pending = server.begin(voucher)
            asked = time.perf_counter()
            answer = answer_for_image(
                client.verified, pending.challenge, seed, pdq, confidence=confidence,
                variants=variants, commitment=commitment,
            )  # fmt: skip
            answered = time.perf_counter()
            result = server.finish(pending, answer, account=account)
            opened = time.perf_counter()
            client_extra, server_secs = answered - asked, (asked - made) + (opened - answered)
        else:
            result = server.open(voucher, account=account)
            opened = time.perf_counter()
            client_extra, server_secs = 0.0, opened - made
        for m in result.matches:
            for ref in m.refs:
                i = int(ref.entry_id)
                out[i] = min(int(out[i]), m.distance)

        # What the voucher's probes were (the computation make_voucher runs) and whose
        # list keys they equal; the hint's first byte counts the hashes it carries.
        used = variants_for_table(client.verified, variants)
        probes = client.table.scheme.probe_variants([QueryHash(pdq, confidence), *used])
        hit = {i for k in probes.keys for i in self._keymap.get(k, ())}
        n = probes.hint[0]
        hint = probes.hint[1 : 1 + 32 * (n - 1)]
        hashes = [pdq] + [hint[32 * j : 32 * (j + 1)] for j in range(n - 1)]
        # with the check, a listed probe key makes a candidate; without, it opens
        explained = result.candidate if self.check else result.opened
        obs = Observation(
            opened=result.opened,
            innocent_open=False,  # set per own entry in privacy()
            hashes=n,
            closest_other=NO_MATCH,
            attributed=explained == bool(hit),
            client_secs=hashing + made - start + client_extra,
            server_secs=server_secs,
            voucher_bytes=len(voucher),
        )
        self._last = (hit, hashes, obs)
        return out, n

    def privacy(self, own: int) -> Observation | None:
        """The last voucher as an innocent image: ``own`` is the listed picture it is an
        edit of (-1 for a distractor), whose entry does not count."""
        if self._last is None:
            return None
        hit, hashes, obs = self._last
        q = np.frombuffer(b"".join(hashes), dtype=np.uint8).reshape(-1, 32)
        x = q[:, None, None, :] ^ self._pdqs[None, :, :, :]  # query x picture x its hashes
        d = np.bitwise_count(x).sum(axis=3).min(axis=(0, 2))
        if 0 <= own < len(d):
            d[own] = NO_MATCH
        closest = int(d.min()) if len(d) else NO_MATCH
        others = [i for i in hit if i != own]
        candidate_bits = 0
        if self.check:
            # a candidate shows the server k sampled bits equal to that entry's; only one
            # within the radius would pass the check and open (counted as an opening, even
            # if the slots went to other candidates: the bound errs towards revealing)
            opens = any(int(d[i]) <= self.threshold for i in others)
            candidate_bits = self.key_bits if others and not opens else 0
        else:
            opens = bool(others)
        return Observation(
            opened=obs.opened,
            innocent_open=opens,
            candidate_bits=candidate_bits,
            hashes=obs.hashes,
            closest_other=min(closest, NO_MATCH),
            attributed=obs.attributed,
            client_secs=obs.client_secs,
            server_secs=obs.server_secs,
            voucher_bytes=obs.voucher_bytes,
        )

    def privacy_summary(
        self, distractors: Sequence[Observation], edited: Mapping[str, Sequence[Observation]]
    ) -> PrivacySummary | None:
        if not self._n:
            return None
        return summarize(
            distractors,
            edited,
            entries=self._entries,
            scheme=self._describe,
            policy="block",
            hotlines=list(HOTLINES),
            listed=self._n,
            table_bytes=len(self._blobs["table"]),
            check={"radius": self.threshold, "slots": self.check} if self.check else None,
        )


__all__ = ["HOTLINES", "PrivateScheme"]
