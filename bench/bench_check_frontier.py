"""The second distance check: private recall vs PDQ bits revealed per innocent image, by key
length (issue 12 item 3, the frontier).

  PYTHONPATH=src .venv/bin/python bench/bench_check_frontier.py [--listed 60] [--entries 700]
      [--distractors 1500] [--seeds 2] [--ks 32,40,48,56,64,72] [--workers 1] [--cache PATH]
      [--no-agreement]

Corpus: :func:`blindmatch.eval.run.corpus_images` (the evaluation's own draw, seed 0: dedupe,
``--entries`` listed photos, ``--distractors`` other images). The first ``--listed`` of the
listed photos are edited (the evaluation's transforms, grouped below); every listed photo is
an entry of the list with its PDQ and companion (a list built from the pictures, as
``private+companion``), and in the "hot" design the ``--listed`` edited pictures also carry
their hot companions (:func:`blindmatch.hashing.hot.hot_companions`). Each edited copy and
each distractor is hashed once with the production recipe,
``blindmatch.private.query_hashes(pixels, companions=True)`` (the table has companions), and
cached.

Then, for each lookup-key length ``k`` (``VariantProbeLSH(k=k)``, other parameters default)
and ``--seeds`` public lookup-key seeds, the **lookup step** of private matching runs as in
production — ``probe_variants`` on the client's query hashes, ``probe_hashes`` for the hash
behind each probe — against the list keys of every listed hash. The blinding is left out:
tests/protocol check that a pair opens exactly when its probe key is listed (and the
agreement check below runs the real exchange). Per listed edit:

* *plain*: plaintext robust matching, some query hash within 31 bits of the picture's PDQ or
  companion;
* *no check* (today's tables): some probe key is a list key of the picture's entry and the
  hash behind it is within 31 bits of the entry's closest hash (``ServerSession.open``'s
  confirmation);
* *check, m = 1*: ``ServerSession.begin`` with one slot — per listed hash the number of
  opened pairs naming it (votes), the most voted first, ties to the first found; pairs are
  in a random order (the client shuffles them), so the slot goes to the hash named by a
  uniformly drawn opened pair among those naming a most-voted hash, checked against the hash
  behind that pair: the figure is that probability (exact, not sampled), counted when the
  slot's hash is the picture's own and within 31 bits;
* *check, m = 2*: ``begin``'s pick with two slots, run on 16 random pair orders;
* *check, m = inf*: some probe key is a list key of a hash ``h`` of the picture's entry and
  the hash behind it is within 31 bits of ``h``.

Privacy, for every distractor (against all entries) and every edited listed picture (against
the other entries), as :mod:`blindmatch.eval.privacy` counts it: a *candidate* is an image
one of whose probe keys is a list key of another entry; with the check it reveals ``k``
sampled bits, or ``256 × n`` (its PDQ and the ``n`` hashes in the hint: the match layer) if
one of its hashes is within 31 bits of that entry's hashes; without the check every
candidate opens and reveals ``256 × n``. Extrapolated to 5M entries linearly (× 5M / entries
compared); when nothing was seen, the rule-of-three bound (3 / images, × 5M / entries, × the
bits one event reveals), as the evaluation report gives it; an image counts once per
lookup-key seed (another seed is another draw of key positions). Beside it the uniform-key figure
the client floor uses (``k · probes · keys · 2^-k`` with the list's keys at 5M entries).

Unless ``--no-agreement``, the bench first builds a real distance-checked table
(``prepare_table(..., scheme=VariantProbeLSH(k=40), distance_radius=31, distance_slots=1)``)
over 10 listed entries and runs ``make_voucher`` → ``ServerSession.begin`` →
``answer_for_image`` → ``ServerSession.finish`` on ~20 queries, comparing candidate/matched
with this model.
"""

from __future__ import annotations

import argparse
import hashlib
import pickle
import random
import time
import zlib
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

