"""The canonical pose and the companion hash (blindmatch.hashing.canonical): the same
hash whichever of the 8 orientations a picture arrives in, and close under a resize."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.hashing.canonical import (
    CLOSE_MARGIN,
    COMPANION_SIDE,
    Pose,
    companion_pdq,
    companion_pixels,
    decide,
    undo_gamma,
)
from blindmatch.hashing.image import pdq_from_rgb
from blindmatch.hashing.robust import _dihedral_views, find_solid_frame
from blindmatch.private import VARIANT_PRIORS, query_hashes


def photo(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A benign generated picture, ``size`` = (width, height)."""
    return np.asarray(synthetic_photo(seed, size).convert("RGB"))


def companion_pdq_of(pixels: np.ndarray, pose: Pose) -> str:
    return pdq_from_rgb(companion_pixels(pixels, pose)).hex


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (500, 500), (333, 517)])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_orientation_has_the_same_companion(size: tuple[int, int], seed: int) -> None:
    pixels = photo(seed, size)
    first = companion_pixels(pixels)
    for view in _dihedral_views(pixels):
        # the canonical pose of any orientation is the same picture, pixel for pixel
        np.testing.assert_array_equal(companion_pixels(np.ascontiguousarray(view)), first)
        assert companion_pdq(np.ascontiguousarray(view)) == companion_pdq(pixels)
    assert max(first.shape[:2]) == min(COMPANION_SIDE, max(size))


def test_the_pose_is_landscape_and_decided_by_content() -> None:
    pixels = photo(4, (300, 200))
    d = decide(pixels)
    assert not d.pose.transpose and d.margins[0] == float("inf")
    assert decide(np.ascontiguousarray(pixels.transpose(1, 0, 2))).pose.transpose
    # a brighter left half: mirrored so the bright side is on the right
    lopsided = pixels.copy()
    lopsided[:, :100] = np.clip(lopsided[:, :100].astype(int) + 90, 0, 255)
    assert decide(lopsided).pose.flip_x
    assert not decide(np.ascontiguousarray(lopsided[:, ::-1])).pose.flip_x


def test_a_thumbnail_keeps_its_companion_but_not_its_full_size_hash() -> None:
    pixels = photo(5, (1024, 768))
    small = np.asarray(Image.fromarray(pixels).resize((256, 192), Image.Resampling.LANCZOS))
    # mirrored as well: only the companion survives both edits at once
    mirrored_thumb = np.ascontiguousarray(small[:, ::-1])
    assert distance(companion_pdq(mirrored_thumb).hex, companion_pdq(pixels).hex) <= 8


def test_query_hashes_carry_the_companion() -> None:
    pixels = photo(6, (400, 300))
    _, _, variants = query_hashes(np.ascontiguousarray(pixels[::-1]), companions=True)
    companion = bytes.fromhex(companion_pdq(pixels).hex)
    assert any(v.pdq == companion and v.prior == 1.0 for v in variants)


def test_a_close_decision_is_also_looked_up_the_other_way() -> None:
    # left-right symmetric luma: the mirror decision is a tie, so the client also hashes
    # the other pose (an edit could tip the list side's decision either way)
    half = photo(7, (200, 300))
    symmetric = np.ascontiguousarray(np.concatenate([half, half[:, ::-1]], axis=1))
    d = decide(symmetric)
    assert d.margins[1] < CLOSE_MARGIN
    assert Pose(d.pose.transpose, not d.pose.flip_x, d.pose.flip_y) in d.alternatives
    lopsided = photo(8, (400, 300)).copy()
    lopsided[:, :100] = 255
    assert decide(lopsided).alternatives == ()
    _, _, variants = query_hashes(symmetric, companions=True)
    other = bytes.fromhex(
        companion_pdq_of(symmetric, Pose(d.pose.transpose, not d.pose.flip_x, d.pose.flip_y))
    )
    assert any(v.pdq == other and v.prior < 1.0 for v in variants)


def _closest_companion(pixels: np.ndarray, listed: np.ndarray) -> int:
    target = companion_pdq(listed).hex
    _, _, variants = query_hashes(np.ascontiguousarray(pixels), companions=True)
    return min(distance(v.pdq.hex(), target) for v in variants if v.companion)


