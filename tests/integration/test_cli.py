"""The CLI as a user runs it: lists in, scan out, exit codes like clamscan."""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo


def _edited(src: Path, dst: Path) -> Path:
    im = Image.open(src)
    im = im.resize((im.width // 2, im.height // 2))
    im.save(dst, quality=60)
    return dst


def test_hash_json_lines(cli, photo_files) -> None:
    paths = photo_files([1, 2])
    res = cli("hash", "--json", *paths)
    assert res.code == 0
    lines = res.json_lines
    assert [x["path"] for x in lines] == [str(p) for p in paths]
    for x in lines:
        assert set(x) == {"path", "kind", "md5", "sha256", "pdq", "pdq_quality"}
        assert x["kind"] == "image" and x["pdq_quality"] >= 80


def test_lists_add_then_scan_finds_edited_copies(cli, home, photo_files, tmp_path) -> None:
    listed = photo_files([10, 11, 12], "listed")
    res = cli("lists", "add", "hotline", *listed, "--category", "A1", "--json")
    assert res.code == 0, res.err
    assert res.json_lines[0]["added"] == 3

    scan_dir = tmp_path / "incoming"
    scan_dir.mkdir()
    _edited(listed[0], scan_dir / "edited.jpg")
    synthetic_photo(99).save(scan_dir / "other.jpg")
    res = cli("scan", "--json", "--list", "hotline", str(scan_dir))
    assert res.code == 1
    by_name = {Path(x["path"]).name: x["matches"] for x in res.json_lines}
    assert by_name["other.jpg"] == []
    (m,) = by_name["edited.jpg"]
    assert m["list"] == "hotline" and m["hash_type"] == "pdq" and m["category"] == "A1"
    assert m["distance"] <= 31
    assert "1 matched" in res.err


def test_scan_clean_and_failed_exit_codes(cli, home, photo_files, tmp_path) -> None:
    cli("lists", "add", "hl", *photo_files([1], "listed"))
    clean = photo_files([50], "clean")
    assert cli("scan", *clean).code == 0
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"")
    res = cli("scan", "--json", str(bad), *clean)
    assert res.code == 2
    assert res.json_lines[0]["error"]["code"] == "empty_file"
    assert res.json_lines[1]["matches"] == []


def test_exact_md5_match_from_imported_csv(cli, home, photo_files, tmp_path) -> None:
    (p,) = photo_files([7])
    h = cli("hash", "--json", p).json_lines[0]
    csv = tmp_path / "list.csv"
    csv.write_text(f"id,md5,category\nx-1,{h['md5']},B\n")
    assert cli("lists", "import", "csvlist", csv).code == 0
    res = cli("scan", "--json", p)
    assert res.code == 1
    assert [(m["entry_id"], m["hash_type"]) for m in res.json_lines[0]["matches"]] == [
        ("x-1", "md5")
    ]


def test_malformed_import_reports_line_and_imports_nothing(cli, home, tmp_path) -> None:
    good = "a" * 64
    f = tmp_path / "bad.csv"
    f.write_text(f"id,pdq\n1,{good}\n2,{good}\n3,{'z' * 64}\n")
    res = cli("lists", "import", "hl", f)
    assert res.code == 2
    assert "line 4" in res.err
    assert cli("lists", "show", "hl").code == 2  # the list was never created
    f.write_text(f"id,pdq\n1,{good}\n")
    assert cli("lists", "import", "hl", f).code == 0
    f.write_text(f"id,pdq\n2,{'b' * 64}\n3,oops\n")
    assert cli("lists", "import", "hl", f).code == 2
    shown = cli("lists", "show", "hl", "--json").json_lines[0]
    assert shown["entries"] == 1


def test_reimport_is_idempotent_and_tombstones_apply(cli, home, tmp_path) -> None:
    f = tmp_path / "l.jsonl"
    rows = [{"id": f"e{i}", "pdq": f"{i:064x}"} for i in range(1, 6)]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    first = cli("lists", "import", "hl", f, "--json").json_lines[0]
    second = cli("lists", "import", "hl", f, "--json").json_lines[0]
    assert (first["added"], second["added"], second["unchanged"]) == (5, 0, 5)
    f.write_text(json.dumps({"id": "e1", "removed": True}) + "\n")
    third = cli("lists", "import", "hl", f, "--json").json_lines[0]
    assert third["removed"] == 1
    assert cli("lists", "show", "hl", "--json").json_lines[0]["entries"] == 4


def test_export_round_trip(cli, home, tmp_path) -> None:
    f = tmp_path / "l.csv"
    f.write_text("id,pdq,md5,category\n1," + "c" * 64 + "," + "d" * 32 + ",A2\n")
    cli("lists", "import", "one", f)
    out = tmp_path / "out.csv"
    assert cli("lists", "export", "one", "-o", out).code == 0
    assert cli("lists", "import", "two", out).code == 0
    a = cli("lists", "export", "one").out
    b = cli("lists", "export", "two").out
    assert a == b and "A2" in a


def test_threshold_option_and_unknown_list(cli, home, photo_files) -> None:
    listed = photo_files([3], "listed")
    cli("lists", "add", "hl", *listed)
    res = cli("scan", "--list", "nope", *listed)
    assert res.code == 2 and "list_not_found" in res.err
    assert cli("scan", "--threshold", "0", "--json", *listed).code == 1  # same file: distance 0
    assert cli("lists", "remove", "hl").code == 0
    assert cli("scan", *listed).code == 0


def _video(path: Path, src: str, size: str = "320x240", crf: int = 23) -> Path:
    import subprocess

    subprocess.run(
        ["ffmpeg", "-y", "-loglevel", "error", "-f", "lavfi", "-i", src, "-s", size,
         "-crf", str(crf), "-pix_fmt", "yuv420p", str(path)],
        check=True,
    )  # fmt: skip
    return path


def test_video_listed_then_reencoded_copy_matches_by_vpdq(cli, home, tmp_path) -> None:
    clip = "testsrc2=duration=4:size=320x240:rate=10"
    other = "mandelbrot=size=320x240:rate=10,trim=duration=4"
    listed = _video(tmp_path / "listed.mp4", clip)
    copy = _video(tmp_path / "copy.mkv", clip, size="240x180", crf=35)
    unrelated = _video(tmp_path / "other.mp4", other)
    h = cli("hash", "--json", listed).json_lines[0]
    assert h["kind"] == "video" and len(h["vpdq"]) >= 4
    assert set(h["vpdq"][0]) == {"pdq", "quality", "timestamp"}
    assert cli("lists", "add", "videos", listed).code == 0
    res = cli("scan", "--json", copy, unrelated)
    by_name = {Path(x["path"]).name: x["matches"] for x in res.json_lines}
    assert [m["hash_type"] for m in by_name["copy.mkv"]] == ["vpdq"]
    assert by_name["other.mp4"] == []
    assert res.code == 1


LISTS = Path(__file__).parents[1] / "data" / "lists"


def test_import_every_format_from_the_command_line(cli, home) -> None:
    for name, fmt in [("sample.csv", "csv"), ("sample.jsonl", "jsonl"), ("sample.te", "te"),
                      ("ncmec_entries.xml", "ncmec")]:  # fmt: skip
        res = cli("lists", "import", f"l-{fmt}", LISTS / name, "--json")
        assert res.code == 0, res.err
        assert res.json_lines[0]["format"] == fmt
        assert res.json_lines[0]["added"] > 0


def test_hostile_list_files_import_nothing(cli, home) -> None:
    for name in ("ncmec_billion_laughs.xml", "ncmec_truncated.xml"):
        res = cli("lists", "import", "hl", LISTS / name)
        assert res.code == 2 and "malformed_list" in res.err and "Traceback" not in res.err
    assert cli("lists", "show", "--json").json_lines == []


def test_scan_finds_mirrored_rotated_and_letterboxed_copies(
    cli, home, photo_files, tmp_path
) -> None:
    (listed,) = photo_files([21], "listed")
    cli("lists", "add", "hl", listed)
    im = Image.open(listed)
    d = tmp_path / "edits"
    d.mkdir()
    im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(d / "mirror.jpg")
    im.rotate(90, expand=True).save(d / "rot90.png")
    boxed = Image.new("RGB", (im.width, int(im.height * 1.4)), (0, 0, 0))
    boxed.paste(im, (0, int(im.height * 0.2)))
    boxed.save(d / "letterbox.png")
    res = cli("scan", "--json", d)
    found = {Path(x["path"]).name: x["matches"] for x in res.json_lines}
    assert all(len(found[n]) == 1 for n in ("mirror.jpg", "rot90.png", "letterbox.png")), found
    assert all(found[n][0]["variant"] for n in found)  # says which variant matched
    plain = cli("scan", "--json", "--plain", d)
    assert all(x["matches"] == [] for x in plain.json_lines)
    assert plain.code == 0


def test_eval_small_corpus_writes_a_report(cli, home, tmp_path) -> None:
    out = tmp_path / "report"
    res = cli("eval", "--corpus", "small", "--listed", "6", "--distractors", "6",
              "--schemes", "pdq,robust", "--transforms", "jpeg70,flip-h", "--workers", "1",
              "--out", out, "--json", "--no-progress")  # fmt: skip
    assert res.code == 0, res.err
    (summary,) = res.json_lines
    recall = {s["scheme"]: s["transforms"][1]["recall"] for s in summary["schemes"]}
    assert recall["pdq"] == 0.0 and recall["robust"] > 0.5  # flip-h
    assert (out / "README.md").exists() and (out / "recall.png").exists()
    bad = cli("eval", "--corpus", "small", "--schemes", "nope")
    assert bad.code == 2 and "unknown scheme" in bad.err


def test_scan_finds_listed_pictures_inside_crops_and_rotations_by_keypoints(
    cli, home, photo_files, tmp_path
) -> None:
    listed, other = photo_files([31, 32], "listed")
    assert cli("lists", "add", "hl", listed).code == 0
    assert cli("lists", "add", "plain", other, "--no-keypoints").code == 0
    d = tmp_path / "edits"
    d.mkdir()
    for src, tag in ((listed, "kp"), (other, "nokp")):
        im = Image.open(src)
        w, h = im.size
        im.crop((int(w * 0.12), 0, w, h)).save(d / f"{tag}-crop.jpg", quality=90)
        im.rotate(8, resample=Image.Resampling.BICUBIC).crop(
            (w // 8, h // 8, w - w // 8, h - h // 8)
        ).save(d / f"{tag}-rot8.png")
        im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((0, 0, int(w * 0.85), h)).save(
            d / f"{tag}-mirror-crop.png"
        )
    res = cli("scan", "--json", d)
    found = {Path(x["path"]).name: x["matches"] for x in res.json_lines}
    for name in ("kp-crop.jpg", "kp-rot8.png", "kp-mirror-crop.png"):
        (m,) = found[name]
        assert (m["list"], m["hash_type"]) == ("hl", "keypoints"), name
        assert m["distance"] <= 31 and m["inliers"] >= 10
    assert found["kp-mirror-crop.png"][0]["variant"] == "keypoints-mirrored"
    # the same edits of a picture listed without keypoints stay unmatched: PDQ
    # alone cannot see them, which is what the keypoints are for
    assert all(found[n] == [] for n in found if n.startswith("nokp-")), found
    assert cli("scan", "--json", "--plain", d / "kp-crop.jpg").json_lines[0]["matches"] == []
    # a removed list takes its keypoints with it
    assert cli("lists", "remove", "hl").code == 0
    again = cli("scan", "--json", d / "kp-crop.jpg")
    assert again.json_lines[0]["matches"] == [] and again.code == 0
