"""The store and matcher together: imports are atomic and idempotent, tombstones
and changes reach the index incrementally, per-list thresholds hold."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from blindmatch.errors import ListExists, ListNotFound
from blindmatch.hashing import Hashes
from blindmatch.lists import ListEntry
from blindmatch.matching import Matcher
from blindmatch.store import open_store


def _hex(rng: random.Random) -> str:
    return rng.getrandbits(256).to_bytes(32, "big").hex()


def _flip(h: str, bits: int, rng: random.Random) -> str:
    v = int(h, 16)
    for b in rng.sample(range(256), bits):
        v ^= 1 << b
    return v.to_bytes(32, "big").hex()


@pytest.fixture
def store(tmp_path: Path):
    return open_store(f"sqlite:///{tmp_path / 'db.sqlite'}")


def _image(pdq: str, md5: str = "0" * 32, sha: str = "0" * 64, q: int = 100) -> Hashes:
    return Hashes("image", "jpeg", md5, sha, pdq, q)


def test_import_is_idempotent(store) -> None:
    rng = random.Random(1)
    entries = [ListEntry(source_id=f"e{i}", pdq=_hex(rng), category="A1") for i in range(50)]
    first = store.import_entries("hl", entries)
    again = store.import_entries("hl", entries)
    assert (first.added, first.unchanged) == (50, 0)
    assert (again.added, again.changed, again.unchanged) == (0, 0, 50)
    assert store.get_list("hl").live_entries == 50
    assert store.current_seq() == 1  # the second import changed nothing


def test_tombstones_and_changes_reach_the_index_incrementally(store, tmp_path: Path) -> None:
    rng = random.Random(2)
    a, b, c = _hex(rng), _hex(rng), _hex(rng)
    store.import_entries("hl", [ListEntry(source_id="a", pdq=a), ListEntry(source_id="b", pdq=b)])
    m = Matcher(store, tmp_path / "idx")
    assert [x.entry_id for x in m.match_pdq(_flip(a, 10, rng))] == ["a"]
    store.import_entries(
        "hl", [ListEntry(source_id="a", removed=True), ListEntry(source_id="b", pdq=c)]
    )
    assert m.refresh() > 0
    assert m.match_pdq(a) == []
    assert m.match_pdq(b) == []  # b's old hash is gone...
    assert [x.entry_id for x in m.match_pdq(c)] == ["b"]  # ...and its new one matches
    assert len(m) == 1


def test_persisted_index_catches_up_in_a_new_process(store, tmp_path: Path) -> None:
    rng = random.Random(3)
    a, b = _hex(rng), _hex(rng)
    store.import_entries("hl", [ListEntry(source_id="a", pdq=a)])
    m = Matcher(store, tmp_path / "idx")
    m.save()
    store.import_entries("hl", [ListEntry(source_id="b", pdq=b)])
    fresh = Matcher(store, tmp_path / "idx")
    assert [x.entry_id for x in fresh.match_pdq(b)] == ["b"]
    assert [x.entry_id for x in fresh.match_pdq(a)] == ["a"]


def test_corrupt_index_file_is_rebuilt_not_fatal(store, tmp_path: Path) -> None:
    rng = random.Random(4)
    a = _hex(rng)
    store.import_entries("hl", [ListEntry(source_id="a", pdq=a)])
    m = Matcher(store, tmp_path / "idx")
    m.save()
    (tmp_path / "idx" / "pdq.bmidx").write_bytes(b"garbage")
    assert [x.entry_id for x in Matcher(store, tmp_path / "idx").match_pdq(a)] == ["a"]


def test_removing_a_list_removes_its_matches(store, tmp_path: Path) -> None:
    rng = random.Random(5)
    a, b = _hex(rng), _hex(rng)
    store.import_entries("one", [ListEntry(source_id="a", pdq=a)])
    store.import_entries("two", [ListEntry(source_id="b", pdq=b)])
    m = Matcher(store, tmp_path / "idx")
    store.remove_list("one")
    m.refresh()
    assert m.match_pdq(a) == []
    assert [x.list for x in m.match_pdq(b)] == ["two"]
    with pytest.raises(ListNotFound):
        store.get_list("one")


def test_per_list_thresholds_and_list_filter(store, tmp_path: Path) -> None:
    rng = random.Random(6)
    a = _hex(rng)
    store.create_list("strict", pdq_threshold=10)
    store.create_list("loose", pdq_threshold=31)
    store.import_entries("strict", [ListEntry(source_id="s", pdq=a)])
    store.import_entries("loose", [ListEntry(source_id="l", pdq=a)])
    m = Matcher(store, None)
    q = _flip(a, 20, rng)
    assert [(x.list, x.distance) for x in m.match_pdq(q)] == [("loose", 20)]
    assert {x.list for x in m.match_pdq(q, threshold=25)} == {"loose", "strict"}
    assert [x.list for x in m.match_pdq(a, lists=["strict"])] == ["strict"]
    assert m.match_pdq(_flip(a, 32, rng)) == []
    with pytest.raises(ListNotFound):
        m.match_pdq(a, lists=["nope"])
    with pytest.raises(ListExists):
        store.create_list("strict")


def test_exact_md5_sha256_and_low_quality_pdq(store) -> None:
    rng = random.Random(7)
    a = _hex(rng)
    md5, sha = "ab" * 16, "cd" * 32
    store.import_entries(
        "hl",
        [ListEntry(source_id="p", pdq=a), ListEntry(source_id="m", md5=md5, sha256=sha)],
    )
    m = Matcher(store, None)
    got = m.match(_image(_hex(rng), md5=md5, sha=sha))
    assert sorted((x.entry_id, x.hash_type) for x in got) == [("m", "md5"), ("m", "sha256")]
    assert m.match(_image(a, q=30)) == []  # PDQ below quality 50 is not trusted
    assert [x.entry_id for x in m.match(_image(a, q=30), min_quality=0)] == ["p"]


def test_new_entry_matchable_without_rebuild(store) -> None:
    rng = random.Random(8)
    store.import_entries("hl", [ListEntry(source_id=f"e{i}", pdq=_hex(rng)) for i in range(2000)])
    m = Matcher(store, None)
    new = _hex(rng)
    store.import_entries("hl", [ListEntry(source_id="new", pdq=new)])
    assert m.refresh() == 1  # one row applied, not 2001
    assert [x.entry_id for x in m.match_pdq(new)] == ["new"]


def test_index_is_saved_only_when_it_changed(store, tmp_path: Path) -> None:
    store.import_entries("hl", [ListEntry(source_id="a", pdq="a" * 64)])
    m = Matcher(store, tmp_path / "idx")
    assert m.unsaved_changes > 0
    m.save()
    assert Matcher(store, tmp_path / "idx").unsaved_changes == 0
    store.import_entries("hl", [ListEntry(source_id="b", pdq="b" * 64)])
    assert Matcher(store, tmp_path / "idx").unsaved_changes > 0


def test_keypoints_reach_the_matcher_incrementally_and_a_lost_image_is_no_error(
    store, tmp_path: Path
) -> None:
    import io

    import numpy as np

    from blindmatch.demo.synthetic import synthetic_photo
    from blindmatch.hashing import hash_bytes, open_image
    from blindmatch.hashing.keypoints import listed_features

    matcher = Matcher(store, tmp_path / "index")  # created before the list exists
    photo = synthetic_photo(51, (640, 480))
    buf = io.BytesIO()
    photo.crop((64, 0, 640, 480)).save(buf, "PNG")
    query = hash_bytes(buf.getvalue(), variants=True)
    pixels = np.asarray(open_image(buf.getvalue()))
    assert matcher.match(query, image=lambda: pixels) == []

    feats = listed_features(np.asarray(photo)).to_bytes()
    pdq = hash_bytes(buf.getvalue()).pdq
    store.import_entries("hl", [ListEntry(source_id="k1", pdq=_flip(pdq, 120, random.Random(0)))],
                         keypoints={"k1": feats})  # fmt: skip
    matcher.refresh()
    (m,) = matcher.match(query, image=lambda: pixels)
    assert (m.entry_id, m.hash_type, m.variant) == ("k1", "keypoints", "keypoints")
    assert m.inliers is not None and m.inliers >= 10

    def gone() -> np.ndarray:
        raise FileNotFoundError("moved away")

    assert matcher.match(query, image=gone) == []  # no evidence, no crash
    assert matcher.match(query) == []  # without pixels there is nothing to verify against

    store.import_entries("hl", [ListEntry(source_id="k1", removed=True)])
    matcher.refresh()
    assert matcher.match(query, image=lambda: pixels) == []
    assert store.keypoint_changes(-1).added_ids == []


def test_a_matcher_starting_from_a_saved_pdq_index_still_loads_the_keypoints(
    store, tmp_path: Path
) -> None:
    import io

    import numpy as np

    from blindmatch.demo.synthetic import synthetic_photo
    from blindmatch.hashing import hash_bytes, open_image
    from blindmatch.hashing.keypoints import listed_features

    photo = synthetic_photo(52, (640, 480))
    buf = io.BytesIO()
    photo.crop((64, 0, 640, 480)).save(buf, "PNG")
    query = hash_bytes(buf.getvalue(), variants=True)
    pixels = np.asarray(open_image(buf.getvalue()))
    feats = listed_features(np.asarray(photo)).to_bytes()
    store.import_entries("hl", [ListEntry(source_id="k1", pdq=_hex(random.Random(3)))],
                         keypoints={"k1": feats})  # fmt: skip
    first = Matcher(store, tmp_path / "index")
    first.save()  # the next process finds a current PDQ index on disk
    again = Matcher(store, tmp_path / "index")
    (m,) = again.match(query, image=lambda: pixels)
    assert (m.entry_id, m.hash_type) == ("k1", "keypoints")
