"""Private matching through the CLI: ``table build``, ``voucher make``, ``voucher open``.

Two pretend hotlines list benign synthetic photos; the table holds what both list.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from tests.conftest import CliResult, run_cli

SEED = "42" * 32  # a fixed public lookup-key seed: every run probes the same keys


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.photos = root / "photos"
        self.photos.mkdir()
        for s in (10, 11, 12, 13):
            synthetic_photo(s).save(self.photos / f"p{s}.jpg", quality=92)
        self.listed = self.photos / "p10.jpg"  # on both hotlines' lists
        self.only_b = self.photos / "p13.jpg"  # on one list only: never in the table
        im = Image.open(self.listed)
        # Re-encoded at full size: the same PDQ, so its own probe always opens.
        self.edited = root / "edited.jpg"
        im.save(self.edited, quality=70)
        # Resized and re-encoded: a few bits from the listed PDQ. Private recall at
        # such distances is high but not certain (docs/protocol.md §11): whether
        # one public seed finds them is luck, so the round trip checks only that
        # they never match anything else; the rate is measured over many seeds in
        # test_resized_copies_open_for_most_public_seeds.
        self.resized = [root / f"resized-{i}.jpg" for i in range(3)]
        for path, (scale, q) in zip(self.resized, ((0.5, 80), (0.75, 70), (0.75, 85)), strict=True):
            im.resize((int(im.width * scale), int(im.height * scale))).save(path, quality=q)
        self.other = root / "other.jpg"
        synthetic_photo(99).save(self.other, quality=92)
        self.table = root / "table"
        self.vouchers = root / "vouchers"
        self.openings = root / "openings"

    def voucher(self, image: Path) -> Path:
        return self.vouchers / f"{image.name}.voucher"


def add_list(name: str, source: str, *images: Path) -> None:
    res = run_cli(
        "lists", "add", name, *images, "--source", source, "--no-keypoints", "--workers", 1
    )
    assert res.code == 0, res.err


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("protocol-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BLINDMATCH_HOME", str(root / "home"))
        mp.setenv("BLINDMATCH_ENV", "dev")
        mp.delenv("BLINDMATCH_DATABASE_URL", raising=False)
        w = World(root)
        p = w.photos
        add_list("a", "hotline-a", p / "p10.jpg", p / "p11.jpg", p / "p12.jpg")
        add_list("b", "hotline-b", p / "p10.jpg", p / "p11.jpg", p / "p13.jpg")
        add_list("a2", "hotline-a", p / "p12.jpg")  # a second list of the same hotline
        res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", w.table,
                  "--lsh-seed", SEED, "--json")  # fmt: skip
        assert res.code == 0, res.err
        assert "dev mode" in res.err  # dev keys are announced
        (summary,) = res.json_lines
        assert summary["entries"] == 2  # p10 and p11: listed by both hotlines
        res = run_cli("voucher", "make", "--table", w.table, "--out", w.vouchers, "--json",
                  "--openings", w.openings, "--workers", 1, w.listed, w.edited, w.other, w.only_b,
                  *w.resized)  # fmt: skip
        assert res.code == 0, res.err
        assert [Path(x["opening"]).name for x in res.json_lines] == [
            Path(x["voucher"]).name.replace(".voucher", ".opening") for x in res.json_lines
        ]
        assert [Path(x["voucher"]).name for x in res.json_lines] == [
            "p10.jpg.voucher", "edited.jpg.voucher", "other.jpg.voucher", "p13.jpg.voucher",
            "resized-0.jpg.voucher", "resized-1.jpg.voucher", "resized-2.jpg.voucher",
        ]  # fmt: skip
        yield w


def open_json(key: Path, *vouchers: Path) -> tuple[int, dict[str, dict]]:
    res = run_cli("voucher", "open", "--key", key, "--json", *vouchers)
    return res.code, {Path(x["path"]).name: x for x in res.json_lines}


def test_round_trip_matches_listed_and_edited_copies_only(world: World) -> None:
    w = world
    code, out = open_json(w.table / "server.key", *sorted(w.vouchers.iterdir()))
    assert code == 1
    entry = f"sha256:{sha256_of(w.listed)}"
    listed = out["p10.jpg.voucher"]
    assert listed["matched"] is True
    assert {(m["hotline"], m["list"], m["entry_id"], m["distance"]) for m in listed["matches"]} == {
        ("hotline-a", "a", entry, 0),
        ("hotline-b", "b", entry, 0),
    }
    edited = out["edited.jpg.voucher"]
    assert edited["matched"] is True
    assert {m["entry_id"] for m in edited["matches"]} == {entry}
    for r in (out[f"{p.name}.voucher"] for p in w.resized):
        assert {m["entry_id"] for m in r["matches"]} <= {entry}
        # the closest of the entry's hashes: a resized copy's companion may equal the entry's
        assert all(0 <= m["distance"] <= 31 for m in r["matches"])
    assert out["other.jpg.voucher"] == {"path": str(w.voucher(w.other)), "matched": False,
                                        "blocked": False, "matches": []}  # fmt: skip
    assert out["p13.jpg.voucher"]["matched"] is False  # listed by one hotline only

    # nothing matched, nothing failed: exit 0
    assert run_cli("voucher", "open", "--key", w.table / "server.key", w.voucher(w.other)).code == 0


def test_table_files_key_mode_and_no_overwrite(world: World) -> None:
    w = world
    assert {p.name for p in w.table.iterdir()} == {
        "table.bin", "manifest.json", "trust.json", "server.key",
    }  # fmt: skip
    assert stat.S_IMODE((w.table / "server.key").stat().st_mode) == 0o600
    before = {p.name: p.read_bytes() for p in w.table.iterdir()}
    res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", w.table)
    assert res.code == 2 and "[output_exists]" in res.err and "--force" in res.err
    assert {p.name: p.read_bytes() for p in w.table.iterdir()} == before

    again = w.root / "rebuilt"
    shutil.copytree(w.table, again)
    res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", again, "--force")
    assert res.code == 0, res.err
    assert (again / "table.bin").read_bytes() != before["table.bin"]  # a fresh α
    assert stat.S_IMODE((again / "server.key").stat().st_mode) == 0o600
    # a server key opens only vouchers of its own table
    res = run_cli("voucher", "open", "--key", again / "server.key", "--table", w.table,
              w.voucher(w.listed))  # fmt: skip
    assert res.code == 2 and "[invalid_key]" in res.err


def test_table_from_one_hotline_is_refused(world: World) -> None:
    out = world.root / "one-hotline"
    for lists in (["a"], ["a", "a2"]):  # two lists of one hotline count once
        res = run_cli("table", "build", *(f"--list={n}" for n in lists), "--out", out)
        assert res.code == 2
        assert "[governance_refused]" in res.err and "at least 2 hotlines" in res.err
        assert not out.exists()


def test_client_refuses_a_table_signed_by_one_hotline(world: World) -> None:
    bad = world.root / "one-signature"
    shutil.copytree(world.table, bad)
    signed = json.loads((bad / "manifest.json").read_text())
    signed["signatures"] = [s for s in signed["signatures"] if s["signer"] != "hotline-b"]
    (bad / "manifest.json").write_text(json.dumps(signed))
    res = run_cli("voucher", "make", "--table", bad, "--out", world.root / "v-one", world.listed)
    assert res.code == 2 and "[invalid_manifest]" in res.err and "refusing" in res.err
    assert not (world.root / "v-one").exists()


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _edit_json(path: Path, key: str, value: object) -> None:
    d = json.loads(path.read_text())
    d[key] = value
    path.write_text(json.dumps(d))


def _resign_claim(path: Path) -> None:  # change what the manifest says, keep the signatures
    d = json.loads(path.read_text())
    d["manifest"]["sequence"] += 1
    path.write_text(json.dumps(d))


TAMPERS = {
    "table-bit": ("table.bin", lambda p: _flip(p, -7), "invalid_manifest"),
    "table-truncated": (
        "table.bin",
        lambda p: p.write_bytes(p.read_bytes()[:-32]),
        "invalid_manifest",
    ),  # fmt: skip
    "manifest-claim": ("manifest.json", _resign_claim, "invalid_manifest"),
    "manifest-truncated": (
        "manifest.json",
        lambda p: p.write_text(p.read_text()[:200]),
        "invalid_manifest",
    ),  # fmt: skip
    "trust-other-platform": (
        "trust.json",
        lambda p: _edit_json(p, "platform_key", "ab" * 32),
        "invalid_manifest",
    ),  # fmt: skip
    "trust-garbage": ("trust.json", lambda p: p.write_text("{"), "bad_config"),
}


@pytest.mark.parametrize("case", sorted(TAMPERS))
def test_tampered_table_manifest_or_trust_is_refused(world: World, case: str) -> None:
    name, tamper, code = TAMPERS[case]
    bad = world.root / f"tampered-{case}"
    shutil.copytree(world.table, bad)
    tamper(bad / name)
    res = run_cli("voucher", "make", "--table", bad, "--out", world.root / "v-bad", world.listed)
    assert res.code == 2 and f"[{code}]" in res.err, res.err
    assert not (world.root / "v-bad").exists()


def test_bad_and_tampered_vouchers_are_named_and_the_batch_goes_on(world: World) -> None:
    good = world.voucher(world.listed)
    d = world.root / "bad-vouchers"
    d.mkdir()
    raw = good.read_bytes()
    (d / "truncated.voucher").write_bytes(raw[: len(raw) // 2])
    (d / "flipped-pair.voucher").write_bytes(raw)
    _flip(d / "flipped-pair.voucher", 100)
    (d / "flipped-evidence.voucher").write_bytes(raw)
    _flip(d / "flipped-evidence.voucher", len(raw) - 3)
    (d / "empty.voucher").write_bytes(b"")
    (d / "garbage.voucher").write_bytes(b"\xff" * len(raw))
    names = ["truncated", "flipped-pair", "flipped-evidence", "empty", "garbage"]
    res = run_cli("voucher", "open", "--key", world.table / "server.key", "--json",
              *(d / f"{n}.voucher" for n in names), good, d / "missing.voucher")  # fmt: skip
    assert res.code == 1
    lines = res.json_lines
    assert [Path(x["path"]).name for x in lines] == [
        *(f"{n}.voucher" for n in names), good.name, "missing.voucher",
    ]  # fmt: skip
    codes = [
        x["error"]["code"] if "error" in x else "tampered" if "tampered" in x
        else "matched" if x["matched"] else "closed"
        for x in lines
    ]  # fmt: skip
    # a flipped byte of a pair's wrapped key: another pair opened and the middle layer (whose
    # AAD covers every other byte) did not — a match attempt, blocked; or, 1 time in 111, the
    # flipped pair was the one that opens, and nothing opens. A flipped evidence byte: blocked.
    assert codes[1] in ("tampered", "closed")
    assert codes[:1] + codes[2:] == ["invalid_voucher", "tampered", "empty_file",
                                     "invalid_voucher", "matched", "not_found"]  # fmt: skip
    assert lines[2]["blocked"] is True and lines[2]["matched"] is False
    assert lines[1]["blocked"] is (codes[1] == "tampered")
    assert "4 failed" in res.err

    # a voucher sent twice in one run counts once
    res = run_cli("voucher", "open", "--key", world.table / "server.key", "--json", good, good)
    first, again = res.json_lines
    assert first["matched"] and not first.get("replayed")
    assert again["replayed"] and not again["matched"] and again["blocked"]


def test_failed_vouchers_alone_exit_2_and_a_match_or_block_with_failures_exits_1(
    world: World,
) -> None:
    """Exit codes as `scan`: failures alone exit 2 (never 1, which reads as a match); a match
    or a block among failures exits 1."""
    good = world.voucher(world.listed)
    d = world.root / "failing-vouchers"
    d.mkdir()
    raw = good.read_bytes()
    (d / "truncated.voucher").write_bytes(raw[: len(raw) // 2])
    (d / "empty.voucher").write_bytes(b"")
    (d / "garbage.voucher").write_bytes(b"\xff" * len(raw))
    (d / "flipped-evidence.voucher").write_bytes(raw)
    _flip(d / "flipped-evidence.voucher", len(raw) - 3)
    key = world.table / "server.key"
    invalid = [d / f"{n}.voucher" for n in ("truncated", "empty", "garbage", "missing")]
    res = run_cli("voucher", "open", "--key", key, *invalid)
    assert res.code == 2 and "0 matched, 0 not matched, 4 failed" in res.err, res.err
    res = run_cli("voucher", "open", "--key", key, world.voucher(world.other), *invalid)
    assert res.code == 2 and "0 matched, 1 not matched, 4 failed" in res.err, res.err
    res = run_cli("voucher", "open", "--key", key, good, *invalid)
    assert res.code == 1 and "1 matched" in res.err and "4 failed" in res.err, res.err
    res = run_cli("voucher", "open", "--key", key, "--json", d / "flipped-evidence.voucher",
                  *invalid)  # fmt: skip
    assert res.json_lines[0]["blocked"] is True
    assert res.code == 1 and "4 failed" in res.err, res.err


def test_voucher_make_names_each_bad_image_and_goes_on(world: World) -> None:
    d = world.root / "bad-images"
    d.mkdir()
    (d / "empty.jpg").write_bytes(b"")
    (d / "text.jpg").write_text("not an image")
    Image.new("RGB", (300, 300), (128, 128, 128)).save(d / "flat.png")  # PDQ quality 0
    twin = d / "twin"
    twin.mkdir()
    shutil.copy(world.other, twin / world.other.name)
    out = world.root / "v-mixed"
    res = run_cli("voucher", "make", "--table", world.table, "--out", out, "--json", "--workers", 1,
              d / "empty.jpg", d / "text.jpg", d / "flat.png", world.other, twin / world.other.name,
              d / "missing.jpg")  # fmt: skip
    assert res.code == 2
    by = [(Path(x["path"]).name, x.get("error", {}).get("code")) for x in res.json_lines]
    assert by == [
        ("empty.jpg", "empty_file"),
        ("text.jpg", "unsupported_format"),
        ("flat.png", "low_quality"),
        ("other.jpg", None),
        ("other.jpg", "output_exists"),  # same file name twice in one run
        ("missing.jpg", "not_found"),
    ]
    assert [p.name for p in out.iterdir()] == ["other.jpg.voucher"]
    # an existing voucher is not replaced without --force
    res = run_cli("voucher", "make", "--table", world.table, "--out", out, world.other)
    assert res.code == 2 and "[output_exists]" in res.err
    res = run_cli("voucher", "make", "--table", world.table, "--out", out, world.other, "--force")
    assert res.code == 0, res.err


def test_threshold_policy_matches_only_at_t(world: World) -> None:
    w = world
    t_dir, v_dir = w.root / "t-table", w.root / "t-vouchers"
    res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", t_dir, "--lsh-seed",
              SEED, "--policy", "threshold", "--threshold", 2)  # fmt: skip
    assert res.code == 0, res.err
    # t = 2 without synthetic vouchers is below the default floors: refused ...
    res = run_cli("voucher", "make", "--table", t_dir, "--out", v_dir, w.listed)
    assert res.code == 2 and "[invalid_manifest]" in res.err and "t = 2" in res.err
    # ... unless the client's trust file lowers them, explicitly (a test, not a deployment).
    # Another client (its own table history): this one saw the world's table, older.
    trust = json.loads((t_dir / "trust.json").read_text())
    trust["floors"] = {"min_threshold": 2, "min_synthetic_ppm": 0}
    (w.root / "t-trust.json").write_text(json.dumps(trust))
    res = run_cli("voucher", "make", "--table", t_dir, "--out", v_dir, "--workers", 1,
                  "--trust", w.root / "t-trust.json", "--table-history",
                  w.root / "t-history.json", w.listed, w.edited, w.other)  # fmt: skip
    assert res.code == 0, res.err
    key = t_dir / "server.key"
    code, out = open_json(key, v_dir / "p10.jpg.voucher", v_dir / "other.jpg.voucher")
    assert code == 0 and not any(x["matched"] for x in out.values())  # one share < t
    code, out = open_json(key, *(v_dir / f"{n}.voucher" for n in ("p10.jpg", "other.jpg",
                                                                  "edited.jpg")))  # fmt: skip
    assert code == 1
    assert {n: x["matched"] for n, x in out.items()} == {
        "p10.jpg.voucher": True, "other.jpg.voucher": False, "edited.jpg.voucher": True,
    }  # fmt: skip


def test_table_build_writes_issued_now_and_a_growing_sequence(world: World) -> None:
    import re
    import time

    m = json.loads((world.table / "manifest.json").read_text())["manifest"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", m["issued"]), m["issued"]
    issued = datetime.strptime(m["issued"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert m["sequence"] == int(issued.timestamp())  # the default: the build time
    assert 0 <= time.time() - m["sequence"] < 3600
    # what the client accepted is remembered, per platform key, in a private file
    history = Path(os.environ["BLINDMATCH_HOME"]) / "client" / "table-history.json"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    [seen] = json.loads(history.read_text())["platforms"].values()
    assert seen == {"sequence": m["sequence"], "table_digest": m["table_digest"]}


def test_an_older_table_or_another_under_a_seen_sequence_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = world

    def build(name: str, sequence: int) -> Path:
        out = w.root / name
        res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", out,
                      "--sequence", sequence)  # fmt: skip
        assert res.code == 0, res.err
        assert json.loads((out / "manifest.json").read_text())["manifest"]["sequence"] == sequence
        return out

    def make(table: Path) -> CliResult:
        return run_cli("voucher", "make", "--table", table, "--out", w.root / "rb-vouchers",
                       "--force", "--workers", 1, w.other)  # fmt: skip

    seven, one, other_seven = build("seq-7", 7), build("seq-1", 1), build("seq-7b", 7)
    # a client of its own (its $BLINDMATCH_HOME): it has seen none of the world's tables
    client_home = w.root / "rollback-client"
    monkeypatch.setenv("BLINDMATCH_HOME", str(client_home))
    assert make(seven).code == 0
    res = make(one)
    assert res.code == 2 and "[invalid_manifest]" in res.err
    assert "table sequence 1 is older than sequence 7 already seen for this platform" in res.err
    res = make(other_seven)
    assert res.code == 2 and "[invalid_manifest]" in res.err
    assert "sequence 7 was already seen for this platform with another table" in res.err
    assert make(seven).code == 0  # the same table again is fine
    # the recipient's side keeps the same rule
    res = run_cli("voucher", "check", "--table", one, "--vouchers", w.vouchers, "--openings",
                  w.openings, w.other)  # fmt: skip
    assert res.code == 2 and "older than sequence 7" in res.err
    history = client_home / "client" / "table-history.json"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    # --table-history names another file: a client that has seen nothing yet
    res = run_cli("voucher", "make", "--table", one, "--out", w.root / "rb-vouchers", "--force",
                  "--table-history", w.root / "fresh-history.json", w.other)  # fmt: skip
    assert res.code == 0, res.err


def test_a_trust_file_with_an_unknown_floor_is_a_config_error(world: World) -> None:
    trust = json.loads((world.table / "trust.json").read_text())
    trust["floors"] = {"min_treshold": 2}
    path = world.root / "typo-trust.json"
    path.write_text(json.dumps(trust))
    res = run_cli("voucher", "make", "--table", world.table, "--out", world.root / "v-typo",
                  "--trust", path, world.other)  # fmt: skip
    assert res.code == 2 and "[bad_config]" in res.err and "min_treshold" in res.err


def test_prod_needs_explicit_keys_jurisdictions_and_trust(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BLINDMATCH_ENV", "prod")
    r = world.root / "prod"
    out = r / "table"
    res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", out)
    assert res.code == 2 and "[bad_config]" in res.err and "--platform-key" in res.err
    for k in ("platform", "a", "b"):
        res = run_cli("table", "keygen", r / f"{k}.pem")
        assert res.code == 0 and len(res.out.strip()) == 64
        assert stat.S_IMODE((r / f"{k}.pem").stat().st_mode) == 0o600
    keys = ["--platform-key", r / "platform.pem", "--hotline-key", f"hotline-a={r / 'a.pem'}",
            "--hotline-key", f"hotline-b={r / 'b.pem'}"]  # fmt: skip
    res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", out, *keys)
    assert res.code == 2 and "--jurisdiction" in res.err
    places = ["--jurisdiction", "hotline-a=GB", "--jurisdiction", "hotline-b=GB"]
    res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", out, *keys, *places)
    assert res.code == 2 and "distinct jurisdictions" in res.err
    places[-1] = "hotline-b=US"
    res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", out, *keys, *places)
    assert res.code == 0, res.err
    assert "dev mode" not in res.err

    res = run_cli("voucher", "make", "--table", out, "--out", r / "v", world.listed)
    assert res.code == 2 and "--trust" in res.err
    # the dev table's trust file does not vouch for the prod table
    res = run_cli("voucher", "make", "--table", out, "--out", r / "v", "--trust",
              world.table / "trust.json", world.listed)  # fmt: skip
    assert res.code == 2 and "[invalid_manifest]" in res.err
    res = run_cli("voucher", "make", "--table", out, "--out", r / "v", "--trust",
              out / "trust.json", "--workers", 1, world.listed)  # fmt: skip
    assert res.code == 0, res.err
    code, got = open_json(out / "server.key", r / "v" / "p10.jpg.voucher")
    assert code == 1 and got["p10.jpg.voucher"]["matched"] is True


def test_resized_copies_open_for_most_public_seeds(world: World) -> None:
    """The client's robust query hashes (as ``voucher make`` builds them) against
    tables with 12 public seeds: most (seed, copy) pairs open, at the right entry."""
    import numpy as np

    from blindmatch.files import hash_file
    from blindmatch.hashing import open_image
    from blindmatch.private import query_hashes
    from blindmatch.protocol import (
        AccountSecret,
        ClientSession,
        HotlineList,
        ServerSession,
        VariantProbeLSH,
        prepare_table,
        verify_table,
    )
    from tests.protocol.kat_fixture import sign_all, trust

    listed = bytes.fromhex(hash_file(str(world.listed)).pdq or "")
    lists = [
        HotlineList("HL-A", "GB", "a", "1", (("e1", listed),)),
        HotlineList("HL-B", "US", "b", "1", (("e1", listed),)),
    ]
    # the lists are bare PDQs: the client hashes no companions, the other orientations
    queries = [
        query_hashes(np.asarray(open_image(p.read_bytes())), companions=False)
        for p in world.resized
    ]
    opened = 0
    for seed in range(12):
        prep = prepare_table(lists, scheme=VariantProbeLSH(seed=bytes([seed]) * 32))
        table = verify_table(prep.table.to_bytes(), sign_all(prep, ["HL-A", "HL-B"]), trust())
        client = ClientSession(table, AccountSecret.generate())
        server = ServerSession(prep.server_secret, prep.table)
        for pdq, confidence, variants in queries:
            result = server.open(
                client.make_voucher(pdq, confidence=confidence, variants=variants),
                account=f"acct-{seed}",
            )
            opened += bool(result.matched)
            assert all(r.entry_id == "e1" for m in result.matches for r in m.refs)
    assert opened >= 0.6 * 12 * len(queries), opened


def check(world: World, *images: Path, **dirs: Path) -> tuple[int, list[dict], str]:
    vouchers = dirs.get("vouchers", world.vouchers)
    openings = dirs.get("openings", world.openings)
    res = run_cli("voucher", "check", "--table", world.table, "--vouchers", vouchers,
                  "--openings", openings, "--json", "--workers", 1, *images)  # fmt: skip
    return res.code, res.json_lines, res.err


def test_recipient_check_verifies_each_voucher_for_its_image(world: World) -> None:
    w = world
    images = [w.listed, w.edited, w.other, w.only_b, *w.resized]
    code, lines, err = check(w, *images)
    assert code == 0, err
    assert [x["verified"] for x in lines] == [True] * len(images)
    assert "7 verified, 0 did not verify, 0 failed" in err
    for p in w.openings.iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600 and p.read_bytes()[:5] == b"BMOP\x01"


def test_recipient_check_catches_a_voucher_for_another_image(world: World) -> None:
    w = world
    d = w.root / "swapped"
    (d / "v").mkdir(parents=True)
    (d / "o").mkdir()
    # the listed picture's voucher and opening, presented as those of the other picture
    shutil.copy(w.voucher(w.listed), d / "v" / "other.jpg.voucher")
    shutil.copy(w.openings / "p10.jpg.opening", d / "o" / "other.jpg.opening")
    # and the right voucher and opening for a file that is not the one they were made for:
    # the same picture re-encoded (same name, other bytes: the commitment differs)
    shutil.copy(w.voucher(w.listed), d / "v" / "edited.jpg.voucher")
    shutil.copy(w.openings / "p10.jpg.opening", d / "o" / "edited.jpg.opening")
    # another voucher's opening for the right voucher
    shutil.copy(w.voucher(w.only_b), d / "v" / "p13.jpg.voucher")
    shutil.copy(w.openings / "resized-0.jpg.opening", d / "o" / "p13.jpg.opening")
    code, lines, err = check(w, w.other, w.edited, w.only_b, vouchers=d / "v", openings=d / "o")
    assert code == 1
    assert [x["error"]["code"] for x in lines] == ["invalid_voucher"] * 3
    assert "not made for this image" in lines[0]["error"]["message"]
    assert "0 verified, 3 did not verify" in err


def test_recipient_check_names_missing_and_bad_files(world: World) -> None:
    w = world
    d = w.root / "check-bad"
    d.mkdir()
    shutil.copy(w.voucher(w.other), d / "other.jpg.voucher")
    (d / "other.jpg.opening").write_bytes(b"BMOP\x02" + bytes(32))  # unknown version
    code, lines, err = check(w, w.other, w.listed, w.root / "missing.jpg", vouchers=d, openings=d)
    assert code == 2, err
    codes = [x["error"]["code"] for x in lines]
    assert codes == ["protocol_error", "not_found", "not_found"]
    assert "not an opening file" in lines[0]["error"]["message"]
    # a mismatch outranks other failures in the exit code
    (d / "other.jpg.opening").write_bytes((w.openings / "edited.jpg.opening").read_bytes())
    code, lines, _ = check(w, w.other, w.root / "missing.jpg", vouchers=d, openings=d)
    assert code == 1 and [x["error"]["code"] for x in lines] == ["invalid_voucher", "not_found"]
