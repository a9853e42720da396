"""Adversarial measurements (evasion, forced collisions) on small synthetic pictures.

Every picture is a benign abstract ``synthetic_photo``. The budgets asserted here
are what the attacks were observed to need, with margin; the attacks are
deterministic for a seed, so these tests are too."""

from __future__ import annotations

import math

import numpy as np
import pytest

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.eval.adversarial import (
    NO_HASH_DISTANCE,
    attack_scheme,
    bit_frequency,
    collide,
    evade,
    main,
    min_distance,
    psnr,
    run_adversarial,
    to_markdown,
)
from blindmatch.eval.schemes import make_scheme
from blindmatch.hashing import pdq_distance, pdq_from_rgb

SIZE = (256, 192)


def _photo(seed: int) -> np.ndarray:
    return np.asarray(synthetic_photo(seed, SIZE))


def _hex(rows: np.ndarray) -> str:
    return rows[0].tobytes().hex()


@pytest.fixture(scope="module")
def pdq():
    return make_scheme("pdq")


# ---------------------------------------------------------------- basics


def test_psnr_known_cases() -> None:
    a = np.zeros((4, 5, 3), dtype=np.uint8)
    b = np.full((4, 5, 3), 10, dtype=np.uint8)
    # MSE 100: 10 * log10(255^2 / 100)
    assert psnr(a, b) == pytest.approx(10 * math.log10(65025 / 100))
    assert psnr(a, b) == pytest.approx(28.1308, abs=1e-4)
    assert psnr(b, b) == math.inf
    c = a.copy()
    c[0, 0, 0] = 255  # one pixel channel off by 255 of 60: MSE 255^2 / 60
    assert psnr(a, c) == pytest.approx(10 * math.log10(60))
    with pytest.raises(ValueError):
        psnr(a, np.zeros((5, 4, 3), dtype=np.uint8))


def test_min_distance() -> None:
    zero = np.zeros((1, 32), dtype=np.uint8)
    rows = np.array([[0xFF] * 32, [0x01] + [0] * 31], dtype=np.uint8)
    assert min_distance(zero, rows) == 1
    assert min_distance(rows, rows) == 0
    assert min_distance(np.zeros((0, 32), dtype=np.uint8), rows) == NO_HASH_DISTANCE


def test_bit_layout_matches_pdq() -> None:
    """The guided attack's premise: pushing the DCT cosine ``bit_frequency(b)``
    against the sign of bit ``b`` flips bit ``b`` (checked with a cosine built
    here, independently of the attack code)."""
    x = _photo(3)
    h, w = x.shape[:2]
    bits = np.unpackbits(np.frombuffer(bytes.fromhex(pdq_from_rgb(x).hex), dtype=np.uint8))
    for b in (0, 17, 42, 100, 128, 213, 255):
        u, v = bit_frequency(b)
        pattern = np.outer(
            np.cos(np.pi * (v + 1) * (2 * np.arange(h) + 1) / (2 * h)),
            np.cos(np.pi * (u + 1) * (2 * np.arange(w) + 1) / (2 * w)),
        )
        sign = -1.0 if bits[b] else 1.0
        pushed = np.clip(np.rint(x + sign * 64 * pattern[:, :, None]), 0, 255).astype(np.uint8)
        after = np.unpackbits(
            np.frombuffer(bytes.fromhex(pdq_from_rgb(pushed).hex), dtype=np.uint8)
        )
        assert after[b] != bits[b], b


# ---------------------------------------------------------------- evasion


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_evasion_hides_plain_pdq_with_a_small_perturbation(pdq, seed: int) -> None:
    x = _photo(seed)
    r = evade(x, pdq, max_queries=200, seed=seed)
    # Observed: 49-62 queries, PSNR 43.7-45.4 dB on these three pictures.
    assert r.success
    assert r.queries <= 200
    assert r.psnr >= 40.0
    assert r.start_distance == 0
    assert r.final_distance > pdq.threshold
    # Independently of the attack's own bookkeeping:
    assert pdq_distance(pdq_from_rgb(r.image).hex, pdq_from_rgb(x).hex) > 31
    assert r.psnr == pytest.approx(psnr(r.image, x))
    assert len(r.history) == r.queries
    climb = r.history[: r.history.index(r.final_distance) + 1]
    assert all(a <= b for a, b in zip(climb, climb[1:], strict=False))


def test_random_mode_also_evades(pdq) -> None:
    x = _photo(0)
    r = evade(x, pdq, mode="random", max_queries=300, seed=0)
    # Observed: 81 queries, PSNR 32.0 dB (the unguided search wastes energy).
    assert r.success
    assert r.psnr >= 30.0


def test_attack_images_stay_8_bit(pdq) -> None:
    """Saturated regions force clipping: results are still uint8 pictures of the
    input's shape, and the reported PSNR is that of the returned image."""
    x = _photo(5).copy()
    x[:, :64] = 255
    x[:, -64:] = 0
    target = pdq.list_hashes(_photo(6))
    for r in (
        evade(x, pdq, mode="random", max_queries=60, min_psnr=20.0, step=(8.0, 40.0), seed=1),
        evade(x, pdq, max_queries=60, seed=1),
        collide(x, target, pdq, max_queries=60, step=(8.0, 64.0), min_psnr=10.0, seed=1),
        collide(x, target, pdq, mode="random", max_queries=60, min_psnr=10.0, seed=1),
    ):
        assert r.image.dtype == np.uint8
        assert r.image.shape == x.shape
        assert r.psnr == pytest.approx(psnr(r.image, x))
        assert r.queries <= 60


