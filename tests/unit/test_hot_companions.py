"""Hot companions (blindmatch.hashing.hot): the list side of the hot tier — a fixed grid of
crops and rotations of a listed picture, each edited copy's companion hash."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.errors import BadDimensions, InvalidArgument
from blindmatch.hashing.canonical import companion_pdq
from blindmatch.hashing.hot import (
    HOT_CROPS,
    HOT_ROTATIONS,
    MIN_HOT_SIDE,
    HotEdit,
    apply_edit,
    hot_companions,
    hot_edits,
    hot_hashes,
)


def photo(seed: int, size: tuple[int, int] = (800, 600)) -> np.ndarray:
    """A benign generated picture, ``size`` = (width, height)."""
    return np.asarray(synthetic_photo(seed, size).convert("RGB"))


def distance(a: str, b: str) -> int:
    return (int(a, 16) ^ int(b, 16)).bit_count()


def nearest(query: str, hashes: list[str]) -> int:
    return min(distance(query, h) for h in hashes)


def test_grid_is_the_documented_one() -> None:
    edits = hot_edits()
    assert len(edits) == 5 * len(HOT_CROPS) + 2 * len(HOT_ROTATIONS)
    assert len({e.label for e in edits}) == len(edits)  # no point twice
    corners = [e for e in edits if e.kind == "corner"]
    assert {(e.amount, e.corner) for e in corners} == {(f, c) for f in HOT_CROPS for c in range(4)}
    assert {e.amount for e in edits if e.kind == "centre"} == set(HOT_CROPS)
    assert sorted(e.amount for e in edits if e.kind == "rotate") == sorted(
        [d for d in HOT_ROTATIONS] + [-d for d in HOT_ROTATIONS]
    )


def test_crop_edits_keep_the_stated_box() -> None:
    image = Image.fromarray(photo(1, (400, 300)))
    pixels = np.asarray(image)
    cut_w, cut_h = round(0.1 * 400), round(0.1 * 300)
    for corner in range(4):
        out = np.asarray(apply_edit(image, HotEdit("corner", 0.1, corner)))
        left = cut_w if corner & 1 else 0
        top = cut_h if corner & 2 else 0
        assert np.array_equal(out, pixels[top : top + 300 - cut_h, left : left + 400 - cut_w])
    out = np.asarray(apply_edit(image, HotEdit("centre", 0.1)))
    assert np.array_equal(out, pixels[cut_h // 2 : cut_h // 2 + 270, cut_w // 2 : cut_w // 2 + 360])


def test_rotation_keeps_the_aspect_and_shows_no_fill() -> None:
    white = Image.new("RGB", (400, 300), (255, 255, 255))
    for degrees in (3.0, -9.0):
        out = apply_edit(white, HotEdit("rotate", degrees))
        w, h = out.size
        assert abs(w / h - 4 / 3) < 0.02 and w < 400
        assert np.asarray(out).min() >= 250  # the black outside the rotated picture never shows


def test_deterministic_and_bounded() -> None:
    pixels = photo(2)
    first = hot_companions(pixels)
    assert [h.hex for h in first] == [h.hex for h in hot_companions(pixels)]
    assert [h.hex for h in first] == [h.hex for h in hot_companions(Image.fromarray(pixels))]
    assert len(first) <= 5 * len(HOT_CROPS) + 2 * len(HOT_ROTATIONS)
    assert len({h.hex for h in first}) == len(first)  # duplicates dropped
    assert len(first) >= len(hot_edits()) // 2  # a detailed picture keeps most of them


GRID_POINTS = (
    HotEdit("corner", HOT_CROPS[4], 2),
    HotEdit("centre", HOT_CROPS[-1]),
    HotEdit("rotate", -HOT_ROTATIONS[3]),
)


@pytest.mark.parametrize("seed", [3, 4])
def test_a_cropped_copy_lands_near_one_of_its_hot_companions(seed: int) -> None:
    """The client's companion of a cropped or rotated copy, made at full size as a client
    sees it, is within a few bits of a hot companion (the grid edits a 512-px copy: crop
    boxes round differently; synthetic pictures' sharp edges make that up to 8 bits, corpus
    photos a median of 0), where the picture's own companion is far from it."""
    pixels = photo(seed, (1000, 750))
    image = Image.fromarray(pixels)
    hot = [h.hex for h in hot_companions(pixels)]
    own = companion_pdq(pixels).hex
    for edit in GRID_POINTS:
        copy = companion_pdq(np.asarray(apply_edit(image, edit))).hex
        assert nearest(copy, hot) <= 8, edit
        assert distance(copy, own) > 64, edit  # without the tier it would not open


def test_a_grid_edit_of_a_grid_sized_picture_is_one_of_its_hot_companions() -> None:
    pixels = photo(5, (512, 384))
    image = Image.fromarray(pixels)
    hot = {h.hex for h in hot_companions(pixels)}
    for edit in GRID_POINTS:
        assert companion_pdq(np.asarray(apply_edit(image, edit))).hex in hot, edit


def test_duplicate_hashes_are_listed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two grid points whose edited pictures hash alike give one hot companion."""
    import blindmatch.hashing.hot as hot

    pixels = photo(6)
    found = hot.hot_hashes(pixels, hot_edits()[:3])
    doubled = [found[0], found[1], found[0], found[2], found[1]]
    monkeypatch.setattr(hot, "hot_hashes", lambda _pixels: doubled)
    expected = list(dict.fromkeys(h.hex for _e, h in found))  # in grid order, once each
    assert len(expected) == 3
    assert [h.hex for h in hot.hot_companions(pixels)] == expected


def test_a_flat_picture_has_no_hot_companions() -> None:
    """Untrusted hashes are left out: a flat picture's would match every flat picture."""
    flat = np.full((600, 800, 3), 128, dtype=np.uint8)
    assert hot_companions(flat) == []


def test_pdq_kind_differs_from_companion_kind() -> None:
    pixels = photo(5)
    edits = hot_edits()[:3]
    comp = [h.hex for _e, h in hot_hashes(pixels, edits)]
    plain = [h.hex for _e, h in hot_hashes(pixels, edits, kind="pdq")]
    assert len(comp) == len(plain) == 3 and comp != plain


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((64, 64), dtype=np.uint8),  # no channels
        np.zeros((64, 64, 2), dtype=np.uint8),
        np.zeros((MIN_HOT_SIDE - 1, 400, 3), dtype=np.uint8),  # too small to crop 20%
    ],
)
def test_bad_pictures_are_refused_clearly(bad: np.ndarray) -> None:
    with pytest.raises(BadDimensions):
        hot_companions(bad)


def test_bad_grids_and_kinds_are_refused_clearly() -> None:
    with pytest.raises(InvalidArgument, match="crop fraction"):
        hot_edits(crops=(0.6,))
    with pytest.raises(InvalidArgument, match="rotation"):
        hot_edits(rotations=(0.0,))
    with pytest.raises(InvalidArgument, match="kind"):
        hot_hashes(photo(1), kind="sha")
