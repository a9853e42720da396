"""Lookup keys for private matching: the measured frontier (issue 4, "Performance and quality").

Two steps, both reproducible from the command line:

  .venv/bin/python bench/bench_lookup_keys.py cache [--workers 2] [--listed N] [--distractors N]
  .venv/bin/python bench/bench_lookup_keys.py study [--cache /tmp/keystudy]

``cache`` decodes the evaluation corpus once (700 listed photos x the 34 harness transforms,
20,000 distractors; the harness's seeds) and stores, for every image, the PDQ bits *and*
PDQ's float DCT vector of every query variant that plaintext robust matching
(``blindmatch.hashing.robust.query_variants``, plus the full-size hash, as the harness's
``robust`` scheme does) looks up. ``study`` is then pure numpy: it prints plaintext robust
recall and private recall side by side, per lookup-key design, by distance band, with false
openings split into unrelated and near-miss distractors and extrapolated to a 5M-entry list.
"""

from __future__ import annotations

import argparse
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from blindmatch.hashing.image import pdq_vector_from_rgb

CACHE = Path("/tmp/keystudy")
MAX_VARIANTS = 12
# variant labels: 0 the full-size hash, 1..8 the dihedral views of the 512-px copy
# (blindmatch.hashing.robust.DIHEDRAL order), 9 trim0:orig, 10 trim0:flipx, 11 trim1:orig
LABELS = (
    "full", "orig", "rot90", "rot180", "rot270", "flipx", "flipy", "flipplus1", "flipminus1",
    "trim0:orig", "trim0:flipx", "trim1:orig",
)  # fmt: skip
MIN_QUALITY = 50


# ---------------------------------------------------------------------------------------------
# cache: PDQ bits + float vectors of every robust query variant


def pdq_float(pixels: np.ndarray) -> tuple[np.ndarray, int]:
    """PDQ's float DCT vector (256, bit order of ``blindmatch.protocol.lookup``) and quality;
    ``vector > median(vector)`` are the PDQ's bits."""
    return pdq_vector_from_rgb(pixels)