# ---------------------------------------------------------------- collisions


def test_collision_reaches_the_target_monotonically(pdq) -> None:
    source, target = _photo(100), pdq.list_hashes(_photo(0))
    r = collide(source, target, pdq, max_queries=400, seed=0)
    # Observed: 117 queries to distance 30 from 108, PSNR 33.1 dB.
    assert r.start_distance == pdq_distance(pdq_from_rgb(source).hex, _hex(target))
    assert len(r.history) == r.queries
    assert r.history[0] == r.start_distance and r.history[-1] == r.final_distance
    assert all(a >= b for a, b in zip(r.history, r.history[1:], strict=False))
    assert r.success and r.final_distance <= 31 < r.start_distance
    assert pdq_distance(pdq_from_rgb(r.image).hex, _hex(target)) <= 31
    assert r.psnr >= 28.0


def test_collision_under_a_tight_budget_still_only_improves(pdq) -> None:
    source, target = _photo(101), pdq.list_hashes(_photo(1))
    r = collide(source, target, pdq, max_queries=40, seed=4)
    assert not r.success
    assert r.queries == 40
    assert r.final_distance < r.start_distance
    assert all(a >= b for a, b in zip(r.history, r.history[1:], strict=False))


def test_attacks_are_deterministic_per_seed(pdq) -> None:
    x, target = _photo(2), pdq.list_hashes(_photo(7))
    for attack in (
        lambda s: evade(x, pdq, max_queries=80, seed=s),
        lambda s: evade(x, pdq, mode="random", max_queries=40, seed=s),
        lambda s: collide(x, target, pdq, max_queries=60, seed=s),
    ):
        a, b, c = attack(3), attack(3), attack(4)
        assert a.image.tobytes() == b.image.tobytes()
        assert (a.history, a.queries, a.psnr) == (b.history, b.queries, b.psnr)
        assert a.image.tobytes() != c.image.tobytes() or a.history != c.history


def test_guided_mode_needs_pdq() -> None:
    with pytest.raises(ValueError, match="not PDQ"):
        evade(_photo(0), make_scheme("dhash"))
    with pytest.raises(ValueError, match="unknown mode"):
        evade(_photo(0), make_scheme("pdq"), mode="gradient")


# ---------------------------------------------------------------- measurement and report


def test_run_adversarial_and_markdown() -> None:
    listed = [_photo(0), _photo(1)]
    summary = run_adversarial(
        listed,
        [_photo(100)],
        ("pdq",),
        modes=("guided",),
        edits=("jpeg40", "rot4"),
        evade_queries=150,
        collide_queries=300,
    )
    (ev,) = summary["evasion"]
    assert (ev["scheme"], ev["mode"], ev["n"], ev["success"]) == ("pdq", "guided", 2, 2)
    (co,) = summary["collision"]
    assert co["n"] == 1 and len(co["rows"]) == 1
    jpeg, rot = summary["edits"]
    assert jpeg["evaded"]["pdq"] == 0  # PDQ is built to survive JPEG
    assert 0 <= rot["evaded"]["pdq"] <= 2
    text = to_markdown(summary)
    assert "| pdq | guided | 2/2 |" in text
    assert "| jpeg40 |" in text and "**Forced collisions**" in text


def test_cli_replaces_only_the_marked_section(tmp_path) -> None:
    out = tmp_path / "adversarial.md"
    begin, end = "<!-- adversarial:begin -->", "<!-- adversarial:end -->"
    out.write_text(f"# Title\n\nprose\n{begin}\nSTALE TABLE\n{end}\ntail\n")
    args = ["--images", "1", "--schemes", "pdq", "--modes", "guided", "--evade-queries", "60"]
    assert main([*args, "--collide-queries", "30", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("# Title\n\nprose\n<!-- adversarial:begin -->\n### Synthetic")
    assert "STALE TABLE" not in text and text.endswith("<!-- adversarial:end -->\ntail\n")


def test_the_keypoint_layer_counts_in_an_evasion_of_robust_orb() -> None:
    # The guided attack that hides this picture from robust PDQ within 100 queries
    # must also get past the keypoint layer to evade robust+orb; observed: it does
    # not (the keypoint distance stays at 30 bits), and the distance it reports is
    # the one production acts on.
    x = _photo(0)
    scheme = attack_scheme("robust+orb")
    robust = make_scheme("robust")
    plain = evade(x, robust, max_queries=100, seed=0)
    r = evade(x, scheme, max_queries=100, seed=0)
    assert plain.success and not r.success
    assert scheme.keypoint_distance(x) <= 31  # the unattacked picture matches both ways
    d_robust = min_distance(robust.query_hashes(r.image), robust.list_hashes(x))
    expected = d_robust if d_robust <= 31 else min(d_robust, scheme.keypoint_distance(r.image))
    assert r.final_distance == expected <= 31


def test_robust_orb_collisions_need_the_listed_picture() -> None:
    scheme = attack_scheme("robust+orb")
    with pytest.raises(ValueError, match="target_rgb"):
        collide(_photo(1), scheme.list_hashes(_photo(2)), scheme, max_queries=5)