GROUPS: dict[str, tuple[str, ...]] = {
    "re-encodes": ("none", "jpeg95", "jpeg70", "jpeg40"),
    "gamma, grey": ("gamma0.7", "gamma1.4", "grey"),
    "resizes": ("resize0.5", "resize0.25"),
    "mirrors, rotations": ("flip-h", "rot90", "rot180"),
    "frames, overlays": ("pad10-solid", "pad20-solid", "pad10-blur", "screenshot", "caption",
                         "watermark"),
    "blur, noise": ("blur", "noise"),
    "crops, small rotations": ("crop5-edge", "crop10-edge", "crop20-centre", "rot2", "rot4",
                               "rot10"),
}  # fmt: skip
HOT_GROUP = "crops, small rotations"
EDITS = tuple(e for g in GROUPS.values() for e in g)
RADIUS = 31
_RNG = random.Random("bench_check_frontier")  # the sampled pair orders (m = 2)
ENTRIES_AT_SCALE = 5_000_000


# -- the cache: list hashes and production query hashes ------------------------------------


def _hash_listed(args: tuple[str, int, bool]) -> dict[str, Any]:
    from PIL import Image

    from blindmatch.eval.harness import load_rgb
    from blindmatch.eval.transforms import apply
    from blindmatch.hashing import pdq_from_rgb
    from blindmatch.hashing.canonical import companion_pdq
    from blindmatch.hashing.hot import hot_companions
    from blindmatch.private import query_hashes

    path, index, edited = args
    rgb = load_rgb(path)
    out: dict[str, Any] = {
        "path": path,
        "hashes": [bytes.fromhex(pdq_from_rgb(rgb).hex), bytes.fromhex(companion_pdq(rgb).hex)],
    }
    if edited:
        out["hot"] = [bytes.fromhex(h.hex) for h in hot_companions(rgb)]
        base = Image.fromarray(rgb)
        out["queries"] = {}
        for edit in EDITS:
            seed = zlib.crc32(f"0:{index}:{edit}".encode())  # as the harness seeds an edit
            px = np.asarray(apply(edit, base, seed).convert("RGB"))
            out["queries"][edit] = query_hashes(px, companions=True)
    return out


def _hash_distractor(path: str) -> Any:
    from blindmatch.errors import BlindmatchError
    from blindmatch.eval.harness import load_rgb
    from blindmatch.private import query_hashes

    try:
        return query_hashes(load_rgb(path), companions=True)
    except (BlindmatchError, OSError, ValueError):
        return None  # the evaluation skips an image it cannot hash, as here


def build_cache(path: Path, listed: int, entries: int, distractors: int, workers: int) -> Any:
    from blindmatch.config import load_settings
    from blindmatch.eval.run import EvalOptions, corpus_images

    opts = EvalOptions(
        listed=entries,
        distractors=distractors,
        cache_dir=load_settings().home / "eval-cache",
        workers=workers,
    )
    photos, others = corpus_images(opts)
    jobs = [(str(p), i, i < listed) for i, p in enumerate(photos)]
    with ProcessPoolExecutor(workers) as pool:
        items = []
        for n, item in enumerate(pool.map(_hash_listed, jobs, chunksize=4)):
            items.append(item)
            if (n + 1) % 50 == 0:
                print(f"# listed {n + 1}/{len(jobs)}", flush=True)
        dq = []
        for n, q in enumerate(pool.map(_hash_distractor, map(str, others), chunksize=16)):
            if q is not None:
                dq.append(q)
            if (n + 1) % 250 == 0:
                print(f"# distractors {n + 1}/{len(others)}", flush=True)
    data = {"listed": items, "distractors": dq, "edited": listed}
    path.write_bytes(pickle.dumps(data))
    return data


# -- the model of the lookup step and of ServerSession.begin --------------------------------


Leaf = tuple[int, bytes]  # (entry index, listed hash): one committed record


def hamming(a: bytes, b: bytes) -> int:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).bit_count()


def keymap_for(scheme: Any, leaves: Sequence[Leaf]) -> dict[bytes, list[Leaf]]:
    """List key → the leaves whose hash has it, in leaf order (as ``ServerSession._leaves``)."""
    out: dict[bytes, list[Leaf]] = defaultdict(list)
    for leaf in leaves:
        for key in dict.fromkeys(scheme.list_keys(leaf[1])):
            out[key].append(leaf)
    return dict(out)


