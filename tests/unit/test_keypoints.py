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
from blindmatch.index.keypoints import MIN_VISIBLE, NOT_SHOWN, KeypointIndex, window_visibility

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
    assert back.low_res_pdqs == f.low_res_pdqs and len(f.low_res_pdqs) == 5
    assert np.array_equal(back.keypoints.descriptors, f.keypoints.descriptors)
    assert np.allclose(back.keypoints.points, f.keypoints.points, atol=1e-3)
    assert len(f.to_bytes()) == 12 + 2 * 5 * 32 + 36 * len(f.keypoints)


def test_version_1_records_still_load_without_the_low_resolution_windows(photos) -> None:
    f = listed_features(photos[3])
    v2 = f.to_bytes()
    v1 = v2[:4] + b"\x01" + v2[5 : 12 + 5 * 32] + v2[12 + 10 * 32 :]
    back = ListedFeatures.from_bytes(v1)
    assert back.window_pdqs == f.window_pdqs and back.low_res_pdqs == ()
    idx = KeypointIndex()
    idx.add([7], [back])
    assert _best(idx, _edit(photos[3], "crop10-edge")).id == 7


def test_a_thumbnail_is_compared_with_the_low_resolution_windows() -> None:
    # A 256-px listed picture and its 64-px copy: at full resolution the windows
    # differ by the detail the thumbnail lost; at the listed low resolution they agree.
    im = Image.open(PHOTOS[-1]).convert("RGB")
    side = min(im.size)
    listed = np.asarray(im.crop((0, 0, side, side)).resize((256, 256), Image.LANCZOS))
    thumb = np.asarray(Image.fromarray(listed).resize((64, 64), Image.LANCZOS))
    f = listed_features(listed)
    with_low = KeypointIndex()
    with_low.add([1], [f])
    without = KeypointIndex()
    without.add([1], [ListedFeatures(f.keypoints, f.window_pdqs)])
    cands = with_low.candidates(keypoints_from_rgb(thumb))
    assert cands and cands[0].id == 1
    low = with_low.verify(thumb, cands)[0].distance
    full = without.verify(thumb, cands)[0].distance
    assert low < full and low <= 31, (low, full)


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


def test_window_visibility_is_the_share_of_each_window_inside_the_query() -> None:
    identity = np.array([[1.0, 0, 0], [0, 1.0, 0]])
    assert window_visibility(identity, 800, 600, 1.0, 0.75) == (1.0,) * 5
    # the query (400x600, so [0, 2/3] x [0, 1] in its own units) is the left half
    # of the listed picture ([0, 1] x [0, 0.75]): listed = 0.75 * query
    left = np.array([[0.75, 0, 0], [0, 0.75, 0]])
    vis = window_visibility(left, 400, 600, 1.0, 0.75)
    assert vis[1] == 1.0  # the left half window
    assert vis[2] == 0.0  # the right half window
    assert 0.4 < vis[0] < 0.6 and 0.4 < vis[3] < 0.6


def test_a_fit_that_shows_no_whole_window_is_not_a_match(photos) -> None:
    # A corner of the listed picture: the keypoints fit, but every window would be
    # mostly invented border pixels, so there is no evidence to score.
    rgb = photos[-1]
    h, w = rgb.shape[:2]
    corner = np.ascontiguousarray(rgb[: int(h * 0.5), : int(w * 0.5)])
    idx = KeypointIndex()
    idx.add([3], [listed_features(rgb)])
    cands = idx.candidates(keypoints_from_rgb(corner))
    assert cands and cands[0].id == 3
    (m,) = idx.verify(corner, cands)
    assert max(m.visible) < MIN_VISIBLE
    assert m.distance == NOT_SHOWN
