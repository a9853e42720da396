"""The evaluation harness on a small, fast, benign subset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.eval.harness import _precision_threshold, evaluate
from blindmatch.eval.report import to_json, write_report

TRANSFORMS = ["jpeg70", "flip-h", "pad20-solid", "rot90"]


@pytest.fixture(scope="module")
def result():
    listed = [synthetic_photo(s, (480, 360)) for s in range(8)]
    distractors = [synthetic_photo(5000 + s, (480, 360)) for s in range(12)]
    return evaluate(
        listed, distractors, schemes=["pdq", "robust", "broken"], transforms=TRANSFORMS, seed=3
    )


def _scheme(result, name):
    return next(s for s in result.schemes if s.scheme == name)


def _recall(result, scheme, transform):
    s = _scheme(result, scheme)
    return next(t.recall for t in s.transforms if t.transform == transform)


def test_counts(result) -> None:
    assert (result.listed, result.distractors, result.failed) == (8, 12, [])
    assert result.transforms == TRANSFORMS


def test_plain_pdq_survives_jpeg_but_not_flips(result) -> None:
    assert _recall(result, "pdq", "jpeg70") == 1.0
    assert _recall(result, "pdq", "flip-h") == 0.0
    assert _recall(result, "pdq", "rot90") == 0.0


def test_robust_matching_recovers_flips_rotations_and_pads(result) -> None:
    for t in ("flip-h", "rot90", "pad20-solid"):
        assert _recall(result, "robust", t) >= 0.85, t
    assert _scheme(result, "robust").overall_recall > _scheme(result, "pdq").overall_recall


def test_a_deliberately_broken_matcher_scores_worse(result) -> None:
    assert _recall(result, "broken", "jpeg70") < _recall(result, "pdq", "jpeg70")
    assert _scheme(result, "broken").overall_recall < _scheme(result, "pdq").overall_recall


def test_no_false_matches_and_costs_are_reported(result) -> None:
    for s in result.schemes:
        assert s.false_matches == 0
        assert len(s.distractor_min) == 12
    robust, pdq = _scheme(result, "robust"), _scheme(result, "pdq")
    assert pdq.list_bytes_per_image == 32 and pdq.queries_per_image == 1
    assert robust.queries_per_image >= 8  # the dihedral hashes
    assert robust.client_ms_per_image > 0


def test_runs_are_reproducible(result) -> None:
    listed = [synthetic_photo(s, (480, 360)) for s in range(8)]
    distractors = [synthetic_photo(5000 + s, (480, 360)) for s in range(12)]
    again = evaluate(
        listed, distractors, schemes=["pdq", "robust", "broken"], transforms=TRANSFORMS, seed=3
    )
    a, b = to_json(result), to_json(again)
    for d in (a, b):
        d.pop("seconds")
        for s in d["schemes"]:
            s.pop("client_ms_per_image")
    assert a == b


def test_report_files(result, tmp_path: Path) -> None:
    path = write_report(result, tmp_path / "report", command="blindmatch eval --corpus small")
    text = path.read_text()
    assert "| flip-h |" in text and "blindmatch eval --corpus small" in text
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"README.md", "results.json", "recall.png", "distances-robust.png"} <= files
    data = json.loads((tmp_path / "report" / "results.json").read_text())
    assert [s["scheme"] for s in data["schemes"]] == ["pdq", "robust", "broken"]
    assert (tmp_path / "report" / "recall.png").read_bytes()[:4] == b"\x89PNG"


def test_precision_threshold() -> None:
    own = np.array([0, 5, 10, 40, 80])
    assert _precision_threshold(own, np.array([50, 60]), 128) == 49
    assert _precision_threshold(own, np.array([3]), 128) == 2  # first negative at 3
    assert _precision_threshold(own, np.array([0]), 128) is None  # a negative at 0 beats all


def test_unusable_listed_images_are_reported_not_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    flat = synthetic_photo(1, (64, 64)).convert("L").point(lambda _: 128).convert("RGB")
    r = evaluate([bad, flat, synthetic_photo(2)], [], schemes=["pdq"], transforms=["jpeg70"])
    assert r.listed == 1 and len(r.failed) == 2


def test_a_distractor_that_is_a_listed_picture_is_named(tmp_path: Path) -> None:
    a, b = synthetic_photo(11, (320, 240)), synthetic_photo(12, (320, 240))
    copy = tmp_path / "copy.jpg"
    a.save(copy, quality=80)  # the same picture, shipped twice
    listed = tmp_path / "listed.png"
    a.save(listed)
    r = evaluate([listed, b], [copy, synthetic_photo(13)], schemes=["pdq"], transforms=["jpeg70"])
    (s,) = r.schemes
    assert s.false_matches == 1
    assert s.distractor_hits == [(str(copy), str(listed), s.distractor_hits[0][2])]
    assert s.distractor_hits[0][2] <= 31


def test_the_keypoint_family_recovers_crops_and_rotations_without_false_matches() -> None:
    listed = [synthetic_photo(s, (480, 360)) for s in range(6)]
    distractors = [synthetic_photo(7000 + s, (480, 360)) for s in range(8)]
    r = evaluate(
        listed,
        distractors,
        schemes=["robust", "orb", "robust+orb"],
        transforms=["crop10-edge", "rot10", "flip-h"],
        seed=1,
        workers=2,  # also checks that forked workers inherit the prepared index
    )
    for t in ("crop10-edge", "rot10"):
        assert _recall(r, "robust", t) <= 0.5, t
        assert _recall(r, "robust+orb", t) >= 0.8, t
    # the combination keeps what PDQ already had: flips
    assert _recall(r, "robust+orb", "flip-h") >= _recall(r, "robust", "flip-h")
    for name in ("orb", "robust+orb"):
        s = _scheme(r, name)
        assert s.false_matches == 0
        assert s.list_bytes_per_image > _scheme(r, "robust").list_bytes_per_image
    assert _scheme(r, "robust+orb").overall_recall > _scheme(r, "robust").overall_recall
