"""Every kind of hostile or broken input gets its own clear error code, never a
traceback, and never stops a batch."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from blindmatch import batch as _batch
from blindmatch import errors
from blindmatch.batch import hash_many
from blindmatch.files import DEFAULT_LIMITS, Failure, Limits, hash_file
from blindmatch.hashing import hash_bytes


def _jpeg(size=(320, 240), seed_colour=(120, 30, 200)) -> bytes:
    im = Image.new("RGB", size, seed_colour)
    im.paste((10, 200, 30), (0, 0, size[0] // 2, size[1] // 2))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _png_claiming(width: int, height: int) -> bytes:
    """A valid tiny PNG whose header claims other dimensions (CRC fixed up)."""
    buf = io.BytesIO()
    Image.new("L", (8, 8), 0).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = bytearray(data[12:29])  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def _code(path: Path, limits: Limits = DEFAULT_LIMITS) -> str:
    with pytest.raises(errors.InputError) as ei:
        hash_file(str(path), limits)
    return ei.value.code


def test_zero_byte_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    assert _code(p) == "empty_file"


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = _jpeg((800, 600))
    p = tmp_path / "cut.jpg"
    p.write_bytes(data[: len(data) // 2])
    assert _code(p) == "truncated"


def test_truncated_png(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.effect_noise((300, 300), 40).save(buf, "PNG")
    p = tmp_path / "cut.png"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    assert _code(p) in ("truncated", "decode_error")


def test_header_only(tmp_path: Path) -> None:
    p = tmp_path / "head.jpg"
    p.write_bytes(b"\xff\xd8\xff\xe0")
    assert _code(p) in ("truncated", "decode_error", "unsupported_format")


def test_wrong_extension_is_hashed_by_content(tmp_path: Path) -> None:
    data = _jpeg()
    right, wrong = tmp_path / "a.jpg", tmp_path / "a.png"
    right.write_bytes(data)
    wrong.write_bytes(data)
    assert hash_file(str(wrong)).pdq == hash_file(str(right)).pdq


def test_text_file_named_like_an_image(tmp_path: Path) -> None:
    p = tmp_path / "notes.jpg"
    p.write_text("these are not pixels\n" * 10)
    assert _code(p) == "unsupported_format"


def test_random_bytes(tmp_path: Path) -> None:
    p = tmp_path / "noise.bin"
    p.write_bytes(os.urandom(4096))
    assert _code(p) == "unsupported_format"


def test_decompression_bomb_refused_before_decoding(tmp_path: Path) -> None:
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_claiming(100_000, 100_000))  # 10 gigapixels declared
    assert _code(p) == "too_many_pixels"


def test_pixel_limit_is_configurable(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    p.write_bytes(_jpeg((1000, 1000)))
    assert _code(p, Limits(max_pixels=500_000)) == "too_many_pixels"
    assert hash_file(str(p), Limits(max_pixels=2_000_000)).pdq


def test_absurd_aspect_ratio(tmp_path: Path) -> None:
    p = tmp_path / "sliver.png"
    Image.new("RGB", (20_000, 2), (9, 9, 9)).save(p)
    assert _code(p) == "bad_dimensions"


def test_zero_dimension_header(tmp_path: Path) -> None:
    p = tmp_path / "zero.png"
    p.write_bytes(_png_claiming(0, 10))
    assert _code(p) in ("bad_dimensions", "decode_error")


def test_corrupt_png_crc(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 40).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[40] ^= 0xFF  # inside the IDAT chunk
    p = tmp_path / "crc.png"
    p.write_bytes(bytes(data))
    assert _code(p) in ("decode_error", "truncated")


def test_file_over_size_limit(tmp_path: Path) -> None:
    p = tmp_path / "big.jpg"
    p.write_bytes(_jpeg())
    assert _code(p, Limits(max_file_bytes=100)) == "file_too_large"


def test_missing_file(tmp_path: Path) -> None:
    assert _code(tmp_path / "nope.jpg") == "not_found"


def test_symlink_loop_file(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.symlink_to(b)
    b.symlink_to(a)
    assert _code(a) == "symlink_loop"


def test_fifo_is_not_read(tmp_path: Path) -> None:
    p = tmp_path / "pipe.jpg"
    os.mkfifo(p)
    assert _code(p) == "not_a_file"


def test_hostile_video_container(tmp_path: Path) -> None:
    p = tmp_path / "fake.mp4"
    p.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(2000))
    assert _code(p) == "video_error"


def test_bytes_without_a_path_cannot_be_video() -> None:
    with pytest.raises(errors.UnsupportedFormat):
        hash_bytes(b"\x00\x00\x00\x18ftypisom" + b"\x00" * 100)


def test_directory_symlink_loop_is_reported_once_and_walk_finishes(tmp_path: Path) -> None:
    d = tmp_path / "tree"
    (d / "sub").mkdir(parents=True)
    (d / "sub" / "ok.jpg").write_bytes(_jpeg())
    (d / "sub" / "back").symlink_to(d, target_is_directory=True)
    out = list(hash_many([str(d)], workers=1))
    ok = [o for o in out if not isinstance(o, Failure)]
    loops = [o for o in out if isinstance(o, Failure)]
    assert [Path(o.path).name for o in ok] == ["ok.jpg"]
    assert [o.error.code for o in loops] == ["symlink_loop"]


def test_unreadable_file_permission_denied(tmp_path: Path) -> None:
    """Root reads everything, so run the command as an unprivileged user then."""
    d = tmp_path / "perm"
    d.mkdir()
    p = d / "secret.jpg"
    p.write_bytes(_jpeg())
    p.chmod(0)
    if os.geteuid() != 0:
        assert _code(p) == "permission_denied"
        return
    # Root reads everything: fork, drop to "nobody" in the child, and hash there.
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(r)
        try:
            os.setgid(65534)
            os.setuid(65534)
            try:
                hash_file(str(p))
                msg = "ok"
            except errors.InputError as e:
                msg = e.code
        except BaseException as e:  # noqa: BLE001
            msg = f"child failed: {e!r}"
        os.write(w, msg.encode())
        os._exit(0)
    os.close(w)
    with os.fdopen(r) as f:
        got = f.read()
    os.waitpid(pid, 0)
    assert got == "permission_denied"


def test_batch_goes_on_past_bad_items_and_names_them(tmp_path: Path, cli, home: Path) -> None:
    d = tmp_path / "mixed"
    d.mkdir()
    (d / "1-good.jpg").write_bytes(_jpeg())
    (d / "2-empty.jpg").write_bytes(b"")
    (d / "3-cut.jpg").write_bytes(_jpeg((800, 600))[:3000])
    (d / "4-text.png").write_text("hello")
    (d / "5-bomb.png").write_bytes(_png_claiming(90_000, 90_000))
    (d / "6-good.png").write_bytes(_png_claiming(8, 8))
    res = cli("hash", "--json", "--workers", "2", str(d))
    lines = res.json_lines
    assert [Path(x["path"]).name for x in lines] == sorted(p.name for p in d.iterdir())
    codes = {Path(x["path"]).name: x.get("error", {}).get("code") for x in lines}
    assert codes == {
        "1-good.jpg": None,
        "2-empty.jpg": "empty_file",
        "3-cut.jpg": "truncated",
        "4-text.png": "unsupported_format",
        "5-bomb.png": "too_many_pixels",
        "6-good.png": None,
    }
    good = [x for x in lines if "error" not in x]
    assert all(len(x["pdq"]) == 64 and x["kind"] == "image" for x in good)
    assert res.code == 2
    assert "Traceback" not in res.err


_real_hash_one = _batch.hash_one


def _crashing_hash_one(path, limits=DEFAULT_LIMITS, variants=False, companion=False, hot=False):  # noqa: ANN001
    if path.endswith("crash.jpg"):
        os._exit(3)  # what a segfaulting decoder looks like to the pool
    return _real_hash_one(path, limits, variants, companion, hot)


def test_a_decoder_crash_is_pinned_on_its_file_and_the_batch_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_batch, "hash_one", _crashing_hash_one)  # workers are forked
    names = ["a.jpg", "b-crash.jpg", "c.jpg", "d.jpg"]
    for n in names:
        (tmp_path / n).write_bytes(_jpeg())
    out = list(hash_many([str(tmp_path / n) for n in names], workers=2))
    assert [Path(o.path).name for o in out] == names
    codes = {Path(o.path).name: getattr(getattr(o, "error", None), "code", None) for o in out}
    assert codes == {"a.jpg": None, "b-crash.jpg": "hash_failed", "c.jpg": None, "d.jpg": None}