def test_a_darker_copy_is_posed_after_its_curve_is_undone() -> None:
    # seed 13: the curve moves the luma's centre of mass across the middle, so the darker
    # copy's own pose differs from the listed picture's; the client's companion after
    # undoing the curve (gamma 0.7) must be posed on the undone picture
    listed = photo(13, (320, 240))
    darker = np.asarray(undo_gamma(Image.fromarray(listed), 1 / 0.7))
    assert decide(darker).pose != decide(listed).pose
    assert _closest_companion(darker, listed) <= 4


@pytest.mark.parametrize(
    ("pad", "colour"),
    [
        ((40, 30, 40, 30), (0, 0, 0)),
        ((0, 60, 0, 61), (255, 255, 255)),
        ((25, 0, 7, 0), (200, 30, 90)),
    ],
)
def test_a_solid_frame_is_trimmed_to_the_pixel(
    pad: tuple[int, int, int, int], colour: tuple[int, int, int]
) -> None:
    listed = photo(9, (400, 300))
    left, top, right, bottom = pad
    framed = np.empty((300 + top + bottom, 400 + left + right, 3), dtype=np.uint8)
    framed[:] = colour
    framed[top : top + 300, left : left + 400] = listed
    assert find_solid_frame(framed) == (left, top, left + 400, top + 300)
    # the framed copy's companion is the listed picture's, to the bit
    assert _closest_companion(framed, listed) == 0


def test_no_solid_frame_in_a_picture_without_one() -> None:
    assert find_solid_frame(photo(10, (400, 300))) is None
    assert find_solid_frame(np.zeros((20, 20, 3), dtype=np.uint8)) is None
    flat = np.full((100, 100, 3), 7, dtype=np.uint8)  # all frame, no picture: capped
    assert find_solid_frame(flat) is None


def _framed(seed: int) -> np.ndarray:
    """A generated picture inside a solid frame (so a frame-trimmed companion is made too)."""
    framed = np.zeros((380, 480, 3), dtype=np.uint8)
    framed[40:340, 40:440] = photo(seed, (400, 300))
    return framed


@pytest.mark.parametrize("framed", [False, True], ids=["plain", "framed"])
def test_one_switch_picks_companions_or_the_other_orientations(framed: bool) -> None:
    from blindmatch.hashing.image import pdq_with_vector_from_rgb
    from blindmatch.hashing.robust import _fit

    other = VARIANT_PRIORS["other orientation"]
    pixels = _framed(14) if framed else photo(11, (640, 480))
    turned = pdq_with_vector_from_rgb(np.ascontiguousarray(np.rot90(_fit(pixels, 512))))[0].hex
    pdq_a, conf_a, bare = query_hashes(pixels, companions=False)
    pdq_b, conf_b, with_companions = query_hashes(pixels, companions=True)
    assert (pdq_a, conf_a) == (pdq_b, conf_b)  # the image's own hash either way
    # a bare-PDQ table: the 7 other orientations, and no companion at all
    assert not any(v.companion for v in bare)
    assert any(v.pdq.hex() == turned for v in bare)
    assert sum(v.prior == other for v in bare) == 7
    # a table with companions: the companions (they find every orientation, the framed
    # picture's trimmed to the pixel too), and none of the 7 other orientations
    companions = [v for v in with_companions if v.companion]
    assert companions and companions[0].pdq.hex() == companion_pdq(pixels).hex
    if framed:
        trimmed = companion_pdq(np.ascontiguousarray(pixels[40:340, 40:440])).hex
        assert any(v.pdq.hex() == trimmed for v in companions)
    assert not any(v.pdq.hex() == turned or v.prior == other for v in with_companions)
    # the rest (the image at 512 px, trimmed frames) is hashed alike for both
    assert all(v in bare for v in with_companions if not v.companion)


def test_a_solid_frame_on_a_large_picture_is_exact_after_the_coarse_pass() -> None:
    # above 1024 px the frame is found on a smaller copy, then refined at full resolution
    listed = photo(12, (1500, 1000))
    framed = np.empty((1000 + 20 + 23, 1500 + 31 + 30, 3), dtype=np.uint8)
    framed[:] = (12, 200, 40)
    framed[20:1020, 31:1531] = listed
    assert find_solid_frame(framed) == (31, 20, 1531, 1020)
    # a frame thinner than 1% of the short side is not one
    thin = np.ascontiguousarray(framed[15:1025, 26:1536])
    assert find_solid_frame(thin) is None