@dataclass
class Probed:
    """One query's probes against the list: what the server would see."""

    hashes: list[bytes]  # the image's own hash and the hint's hashes (n = len)
    hits: list[tuple[bytes, list[Leaf]]]  # per opened pair: the hash behind it, its leaves
    closest: dict[int, int] = field(default_factory=dict)  # entry -> confirmation distance


def probe(scheme: Any, keymap: dict[bytes, list[Leaf]], query: Any) -> Probed:
    from blindmatch.protocol import QueryHash

    own, confidence, variants = query
    probed = scheme.probe_variants([QueryHash(own, confidence), *variants])
    n = probed.hint[0]
    hint = probed.hint[1 : 1 + 32 * (n - 1)]
    hashes = [own] + [hint[32 * j : 32 * (j + 1)] for j in range(n - 1)]
    hits = [(s, keymap[key]) for key, s in scheme.probe_hashes(own, probed.hint) if key in keymap]
    return Probed(hashes, hits)


def slot_pick(hits: Sequence[tuple[bytes, list[Leaf]]]) -> list[tuple[bytes, Leaf]]:
    """``begin`` with one slot: the pairs that may come first among those naming a most-voted
    leaf (each equally likely: the client shuffles its pairs), with the leaf each would put
    in the slot and the hash behind it (the pair named in the slot)."""
    votes: dict[Leaf, int] = defaultdict(int)
    for _, leaves in hits:
        for leaf in leaves:
            votes[leaf] += 1
    if not votes:
        return []
    top = max(votes.values())
    out = []
    for s, leaves in hits:
        best = [leaf for leaf in leaves if votes[leaf] == top]
        if best:
            out.append((s, best[0]))
    return out


def begin_slots(
    hits: Sequence[tuple[bytes, list[Leaf]]], slots: int, rng: random.Random, draws: int, own: int
) -> float:
    """``begin`` with ``slots`` slots, run on ``draws`` random orders of the opened pairs
    (the client shuffles them): the share of orders in which a slot holds a leaf of entry
    ``own`` within 31 bits of the hash behind the pair that names it (the check opens)."""
    if not hits:
        return 0.0
    opened = 0
    order = list(range(len(hits)))
    for _ in range(draws):
        rng.shuffle(order)
        first: dict[Leaf, bytes] = {}
        votes: dict[Leaf, int] = defaultdict(int)
        for i in order:
            s, leaves = hits[i]
            for leaf in leaves:
                first.setdefault(leaf, s)
                votes[leaf] += 1
        best = sorted(first, key=lambda leaf: -votes[leaf])[:slots]  # as begin: stable
        opened += any(leaf[0] == own and hamming(first[leaf], leaf[1]) <= RADIUS for leaf in best)
    return opened / draws


@dataclass
class Found:
    candidate: bool
    m1: float  # probability the one slot opens on the picture's own entry
    m1_any: float  # ... on any entry (what finish reports as matched)
    m_inf: bool
    no_check: bool
    m2: float = 0.0  # two slots: the share of 16 sampled pair orders that open on own


def judge(p: Probed, own: int, entry_hashes: Sequence[Sequence[bytes]]) -> Found:
    picks = slot_pick(p.hits)
    m1 = m1_any = 0.0
    if picks:
        m1_any = sum(hamming(s, leaf[1]) <= RADIUS for s, leaf in picks) / len(picks)
        m1 = sum(leaf[0] == own and hamming(s, leaf[1]) <= RADIUS for s, leaf in picks) / len(picks)
    m_inf = any(leaf[0] == own and hamming(s, leaf[1]) <= RADIUS for s, ls in p.hits for leaf in ls)
    no_check = any(
        leaf[0] == own and min(hamming(s, h) for h in entry_hashes[own]) <= RADIUS
        for s, ls in p.hits
        for leaf in ls
    )
    m2 = begin_slots(p.hits, 2, _RNG, 16, own) if own >= 0 else 0.0
    return Found(bool(p.hits), m1, m1_any, m_inf, no_check, m2)


