"""PDQ conformance against the reference implementation's own test images."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pdqhash
import pytest
from PIL import Image

from blindmatch.files import hash_file
from blindmatch.hashing import hash_bytes, pdq_distance, pdq_from_image_bytes
from tests.conftest import PDQ_REF

EXPECTED = [json.loads(line) for line in (PDQ_REF / "expected.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("case", EXPECTED, ids=[c["file"] for c in EXPECTED])
def test_reference_images_within_conformance_distance(case: dict) -> None:
    data = (PDQ_REF / case["file"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == case["sha256"], "test vector changed"
    pdq = pdq_from_image_bytes(data)
    limit = 10 if case["quality_exif_upright"] >= 80 else 32
    assert pdq_distance(pdq.hex, case["pdq_exif_upright"]) <= limit
    assert abs(pdq.quality - case["quality_exif_upright"]) <= 10


@pytest.mark.parametrize("case", EXPECTED, ids=[c["file"] for c in EXPECTED])
def test_full_size_decode_equals_reference(case: dict) -> None:
    pdq = pdq_from_image_bytes((PDQ_REF / case["file"]).read_bytes(), draft=False)
    assert pdq.hex == case["pdq_exif_upright"]


MODES = sorted(p.name for p in (PDQ_REF / "misc-images" / "modes").iterdir() if p.suffix != ".md")


@pytest.mark.parametrize("name", MODES)
def test_every_pillow_mode_hashes_like_the_original(name: str) -> None:
    """python-threatexchange gets CMYK.jpg (254 bits) and P.png (38 bits) wrong."""
    original = pdq_from_image_bytes((PDQ_REF / "misc-images/modes/original.jpg").read_bytes())
    pdq = pdq_from_image_bytes((PDQ_REF / "misc-images/modes" / name).read_bytes())
    assert pdq_distance(pdq.hex, original.hex) <= 4
    assert pdq.quality >= 80


def test_dihedral_files_match_dihedral_hashes_of_the_original() -> None:
    dih = PDQ_REF / "reg-test-input" / "dih"
    rgb = np.asarray(Image.open(dih / "bridge-1-original.jpg").convert("RGB"))
    variants = pdqhash.compute_dihedral(rgb)[0]
    expected = {np.packbits(np.asarray(v, dtype=np.uint8)).tobytes().hex() for v in variants}
    for f in sorted(dih.iterdir()):
        got = pdq_from_image_bytes(f.read_bytes()).hex
        assert min(pdq_distance(got, e) for e in expected) <= 10, f.name


def test_exif_orientation_is_applied() -> None:
    """exif-rotn-6 is stored sideways with orientation 6; upright it differs."""
    case = next(c for c in EXPECTED if c["file"].endswith("exif-rotn-6.jpg"))
    got = pdq_from_image_bytes((PDQ_REF / case["file"]).read_bytes())
    assert pdq_distance(got.hex, case["pdq_exif_upright"]) <= 10
    assert pdq_distance(got.hex, case["pdq_threatexchange"]) > 31


def test_hex_bit_order_agrees_with_python_threatexchange() -> None:
    case = EXPECTED[0]
    got = pdq_from_image_bytes((PDQ_REF / case["file"]).read_bytes(), draft=False)
    assert got.hex == case["pdq_threatexchange"]


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF"])
def test_formats_hash_close_to_the_jpeg(fmt: str) -> None:
    src = Image.open(PDQ_REF / "misc-images/modes/original.jpg").convert("RGB")
    src = src.resize((400, 251))
    base = pdq_from_image_bytes(_encode(src, "PNG"))
    buf = _encode(src, fmt)
    h = hash_bytes(buf)
    assert h.kind == "image"
    limit = 24 if fmt == "GIF" else 10  # GIF quantises to a 256-colour palette
    assert pdq_distance(h.pdq or "", base.hex) <= limit


def test_animated_gif_hashes_first_frame() -> None:
    a = Image.new("RGB", (200, 150), (200, 30, 30))
    a.paste((20, 20, 220), (0, 0, 100, 150))
    b = Image.new("RGB", (200, 150), (10, 200, 10))
    buf = io.BytesIO()
    a.save(buf, "GIF", save_all=True, append_images=[b], duration=100)
    first = pdq_from_image_bytes(_encode(a, "PNG"))
    assert pdq_distance(pdq_from_image_bytes(buf.getvalue()).hex, first.hex) <= 16


def test_md5_and_sha256_are_of_file_bytes(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(p)
    h = hash_file(str(p))
    data = p.read_bytes()
    assert h.md5 == hashlib.md5(data).hexdigest()
    assert h.sha256 == hashlib.sha256(data).hexdigest()


def test_video_gets_vpdq_frames(tmp_path: Path) -> None:
    p = _make_video(tmp_path / "clip.mp4", seconds=3)
    h = hash_file(str(p))
    assert h.kind == "video"
    assert len(h.vpdq) >= 3
    assert [f.timestamp for f in h.vpdq] == sorted(f.timestamp for f in h.vpdq)
    assert all(len(f.pdq) == 64 for f in h.vpdq)


def _encode(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _make_video(path: Path, seconds: int) -> Path:
    import subprocess

    subprocess.run(
        [
            "ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi",
            "-i", f"testsrc=duration={seconds}:size=320x240:rate=10",
            "-pix_fmt", "yuv420p", str(path),
        ],
        check=True,
    )  # fmt: skip
    return path


@pytest.mark.parametrize("size", [(512, 384), (1024, 768), (384, 512), (640, 480), (500, 375)])
def test_transposed_fast_path_is_bit_exact(size: tuple[int, int]) -> None:
    from blindmatch.demo.synthetic import synthetic_photo
    from blindmatch.hashing import pdq_from_rgb

    rgb = np.asarray(synthetic_photo(sum(size), size))
    bits, quality = pdqhash.compute(np.ascontiguousarray(rgb))
    ref = np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()
    got = pdq_from_rgb(rgb)
    assert (got.hex, got.quality) == (ref, quality)


@pytest.mark.parametrize("size", [(512, 300), (640, 480), (300, 512)])
def test_pdq_vector_thresholds_to_the_pdq_and_agrees_with_the_reference(size) -> None:
    import pdqhash

    from blindmatch.demo.synthetic import synthetic_photo
    from blindmatch.hashing.image import pdq_from_rgb, pdq_vector_from_rgb

    rgb = np.asarray(synthetic_photo(3, size))
    vec, quality = pdq_vector_from_rgb(rgb)
    bits = np.packbits((vec > np.median(vec)).astype(np.uint8)).tobytes().hex()
    assert bits == pdq_from_rgb(rgb).hex and quality == pdq_from_rgb(rgb).quality
    ref, _ = pdqhash.compute_float(rgb)  # untransposed, the slow way for 512-wide
    assert np.allclose(np.asarray(ref).reshape(-1), vec, atol=1e-3)


def test_robust_variants_carry_vectors_that_threshold_to_their_hashes() -> None:
    from blindmatch.demo.synthetic import synthetic_photo
    from blindmatch.hashing.image import pdq_from_rgb
    from blindmatch.hashing.robust import _dihedral_views, query_variants

    rgb = np.asarray(synthetic_photo(8, (512, 384)))
    boxed = np.zeros((500, 512, 3), np.uint8)
    boxed[58:442] = rgb
    for img in (rgb, boxed):
        variants = query_variants(img)
        for v in variants:
            assert v.vector is not None and v.vector.shape == (256,)
            bits = np.packbits((v.vector > np.median(v.vector)).astype(np.uint8))
            assert bits.tobytes().hex() == v.pdq.hex
        # the same hashes the reference computes for each orientation
        views = _dihedral_views(img)
        assert [v.pdq for v in variants[:8]] == [pdq_from_rgb(x) for x in views]
    assert any(v.label.startswith("trim") for v in query_variants(boxed))
