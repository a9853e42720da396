"""The keypoint family: ORB features, their record format, and the index that
finds a listed picture inside a cropped, rotated or mirrored copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.errors import IndexFormatError
from blindmatch.eval.transforms import apply
from blindmatch.hashing.keypoints import (
    ListedFeatures,
    keypoints_from_rgb,
    listed_features,
    window_pdqs,
)
from blindmatch.index.keypoints import KeypointIndex

REF = Path(__file__).parents[1] / "vectors" / "pdq-reference"
PHOTOS = [
    *sorted((REF / "reg-test-input" / "labelme-subset").glob("*.jpg"))[2:],
    REF / "bridge-mods" / "aaa-orig.jpg",
]  # the first two labelme pictures are too smooth to have any keypoints


def _rgb(path: Path) -> np.ndarray:
    im = Image.open(path).convert("RGB")
    im.thumbnail((640, 640))
    return np.asarray(im)


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    assert len(PHOTOS) >= 5
    return [_rgb(p) for p in PHOTOS]


@pytest.fixture(scope="module")
def index(photos) -> KeypointIndex:
    idx = KeypointIndex()
    idx.add(list(range(len(photos))), [listed_features(p) for p in photos])
    return idx


def _edit(rgb: np.ndarray, transform: str, seed: int = 0) -> np.ndarray:
    return np.asarray(apply(transform, Image.fromarray(rgb), seed).convert("RGB"))


def _best(index: KeypointIndex, rgb: np.ndarray):
    found = index.search(rgb)
    return found[0] if found else None


@pytest.mark.parametrize("transform", ["crop10-edge", "crop20-centre", "rot10", "pad20-blur"])
def test_edits_that_defeat_pdq_are_found_and_verified(photos, index, transform) -> None:
    for i, rgb in enumerate(photos):
        m = _best(index, _edit(rgb, transform, i))
        assert m is not None and m.id == i, (transform, i)
        assert m.distance <= 31 and m.inliers >= index.min_inliers
        assert not m.mirrored


def test_a_mirrored_crop_is_found_through_the_mirror(photos, index) -> None:
    m = _best(index, _edit(photos[0], "flip-h+crop10-edge"))
    assert m is not None and m.id == 0 and m.mirrored and m.distance <= 31


def test_unrelated_pictures_are_not_within_the_threshold(index) -> None:
    for seed in range(6):
        rgb = np.asarray(synthetic_photo(9000 + seed, (640, 480)))
        assert all(m.distance > 31 for m in index.search(rgb))


def test_search_is_deterministic(photos, index) -> None:
    q = _edit(photos[1], "rot4")
    assert index.search(q) == index.search(q)


def test_remove_forgets_and_rebuilds(photos) -> None:
    idx = KeypointIndex()
    feats = [listed_features(p) for p in photos]
    idx.add(list(range(len(photos))), feats)
    idx.remove([0])
    assert 0 not in idx and len(idx) == len(photos) - 1
    assert all(m.id != 0 for m in idx.search(photos[0]))
    idx.remove(range(1, len(photos) - 1))  # more than half gone: the graph is rebuilt
    assert len(idx) == 1
    last = len(photos) - 1
    assert _best(idx, photos[last]).id == last
    idx.add([0], [feats[0]])
    assert _best(idx, photos[0]).id == 0


def test_the_identity_windows_match_the_stored_ones(photos) -> None:
    f = listed_features(photos[2])
    again = window_pdqs(photos[2], None, f.keypoints.width, f.keypoints.height)
    assert tuple(bytes.fromhex(p.hex) for p in again) == f.window_pdqs
    assert len(set(f.window_pdqs)) == len(f.window_pdqs)  # five different windows


def test_featureless_and_tiny_pictures_give_no_keypoints_and_no_error(index) -> None:
    for rgb in (np.full((300, 400, 3), 128, np.uint8), np.zeros((1, 1, 3), np.uint8)):
        assert len(keypoints_from_rgb(rgb)) == 0
        assert index.search(rgb) == []


def test_record_round_trip(photos) -> None:
    f = listed_features(photos[3])
    back = ListedFeatures.from_bytes(f.to_bytes())
    assert back.window_pdqs == f.window_pdqs
    assert np.array_equal(back.keypoints.descriptors, f.keypoints.descriptors)
    assert np.allclose(back.keypoints.points, f.keypoints.points, atol=1e-3)
    assert len(f.to_bytes()) == 12 + 5 * 32 + 36 * len(f.keypoints)


@pytest.mark.parametrize(
    "mangle",
    [
        lambda b: b[:10],
        lambda b: b"XXXX" + b[4:],
        lambda b: b[:4] + b"\x09" + b[5:],
        lambda b: b[:-1],
        lambda b: b + b"\x00",
    ],
    ids=["truncated", "magic", "version", "short", "long"],
)
def test_bad_records_raise_the_index_format_error(photos, mangle) -> None:
    data = listed_features(photos[4]).to_bytes()
    with pytest.raises(IndexFormatError):
        ListedFeatures.from_bytes(mangle(data))


def test_the_graph_finds_what_brute_force_finds(photos, index) -> None:
    exact = KeypointIndex(exact=True)
    exact.add(list(range(len(photos))), [listed_features(p) for p in photos])
    for i, rgb in enumerate(photos):
        for t in ("crop10-centre", "rot4"):
            q = _edit(rgb, t, i)
            got, want = _best(index, q), _best(exact, q)
            assert (got.id, got.distance <= 31) == (want.id, want.distance <= 31), (i, t)
