"""The second private distance check through the CLI (docs/protocol.md §11): ``table build
--distance-radius``, then ``voucher make``, ``voucher challenge`` (server), ``voucher answer``
(sender), ``voucher open`` and ``voucher check`` (recipient).

Two pretend hotlines list three benign synthetic photos; the copies are a JPEG-quality-40
re-encoding and a gamma-brightened copy of one of them. A table of three entries: records
cost ~12 ms each.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.protocol import Table
from tests.conftest import CliResult, run_cli

SEED = "42" * 32  # a fixed public lookup-key seed: every run probes the same keys
RADIUS = 31
RECORD_BYTES = 16_384


class World:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.photos = root / "photos"
        self.photos.mkdir()
        for s in (20, 21, 22):
            synthetic_photo(s).save(self.photos / f"p{s}.jpg", quality=92)
        self.listed = self.photos / "p20.jpg"
        im = Image.open(self.listed)
        self.jpeg40 = root / "jpeg40.jpg"  # re-encoded at quality 40: a few bits away
        im.save(self.jpeg40, quality=40)
        self.bright = root / "bright.jpg"  # gamma 0.8: brighter, more bits away
        im.point(lambda v: round(255 * (v / 255) ** 0.8)).save(self.bright, quality=90)
        self.other = root / "other.jpg"  # an unrelated picture
        synthetic_photo(99).save(self.other, quality=92)
        self.images = [self.listed, self.jpeg40, self.bright, self.other]
        self.table = root / "table"
        self.vouchers = root / "v"  # vouchers, openings, challenges and answers together
        self.summary: dict = {}
        self.human = ""

    def voucher(self, image: Path) -> Path:
        return self.vouchers / f"{image.name}.voucher"

    @property
    def key(self) -> Path:
        return self.table / "server.key"


def cli_ok(*args: object) -> CliResult:
    res = run_cli(*args)
    assert res.code == 0, res.err
    return res


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("distance-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BLINDMATCH_HOME", str(root / "home"))
        mp.setenv("BLINDMATCH_ENV", "dev")
        mp.delenv("BLINDMATCH_DATABASE_URL", raising=False)
        w = World(root)
        for name, source in (("a", "hotline-a"), ("b", "hotline-b")):
            cli_ok("lists", "add", name, *sorted(w.photos.iterdir()), "--source", source,
                   "--no-keypoints", "--workers", 1)  # fmt: skip
        res = cli_ok("table", "build", "--list", "a", "--list", "b", "--out", w.table,
                     "--lsh-seed", SEED, "--distance-radius", RADIUS, "--json")  # fmt: skip
        (w.summary,) = res.json_lines
        res = cli_ok("table", "build", "--list", "a", "--list", "b", "--out", root / "human",
                     "--lsh-seed", SEED, "--distance-radius", RADIUS,
                     "--distance-slots", 2)  # fmt: skip
        w.human = res.out
        cli_ok("voucher", "make", "--table", w.table, "--out", w.vouchers, "--openings",
               w.vouchers, "--workers", 1, *w.images)  # fmt: skip
        cli_ok("voucher", "challenge", "--key", w.key, *map(w.voucher, w.images))
        cli_ok("voucher", "answer", "--table", w.table, "--challenges", w.vouchers,
               "--workers", 1, *w.images)  # fmt: skip
        yield w


def open_json(w: World, *vouchers: Path, answers: Path | None = None) -> tuple[int, list, str]:
    more = ("--answers", answers) if answers else ()
    res = run_cli("voucher", "open", "--key", w.key, "--json", *more, *vouchers)
    return res.code, res.json_lines, res.err


def check(w: World, *images: Path, answers: Path | None = None) -> tuple[int, list, str]:
    more = ("--answers", answers) if answers else ()
    res = run_cli("voucher", "check", "--table", w.table, "--vouchers", w.vouchers, "--json",
                  "--workers", 1, *more, *images)  # fmt: skip
    return res.code, res.json_lines, res.err


def test_table_build_reports_the_check_and_writes_the_records(world: World) -> None:
    w = world
    s = w.summary
    # one committed record per listed hash: each entry's PDQ and its companion hash
    n = s["entries"] + s["entries_with_companions"] + s["hot_keys"]
    assert s["entries"] == 3 and n == 6
    assert s["distance"] == {
        "radius": RADIUS,
        "slots": 1,
        "records": n,
        "records_file": str(w.table / "records.bin"),
        "key_bits": 40,
    }
    assert (w.table / "records.bin").stat().st_size == n * RECORD_BYTES
    table = Table.from_bytes((w.table / "table.bin").read_bytes())
    assert table.distance is not None
    assert (table.distance.radius, table.distance.slots, table.distance.n_records) == (
        RADIUS, 1, n,
    )  # fmt: skip
    assert table.scheme.k == 40  # type: ignore[attr-defined]
    assert f"radius {RADIUS}, 2 slots, {n} committed records" in w.human


def test_copies_of_a_listed_picture_are_blocked_with_their_distance(world: World) -> None:
    w = world
    code, lines, err = open_json(w, *map(w.voucher, w.images))
    assert code == 1, err
    out = {Path(x["path"]).name.removesuffix(".voucher"): x for x in lines}
    entry = f"sha256:{hashlib.sha256(w.listed.read_bytes()).hexdigest()}"
    distances = {}
    for image in (w.listed, w.jpeg40, w.bright):
        r = out[image.name]
        assert r["matched"] and r["blocked"] and r["candidate"], r
        assert {(m["hotline"], m["entry_id"]) for m in r["matches"]} == {
            ("hotline-a", entry), ("hotline-b", entry),
        }  # fmt: skip
        (distances[image.name],) = {m["distance"] for m in r["matches"]}
    assert distances[w.listed.name] == 0
    assert 0 < distances[w.jpeg40.name] <= RADIUS and 0 < distances[w.bright.name] <= RADIUS
    other = out[w.other.name]
    assert not other["matched"] and not other["blocked"] and other["matches"] == []
    assert "3 matched, 1 not matched, 0 failed" in err
    # the recipient's check of every voucher, challenge and answer
    code, lines, err = check(w, *w.images)
    assert code == 0, err
    assert [x["verified"] for x in lines] == [True] * 4


def test_a_challenge_is_the_same_when_asked_again(world: World) -> None:
    w = world
    again = w.root / "again"
    cli_ok("voucher", "challenge", "--key", w.key, "--out", again, w.voucher(w.jpeg40))
    mine = (again / "jpeg40.jpg.challenge").read_bytes()
    assert mine == (w.vouchers / "jpeg40.jpg.challenge").read_bytes()
    assert mine != (w.vouchers / "other.jpg.challenge").read_bytes()
    # an existing challenge is not replaced without --force
    res = run_cli("voucher", "challenge", "--key", w.key, "--out", again, w.voucher(w.jpeg40))
    assert res.code == 2 and "output_exists" in res.err and "--force" in res.err


def test_an_answer_made_for_another_picture_opens_nothing_and_fails_the_check(
    world: World,
) -> None:
    w = world
    # the sender answers the copy's challenge with the copy's opening but another picture
    liar = w.root / "liar"
    liar.mkdir()
    shutil.copy(w.other, liar / w.jpeg40.name)
    answers = w.root / "liar-answers"
    cli_ok("voucher", "answer", "--table", w.table, "--challenges", w.vouchers,
           "--out", answers, "--workers", 1, liar / w.jpeg40.name)  # fmt: skip
    wrong = (answers / f"{w.jpeg40.name}.answer").read_bytes()
    assert wrong != (w.vouchers / f"{w.jpeg40.name}.answer").read_bytes()
    code, (line,), err = open_json(w, w.voucher(w.jpeg40), answers=answers)
    assert code == 0, err
    # a pair opened (a candidate) but the check did not pass: nothing is learnt or blocked
    assert line["candidate"] and not line["matched"] and not line["blocked"], line
    code, (line,), err = check(w, w.jpeg40, answers=answers)
    assert code == 1, err
    assert line["error"]["code"] == "invalid_voucher"
    assert "0 verified, 1 did not verify" in err


def test_a_voucher_without_an_answer_is_named_and_the_batch_goes_on(world: World) -> None:
    w = world
    answers = w.root / "some-answers"
    answers.mkdir()
    shutil.copy(w.vouchers / f"{w.other.name}.answer", answers)
    code, lines, err = open_json(w, w.voucher(w.jpeg40), w.voucher(w.other), answers=answers)
    assert code == 2, err
    missing, other = lines
    assert Path(missing["path"]).name == f"{w.jpeg40.name}.voucher"
    assert missing["error"]["code"] == "protocol_error"
    msg = missing["error"]["message"]
    assert f"no answer {answers / w.jpeg40.name}.answer" in msg
    assert "distance-checked" in msg and "voucher answer" in msg
    assert other["matched"] is False and "error" not in other
    assert "0 matched, 1 not matched, 1 failed" in err
    # the recipient's check names the missing answer too
    code, (line,), err = check(w, w.jpeg40, answers=answers)
    assert code == 2 and line["error"]["code"] == "not_found", err
    # and the sender's answer names a missing challenge, and goes on
    shutil.copy(w.vouchers / f"{w.other.name}.challenge", answers)
    res = run_cli("voucher", "answer", "--table", w.table, "--challenges", answers,
                  "--openings", w.vouchers, "--out", w.root / "answers-2", "--json",
                  "--workers", 1, w.jpeg40, w.other)  # fmt: skip
    assert res.code == 2
    first, second = res.json_lines
    assert (
        first["error"]["code"] == "not_found"
        and "jpeg40.jpg.challenge" in first["error"]["message"]
    )
    assert Path(second["answer"]).name == "other.jpg.answer"


def test_the_server_recomputes_missing_records(world: World) -> None:
    w = world
    bare = w.root / "bare-table"
    shutil.copytree(w.table, bare)
    (bare / "records.bin").unlink()
    res = run_cli("voucher", "open", "--key", bare / "server.key", "--json",
                  "--answers", w.vouchers, w.voucher(w.jpeg40))  # fmt: skip
    assert res.code == 1 and res.json_lines[0]["matched"], res.err
    assert "records.bin is missing: recomputing 6 record(s)" in res.err


def test_an_unchecked_table_needs_no_challenge_or_answer(world: World) -> None:
    w = world
    plain = w.root / "plain"
    (summary,) = cli_ok("table", "build", "--list", "a", "--list", "b", "--out", plain,
                        "--lsh-seed", SEED, "--json").json_lines  # fmt: skip
    assert summary["distance"] is None and not (plain / "records.bin").exists()
    res = run_cli("voucher", "challenge", "--key", plain / "server.key", "--out",
                  w.root / "plain-challenges", w.voucher(w.other))  # fmt: skip
    assert res.code == 2 and "no distance check" in res.err and "`voucher open`" in res.err
    res = run_cli("voucher", "open", "--key", plain / "server.key", "--answers", w.vouchers,
                  w.voucher(w.other))  # fmt: skip
    assert res.code == 2 and "no distance check" in res.err
    # a threshold-policy table cannot be checked
    res = run_cli("table", "build", "--list", "a", "--list", "b", "--out", w.root / "thr",
                  "--policy", "threshold", "--distance-radius", RADIUS)  # fmt: skip
    assert res.code == 2 and "block policy only" in res.err
