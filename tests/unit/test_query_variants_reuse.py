"""The dihedral variants reuse transposed hashes and may run on a thread pool, yet equal
(value for value) what hashing every orientation separately gives: the sender and the
recipient of a voucher must compute exactly the same hashes (docs/protocol.md §5)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.hashing.image import hashed_transposed, pdq_with_vector_from_rgb
from blindmatch.hashing.robust import (
    DIHEDRAL,
    _dihedral_views,
    _fit,
    _orientation,
    _variant,
    find_frames,
    query_variants,
)
from blindmatch.private import query_hashes


def reference_variants(pixels: np.ndarray) -> list[tuple[str, str, int, np.ndarray]]:
    """query_variants as it was: every orientation hashed on its own numpy view."""
    pixels = _fit(pixels, 512)
    out = [_variant(lab, v) for lab, v in zip(DIHEDRAL, _dihedral_views(pixels), strict=True)]
    for k, (left, top, right, bottom) in enumerate(find_frames(pixels)):
        inner = pixels[top:bottom, left:right]
        out.append(_variant(f"trim{k}:orig", inner))
        if k == 0:
            out.append(_variant(f"trim{k}:flipx", inner[:, ::-1]))
    return [(v.label, v.pdq.hex, v.pdq.quality, v.vector) for v in out]  # type: ignore[misc]


def framed(seed: int, size: tuple[int, int]) -> np.ndarray:
    """A picture in a black letterbox, so trimmed variants are made too."""
    w, h = size
    canvas = np.zeros((h + 120, w, 3), np.uint8)
    canvas[60 : 60 + h] = np.asarray(synthetic_photo(seed, size))
    return canvas


SIZES = [(640, 480), (480, 640), (512, 384), (384, 512), (512, 512), (800, 600), (300, 200),
         (256, 100), (1000, 333), (97, 300), (513, 257)]  # fmt: skip


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("pool", [False, True])
def test_variants_equal_hashing_every_orientation(size: tuple[int, int], pool: bool) -> None:
    with ThreadPoolExecutor(2) as ex:
        for boxed, pixels in ((False, np.asarray(synthetic_photo(sum(size), size))),
                              (True, framed(7, size))):  # fmt: skip
            got = query_variants(pixels, pool=ex if pool else None)
            ref = reference_variants(pixels)
            assert boxed <= any(v.label.startswith("trim") for v in got)
            assert [(v.label, v.pdq.hex, v.pdq.quality) for v in got] == [r[:3] for r in ref]
            for v, r in zip(got, ref, strict=True):
                assert v.vector is not None
                assert v.vector.dtype == r[3].dtype and np.array_equal(v.vector, r[3])


def test_some_orientations_are_reused_for_non_square_pictures() -> None:
    # The saving is real: a 512x384 copy hashes 4 of its 8 orientations through their
    # transposes; a square one none.
    fitted = (384, 512)
    rotated = (512, 384)
    shapes = [fitted, rotated, fitted, rotated, fitted, fitted, rotated, rotated]
    assert sum(hashed_transposed(s) for s in shapes) == 4
    assert not any(hashed_transposed((512, 512)) for _ in range(8))


def test_pillow_orientations_equal_the_numpy_views() -> None:
    pixels = np.asarray(synthetic_photo(5, (37, 23)))
    for i, view in enumerate(_dihedral_views(pixels)):
        got = _orientation(pixels, i)
        assert got.flags.c_contiguous and np.array_equal(got, view), DIHEDRAL[i]


@pytest.mark.parametrize("companions", [False, True])
def test_query_hashes_is_the_same_with_a_pool(companions: bool) -> None:
    pixels = framed(3, (800, 600))
    plain = query_hashes(pixels, companions=companions)
    with ThreadPoolExecutor(2) as ex:
        pooled = query_hashes(pixels, pool=ex, companions=companions)
    assert plain[0] == pooled[0] and plain[1] == pooled[1]
    assert [(q.pdq, list(q.confidence or []), q.prior) for q in plain[2]] == [
        (q.pdq, list(q.confidence or []), q.prior) for q in pooled[2]
    ]
    # and its full-size hash is the picture's own PDQ
    pdq, _ = pdq_with_vector_from_rgb(pixels)
    assert plain[0].hex() == pdq.hex
    assert Image.fromarray(pixels).size == (800, 720)