@dataclass
class Innocent:
    candidate: bool
    leaves: int  # other entries' leaves named
    near: bool  # one of its hashes within 31 bits of a candidate entry's hash
    n: int

    def bits(self, k: int, check: bool) -> int:
        if not self.candidate:
            return 0
        if check:
            return 256 * self.n if self.near else k
        return 256 * self.n


def innocent(p: Probed, own: int, entry_hashes: Sequence[Sequence[bytes]]) -> Innocent:
    others = {leaf for _, ls in p.hits for leaf in ls if leaf[0] != own}
    near = any(
        hamming(x, y) <= RADIUS for e in {leaf[0] for leaf in others} for y in entry_hashes[e]
        for x in p.hashes
    )  # fmt: skip
    return Innocent(bool(others), len(others), near, len(p.hashes))


# -- the run -----------------------------------------------------------------------------


@dataclass
class Tally:
    found: dict[str, list[float]] = field(default_factory=lambda: defaultdict(lambda: [0.0] * 6))
    n: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    innocent: dict[str, list[Innocent]] = field(default_factory=lambda: defaultdict(list))


def run_design(data: Any, k: int, seeds: int, hot: bool) -> Tally:
    from blindmatch.protocol import VariantProbeLSH

    items = data["listed"]
    entry_hashes = [
        it["hashes"] + (it.get("hot", []) if hot and i < data["edited"] else [])
        for i, it in enumerate(items)
    ]
    leaves = [(i, h) for i, hs in enumerate(entry_hashes) for h in hs]
    tally = Tally()
    for seed in range(seeds):
        scheme = VariantProbeLSH(k=k, seed=hashlib.sha256(bytes([seed])).digest())
        keymap = keymap_for(scheme, leaves)
        for i, it in enumerate(items[: data["edited"]]):
            listed = it["hashes"]  # plaintext robust: the PDQ and the companion
            for edit, query in it["queries"].items():
                own, _, variants = query
                qh = [own] + [v.pdq for v in variants]
                plain = any(hamming(q, h) <= RADIUS for q in qh for h in listed)
                p = probe(scheme, keymap, query)
                f = judge(p, i, entry_hashes)
                row = tally.found[edit]
                row[0] += plain
                row[1] += f.no_check
                row[2] += f.m1
                row[3] += f.m2
                row[4] += f.m_inf
                row[5] += f.candidate
                tally.n[edit] += 1
                tally.innocent["edited"].append(innocent(p, i, entry_hashes))
        for query in data["distractors"]:
            p = probe(scheme, keymap, query)
            tally.innocent["distractors"].append(innocent(p, -1, entry_hashes))
    return tally


def _fmt(x: float) -> str:
    if x == 0:
        return "0"
    return f"{x:.2g}" if x >= 0.01 else f"{x:.1e}"


