"""Tests for blindmatch.lists: the hash-list model, parsers and writers.

Every fixture under tests/data/lists is synthetic (random hex); see its README.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from blindmatch.errors import InvalidHash, ListFormatError
from blindmatch.lists import (
    CATEGORIES,
    FORMATS,
    MAX_PDQ_HOT,
    ListEntry,
    ParsedList,
    VpdqFrame,
    detect_format,
    dump_list,
    formats,
    normalise_category,
    normalise_md5,
    normalise_pdq,
    normalise_pdq_companion,
    normalise_pdq_hot,
    normalise_sha256,
    parse_list,
    validate_source_id,
)

DATA = Path(__file__).resolve().parents[1] / "data" / "lists"

# Random hex that appears in the fixtures (lower-cased).
PDQ_A = "5c236059e23a9729d4eda531e0f8a0fd86ec6e6126b28f1acd8aa0bea4fb288a"
PDQ_B = "444ac08f3faa0dba053c31e977967f8557f801b2a8418563ae21f1e592b87213"
MD5_A = "f7ba95c99db822c3e91a526ba318111c"
GOOD_PDQ = "0123456789abcdef" * 4
GOOD_MD5 = "0123456789abcdef" * 2
GOOD_SHA = "fedcba9876543210" * 4
GOOD_COMP = "00112233445566778899aabbccddeeff" * 2  # a companion hash (a PDQ)
HOT = ("ab" * 32, "cd" * 32, "ef" * 32)  # hot companion hashes (PDQs)


def fixture(name: str) -> bytes:
    return (DATA / name).read_bytes()


def parse_error(data: bytes | str, fmt: str | None = None, **kw: str) -> ListFormatError:
    if isinstance(data, str):
        data = data.encode()
    with pytest.raises(ListFormatError) as info:
        parse_list(data, fmt, **kw)
    return info.value


# --------------------------------------------------------------------------- #
# Model
# --------------------------------------------------------------------------- #


class TestModel:
    def test_normalisers_strip_and_lowercase(self) -> None:
        assert normalise_pdq("  " + GOOD_PDQ.upper() + "\n") == GOOD_PDQ
        assert normalise_md5(GOOD_MD5.upper()) == GOOD_MD5
        assert normalise_sha256(GOOD_SHA) == GOOD_SHA

    @pytest.mark.parametrize(
        ("fn", "value", "message"),
        [
            (normalise_pdq, GOOD_PDQ[:-1], "pdq must be 64 hex digits, got 63"),
            (normalise_pdq, GOOD_PDQ[:-1] + "g", "non-hex character 'g'"),
            (normalise_md5, GOOD_MD5 + "0", "md5 must be 32 hex digits, got 33"),
            (normalise_sha256, "", "sha256 must be 64 hex digits, got 0"),
            (normalise_pdq, 123, "must be a string"),
            (
                normalise_pdq_companion,
                GOOD_COMP[:-2],
                "pdq_companion must be 64 hex digits, got 62",
            ),
            (normalise_pdq_companion, GOOD_COMP[:-1] + "x", "non-hex character 'x'"),
            (normalise_pdq_companion, 7, "pdq_companion must be a string"),
        ],
    )
    def test_normalisers_reject(
        self, fn: Callable[[str], str], value: object, message: str
    ) -> None:
        with pytest.raises(InvalidHash, match=message):
            fn(value)  # type: ignore[arg-type]

    def test_category(self) -> None:
        assert normalise_category(" a1 ") == "A1"
        assert normalise_category("") is None
        assert normalise_category(None) is None
        assert {normalise_category(c.lower()) for c in CATEGORIES} == CATEGORIES
        with pytest.raises(ValueError, match="unknown category 'D'"):
            normalise_category("D")

    @pytest.mark.parametrize("bad", ["", "  ", " x", "x ", "a\nb", "a\x00b", "x" * 1025])
    def test_source_id_rejected(self, bad: str) -> None:
        with pytest.raises(ValueError):
            validate_source_id(bad)

    def test_entry_validation(self) -> None:
        assert ListEntry("x", pdq=GOOD_PDQ).pdq == GOOD_PDQ
        assert ListEntry("x", removed=True).removed  # a tombstone needs no hash
        with pytest.raises(ValueError, match="no hash"):
            ListEntry("x")
        with pytest.raises(InvalidHash):
            ListEntry("x", pdq=GOOD_PDQ.upper())
        with pytest.raises(ValueError, match="category"):
            ListEntry("x", md5=GOOD_MD5, category="a1")
        with pytest.raises(ValueError):
            ListEntry("x", vpdq=())

    def test_entry_companion(self) -> None:
        e = ListEntry("x", pdq=GOOD_PDQ, pdq_companion=GOOD_COMP)
        assert e.pdq_companion == GOOD_COMP and ListEntry("x", pdq=GOOD_PDQ).pdq_companion is None
        assert e != ListEntry("x", pdq=GOOD_PDQ)  # a companion is part of the entry
        with pytest.raises(InvalidHash, match="pdq_companion must be 64 lowercase hex"):
            ListEntry("x", pdq=GOOD_PDQ, pdq_companion=GOOD_COMP.upper())
        with pytest.raises(InvalidHash, match="pdq_companion must be 64 hex digits, got 3"):
            ListEntry("x", pdq=GOOD_PDQ, pdq_companion="abc")
        # A companion belongs to a PDQ: alone (or beside an MD5) it is refused, and it
        # never makes an entry by itself nor an id.
        with pytest.raises(ValueError, match="pdq_companion needs a pdq"):
            ListEntry("x", md5=GOOD_MD5, pdq_companion=GOOD_COMP)
        with pytest.raises(ValueError, match="pdq_companion needs a pdq"):
            ListEntry("x", pdq_companion=GOOD_COMP)

    def test_entry_hot(self) -> None:
        e = ListEntry("x", pdq=GOOD_PDQ, pdq_companion=GOOD_COMP, pdq_hot=HOT)
        assert e.pdq_hot == HOT and ListEntry("x", pdq=GOOD_PDQ).pdq_hot == ()
        assert e != ListEntry("x", pdq=GOOD_PDQ, pdq_companion=GOOD_COMP)  # part of the entry
        assert ListEntry("x", pdq=GOOD_PDQ, pdq_hot=HOT[:1]).pdq_companion is None
        most = tuple(f"{i:064x}" for i in range(MAX_PDQ_HOT))
        assert len(ListEntry("x", pdq=GOOD_PDQ, pdq_hot=most).pdq_hot) == MAX_PDQ_HOT
        bad: list[tuple[object, type[Exception], str]] = [
            ((HOT[0].upper(),), InvalidHash, "pdq_hot must be 64 lowercase hex"),
            ((HOT[0], "abc"), InvalidHash, "pdq_hot must be 64 hex digits, got 3"),
            ((HOT[0], HOT[0]), InvalidHash, f"pdq_hot has the hash {HOT[0]} twice"),
            ((*most, "ff" * 32), InvalidHash, f"97 hashes; the limit is {MAX_PDQ_HOT}"),
            (list(HOT), ValueError, "pdq_hot must be a tuple"),
            (" ".join(HOT), ValueError, "pdq_hot must be a tuple"),
        ]
        for value, exc, message in bad:
            with pytest.raises(exc, match=message):
                ListEntry("x", pdq=GOOD_PDQ, pdq_hot=value)  # type: ignore[arg-type]
        # Hot companions belong to a PDQ: refused without one, and never an entry alone.
        with pytest.raises(ValueError, match="pdq_hot needs a pdq"):
            ListEntry("x", md5=GOOD_MD5, pdq_hot=HOT)
        with pytest.raises(ValueError, match="pdq_hot needs a pdq"):
            ListEntry("x", pdq_hot=HOT)

    def test_normalise_pdq_hot(self) -> None:
        assert normalise_pdq_hot(f"  {HOT[0].upper()}\t{HOT[1]}  {HOT[2]} ") == HOT
        assert normalise_pdq_hot([HOT[1], HOT[0]]) == (HOT[1], HOT[0])  # order kept
        assert normalise_pdq_hot("") == normalise_pdq_hot([]) == ()
        for value, message in [
            (f"{HOT[0]} {HOT[1][:-1]}", "pdq_hot must be 64 hex digits, got 63"),
            ([HOT[0], 5], "pdq_hot must be a string of 64 hex digits, got int"),
            (f"{HOT[0]} {HOT[0].upper()}", "twice"),
            (" ".join(f"{i:064x}" for i in range(MAX_PDQ_HOT + 1)), "the limit is 96"),
            (7, "pdq_hot must be a list of hashes"),
        ]:
            with pytest.raises(InvalidHash, match=message):
                normalise_pdq_hot(value)

    def test_vpdq_frame(self) -> None:
        frame = VpdqFrame(GOOD_PDQ, 100, 3)
        assert isinstance(frame.timestamp, float) and frame.timestamp == 3.0
        for quality, ts in [(101, 0.0), (-1, 0.0), (50, -1.0), (50, math.nan), (50, math.inf)]:
            with pytest.raises(ValueError):
                VpdqFrame(GOOD_PDQ, quality, ts)

    def test_derive_id(self) -> None:
        assert ListEntry.derive_id(pdq=GOOD_PDQ, md5=GOOD_MD5) == f"pdq:{GOOD_PDQ}"
        assert ListEntry.derive_id(md5=GOOD_MD5) == f"md5:{GOOD_MD5}"
        assert ListEntry.derive_id(sha256=GOOD_SHA) == f"sha256:{GOOD_SHA}"
        frames = (VpdqFrame(GOOD_PDQ, 90, 0.0),)
        vid = ListEntry.derive_id(vpdq=frames)
        assert vid is not None and vid.startswith("vpdq:") and len(vid) == 5 + 64
        assert vid == ListEntry.derive_id(vpdq=(VpdqFrame(GOOD_PDQ, 90, 0.0),))
        assert ListEntry.derive_id() is None


# --------------------------------------------------------------------------- #
# Fixture files, one per format
# --------------------------------------------------------------------------- #


def test_csv_fixture() -> None:
    parsed = parse_list(fixture("sample.csv"), "csv")
    assert parsed.format == "csv" and parsed.skipped == 0
    assert parsed.entries == (
        ListEntry("src-001", pdq=PDQ_A, md5=MD5_A, category="A1"),
        ListEntry("src-002", pdq=PDQ_B, category="B2"),
        ListEntry(
            "src-003",
            md5="b7d3d5f48012e132acecd211f4eebf8c",
            sha256="15f784eb741e8b8d1d5264db1ba11588ec1a71debb16f0b2f935f567a2f84219",
        ),
        ListEntry(
            "src,004",
            sha256="cebb0b04a3da8ba9066542cc69e378816f81e7483f403a3f0f593ce83c5997d0",
            category="C",
        ),
        ListEntry("src-099", removed=True),
    )


def test_jsonl_fixture() -> None:
    parsed = parse_list(fixture("sample.jsonl"), "jsonl")
    e = {x.source_id: x for x in parsed.entries}
    pdq4 = "67cbcdf2e61880f87c451b31daaee17f0a82807ea4c25501448acfda7e873d21"
    assert list(e) == ["jl-1", "42", "jl-3", f"pdq:{pdq4}", "jl-5", "jl-gone"]
    assert e["jl-1"] == ListEntry(
        "jl-1",
        pdq="c997062b8b642cb946d5d592cecf3ecd4718797681b5c9d2b6d32e2856ccdd3a",
        category="A2",
    )
    assert e["42"].md5 == "29de4010784e8c7c9e63a7cd330c5649"  # upper-case in the file
    assert e["42"].sha256 is not None
    assert e["jl-3"].category == "B"
    assert e["jl-3"].vpdq == (
        VpdqFrame("7dc6345f21a0c370c12bbf3895c4d406e07fcfc1ba1ffa3e15df5bf07b2d48fa", 100, 0.0),
        VpdqFrame("a9133ae7df21d4a7609b4e13150f1d29e26d1f04f14a0430d6cde50bea87dc6a", 87, 1.5),
    )
    assert e[f"pdq:{pdq4}"].pdq == pdq4
    vpdq5 = e["jl-5"].vpdq
    assert vpdq5 is not None  # compact python-threatexchange strings
    assert [(f.quality, f.timestamp) for f in vpdq5] == [(90, 0.0), (55, 2.0)]
    assert e["jl-gone"] == ListEntry("jl-gone", removed=True)


def test_te_fixture() -> None:
    parsed = parse_list(fixture("sample.te"), "te")
    pdq1 = "998d781821b5a5bc9ed8e4a402409833611d0579ddc9ff4b32a96f1b80a8955c"
    pdq4 = "a81a65deb734cd63695b6224e660f83988eb2d280b6cf5c49445c6e2063c02b0"
    md5_2 = "1686327ba666754dfded71de230f45b7"
    md5_3 = "d3684647fa0cdb2afa45ebd5812fcb69"
    sha5 = "9e921260b6197955ac50fdfc0501b129cd874a1108102b5eb62041f7d986cd1a"
    entries = parsed.entries
    # The repeated pdq line at the end is collapsed into the first.
    assert entries[:5] == (
        ListEntry(f"pdq:{pdq1}", pdq=pdq1),
        ListEntry(f"md5:{md5_2}", md5=md5_2),  # video_md5, trailing fields ignored
        ListEntry(f"md5:{md5_3}", md5=md5_3),
        ListEntry(f"pdq:{pdq4}", pdq=pdq4),  # "PDQ": signal type is case-insensitive
        ListEntry(f"sha256:{sha5}", sha256=sha5),
    )
    assert len(entries) == 6
    vpdq = entries[5].vpdq
    assert vpdq is not None and [(f.quality, f.timestamp) for f in vpdq] == [(100, 0.0), (80, 1.0)]
    assert entries[5].source_id.startswith("vpdq:")


def test_te_simple_store_file() -> None:
    parsed = parse_list(fixture("simple.pdq.te"), filename="state/simple.pdq.te")
    assert parsed.format == "te"
    assert [e.pdq for e in parsed.entries] == [
        "c0092d10eeaa39451366104224204d9af164ecaebb7e6eb0c7652ca4f11375f6",
        "d3f50262bd70f13b0c08bbe0825a447776bbff319b93d6e9c62033c6c079b593",
    ]
    # Without the file name the signal type is unknown, so the rows are refused.
    err = parse_error(fixture("simple.pdq.te"), "te")
    assert err.line == 1 and "signal type" in err.message


def test_ncmec_fixture() -> None:
    parsed = parse_list(fixture("ncmec_entries.xml"), "ncmec")
    assert parsed.format == "ncmec"
    assert parsed.skipped == 1  # image2 has only SHA-1 and PhotoDNA
    assert parsed.entries == (
        ListEntry(
            "42-image1",
            md5="f7fe1c7dea3e8b1b95a26de058360a28",
            pdq="7ed1786972724283bbb208ff797730a1bcfda0283691f37a377fbed4256e464d",
            category="A1",
        ),
        ListEntry("7-image3", md5="4b779dac6ac9583c44eb99dba2a3d7d2"),
        ListEntry("43-image4", removed=True),
        ListEntry("42-video1", md5="78d513becde6393d571094d3b6a0bd89", category="B1"),
        ListEntry("42-video4", removed=True),
    )


def test_ncmec_without_namespace_and_with_sha256() -> None:
    xml = f"""<queryResult>
