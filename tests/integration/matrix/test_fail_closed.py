"""The module refuses, never crashes, when its own machinery fails (a stub module API
whose database calls fail; no homeserver)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("synapse", reason="the matrix extra (matrix-synapse) is not installed")

from synapse.api.errors import Codes  # noqa: E402
from synapse.module_api import NOT_SPAM  # noqa: E402

from blindmatch.errors import ConfigError  # noqa: E402
from blindmatch.integrations.matrix.events import voucher_field  # noqa: E402
from blindmatch.integrations.matrix.homeserver import build_table_dir  # noqa: E402
from blindmatch.integrations.matrix.module import BlindmatchModule, parse_config  # noqa: E402
from blindmatch.private import load_trust_file  # noqa: E402
from blindmatch.protocol import AccountSecret, ClientSession, verify_table  # noqa: E402


class StubApi:
    server_name = "hs.test"

    def __init__(self, db_error: Exception | None = None) -> None:
        self.db_error = db_error
        self.resources: dict[str, Any] = {}
        self.callbacks: dict[str, Callable[..., Any]] = {}

    def register_web_resource(self, path: str, resource: Any) -> None:
        self.resources[path] = resource

    def register_spam_checker_callbacks(self, **kw: Any) -> None:
        self.callbacks.update(kw)

    def looping_background_call(self, *a: Any, **kw: Any) -> None:
        pass

    def is_mine(self, user_id: str) -> bool:
        return user_id.endswith(":hs.test")

    async def defer_to_thread(self, f: Callable[..., Any], *a: Any, **kw: Any) -> Any:
        return f(*a, **kw)

    async def run_db_interaction(self, desc: str, f: Callable[..., Any], *a: Any) -> Any:
        if self.db_error is not None:
            raise self.db_error
        raise AssertionError("not reached in these tests")


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_table_dir(tmp_path_factory.mktemp("t") / "table", {"x": bytes(32)})


def module(table_dir: Path, tmp_path: Path, api: StubApi, **extra: Any) -> BlindmatchModule:
    cfg = parse_config(
        {"table_dir": str(table_dir), "database_url": f"sqlite:///{tmp_path / 'bm.db'}", **extra}
    )
    return BlindmatchModule(cfg, api)  # type: ignore[arg-type]


def event(content: dict[str, Any], sender: str = "@a:hs.test", kind: str = "m.room.encrypted"):  # type: ignore[no-untyped-def]
    return SimpleNamespace(type=kind, sender=sender, room_id="!r:hs.test", event_id="$e",
                           content=content)  # fmt: skip


def test_a_failing_database_refuses_the_event(table_dir: Path, tmp_path: Path) -> None:
    api = StubApi(db_error=RuntimeError("database is locked"))
    m = module(table_dir, tmp_path, api)
    trust = load_trust_file(str(table_dir / "trust.json"))
    verified = verify_table((table_dir / "table.bin").read_bytes(),
                            (table_dir / "manifest.json").read_bytes(), trust)  # fmt: skip
    v = ClientSession(verified, AccountSecret.generate()).make_voucher(bytes(32))
    field = voucher_field([(v, "mxc://hs.test/abc", "00" * 32)])
    code, body = asyncio.run(m.check_event_for_spam(event({"org.blindmatch.voucher": field})))
    assert code == Codes.FORBIDDEN and body["org.blindmatch.reason"] == "internal_error"
    assert m.state.rejections() == [("@a:hs.test", "$e", "internal_error")]
    # A plain encrypted message is refused too while the sender's uploads cannot be read.
    code, body = asyncio.run(m.check_event_for_spam(event({"ciphertext": "x"})))
    assert body["org.blindmatch.reason"] == "internal_error"


def test_events_the_module_does_not_police(table_dir: Path, tmp_path: Path) -> None:
    m = module(table_dir, tmp_path, StubApi(db_error=RuntimeError("unused")))
    plain = event({"msgtype": "m.text", "body": "hi"}, kind="m.room.message")
    assert asyncio.run(m.check_event_for_spam(plain)) == NOT_SPAM
    remote = event({"ciphertext": "x"}, sender="@b:elsewhere.test")
    assert asyncio.run(m.check_event_for_spam(remote)) == NOT_SPAM
    m2 = module(table_dir, tmp_path, StubApi(), require_voucher=False)
    assert asyncio.run(m2.check_event_for_spam(event({"ciphertext": "x"}))) == NOT_SPAM


def test_an_unrecordable_upload_is_still_accepted(table_dir: Path, tmp_path: Path) -> None:
    m = module(table_dir, tmp_path, StubApi())
    info = SimpleNamespace(server_name=None, url_cache=False, thumbnail=None, file_id="abc")
    missing = SimpleNamespace(path=str(tmp_path / "gone"))
    assert asyncio.run(m.check_media_file_for_spam(missing, info)) == NOT_SPAM
    blob = tmp_path / "blob"
    blob.write_bytes(b"\x8a" * 1000)
    assert asyncio.run(m.check_media_file_for_spam(SimpleNamespace(path=str(blob)), info)) == (
        NOT_SPAM
    )
    assert m.state.blobs(["abc"])["abc"].kind == "opaque"


def test_a_table_that_does_not_verify_or_a_wrong_policy_will_not_start(
    table_dir: Path, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError):
        module(table_dir, tmp_path, StubApi(), policy="threshold")
    bad = tmp_path / "bad"
    bad.mkdir()
    for name in ("table.bin", "manifest.json", "server.key"):
        (bad / name).write_bytes((table_dir / name).read_bytes())
    other = build_table_dir(tmp_path / "other", {"y": bytes(32)})
    (bad / "trust.json").write_bytes((other / "trust.json").read_bytes())  # other keys
    with pytest.raises(Exception) as e:
        module(bad, tmp_path, StubApi())
    assert e.typename in ("InvalidManifest", "InvalidTable")
    with pytest.raises(ConfigError):
        module(tmp_path / "nowhere", tmp_path, StubApi())


def test_reloading_swaps_only_a_table_that_verifies(table_dir: Path, tmp_path: Path) -> None:
    import shutil

    live = tmp_path / "live"
    shutil.copytree(table_dir, live)
    m = module(live, tmp_path, StubApi())
    first = m.current
    asyncio.run(m.reload_table())  # nothing changed
    assert m.current.table.digest == first.table.digest and m.previous is None
    # A half-copied update (a new table.bin beside the old manifest) is not loaded.
    new = build_table_dir(tmp_path / "new", {"y": bytes(32)})
    (live / "table.bin").write_bytes((new / "table.bin").read_bytes())
    asyncio.run(m.reload_table())
    assert m.current.table.digest == first.table.digest
    for name in ("manifest.json", "trust.json", "server.key"):
        (live / name).write_bytes((new / name).read_bytes())
    asyncio.run(m.reload_table())
    assert m.current.table.digest != first.table.digest
    assert m.previous is first
    assert set(m._tables()) == {first.table_id, m.current.table_id}
    served = m._static["/_blindmatch/v1/table"]
    assert served.body == (new / "table.bin").read_bytes()
    m.previous_until = 0.0  # the grace period is over
    assert set(m._tables()) == {m.current.table_id}


def test_a_table_below_the_floors_will_not_start(table_dir: Path, tmp_path: Path) -> None:
    """The module checks its own table as a client would: t = 3 (no synthetic vouchers)
    is below the floors, unless its trust file lowers them."""
    from blindmatch.errors import InvalidManifest

    low = build_table_dir(tmp_path / "low", {"y": bytes(32)}, policy="threshold", threshold=3)
    with pytest.raises(InvalidManifest, match="t = 3 is below the floor of 10"):
        module(low, tmp_path, StubApi())
    from blindmatch.protocol import Floors

    floors = Floors(min_threshold=3, min_synthetic_ppm=0)
    lowered = build_table_dir(tmp_path / "lowered", {"y": bytes(32)}, policy="threshold",
                              threshold=3, floors=floors)  # fmt: skip
    assert module(lowered, tmp_path, StubApi()).table.threshold == 3


def _signed_dir(out: Path, sequence: int, entry: bytes) -> Path:
    """A table directory signed with fixed keys (one platform key for every sequence)."""
    from blindmatch.private import write_table_dir
    from blindmatch.protocol import HotlineList, format_issued, prepare_table
    from tests.protocol.kat_fixture import signing_key

    places = (("HL-A", "GB"), ("HL-B", "US"))
    lists = [HotlineList(h, j, h, "1", (("e", entry),)) for h, j in places]
    prep = prepare_table(lists, sequence=sequence, issued=format_issued(datetime.now(UTC)))
    hotlines = {h: (signing_key(h), j) for h, j in places}
    write_table_dir(out, prep, signing_key("platform"), hotlines, 2)
    return out


def test_reloading_refuses_an_older_table(tmp_path: Path) -> None:
    live = _signed_dir(tmp_path / "live", 5, b"\x05" * 32)
    m = module(live, tmp_path, StubApi())
    five = m.current.table.digest
    for sequence in (2, 6):  # rolled back: kept the old; then a newer one: swapped
        new = _signed_dir(tmp_path / f"seq-{sequence}", sequence, bytes([sequence]) * 32)
        for name in ("table.bin", "manifest.json", "trust.json", "server.key"):
            (live / name).write_bytes((new / name).read_bytes())
        asyncio.run(m.reload_table())
        if sequence == 2:
            assert m.current.table.digest == five and m.previous is None
    assert json.loads(m.current.manifest)["manifest"]["sequence"] == 6
    assert m.previous is not None and m.previous.table.digest == five


def test_require_franking_refuses_an_unfranked_event(table_dir: Path, tmp_path: Path) -> None:
    m = module(table_dir, tmp_path, StubApi(), require_voucher=False, require_franking=True)
    ev = event({"ciphertext": "x"})
    ev.origin_server_ts = 1_700_000_000_000
    code, body = asyncio.run(m.check_event_for_spam(ev))
    assert body["org.blindmatch.reason"] == "franking_required"
    franked = event(
        {"ciphertext": "x", "org.blindmatch.franking": {"v": 1, "commitment": "A" * 43}}
    )
    franked.origin_server_ts = 1_700_000_000_000
    assert asyncio.run(m.check_event_for_spam(franked)) == NOT_SPAM
    [rec] = m.state.franking(["$e"]).values()
    assert rec.commitment == bytes(32) and len(rec.tag) == 36 and rec.sender == "@a:hs.test"


def test_the_franking_keys_are_made_once_and_kept(table_dir: Path, tmp_path: Path) -> None:
    keys = tmp_path / "fk" / "franking.keys"
    a = module(table_dir, tmp_path, StubApi(), franking_keys=str(keys))
    assert keys.stat().st_mode & 0o777 == 0o600
    b = module(table_dir, tmp_path, StubApi(), franking_keys=str(keys))
    assert a.keyring.key(a.keyring.current) == b.keyring.key(b.keyring.current)
    keys.write_text("{}")
    with pytest.raises(ConfigError):
        module(table_dir, tmp_path, StubApi(), franking_keys=str(keys))


def test_only_uploads_that_decode_count_as_plaintext(tmp_path: Path) -> None:
    import io
    import os
    import shutil
    import subprocess

    from PIL import Image

    from blindmatch.integrations.matrix.module import classify_upload

    def kind(data: bytes) -> str:
        p = tmp_path / "blob"
        p.write_bytes(data)
        return classify_upload(str(p), data[:512], len(data))

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, format="JPEG")
    assert kind(buf.getvalue()) == "image"
    noise = os.urandom(4096)
    # Ciphertext a client re-encrypted until it starts like an image or a video: opaque.
    for magic in (b"BM", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"FLV", b"\x1a\x45\xdf\xa3"):
        assert kind(magic + noise) == "opaque", magic
    assert kind(noise) == "opaque"
    assert kind(buf.getvalue()[:200]) == "opaque"  # a truncated picture
    if shutil.which("ffmpeg") and shutil.which("ffprobe"):
        video = tmp_path / "v.mp4"
        subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i",
                        "testsrc=size=64x48:rate=5", "-t", "1", "-y", str(video)],
                       check=True, timeout=60)  # fmt: skip
        assert kind(video.read_bytes()) == "video"
        assert kind(b"\x00\x00\x00\x18ftypmp42" + noise) == "opaque"