def report(data: Any, k: int, tally: Tally, hot: bool, keys_per_entry: float) -> None:
    entries = len(data["listed"])
    print(f"\n#### k = {k}{' (hot tier: the edited pictures hot)' if hot else ''}")
    print("| edits | n | plain | no check | check m=1 | check m=2 | check m=inf | candidate |")
    print("|---|---|---|---|---|---|---|---|")
    overall = [0.0] * 6
    total = 0
    for group, edits in GROUPS.items():
        row = [sum(tally.found[e][c] for e in edits) for c in range(6)]
        n = sum(tally.n[e] for e in edits)
        if group != HOT_GROUP:
            overall = [a + b for a, b in zip(overall, row, strict=True)]
            total += n
        cells = " | ".join(f"{v / max(1, n):.3f}" for v in row)
        print(f"| {group} | {n} | {cells} |")
    cells = " | ".join(f"{v / max(1, total):.3f}" for v in overall)
    print(f"| **all but crops** | {total} | {cells} |")
    ratio = " | ".join(f"{v / max(1, overall[0]):.3f}" for v in overall[1:5])
    print(f"| private / plain, all but crops | | | {ratio} | |")
    print()
    print(
        "| innocent images | images | entries compared | candidates (leaves) | within 31 "
        "| candidates / image @5M | bits / image, check | @5M | bits / image, no check | @5M |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for group, obs in tally.innocent.items():
        compared = entries if group == "distractors" else entries - 1
        scale = ENTRIES_AT_SCALE / compared
        images = len(obs)
        cands = sum(o.candidate for o in obs)
        near = sum(o.candidate and o.near for o in obs)
        mean_n = sum(o.n for o in obs) / max(1, images)
        bound = 3 / max(1, images) * scale  # events per image at 5M, 95 % (rule of three)
        c_rate = cands / max(1, images)
        cand_at = _fmt(c_rate * scale) if cands else f"< {_fmt(bound)}"
        chk = sum(o.bits(k, True) for o in obs) / max(1, images)
        nochk = sum(o.bits(k, False) for o in obs) / max(1, images)
        # nothing seen: the bound × the bits one event reveals (a candidate: k with the
        # check; an opening: 256 × n without)
        chk_at = _fmt(chk * scale) if chk else f"< {_fmt(bound * k)}"
        nochk_at = _fmt(nochk * scale) if nochk else f"< {_fmt(bound * 256 * mean_n)}"
        print(
            f"| {group} | {images} | {compared} | {cands} ({sum(o.leaves for o in obs)}) | "
            f"{near} | {cand_at} | {_fmt(chk)} | {chk_at} | {_fmt(nochk)} | {nochk_at} |"
        )
    from blindmatch.protocol import VariantProbeLSH

    probes = VariantProbeLSH(k=k).probes
    uniform = probes * keys_per_entry * ENTRIES_AT_SCALE * 2.0**-k
    print(
        f"uniform-key figure at 5M ({keys_per_entry:.2f} keys/entry, {probes} probes): "
        f"{_fmt(uniform)} candidates / image, {_fmt(k * uniform)} bits / image with the check"
    )


# -- agreement with the real protocol ----------------------------------------------------


def agreement(data: Any, n_entries: int = 10) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from blindmatch.private.trust import public_key_bytes, sign_by_all
    from blindmatch.protocol import (
        AccountSecret,
        ClientSession,
        HotlineList,
        Policy,
        ServerSession,
        TrustedHotline,
        TrustPolicy,
        VariantProbeLSH,
        accept_without_log,
        answer_for_image,
        format_issued,
        new_opening_seed,
        prepare_table,
        verify_table,
    )
    from blindmatch.protocol.table import leaf_hashes
    from blindmatch.protocol.voucher import variants_for_table

    items = data["listed"][:n_entries]
    rows = tuple((str(i), it["hashes"][0], (it["hashes"][1],)) for i, it in enumerate(items))
    hotlines = (("HL-A", "XA"), ("HL-B", "XB"))
    prep = prepare_table(
        [HotlineList(h, j, "agree", "1", rows) for h, j in hotlines],
        scheme=VariantProbeLSH(k=40),
        policy=Policy.BLOCK,
        min_hotlines=2,
        issued=format_issued(datetime.now(UTC)),
        distance_radius=RADIUS,
        distance_slots=1,
    )
    platform = Ed25519PrivateKey.generate()
    keys = {h: (Ed25519PrivateKey.generate(), j) for h, j in hotlines}
    trust = TrustPolicy(
        platform_key=public_key_bytes(platform),
        hotlines={h: TrustedHotline(public_key_bytes(kk), j) for h, (kk, j) in keys.items()},
        log_check=accept_without_log,
        min_hotlines=2,
    )
    verified = verify_table(prep.table.to_bytes(), sign_by_all(prep, platform, keys), trust)
    client = ClientSession(verified, AccountSecret.generate())
    server = ServerSession(prep.server_secret, prep.table, records=prep.records)
    scheme = prep.table.scheme
    assert isinstance(scheme, VariantProbeLSH)
    distance = prep.server_secret.distance
    assert distance is not None
    # the model with the real table's leaves, in its keyed leaf order
    real_leaves = leaf_hashes(prep.server_secret.entries, distance[1])
    keymap = keymap_for(scheme, real_leaves)

    queries: list[tuple[str, Any]] = []
    for i, it in enumerate(items[: data["edited"]]):
        for edit in ("none", "jpeg40", "gamma1.4", "resize0.25", "flip-h", "pad20-solid")[
            i % 3 :: 3
        ]:
            queries.append((f"listed {i} {edit}", it["queries"][edit]))
    queries += [(f"distractor {j}", q) for j, q in enumerate(data["distractors"][:4])]
    # near misses made to be candidates: a listed PDQ with 40 bits flipped outside its key
    sample = set(scheme.positions[0])
    outside = [b for b in range(256) if b not in sample][:40]
    for i in range(2):
        pdq = bytearray(items[i]["hashes"][0])
        for b in outside:
            pdq[b // 8] ^= 0x80 >> (b % 8)  # pdq_bit order: MSB first (as the key sample)
        queries.append((f"listed {i} PDQ, 40 bits flipped off its key", (bytes(pdq), None, [])))

    agree = decided = 0
    print("\n#### Agreement with the real protocol (k = 40, R = 31, m = 1, 10 entries)")
    print("| query | real candidate | model | real matched | model P(matched) |")
    print("|---|---|---|---|---|")
    for name, (own, confidence, variants) in queries:
        used = variants_for_table(verified, variants)
        seed = new_opening_seed()
        voucher = client.make_voucher(own, confidence=confidence, variants=used, opening_seed=seed)
        pending = server.begin(voucher)
        answer = answer_for_image(
            verified, pending.challenge, seed, own, confidence=confidence, variants=used
        )
        result = server.finish(pending, answer, account="bench")
        p = probe(scheme, keymap, (own, confidence, used))
        f = judge(p, -2, [])
        ok_c = result.candidate == f.candidate
        if f.m1_any in (0.0, 1.0):
            decided += 1
            ok = ok_c and result.matched == bool(f.m1_any)
        else:
            ok = ok_c
        agree += ok
        print(
            f"| {name} | {result.candidate} | {f.candidate} | {result.matched} | "
            f"{f.m1_any:.2f}{'' if ok else ' **DISAGREE**'} |"
        )
    print(
        f"agreement: {agree}/{len(queries)} queries ({decided} where the model's outcome is "
        f"certain; the rest compare the candidate flag and show P)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--listed", type=int, default=60, help="edited listed photos")
    ap.add_argument("--entries", type=int, default=700, help="listed photos in the list")
    ap.add_argument("--distractors", type=int, default=1500)
    ap.add_argument("--seeds", type=int, default=2, help="public lookup-key seeds")
    ap.add_argument("--ks", default="32,40,48,56,64,72")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--no-hot", action="store_true", help="skip the hot-tier design")
    ap.add_argument("--no-agreement", action="store_true")
    ap.add_argument("--cache", type=Path, default=None)
    args = ap.parse_args()
    cache = args.cache or Path(
        f"/tmp/check-frontier-{args.listed}-{args.entries}-{args.distractors}.pkl"
    )
    start = time.monotonic()
    data = (
        pickle.loads(cache.read_bytes())  # noqa: S301 - our own cache file
        if cache.exists()
        else build_cache(cache, args.listed, args.entries, args.distractors, args.workers)
    )
    print(
        f"# {data['edited']} edited listed photos x {len(EDITS)} edits, "
        f"{len(data['listed'])} entries (PDQ + companion), {len(data['distractors'])} "
        f"distractors, {args.seeds} lookup-key seeds; cache {cache} "
        f"({time.monotonic() - start:.0f} s)",
        flush=True,
    )
    if not args.no_agreement:
        agreement(data)
    hot_keys = sum(len(it.get("hot", [])) for it in data["listed"])
    designs = [("companions", False, 2.0)]
    if not args.no_hot:
        # at scale: the same share of hot pictures as here
        designs.append(("hot", True, 2.0 + hot_keys / len(data["listed"])))
    for name, hot, keys_per_entry in designs:
        print(f"\n### {name}")
        for k in (int(x) for x in args.ks.split(",")):
            tally = run_design(data, k, args.seeds, hot)
            report(data, k, tally, hot, keys_per_entry)
            print(f"# ({time.monotonic() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