<images><image><member id="0042">M</member><id> e1 </id>
<fingerprints><SHA256>{GOOD_SHA.upper()}</SHA256><md5/></fingerprints></image></images>
</queryResult>"""
    assert parse_list(xml.encode(), "ncmec").entries == (ListEntry("42-e1", sha256=GOOD_SHA),)


def test_ncmec_deletion_after_entry_wins() -> None:
    xml = f"""<queryResult><videos>
<video><member id="1"/><id>v</id><fingerprints><md5>{GOOD_MD5}</md5></fingerprints></video>
<deletedVideo><member id="1"/><id>v</id></deletedVideo>
</videos></queryResult>"""
    assert parse_list(xml.encode(), "ncmec").entries == (ListEntry("1-v", removed=True),)


# --------------------------------------------------------------------------- #
# Detection
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sample.csv", "csv"),
        ("sample.jsonl", "jsonl"),
        ("sample.te", "te"),
        ("ncmec_entries.xml", "ncmec"),
    ],
)
def test_detect_by_content_and_extension(name: str, expected: str) -> None:
    data = fixture(name)
    assert detect_format(data) == expected  # content alone
    assert detect_format(data, filename=f"/some/dir/{name}") == expected
    assert detect_format(data, filename="list.txt") == expected  # unknown extension: sniff
    assert parse_list(data, filename=name).format == expected
    assert parse_list(data).format == expected


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (b"", None, "csv"),
        (b"\n\n", None, "csv"),
        (b"pdq\n" + GOOD_PDQ.encode(), None, "csv"),  # a one-column CSV, not TE
        (b"md5 " + GOOD_MD5.encode(), None, "te"),
        (b'\xef\xbb\xbf  {"pdq": 1}', None, "jsonl"),
        (b"# comment\n", None, "te"),
        (b"<queryResult/>", "x.CSV", "csv"),  # a known extension wins
        (b"", "list.ndjson", "jsonl"),
        (b"", "list.json", "jsonl"),
        (b"", "LIST.XML", "ncmec"),
        (b"", "simple.video_md5.te", "te"),
    ],
)
def test_detect_cases(data: bytes, filename: str | None, expected: str) -> None:
    assert detect_format(data, filename) == expected


# --------------------------------------------------------------------------- #
# Malformed input: every case names the right line
# --------------------------------------------------------------------------- #

BAD_CASES = [
    # CSV
    ("csv", f"id,pdq\nok,{GOOD_PDQ}\nbad,{GOOD_PDQ[:-1]}z\n", 3, "non-hex character 'z'"),
    (
        "csv",
        f"id,pdq\nok,{GOOD_PDQ}\n\n\nbad,{GOOD_PDQ[:-1]}\n",
        5,
        "pdq must be 64 hex digits, got 63",
    ),
    ("csv", f"id,md5\nbad,{GOOD_MD5}0\n", 2, "md5 must be 32 hex digits, got 33"),
    ("csv", "\n\nid,colour,pdq\n", 3, "unknown column 'colour'"),
    ("csv", f"{GOOD_PDQ},A1\n{GOOD_PDQ},A2\n", 1, "the first line must be a header"),
    ("csv", "id,PDQ,pdq\n", 1, "column 'pdq' appears twice"),
    ("csv", f"id,pdq,category\nx,{GOOD_PDQ},D\n", 2, "unknown category 'D'"),
    ("csv", "id,pdq,md5,category\nx,,,A1\n", 2, "'x' has no hash"),
    ("csv", "pdq,category\n,A1\n", 2, "no id and no hash"),
    (
        "csv",
        f"id,pdq\na,{GOOD_PDQ}\nb,{GOOD_PDQ}\na,{GOOD_PDQ}\n",
        4,
        "duplicate id 'a': also on line 2",
    ),
    ("csv", f"pdq,category\n{GOOD_PDQ},A1\n{GOOD_PDQ},A2\n", 3, "also on line 2"),
    ("csv", f"id,pdq\n  ,{GOOD_PDQ}\n", 2, "id is empty"),
    ("csv", f"id,pdq,removed\nx,{GOOD_PDQ},maybe\n", 2, "removed must be"),
    ("csv", f"id,pdq\nx,{GOOD_PDQ},extra\n", 2, "expected 2 fields"),
    ("csv", f'id,pdq\n"x"y,{GOOD_PDQ}\n', 2, "malformed CSV"),
    ("csv", f"id,pdq\nx\x07y,{GOOD_PDQ}\n", 2, "control character"),
    (
        "csv",
        f"id,pdq,pdq_companion\nok,{GOOD_PDQ},{GOOD_COMP}\nbad,{GOOD_PDQ},{GOOD_COMP[:-1]}\n",
        3,
        "pdq_companion must be 64 hex digits, got 63",
    ),
    ("csv", f"id,pdq,pdq_companion\nbad,{GOOD_PDQ},{GOOD_COMP[:-1]}z\n", 2, "character 'z'"),
    ("csv", f"id,md5,pdq_companion\nx,{GOOD_MD5},{GOOD_COMP}\n", 2, "pdq_companion needs a pdq"),
    ("csv", f"pdq_companion\n{GOOD_COMP}\n", 2, "no id and no hash"),
    (
        "csv",
        f"id,pdq,pdq_hot\nok,{GOOD_PDQ},{HOT[0]}\nbad,{GOOD_PDQ},{HOT[0]} {HOT[1][:-1]}\n",
        3,
        "pdq_hot must be 64 hex digits, got 63",
    ),
    ("csv", f"id,pdq,pdq_hot\nbad,{GOOD_PDQ},{HOT[0]},{HOT[1]}\n", 2, "expected 3 fields"),
    ("csv", f"id,md5,pdq_hot\nx,{GOOD_MD5},{HOT[0]}\n", 2, "pdq_hot needs a pdq"),
    ("csv", f"id,pdq,pdq_hot\nx,{GOOD_PDQ},{HOT[1]} {HOT[1]}\n", 2, "twice"),
    ("csv", f"pdq_hot\n{HOT[0]}\n", 2, "no id and no hash"),
    # JSON lines
    ("jsonl", '{"pdq": "' + GOOD_PDQ + '"}\n{"pdq": \n', 2, "not valid JSON"),
    (
        "jsonl",
        '{"id": "a", "pdq": "' + GOOD_PDQ + '", "pdq_companion": "' + GOOD_COMP + '0"}',
        1,
        "pdq_companion must be 64 hex digits, got 65",
    ),
    (
        "jsonl",
        '{"id": "a", "pdq": "' + GOOD_PDQ + '", "pdq_companion": 5}',
        1,
        "pdq_companion must be a string",
    ),
    (
        "jsonl",
        '{"id": "a", "pdq": "' + GOOD_PDQ + '", "pdq_hot": ["' + HOT[0] + '0"]}',
        1,
        "pdq_hot must be 64 hex digits, got 65",
    ),
    (
        "jsonl",
        '{"id": "a", "pdq": "' + GOOD_PDQ + '", "pdq_hot": "' + HOT[0] + '"}',
        1,
        "pdq_hot must be a list of hashes, got a string",
    ),  # fmt: skip
    (
        "jsonl",
        '{"id": "a", "pdq": "' + GOOD_PDQ + '", "pdq_hot": [1]}',
        1,
        "pdq_hot must be a string of 64 hex digits, got int",
    ),  # fmt: skip
    (
        "jsonl",
        '{"id": "a", "md5": "' + GOOD_MD5 + '", "pdq_hot": ["' + HOT[0] + '"]}',
        1,
        "pdq_hot needs a pdq",
    ),  # fmt: skip
    ("jsonl", "\n[1, 2]\n", 2, "must be a JSON object, got an array"),
    ("jsonl", '{"id": "a", "pdq": "' + GOOD_PDQ[:-1] + '"}', 1, "got 63"),
    ("jsonl", '{"id": "a", "pdq": 7}', 1, "pdq must be a string"),
    ("jsonl", '{"id": "a", "md5": "' + GOOD_MD5 + '", "category": "Z"}', 1, "unknown category"),
    ("jsonl", '{"id": "a", "md5": "' + GOOD_MD5 + '", "category": 1}', 1, "category must be"),
    ("jsonl", '{"id": "", "md5": "' + GOOD_MD5 + '"}', 1, "id is empty"),
    ("jsonl", '{"id": true, "md5": "' + GOOD_MD5 + '"}', 1, "id must be a string or integer"),
    ("jsonl", '{"id": "a", "md5": "' + GOOD_MD5 + '", "removed": "yes"}', 1, "removed must be"),
    ("jsonl", '{"id": "a", "category": "A1"}', 1, "'a' has no hash"),
    ("jsonl", '{"id": "a", "vpdq": []}', 1, "at least one frame"),
    ("jsonl", '{"id": "a", "vpdq": {}}', 1, "vpdq must be a list"),
    (
        "jsonl",
        '{"id": "a", "vpdq": [{"pdq": "' + GOOD_PDQ + '", "quality": 101, "timestamp": 0}]}',
        1,
        "quality must be 0..100",
    ),
    (
        "jsonl",
        '{"id": "a", "vpdq": [{"pdq": "' + GOOD_PDQ + '", "quality": 50}]}',
        1,
        "missing timestamp",
    ),
    ("jsonl", '{"id": "a", "vpdq": ["' + GOOD_PDQ + ',50"]}', 1, "pdq,quality,timestamp"),
    ("jsonl", '{"id": "a", "vpdq": ["' + GOOD_PDQ + ',x,0"]}', 1, "quality must be an integer"),
    ("jsonl", '{"id": "a", "vpdq": ["' + GOOD_PDQ + ',5,-1"]}', 1, "timestamp must be finite"),
    (
        "jsonl",
        '{"id": "a", "vpdq": [{"pdq": "' + GOOD_PDQ + '", "quality": 5, "timestamp": NaN}]}',
        1,
        "NaN",
    ),
    ("jsonl", '{"id": "a", "id": "b", "md5": "' + GOOD_MD5 + '"}', 1, "duplicate key 'id'"),
    ("jsonl", "[" * 100_000, 1, "JSON"),
    (
        "jsonl",
        '{"id": "a", "md5": "' + GOOD_MD5 + '"}\n\n{"id": "a", "pdq": "' + GOOD_PDQ + '"}',
        3,
        "duplicate id 'a': also on line 1",
    ),
    # TE lines
    ("te", f"# c\npdq {GOOD_PDQ}\nphotodna abc\n", 3, "signal type"),
    ("te", "pdq\n", 1, "missing hash after 'pdq'"),
    ("te", f"\nmd5 {GOOD_MD5[:-2]}\n", 2, "md5 must be 32 hex digits, got 30"),
    ("te", "vpdq not-json\n", 1, "vpdq hash must be a JSON list"),
    ("te", 'vpdq ["' + GOOD_PDQ + ',101,0.0"]\n', 1, "quality must be 0..100"),
]


@pytest.mark.parametrize(("fmt", "text", "line", "message"), BAD_CASES)
def test_malformed(fmt: str, text: str, line: int, message: str) -> None:
    err = parse_error(text, fmt)
    assert err.line == line
    assert message in err.message
    assert err.message.startswith(f"line {line}: ")
    assert err.as_dict()["line"] == line


NCMEC_ENTRY = '<image><member id="1">M</member><id>{id}</id>{body}</image>'


def ncmec(*entries: str, container: str = "images") -> bytes:
    body = "\n".join(entries)
    return f"<queryResult>\n<{container}>\n{body}\n</{container}>\n</queryResult>\n".encode()


BAD_XML = [
    (
        ncmec(
            NCMEC_ENTRY.format(id="a", body=f"<fingerprints><md5>{GOOD_MD5}</md5></fingerprints>"),
            NCMEC_ENTRY.format(id="b", body="<fingerprints>\n<md5>abc</md5></fingerprints>"),
        ),
        5,
        "md5 must be 32 hex digits, got 3",
    ),
    (
        ncmec(f"<image><member id='1'/><fingerprints><md5>{GOOD_MD5}</md5></fingerprints></image>"),
        3,
        "<image> has no <id>",
    ),
    (ncmec("<image><id>x</id></image>"), 3, "has no <member id=...>"),
    (ncmec("<image><member id='abc'/><id>x</id></image>"), 3, "member id must be a number"),
    (ncmec(f"<image><member id='{'9' * 5000}'/><id>x</id></image>"), 3, "member id must be"),
    (
        ncmec(
            NCMEC_ENTRY.format(
                id="a",
                body=f"\n<classification>Z9</classification><fingerprints><md5>{GOOD_MD5}</md5>"
                "</fingerprints>",
            )
        ),
        4,
        "unknown category 'Z9'",
    ),
    (ncmec("<video><member id='1'/><id>x</id></video>"), 3, "unexpected <video> in <images>"),
    (ncmec("<deletedImage/>", container="videos"), 3, "unexpected <deletedImage> in <videos>"),
    (
        ncmec(
            NCMEC_ENTRY.format(id="a", body=f"<fingerprints><md5>{GOOD_MD5}</md5></fingerprints>"),
            NCMEC_ENTRY.format(id="a", body=f"<fingerprints><md5>{GOOD_MD5}</md5></fingerprints>"),
        ),
        4,
        "duplicate id '1-a': also on line 3",
    ),
    (
        ncmec(
            '<deletedImage><member id="1"/><id>a</id></deletedImage>',
            NCMEC_ENTRY.format(id="a", body=f"<fingerprints><md5>{GOOD_MD5}</md5></fingerprints>"),
        ),
        4,
        "cannot be re-added after its tombstone",
    ),
    (ncmec(NCMEC_ENTRY.format(id="a<b", body="")), 3, "malformed XML"),
    (ncmec(NCMEC_ENTRY.format(id="&ent;", body="")), 3, "undefined entity"),
    (ncmec(NCMEC_ENTRY.format(id="x", body="<id>y</id>")), 3, "more than one <id>"),
    (b"\n<images/>", 2, "root element is <images>"),
    (b"<queryResult>\n<image/></queryResult>", 2, "must be inside <images> or <videos>"),
    (b"<queryResult>" + b"<a>" * 40 + b"</a>" * 40 + b"</queryResult>", 1, "nested deeper"),
    (
        b'<?xml version="1.0"?>\n<!DOCTYPE q SYSTEM "http://example.invalid/x.dtd">\n<q/>',
        2,
        "DTD",
    ),
    (b"<?xml version='1.0'?>\n<queryResult>\n", 3, "malformed XML"),
]


@pytest.mark.parametrize(("data", "line", "message"), BAD_XML)
def test_malformed_ncmec(data: bytes, line: int, message: str) -> None:
    err = parse_error(data, "ncmec")
    assert err.line == line
    assert message in err.message


def test_truncated_xml_fixture() -> None:
    err = parse_error(fixture("ncmec_truncated.xml"), "ncmec")
    assert err.line == 50 and "malformed XML" in err.message


def test_billion_laughs_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    err = parse_error(fixture("ncmec_billion_laughs.xml"))  # detected as ncmec too
    assert err.line == 2 and "DTD" in err.message
    # The byte scan is only the first line of defence: the expat handlers refuse
    # a DOCTYPE too, should one ever get past it.
    monkeypatch.setattr(formats, "_XML_DTD", re.compile(rb"(?!)"))  # never matches
    err = parse_error(fixture("ncmec_billion_laughs.xml"), "ncmec")
    assert err.line == 2 and "DTD" in err.message


@pytest.mark.parametrize("fmt", FORMATS)
def test_non_utf8_refused_with_line(fmt: str) -> None:
    bodies = {
        "csv": b"id,pdq\n\nx,\xff\xfe\n",
        "jsonl": b'\n\n{"id": "\xc3("}\n',
        "te": b"# x\n\npdq \x80\n",
        "ncmec": b"<queryResult>\n<images>\n<image>\xe9</image></images></queryResult>",
    }
    err = parse_error(bodies[fmt], fmt)
    assert err.line == 3 and "not valid UTF-8" in err.message


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("data", [b"", b"\n\n  \n", b"\xef\xbb\xbf"])
def test_empty_file_is_an_empty_list(fmt: str, data: bytes) -> None:
    assert parse_list(data, fmt) == ParsedList(entries=(), format=fmt)


def test_csv_header_only_bom_and_crlf() -> None:
    assert parse_list(b"id,pdq,md5\n", "csv").entries == ()
    data = f"\ufeffID , PDQ\r\n x , {GOOD_PDQ.upper()} \r\n\r\n".encode()
    assert parse_list(data, "csv").entries == (ListEntry("x", pdq=GOOD_PDQ),)


def test_jsonl_crlf_and_bom() -> None:
    data = b'\xef\xbb\xbf{"id": "x", "md5": "' + GOOD_MD5.encode() + b'"}\r\n'
    assert parse_list(data, "jsonl").entries == (ListEntry("x", md5=GOOD_MD5),)


def test_unknown_format_name() -> None:
    with pytest.raises(ValueError, match="unknown list format"):
        parse_list(b"", "xml")
    with pytest.raises(TypeError):
        parse_list("id,pdq", "csv")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# Tombstones and duplicate ids
# --------------------------------------------------------------------------- #


class TestTombstones:
    def test_tombstone_after_add_wins_in_place(self) -> None:
        data = f"id,pdq,removed\na,{GOOD_PDQ},\nb,{GOOD_PDQ},\na,,yes\n"
        assert parse_list(data.encode(), "csv").entries == (
            ListEntry("a", removed=True),
            ListEntry("b", pdq=GOOD_PDQ),
        )

    def test_tombstone_may_keep_its_hashes(self) -> None:
        data = f"id,pdq,removed\na,{GOOD_PDQ},1\n"
        assert parse_list(data.encode(), "csv").entries == (
            ListEntry("a", pdq=GOOD_PDQ, removed=True),
        )

    def test_derived_id_tombstone(self) -> None:
        data = f"md5,removed\n{GOOD_MD5},false\n{GOOD_MD5},true\n"
        assert parse_list(data.encode(), "csv").entries == (
            ListEntry(f"md5:{GOOD_MD5}", md5=GOOD_MD5, removed=True),
        )

    def test_add_after_tombstone_is_an_error(self) -> None:
        data = f'{{"id": "a", "removed": true}}\n{{"id": "a", "pdq": "{GOOD_PDQ}"}}\n'
        err = parse_error(data, "jsonl")
        assert err.line == 2 and "re-added after its tombstone" in err.message

    def test_two_tombstones_is_an_error(self) -> None:
        err = parse_error("id,removed\na,true\na,true\n", "csv")
        assert err.line == 3 and "two tombstones" in err.message

    def test_identical_derived_entries_collapse(self) -> None:
        data = f"pdq,category\n{GOOD_PDQ},A1\n{GOOD_PDQ.upper()},a1\n"
        assert parse_list(data.encode(), "csv").entries == (
            ListEntry(f"pdq:{GOOD_PDQ}", pdq=GOOD_PDQ, category="A1"),
        )

    def test_identical_entries_with_explicit_ids_still_clash(self) -> None:
        err = parse_error(f"id,pdq\na,{GOOD_PDQ}\na,{GOOD_PDQ}\n", "csv")
        assert err.line == 3


# --------------------------------------------------------------------------- #
# Writers
# --------------------------------------------------------------------------- #


def test_dump_csv_layout() -> None:
    out = dump_list([ListEntry("a,b", pdq=GOOD_PDQ, category="A1")], "csv")
    assert out == f'id,pdq,md5,sha256,category,removed\n"a,b",{GOOD_PDQ},,,A1,false\n'.encode()


def test_companion_column_is_optional_and_written_only_when_used() -> None:
    old = f"id,pdq\na,{GOOD_PDQ}\n".encode()  # a file from before companions
    assert parse_list(old, "csv").entries == (ListEntry("a", pdq=GOOD_PDQ),)
    new = f"PDQ_Companion,id,pdq\n {GOOD_COMP.upper()} ,a,{GOOD_PDQ}\n,b,{GOOD_PDQ}\n"
    both = parse_list(new.encode(), "csv").entries
    assert both == (
        ListEntry("a", pdq=GOOD_PDQ, pdq_companion=GOOD_COMP),  # stripped and lowercased
        ListEntry("b", pdq=GOOD_PDQ),  # an empty cell: none
    )
    out = dump_list(both, "csv")
    assert out.decode().splitlines() == [
        "id,pdq,md5,sha256,category,removed,pdq_companion",
        f"a,{GOOD_PDQ},,,,false,{GOOD_COMP}",
        f"b,{GOOD_PDQ},,,,false,",
    ]
    # Without any companion the export is what it was before companions.
    assert (
        dump_list(both[1:], "csv")
        == f"id,pdq,md5,sha256,category,removed\nb,{GOOD_PDQ},,,,false\n".encode()
    )
    line = dump_list(both[:1], "jsonl").decode()
    assert json.loads(line) == {"id": "a", "pdq": GOOD_PDQ, "pdq_companion": GOOD_COMP}
    assert parse_list(line.encode(), "jsonl").entries == both[:1]
    assert parse_list(f'{{"id": "a", "pdq": "{GOOD_PDQ}", "pdq_companion": null}}'.encode(),
                      "jsonl").entries == (ListEntry("a", pdq=GOOD_PDQ),)  # fmt: skip
    # TE has no place for it: dropped, as are ids and categories.
    assert dump_list(both[:1], "te") == f"pdq {GOOD_PDQ}\n".encode()


def test_hot_column_is_optional_and_written_only_when_used() -> None:
    new = f"id,PDQ_Hot,pdq\na, {HOT[0].upper()}  {HOT[1]} ,{GOOD_PDQ}\nb,,{GOOD_PDQ}\n"
    both = parse_list(new.encode(), "csv").entries
    assert both == (
        ListEntry("a", pdq=GOOD_PDQ, pdq_hot=HOT[:2]),  # split, stripped and lowercased
        ListEntry("b", pdq=GOOD_PDQ),  # an empty cell: not hot
    )
    out = dump_list(both, "csv")
    assert out.decode().splitlines() == [
        "id,pdq,md5,sha256,category,removed,pdq_hot",
        f"a,{GOOD_PDQ},,,,false,{HOT[0]} {HOT[1]}",
        f"b,{GOOD_PDQ},,,,false,",
    ]
    assert parse_list(out, "csv").entries == both
    # With a companion too, both columns; without anything hot, the export is unchanged.
    hot_comp = ListEntry("c", pdq=GOOD_PDQ, pdq_companion=GOOD_COMP, pdq_hot=HOT)
    lines = dump_list([hot_comp, both[1]], "csv").decode().splitlines()
    assert lines[0] == "id,pdq,md5,sha256,category,removed,pdq_companion,pdq_hot"
    assert lines[1:] == [f"c,{GOOD_PDQ},,,,false,{GOOD_COMP},{' '.join(HOT)}",
                         f"b,{GOOD_PDQ},,,,false,,"]  # fmt: skip
    comp_only = [ListEntry("d", pdq=GOOD_PDQ, pdq_companion=GOOD_COMP)]
    assert dump_list(comp_only, "csv").decode().splitlines()[0].endswith(",pdq_companion")
    assert (
        dump_list(both[1:], "csv")
        == f"id,pdq,md5,sha256,category,removed\nb,{GOOD_PDQ},,,,false\n".encode()
    )
    line = dump_list([hot_comp], "jsonl").decode()
    assert json.loads(line) == {
        "id": "c",
        "pdq": GOOD_PDQ,
        "pdq_companion": GOOD_COMP,
        "pdq_hot": list(HOT),
    }
    assert "pdq_hot" not in dump_list(both[1:], "jsonl").decode()
    assert parse_list(line.encode(), "jsonl").entries == (hot_comp,)
    for absent in ("null", "[]"):
        assert parse_list(f'{{"id": "a", "pdq": "{GOOD_PDQ}", "pdq_hot": {absent}}}'.encode(),
                          "jsonl").entries == (ListEntry("a", pdq=GOOD_PDQ),)  # fmt: skip
    # TE has no place for them: dropped, as the companion.
    assert dump_list([hot_comp], "te") == f"pdq {GOOD_PDQ}\n".encode()


def test_dump_jsonl_layout() -> None:
    out = dump_list([ListEntry("é", md5=GOOD_MD5), ListEntry("gone", removed=True)], "jsonl")
    assert out.decode().splitlines() == [
        f'{{"id":"é","md5":"{GOOD_MD5}"}}',
        '{"id":"gone","removed":true}',
    ]


def test_dump_te_is_lossy() -> None:
    frames = (VpdqFrame(GOOD_PDQ, 100, 0.0),)
    entries = [
        ListEntry("a", pdq=GOOD_PDQ, md5=GOOD_MD5, sha256=GOOD_SHA, category="A1"),
        ListEntry("b", vpdq=frames),  # dropped: vPDQ
        ListEntry("c", sha256=GOOD_SHA),  # dropped: SHA-256 only
        ListEntry("d", md5="f" * 32, removed=True),  # dropped: tombstone
    ]
    out = dump_list(entries, "te")
    assert out == f"pdq {GOOD_PDQ}\nmd5 {GOOD_MD5}\n".encode()
    assert parse_list(out, "te").entries == (
        ListEntry(f"pdq:{GOOD_PDQ}", pdq=GOOD_PDQ),
        ListEntry(f"md5:{GOOD_MD5}", md5=GOOD_MD5),
    )


def test_dump_refusals() -> None:
    with pytest.raises(ValueError, match="CSV cannot hold"):
        dump_list([ListEntry("v", vpdq=(VpdqFrame(GOOD_PDQ, 1, 0.0),))], "csv")
    with pytest.raises(ValueError, match="duplicate id"):
        dump_list([ListEntry("a", md5=GOOD_MD5), ListEntry("a", removed=True)], "jsonl")
    with pytest.raises(ValueError, match="cannot write"):
        dump_list([], "ncmec")
    assert dump_list([], "csv") == b"id,pdq,md5,sha256,category,removed\n"
    assert dump_list([], "jsonl") == b""


@pytest.mark.parametrize("name", ["sample.csv", "sample.jsonl"])
def test_fixture_round_trip(name: str) -> None:
    parsed = parse_list(fixture(name))
    assert parse_list(dump_list(parsed.entries, parsed.format), parsed.format) == parsed


# --------------------------------------------------------------------------- #
# Hypothesis round trips
# --------------------------------------------------------------------------- #


def _hex(n: int) -> st.SearchStrategy[str]:
    return st.text("0123456789abcdef", min_size=n, max_size=n)


def _is_valid_id(s: str) -> bool:
    try:
        validate_source_id(s)
    except ValueError:
        return False
    return True


_ids = st.one_of(
    st.text(min_size=1, max_size=30).filter(_is_valid_id),
    st.from_regex(r"[A-Za-z0-9:_-]{1,20}", fullmatch=True),
)
_frames = st.builds(
    VpdqFrame,
    pdq=_hex(64),
    quality=st.integers(0, 100),
    timestamp=st.floats(0, 1e7, allow_nan=False, allow_infinity=False),
)


@st.composite
def _entries(draw: st.DrawFn, with_vpdq: bool) -> ListEntry:
    removed = draw(st.booleans())
    pdq = draw(st.none() | _hex(64))
    md5 = draw(st.none() | _hex(32))
    sha256 = draw(st.none() | _hex(64))
    vpdq = (
        draw(st.none() | st.lists(_frames, min_size=1, max_size=4).map(tuple))
        if with_vpdq
        else None
    )
    if not removed and pdq is None and md5 is None and sha256 is None and vpdq is None:
        pdq = draw(_hex(64))
    companion = draw(st.none() | _hex(64)) if pdq is not None else None
    hot = tuple(draw(st.lists(_hex(64), max_size=4, unique=True))) if pdq is not None else ()
    return ListEntry(
        source_id=draw(_ids),
        pdq=pdq,
        md5=md5,
        sha256=sha256,
        vpdq=vpdq,
        category=draw(st.none() | st.sampled_from(sorted(CATEGORIES))),
        removed=removed,
        pdq_companion=companion,
        pdq_hot=hot,
    )


def _entry_lists(with_vpdq: bool) -> st.SearchStrategy[list[ListEntry]]:
    return st.lists(_entries(with_vpdq), max_size=8, unique_by=lambda e: e.source_id)


@settings(max_examples=100, deadline=None)
@given(_entry_lists(with_vpdq=False))
def test_csv_round_trip(entries: list[ListEntry]) -> None:
    assert parse_list(dump_list(entries, "csv"), "csv").entries == tuple(entries)


@settings(max_examples=100, deadline=None)
@given(_entry_lists(with_vpdq=True))
def test_jsonl_round_trip(entries: list[ListEntry]) -> None:
    data = dump_list(entries, "jsonl")
    assert parse_list(data, "jsonl").entries == tuple(entries)
    assert parse_list(data).format == "jsonl" or not entries


@settings(max_examples=50, deadline=None)
@given(_entry_lists(with_vpdq=True))
def test_te_dump_keeps_exactly_live_pdq_and_md5(entries: list[ListEntry]) -> None:
    parsed = parse_list(dump_list(entries, "te"), "te").entries
    live = [e for e in entries if not e.removed]
    assert {e.pdq for e in parsed if e.pdq} == {e.pdq for e in live if e.pdq}
    assert {e.md5 for e in parsed if e.md5} == {e.md5 for e in live if e.md5}
    assert all(e.sha256 is None and e.vpdq is None and e.category is None for e in parsed)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200), st.sampled_from([None, *FORMATS]))
def test_arbitrary_bytes_never_crash(data: bytes, fmt: str | None) -> None:
    try:
        parsed = parse_list(data, fmt)
    except ListFormatError as e:
        assert e.line is None or e.line >= 1
    else:
        assert all(isinstance(e, ListEntry) for e in parsed.entries)


def test_jsonl_ignores_unknown_keys_but_not_bad_known_ones() -> None:
    line = {"id": "a", "md5": GOOD_MD5, "extra": {"nested": [1, 2]}, "removed": None}
    assert parse_list(json.dumps(line).encode(), "jsonl").entries == (ListEntry("a", md5=GOOD_MD5),)