def variant_floats(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(MAX_VARIANTS, 256) float32 (NaN rows: variant absent) and (MAX_VARIANTS,) quality
    (-1: absent), in ``LABELS`` order: exactly the hashes the ``robust`` scheme looks up."""
    from blindmatch.hashing.robust import _dihedral_views, _fit, find_frames

    out = np.full((MAX_VARIANTS, 256), np.nan, dtype=np.float32)
    qual = np.full(MAX_VARIANTS, -1, dtype=np.int16)
    out[0], qual[0] = pdq_float(rgb)
    small = _fit(rgb, 512)
    for j, view in enumerate(_dihedral_views(small)):
        out[1 + j], qual[1 + j] = pdq_float(view)
    for k, (left, top, right, bottom) in enumerate(find_frames(small)):
        inner = small[top:bottom, left:right]
        slot = 9 if k == 0 else 11
        out[slot], qual[slot] = pdq_float(inner)
        if k == 0:
            out[10], qual[10] = pdq_float(inner[:, ::-1])
    return out, qual


def _listed_task(args: tuple[int, str, tuple[str, ...]]) -> dict[str, Any]:
    from PIL import Image

    from blindmatch.eval.harness import _seed, load_rgb
    from blindmatch.eval.transforms import apply

    index, path, transforms = args
    try:
        rgb = load_rgb(path)
    except Exception as e:  # noqa: BLE001 - a bad corpus file is skipped, as the harness does
        return {"error": f"{path}: {e}"}
    f, q = pdq_float(rgb)
    if q < MIN_QUALITY:
        return {"error": f"{path}: quality {q}"}
    base = Image.fromarray(rgb)
    qf = np.full((len(transforms), MAX_VARIANTS, 256), np.nan, dtype=np.float32)
    qq = np.full((len(transforms), MAX_VARIANTS), -1, dtype=np.int16)
    for ti, t in enumerate(transforms):
        edited = np.asarray(apply(t, base, _seed(0, index, t)).convert("RGB"))
        qf[ti], qq[ti] = variant_floats(edited)
    return {"list": f, "list_q": q, "qf": qf, "qq": qq}


def _distractor_task(path: str) -> dict[str, Any]:
    from blindmatch.eval.harness import load_rgb

    try:
        rgb = load_rgb(path)
    except Exception as e:  # noqa: BLE001
        return {"error": f"{path}: {e}"}
    f, q = variant_floats(rgb)
    return {"qf": f, "qq": q}


def cmd_cache(a: argparse.Namespace) -> None:
    from blindmatch.eval.run import EvalOptions, corpus_images
    from blindmatch.eval.transforms import TRANSFORMS

    out = Path(a.cache)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = Path.home() / ".local/share/blindmatch/eval-cache"
    listed, distractors = corpus_images(EvalOptions(cache_dir=cache_dir))
    listed, distractors = listed[: a.listed], distractors[: a.distractors]
    transforms = tuple(TRANSFORMS)
    ctx_pool = ProcessPoolExecutor(max_workers=a.workers) if a.workers > 1 else None
    mapper = ctx_pool.map if ctx_pool else map
    t0 = time.time()
    if a.part in ("all", "listed"):
        rows = []
        tasks = [(i, str(p), transforms) for i, p in enumerate(listed)]
        for n, res in enumerate(mapper(_listed_task, tasks), 1):  # type: ignore[operator]
            rows.append(res)
            if n % 25 == 0:
                print(f"listed {n}/{len(tasks)} {time.time() - t0:.0f}s", flush=True)
        ok = [r for r in rows if "error" not in r]
        print(f"listed: {len(ok)} usable, {len(rows) - len(ok)} skipped", flush=True)
        np.save(out / "listed_float.npy", np.stack([r["list"] for r in ok]))
        np.save(out / "query_float.npy", np.stack([r["qf"] for r in ok]).astype(np.float16))
        np.save(out / "query_quality.npy", np.stack([r["qq"] for r in ok]))
        (out / "transforms.txt").write_text("\n".join(transforms) + "\n")
    if a.part in ("all", "distractors"):
        rows = []
        for n, res in enumerate(mapper(_distractor_task, map(str, distractors)), 1):  # type: ignore[operator]
            rows.append(res)
            if n % 500 == 0:
                print(f"distractors {n}/{len(distractors)} {time.time() - t0:.0f}s", flush=True)
        ok = [r for r in rows if "error" not in r]
        print(f"distractors: {len(ok)} usable, {len(rows) - len(ok)} skipped", flush=True)
        np.save(out / "distractor_float.npy", np.stack([r["qf"] for r in ok]).astype(np.float16))
        np.save(out / "distractor_quality.npy", np.stack([r["qq"] for r in ok]))
    if ctx_pool:
        ctx_pool.shutdown()
    print(f"cache written to {out} in {time.time() - t0:.0f}s")


# ---------------------------------------------------------------------------------------------
# study: pure numpy over the cache

BANDS = ((0, 16), (17, 31))
NEAR_MISS = (32, 84)  # distance to the closest listed entry (brief: near misses are 36-84)
LIST_SIZE = 5_000_000


class Data:
    """The cache, with bits, normalised confidences and validity derived once."""

    def __init__(self, cache: Path, listed: int | None = None, distractors: int | None = None):
        self.transforms = (cache / "transforms.txt").read_text().split()
        lf = np.load(cache / "listed_float.npy")[:listed]
        qf = np.load(cache / "query_float.npy")[:listed].astype(np.float32)
        qq = np.load(cache / "query_quality.npy")[:listed]
        df = np.load(cache / "distractor_float.npy")[:distractors].astype(np.float32)
        dq = np.load(cache / "distractor_quality.npy")[:distractors]
        self.n, self.t = qf.shape[:2]
        self.list_bits = lf > np.median(lf, axis=-1, keepdims=True)
        # queries: listed image x transform, flattened to rows of MAX_VARIANTS variants
        self.q_bits, self.q_conf, self.q_valid = _derive(qf.reshape(-1, MAX_VARIANTS, 256), qq)
        self.q_owner = np.repeat(np.arange(self.n), self.t)
        self.q_transform = np.tile(np.arange(self.t), self.n)
        self.d_bits, self.d_conf, self.d_valid = _derive(df, dq)
        self.list_words = _words(self.list_bits)
        # distance of every query variant to its own entry (999: variant absent/untrusted)
        own = np.bitwise_count(_words(self.q_bits) ^ self.list_words[self.q_owner][:, None, :]).sum(
            -1, dtype=np.int32
        )
        self.q_own = np.where(self.q_valid, own, 999)
        self.q_best = self.q_own.min(-1)


def _derive(f: np.ndarray, quality: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    quality = quality.reshape(f.shape[:2])
    present = quality >= 0
    f = np.where(present[..., None], f, 0.0)
    med = np.median(f, axis=-1, keepdims=True)
    bits = f > med
    conf = np.abs(f - med)
    scale = np.median(conf, axis=-1, keepdims=True)
    conf = conf / np.where(scale > 0, scale, 1.0)
    return bits, conf.astype(np.float32), quality >= MIN_QUALITY


def _words(bits: np.ndarray) -> np.ndarray:
    """(..., 256) bool -> (..., 4) uint64 (for popcount distances)."""
    return np.packbits(bits, axis=-1).view(">u8").astype(np.uint64)


def distances_to_list(words: np.ndarray, valid: np.ndarray, list_words: np.ndarray) -> np.ndarray:
    """(rows, V) query variants vs every entry: (rows, V, n_entries) uint16 (999 = absent)."""
    out = np.empty((*words.shape[:2], len(list_words)), dtype=np.uint16)
    step = 256
    for s in range(0, len(words), step):
        w = words[s : s + step]
        d = np.bitwise_count(w[:, :, None, :] ^ list_words[None, None, :, :]).sum(
            -1, dtype=np.uint16
        )
        out[s : s + step] = np.where(valid[s : s + step, :, None], d, 999)
    return out


def flip_levels(conf: np.ndarray) -> np.ndarray:
    """Quantised normalised confidence, as ``blindmatch.protocol.lookup.confidence_levels``."""
    from blindmatch.protocol.lookup import CONF_LEVELS, CONF_STEPS

    return np.minimum((conf * CONF_STEPS).astype(np.int64), CONF_LEVELS - 1)


def fit_flip_model(data: Data, rows: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """P(bit differs from the listed hash | normalised confidence), on the best variant of
    every within-31 query among ``rows``."""
    rows = rows[data.q_best[rows] <= 31]
    v = data.q_own[rows].argmin(-1)
    diff = data.q_bits[rows, v] != data.list_bits[data.q_owner[rows]]
    conf = data.q_conf[rows, v]
    from blindmatch.protocol.lookup import FLIP_MODEL_CONF

    ps = []
    edges = (*FLIP_MODEL_CONF, 1e9)
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        m = (conf >= lo) & (conf < hi)
        ps.append(float((diff[m].sum() + 0.5) / (m.sum() + 1.0)))
    return FLIP_MODEL_CONF, tuple(ps)


class Design:
    """A lookup-key design as the study simulates it (see ``blindmatch.protocol.lookup``)."""

    def __init__(
        self,
        *,
        k: int,
        tables: int,
        probes: int,
        weak: int = 10,
        max_flips: int = 3,
        variants: str = "all",
        side_weight: float = 0.05,
        trim_weight: float = 0.3,
        seed: int = 0,
    ) -> None:
        self.k, self.tables, self.probes = k, tables, probes
        self.weak, self.max_flips, self.variants = weak, max_flips, variants
        self.side_weight, self.trim_weight = side_weight, trim_weight
        from blindmatch.protocol.lookup import VariantProbeLSH

        rng = np.random.default_rng(seed)
        # the implementation's public positions for this seed (the deployed point uses seed 0)
        scheme = VariantProbeLSH(k=k, tables=tables, seed=seed.to_bytes(32, "big"))
        self.positions = [np.array(p) for p in scheme.positions]
        # XOR-linear 64-bit fingerprints of (table, sampled bits): collisions between
        # different keys ~2^-64, negligible next to the rates measured here
        self.coef = rng.integers(0, 2**63, size=(tables, 256), dtype=np.int64).astype(np.uint64)
        self.coef |= rng.integers(0, 2, size=(tables, 256), dtype=np.int64).astype(np.uint64) << 63
        self.tag = rng.integers(0, 2**63, size=tables, dtype=np.int64).astype(np.uint64)
        import itertools

        self.combos = [
            c for r in range(max_flips + 1) for c in itertools.combinations(range(weak), r)
        ]

    def label(self) -> str:
        v = {"all": "all", "primary": "1"}.get(self.variants, self.variants)
        if v == "all" and (self.side_weight, self.trim_weight) != (0.05, 0.3):
            v += f"({self.side_weight}/{self.trim_weight})"
        return f"k={self.k} L={self.tables} m={self.weak} f={self.max_flips} var={v}"

    def variant_weight(self) -> np.ndarray:
        w = np.ones(MAX_VARIANTS)
        w[2:9] = self.side_weight
        w[9:] = self.trim_weight
        if self.variants == "primary":
            w[1:] = 0.0
        return np.log(np.maximum(w, 1e-300))

    def _key(self, bits: np.ndarray, t: int) -> np.ndarray:
        c = np.where(bits[..., self.positions[t]], self.coef[t, self.positions[t]], np.uint64(0))
        return np.bitwise_xor.reduce(c, axis=-1) ^ self.tag[t]

    def list_keys(self, bits: np.ndarray) -> np.ndarray:
        """(n, tables) uint64."""
        return np.stack([self._key(bits, t) for t in range(self.tables)], axis=-1)

    def probe(
        self, bits: np.ndarray, conf: np.ndarray, valid: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Client probes for rows of variants: keys (rows, P) uint64 (0 = padding), the
        variant each came from (rows, P) (-1 = padding), and its flip count. Exhaustive
        scoring of what ``VariantProbeLSH.probe_variants`` enumerates best-first."""
        from blindmatch.protocol.lookup import _FLIP_COST, _LOG_KEEP

        flip_cost, log_keep = np.array(_FLIP_COST), np.array(_LOG_KEEP)
        rows = len(bits)
        logw = self.variant_weight()
        all_keys, all_score, all_var, all_nf = [], [], [], []
        for t in range(self.tables):
            pos = self.positions[t]
            lv = flip_levels(conf[..., pos])  # (rows, V, k)
            base = self._key(bits, t)  # (rows, V)
            base_score = log_keep[lv].sum(-1) + logw[None, :]
            weak = np.argsort(lv, axis=-1, kind="stable")[..., : self.weak]  # (rows, V, m)
            cost = flip_cost[np.take_along_axis(lv, weak, -1)]
            fx = self.coef[t, pos][weak]  # (rows, V, m) uint64
            for c in self.combos:
                key = base.copy()
                sc = base_score.copy()
                for j in c:
                    key ^= fx[..., j]
                    sc = sc - cost[..., j]
                all_keys.append(key)
                all_score.append(np.where(valid, sc, -np.inf))
                all_var.append(np.broadcast_to(np.arange(MAX_VARIANTS), key.shape))
                all_nf.append(np.full(key.shape, len(c)))
        keys = np.stack(all_keys, -1).reshape(rows, -1)
        score = np.stack(all_score, -1).reshape(rows, -1)
        var = np.stack(all_var, -1).reshape(rows, -1)
        nf = np.stack(all_nf, -1).reshape(rows, -1)
        # the same key from two variants (the full-size and the 512-px hash agree, mostly)
        # is one probe: keep its best score
        order = np.lexsort((-score, keys), axis=-1)
        ks = np.take_along_axis(keys, order, -1)
        dup = np.zeros_like(ks, dtype=bool)
        dup[:, 1:] = ks[:, 1:] == ks[:, :-1]
        sc_sorted = np.take_along_axis(score, order, -1)
        sc_sorted[dup] = -np.inf
        np.put_along_axis(score, order, sc_sorted, -1)
        top = np.argsort(-score, axis=-1)[:, : self.probes]
        ok = np.isfinite(np.take_along_axis(score, top, -1))
        k_out = np.where(ok, np.take_along_axis(keys, top, -1), np.uint64(0))
        v_out = np.where(ok, np.take_along_axis(var, top, -1), -1)
        f_out = np.where(ok, np.take_along_axis(nf, top, -1), 0)
        return k_out, v_out, f_out


def probe_all(design: Design, bits: np.ndarray, conf: np.ndarray, valid: np.ndarray):  # type: ignore[no-untyped-def]
    outs = [
        design.probe(bits[s : s + 500], conf[s : s + 500], valid[s : s + 500])
        for s in range(0, len(bits), 500)
    ]
    return tuple(np.concatenate(x) for x in zip(*outs, strict=True))


def _log_comb(n: np.ndarray | int, r: np.ndarray | int) -> np.ndarray:
    from scipy.special import gammaln

    n, r = np.asarray(n, dtype=np.float64), np.asarray(r, dtype=np.float64)
    return gammaln(n + 1) - gammaln(r + 1) - gammaln(n - r + 1)


def unrelated_weak_rate(data: Data, sample: int = 2000) -> float:
    """How often a query's weakest sampled bits (k=64, the deployed positions) differ from an
    entry its hash is >= 85 bits from: near 1 would make the bound tight; near D/256 means
    confidence says nothing about unrelated entries."""
    des = Design(k=64, tables=1, probes=1)
    pos = des.positions[0]
    ok = np.nonzero(data.d_valid[:, 0])[0][:sample]
    bits, conf = data.d_bits[ok, 0], data.d_conf[ok, 0]
    lv = flip_levels(conf[:, pos])
    wpos = pos[np.argsort(lv, axis=1, kind="stable")[:, :10]]
    num = den = 0
    for e in range(len(data.list_bits)):
        diff = bits != data.list_bits[e][None, :]
        m = diff.sum(1) > NEAR_MISS[1]
        w = np.take_along_axis(diff[m], wpos[m], 1)
        num, den = num + int(w.sum()), den + w.size
    return num / max(den, 1)


def collision_model(k: int, max_flips: int) -> np.ndarray:
    """q[D, j]: chance that a probe with j flipped bits equals the list key of an entry at
    distance D, over the random public choice of the k sampled positions, when the j flipped
    bits are (pessimistically) all among the D differing ones: C(256-D, k-j) / C(256-j, k-j)."""
    d = np.arange(1000)[:, None]
    j = np.arange(max_flips + 1)[None, :]
    ok = (256 - d >= k - j) & (d >= j)
    lq = _log_comb(np.minimum(256 - d, 256), k - j) - _log_comb(256 - j, k - j)
    return np.where(ok, np.exp(np.where(ok, lq, 0.0)), 0.0)


CLOSE = 140  # variant-entry distances up to this enter the collision model (beyond: a bound)


class Negatives:
    """Innocent rows (images that are not edits of the entry they are compared with) and
    everything the false-opening estimates need about them, computed once per data set."""

    def __init__(self, words: np.ndarray, valid: np.ndarray, list_words: np.ndarray,
                 owner: np.ndarray | None) -> None:  # fmt: skip
        self.words, self.valid, self.owner = words, valid, owner
        self.list_words = list_words
        self.n_pairs = 0
        self.near: list[tuple[int, int, int]] = []  # (row, entry, D_min) with D_min <= 84
        self.hist = np.zeros(1000, dtype=np.int64)  # pairs by D_min
        # per row and variant: how many entries at each distance d <= CLOSE, for pairs
        # whose D_min is a near miss (class 0) or unrelated (class 1)
        rows, nb = len(words), CLOSE + 1
        self.dist_hist = np.zeros((2, rows, MAX_VARIANTS, nb), dtype=np.uint16)
        step = 256
        for s in range(0, rows, step):
            d = distances_to_list(words[s : s + step], valid[s : s + step], list_words)
            if owner is not None:
                d[np.arange(len(d)), :, owner[s : s + step]] = 999
            dmin = d.min(1)
            ok = dmin < 999
            self.n_pairs += int(ok.sum())
            self.hist += np.bincount(dmin[ok].ravel(), minlength=1000)
            r, e = np.nonzero(dmin <= NEAR_MISS[1])
            self.near += [(s + int(a), int(b), int(dmin[a, b])) for a, b in zip(r, e, strict=True)]
            for cls, m in enumerate(
                ((dmin > 31) & (dmin <= NEAR_MISS[1]), (dmin > NEAR_MISS[1]) & ok)
            ):
                sel = m[:, None, :] & (d <= CLOSE)
                r, v, e = np.nonzero(sel)
                flat = (r * MAX_VARIANTS + v) * nb + d[r, v, e]
                h = np.bincount(flat, minlength=len(d) * MAX_VARIANTS * nb)
                self.dist_hist[cls, s : s + len(d)] = h.reshape(len(d), MAX_VARIANTS, nb)

    def model_rate(self, var: np.ndarray, nflip: np.ndarray, q: np.ndarray) -> dict[str, float]:
        """Expected colliding probes per innocent pair under the hypergeometric model, by
        class of the pair's D_min: ``near`` (32-84) and ``unrelated`` (85+), as a rate per
        pair (sum over the class's pairs / all innocent pairs). Variant-entry distances
        above CLOSE are bounded by q[CLOSE + 1] per probe."""
        rows = len(var)
        counts = np.zeros((rows, MAX_VARIANTS, q.shape[1]), dtype=np.float64)
        live = var >= 0
        r = np.nonzero(live)[0]
        np.add.at(counts, (r, var[live], nflip[live]), 1.0)
        qq = q[: CLOSE + 1]
        out = {}
        for cls, name in enumerate(("near", "unrelated")):
            tot = 0.0
            for s in range(0, rows, 2048):
                h = self.dist_hist[cls, s : s + 2048].astype(np.float64)
                tot += float(np.einsum("rvj,rvd,dj->", counts[s : s + 2048], h, qq))
            out[name] = tot / self.n_pairs
        out["tail"] = var.shape[1] * float(q[CLOSE + 1].max())
        out["unrelated"] += out["tail"]
        return out


def own_hits(design: Design, data: Data, lkeys: np.ndarray, keys: np.ndarray,
             var: np.ndarray) -> np.ndarray:  # fmt: skip
    """Per query row: did a probe hit its own entry's key with a variant within 31?"""
    mine = lkeys[data.q_owner]  # (rows, tables)
    eq = (keys[:, :, None] == mine[:, None, :]).any(-1) & (var >= 0)
    dv = np.take_along_axis(data.q_own, np.maximum(var, 0), 1)
    return (eq & (dv <= 31)).any(-1)


def openings(lkeys: np.ndarray, keys: np.ndarray, var: np.ndarray, neg: Negatives,
             exclude_owner: bool) -> dict[str, Any]:  # fmt: skip
    """Actual key collisions of innocent rows with entries (the deployed seed)."""
    flat = lkeys.ravel()
    order = np.argsort(flat)
    sk = flat[order]
    ent = (order // lkeys.shape[1]).astype(np.int64)
    hit = np.isin(keys, sk) & (var >= 0)
    pairs: set[tuple[int, int]] = set()
    for r, p in zip(*np.nonzero(hit), strict=True):
        i = np.searchsorted(sk, keys[r, p])
        while i < len(sk) and sk[i] == keys[r, p]:
            e = int(ent[i])
            if not (exclude_owner and neg.owner is not None and neg.owner[r] == e):
                pairs.add((int(r), e))
            i += 1
    out = {"match": 0, "near": 0, "unrelated": 0}
    for r, e in pairs:
        d = np.bitwise_count(neg.words[r] ^ neg.list_words[e]).sum(-1)
        dmin = int(np.where(neg.valid[r], d, 999).min())
        out["match" if dmin <= 31 else "near" if dmin <= NEAR_MISS[1] else "unrelated"] += 1
    return out


def near_miss_mc(design_args: dict[str, Any], seeds: int, bits: np.ndarray, conf: np.ndarray,
                 valid: np.ndarray, list_bits: np.ndarray,
                 near: list[tuple[int, int, int]]) -> float:  # fmt: skip
    """Sum over near-miss pairs of P(a probe hits the entry), averaged over ``seeds`` public
    position draws (Monte Carlo; the deployed seed is one draw)."""
    if not near:
        return 0.0
    nm = [(r, e) for r, e, d in near if d > 31]
    if not nm:
        return 0.0
    rows = np.array([r for r, _ in nm])
    ents = np.array([e for _, e in nm])
    total = 0.0
    for s in range(seeds):
        des = Design(**design_args, seed=1000 + s)
        keys, var, _ = probe_all(des, bits[rows], conf[rows], valid[rows])
        lk = des.list_keys(list_bits[ents])
        total += float(((keys[:, :, None] == lk[:, None, :]).any(-1) & (var >= 0)).any(-1).sum())
    return total / seeds


CHOSEN = dict(k=72, tables=1, probes=37, variants="all")  # VariantProbeLSH() defaults


def default_grid() -> list[dict[str, Any]]:
    grid: list[dict[str, Any]] = [
        # the brief's starting point (what BitSamplingLSH() does): one hash, 37 probes
        dict(k=64, tables=1, probes=37, weak=8, max_flips=2, variants="primary"),
    ]
    for k in (72, 64, 56, 48, 40, 32):
        for tables in (1, 2):
            # one hash vs probes shared across the robust variants, at the chosen budget
            grid.append(dict(k=k, tables=tables, probes=37, variants="primary"))
            for probes in (24, 37, 96, 256):
                grid.append(dict(k=k, tables=tables, probes=probes, variants="all"))
    # variant priors around the chosen point
    for side, trim in ((0.01, 0.3), (0.2, 0.3), (0.05, 0.1), (0.05, 1.0)):
        grid.append(CHOSEN | dict(side_weight=side, trim_weight=trim))
    return grid


def _fmt_rate(x: float) -> str:
    return "0" if x == 0 else f"{x:.1e}"


def cmd_study(a: argparse.Namespace) -> None:
    t0 = time.time()
    data = Data(Path(a.cache), a.listed, a.distractors)
    rows_train = np.nonzero(data.q_owner % 2 == 0)[0]
    heldout = data.q_owner % 2 == 1
    model = fit_flip_model(data, rows_train)  # printed: the source of lookup.FLIP_MODEL_P
    plain = data.q_best <= 31
    print(f"# {data.n} listed x {data.t} transforms = {len(data.q_best)} queries; "
          f"{len(data.d_bits)} distractors; cache {a.cache}")  # fmt: skip
    print("# flip model P(bit differs | conf):", " ".join(f"{p:.4f}" for p in model[1]))
    dneg = Negatives(_words(data.d_bits), data.d_valid, data.list_words, None)
    qneg = Negatives(_words(data.q_bits), data.q_valid, data.list_words, data.q_owner)
    n_img = len(data.d_bits) + len(data.q_best)
    n_pairs = dneg.n_pairs + qneg.n_pairs
    near_pairs = [(r, e, d) for r, e, d in dneg.near if d > 31]
    q_near = [(r, e, d) for r, e, d in qneg.near if d > 31]
    print(f"# innocent pairs: {n_pairs:,} ({dneg.n_pairs:,} distractor x entry, "
          f"{qneg.n_pairs:,} edited listed x other entry); near misses (32-84): "
          f"{len(near_pairs)} + {len(q_near)}; plaintext matches among them: "
          f"{int(dneg.hist[:32].sum())} + {int(qneg.hist[:32].sum())}")  # fmt: skip
    bands = [(data.q_best >= lo) & (data.q_best <= hi) for lo, hi in BANDS]
    print(f"# plaintext robust recall (d <= 31, same run): {plain.mean():.4f} "
          f"(0-16: {bands[0].mean():.4f}, 17-31: {bands[1].mean():.4f}); held-out half "
          f"{plain[heldout].mean():.4f}")  # fmt: skip
    weak_rate = unrelated_weak_rate(data)
    print(f"# unrelated pairs (D >= 85): a query's 10 weakest sampled bits differ from the "
          f"entry at rate {weak_rate:.3f} (the refined estimate's per-flip factor)")  # fmt: skip
    hdr = ("design", "probes", "slots/listed", "private", "ratio", "ratio held-out",
           "0-16", "17-31", "opened near/unrel", "near@5M (bound)", "near@5M (MC)",
           "unrel@5M (bound)", "unrel@5M (est.)")  # fmt: skip
    print("| " + " | ".join(hdr) + " |")
    print("|" + "---|" * len(hdr))
    grid = default_grid() if not a.only else [g for g in default_grid() if _match(g, a.only)]
    if a.verify:  # the brief's starting point and the chosen point
        for g in grid:
            if g in (default_grid()[0], CHOSEN):
                verify(data, g, a.verify)
    for g in grid:
        des = Design(**g)
        lk = des.list_keys(data.list_bits)
        qk, qv, qf = probe_all(des, data.q_bits, data.q_conf, data.q_valid)
        hit = own_hits(des, data, lk, qk, qv)
        dk, dv, df = probe_all(des, data.d_bits, data.d_conf, data.d_valid)
        op = openings(lk, dk, dv, dneg, False)
        oq = openings(lk, qk, qv, qneg, True)
        q = collision_model(des.k, des.max_flips)
        md, mq = dneg.model_rate(dv, df, q), qneg.model_rate(qv, qf, q)
        # refined: a flipped (weak) bit differs from an unrelated entry at the measured rate
        qr = q * weak_rate ** np.arange(q.shape[1])[None, :]
        rd, rq = dneg.model_rate(dv, df, qr), qneg.model_rate(qv, qf, qr)
        # per image at a 5M-entry list = per innocent (image, entry) pair x 5M
        w_d, w_q = dneg.n_pairs / n_pairs, qneg.n_pairs / n_pairs
        near_model = (md["near"] * w_d + mq["near"] * w_q) * LIST_SIZE
        unrel_model = (md["unrelated"] * w_d + mq["unrelated"] * w_q) * LIST_SIZE
        unrel_est = (rd["unrelated"] * w_d + rq["unrelated"] * w_q) * LIST_SIZE
        nm = near_miss_mc(g, a.seeds, data.d_bits, data.d_conf, data.d_valid, data.list_bits,
                          near_pairs)  # fmt: skip
        nm += near_miss_mc(g, a.seeds, data.q_bits, data.q_conf, data.q_valid, data.list_bits,
                           q_near)  # fmt: skip
        near_mc = nm / n_pairs * LIST_SIZE
        pr = hit.mean()
        cells = (
            des.label(),
            str(des.probes),
            f"{1.25 * des.tables:.2f}",
            f"{pr:.4f}",
            f"{pr / plain.mean():.3f}",
            f"{hit[heldout].mean() / plain[heldout].mean():.3f}",
            f"{hit[bands[0]].mean():.3f}",
            f"{hit[bands[1]].mean():.3f}",
            f"{op['near'] + oq['near']}/{op['unrelated'] + oq['unrelated']}",
            _fmt_rate(near_model),
            _fmt_rate(near_mc),
            _fmt_rate(unrel_model),
            _fmt_rate(unrel_est),
        )
        print("| " + " | ".join(cells) + " |", flush=True)
    print(
        f"# {n_img:,} innocent images, {n_pairs:,} innocent pairs; one observed opening "
        f"= {LIST_SIZE / n_pairs:.2g} per image at 5M entries; {time.time() - t0:.0f}s"
    )


PRIORS = {"side": 0.05, "trim": 0.3}  # the study's default variant priors (Design)


def query_hashes(bits: np.ndarray, conf: np.ndarray, valid: np.ndarray, des: Design) -> list[Any]:
    """One image's trusted variants as ``QueryHash``es, in the study's order and priors."""
    from blindmatch.protocol.lookup import QueryHash

    w = np.exp(des.variant_weight())
    out = []
    for v in np.nonzero(valid)[0]:
        if w[v] <= 1e-200:
            continue
        pdq = np.packbits(bits[v]).tobytes()
        out.append(QueryHash(pdq, [float(x) for x in conf[v]], float(w[v])))
    return out


def verify(data: Data, g: dict[str, Any], n: int) -> None:
    """The implementation (``VariantProbeLSH.probe_variants``) against the simulation on
    ``n`` queries: same hits?"""
    from blindmatch.protocol.lookup import VariantProbeLSH

    des = Design(**g)
    scheme = VariantProbeLSH(
        k=des.k, tables=des.tables, probes=des.probes, weak=des.weak,
        max_flips=des.max_flips, seed=(0).to_bytes(32, "big"),
    )  # fmt: skip
    rng = np.random.default_rng(1)
    rows = np.sort(rng.choice(len(data.q_best), size=min(n, len(data.q_best)), replace=False))
    lk = des.list_keys(data.list_bits)
    qk, qv, _ = probe_all(des, data.q_bits[rows], data.q_conf[rows], data.q_valid[rows])
    sub = type("Sub", (), {})()
    sub.q_owner, sub.q_own = data.q_owner[rows], data.q_own[rows]
    sim = own_hits(des, sub, lk, qk, qv)  # type: ignore[arg-type]
    impl = np.zeros(len(rows), dtype=bool)
    t0 = time.perf_counter()
    for i, r in enumerate(rows):
        qs = query_hashes(data.q_bits[r], data.q_conf[r], data.q_valid[r], des)
        if not qs:
            continue
        own = np.packbits(data.list_bits[data.q_owner[r]]).tobytes()
        listed = set(scheme.list_keys(own))
        ps = scheme.probe_variants(qs)
        for key, probed in scheme.probe_hashes(qs[0].pdq, ps.hint):
            d = (int.from_bytes(probed, "big") ^ int.from_bytes(own, "big")).bit_count()
            if key in listed and d <= 31:
                impl[i] = True
    ms = (time.perf_counter() - t0) / len(rows) * 1000
    print(f"# verify {des.label()} P={des.probes} on {len(rows)} queries: implementation "
          f"recall {impl.mean():.4f}, simulation {sim.mean():.4f}, agree on "
          f"{(impl == sim).mean():.4f}; probe generation {ms:.2f} ms/image")  # fmt: skip


def _match(g: dict[str, Any], only: str) -> bool:
    want = dict(kv.split("=") for kv in only.split(","))
    return all(str(g.get(k)) == v for k, v in want.items())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("cache", help="hash the corpus once into .npy files")
    c.add_argument("--cache", default=str(CACHE))
    c.add_argument("--workers", type=int, default=1)
    c.add_argument("--listed", type=int, default=700)
    c.add_argument("--distractors", type=int, default=20_000)
    c.add_argument("--part", choices=("all", "listed", "distractors"), default="all")
    st = sub.add_parser("study", help="the frontier table (pure numpy over the cache)")
    st.add_argument("--cache", default=str(CACHE))
    st.add_argument("--listed", type=int, default=None)
    st.add_argument("--distractors", type=int, default=None)
    st.add_argument("--seeds", type=int, default=20, help="position draws for near misses")
    st.add_argument("--only", default="", help="e.g. k=64,tables=2 (subset of the grid)")
    st.add_argument("--verify", type=int, default=0, help="check the implementation on N")
    a = p.parse_args(argv)
    if a.cmd == "cache":
        cmd_cache(a)
    else:
        cmd_study(a)
    return 0


if __name__ == "__main__":
    sys.exit(main())
