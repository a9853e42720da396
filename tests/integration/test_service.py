"""The HTTP service: keys, limits, JSON errors, hashing and matching."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from blindmatch.config import DEV_ADMIN_KEY, load_settings
from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.errors import ConfigError
from blindmatch.runtime import open_runtime
from blindmatch.service import create_app

ADMIN = {"Authorization": f"Bearer {DEV_ADMIN_KEY}"}


def _jpeg(seed: int, size=(480, 360), quality=90) -> bytes:
    buf = io.BytesIO()
    synthetic_photo(seed, size).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


@pytest.fixture
def client(home: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("BLINDMATCH_MAX_UPLOAD_BYTES", str(2_000_000))
    return TestClient(create_app(open_runtime()), raise_server_exceptions=False)


def test_every_route_but_health_needs_a_key(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    r = client.get("/v1/lists")
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    r = client.get("/v1/lists", headers={"X-API-Key": "wrong"})
    assert r.status_code == 401


def test_read_keys_cannot_write(client: TestClient, home: Path) -> None:
    rt = open_runtime()
    key = rt.store.create_api_key("reader", "read")
    h = {"X-API-Key": key}
    assert client.get("/v1/lists", headers=h).status_code == 200
    r = client.put("/v1/lists/x", json={}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
    rt.store.revoke_api_key("reader")
    assert client.get("/v1/lists", headers=h).status_code == 401


def test_hash_upload(client: TestClient) -> None:
    r = client.post("/v1/hash", files={"file": ("a.jpg", _jpeg(1))}, headers=ADMIN)
    assert r.status_code == 200
    body = r.json()
    assert body["kind"] == "image" and len(body["pdq"]) == 64 and body["pdq_quality"] > 80


def test_bad_upload_gets_a_coded_error(client: TestClient) -> None:
    r = client.post("/v1/hash", files={"file": ("a.jpg", b"hello")}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unsupported_format"
    r = client.post("/v1/hash", files={"file": ("a.jpg", _jpeg(2)[:2000])}, headers=ADMIN)
    assert r.json()["error"]["code"] == "truncated"
    r = client.post("/v1/hash", files={"file": ("a.jpg", b"")}, headers=ADMIN)
    assert r.json()["error"]["code"] == "empty_file"


def test_upload_over_limit_is_413(client: TestClient) -> None:
    r = client.post("/v1/hash", files={"file": ("a.bin", b"\0" * 2_500_000)}, headers=ADMIN)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_chunked_upload_over_limit_is_413(client: TestClient) -> None:
    def body():
        for _ in range(30):
            yield b"\0" * 100_000

    r = client.post(
        "/v1/match/hash",
        content=body(),
        headers=ADMIN | {"Content-Type": "application/json"},
    )
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"


def test_malformed_json_and_bad_hashes(client: TestClient) -> None:
    r = client.post(
        "/v1/match/hash", content=b"{not json", headers=ADMIN | {"Content-Type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"
    r = client.post("/v1/match/hash", json={"pdq": "xyz"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_hash"
    r = client.post("/v1/match/hash", json={}, headers=ADMIN)
    assert r.json()["error"]["code"] == "invalid_hash"
    r = client.post("/v1/match/hash", json={"pdq": "0" * 64, "threshold": 999}, headers=ADMIN)
    assert r.json()["error"]["code"] == "invalid_request"


def test_list_lifecycle_and_immediate_matching(client: TestClient) -> None:
    listed = _jpeg(5)
    pdq = client.post("/v1/hash", files={"file": ("a.jpg", listed)}, headers=ADMIN).json()["pdq"]
    assert client.put("/v1/lists/hl", json={"source": "test"}, headers=ADMIN).status_code == 201
    assert client.put("/v1/lists/hl", json={}, headers=ADMIN).json()["error"]["code"] == (
        "list_exists"
    )
    r = client.post(
        "/v1/lists/hl/entries",
        json={"entries": [{"id": "e1", "pdq": pdq, "category": "A1"}]},
        headers=ADMIN,
    )
    assert r.status_code == 200 and r.json()["added"] == 1
    # An edited copy, uploaded right after, matches.
    edited = io.BytesIO()
    Image.open(io.BytesIO(listed)).resize((240, 180)).save(edited, "JPEG", quality=50)
    r = client.post("/v1/match/upload", files={"file": ("b.jpg", edited.getvalue())}, headers=ADMIN)
    (m,) = r.json()["matches"]
    assert (m["list"], m["entry_id"], m["hash_type"], m["category"]) == ("hl", "e1", "pdq", "A1")
    r = client.post("/v1/match/hash", json={"pdq": pdq, "lists": ["hl"]}, headers=ADMIN)
    assert r.json()["matches"][0]["distance"] == 0
    assert "e1" in client.get("/v1/lists/hl/export", headers=ADMIN).text
    r = client.post(
        "/v1/lists/hl/entries", json={"entries": [{"id": "e2", "pdq": "bad"}]}, headers=ADMIN
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "malformed_list"
    assert client.get("/v1/lists/hl", headers=ADMIN).json()["entries"] == 1
    assert client.delete("/v1/lists/hl", headers=ADMIN).status_code == 200
    r = client.post("/v1/match/hash", json={"pdq": pdq}, headers=ADMIN)
    assert r.json()["matches"] == []
    assert client.get("/v1/lists/hl", headers=ADMIN).json()["error"]["code"] == "list_not_found"


def test_openapi_docs_are_served(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert "/v1/match/upload" in spec["paths"]
    assert client.get("/docs").status_code == 200


def test_settings_refuse_default_secret_outside_dev(home: Path) -> None:
    env = {"BLINDMATCH_HOME": str(home), "BLINDMATCH_ENV": "prod"}
    with pytest.raises(ConfigError):
        load_settings(env).check_service_secrets()
    with pytest.raises(ConfigError):
        load_settings(env | {"BLINDMATCH_ADMIN_KEY": DEV_ADMIN_KEY}).check_service_secrets()
    with pytest.raises(ConfigError):
        load_settings(env | {"BLINDMATCH_ADMIN_KEY": "short"}).check_service_secrets()
    load_settings(env | {"BLINDMATCH_ADMIN_KEY": "x" * 40}).check_service_secrets()


def test_prod_app_refuses_to_start_with_default_key(home: Path, monkeypatch) -> None:
    monkeypatch.setenv("BLINDMATCH_ENV", "prod")
    with pytest.raises(ConfigError):
        create_app(open_runtime())


def test_match_hash_with_unknown_list_is_404(client: TestClient) -> None:
    r = client.post("/v1/match/hash", json={"md5": "a" * 32, "lists": ["nope"]}, headers=ADMIN)
    assert r.status_code == 404 and r.json()["error"]["code"] == "list_not_found"


def test_upload_of_a_crop_matches_by_keypoints(client: TestClient) -> None:
    import numpy as np

    from blindmatch.hashing import hash_bytes, open_image
    from blindmatch.hashing.keypoints import listed_features
    from blindmatch.lists import ListEntry

    listed = _jpeg(41, size=(640, 480))
    h = hash_bytes(listed)
    feats = listed_features(np.asarray(open_image(listed))).to_bytes()
    open_runtime().store.import_entries(
        "hl", [ListEntry(source_id="e1", pdq=h.pdq)], keypoints={"e1": feats}
    )
    crop = io.BytesIO()
    Image.open(io.BytesIO(listed)).crop((0, 0, 540, 480)).save(crop, "JPEG", quality=85)
    r = client.post("/v1/match/upload", files={"file": ("c.jpg", crop.getvalue())}, headers=ADMIN)
    (m,) = r.json()["matches"]
    assert (m["entry_id"], m["hash_type"], m["variant"]) == ("e1", "keypoints", "keypoints")
    assert m["distance"] <= 31


def test_a_locked_database_is_a_503_with_a_code(
    home: Path, monkeypatch: pytest.MonkeyPatch, short_busy_wait: None
) -> None:
    """Issue 11, item 4: another writer holding the database's lock past the wait is
    `503 database_busy` with Retry-After, not a 500; the same request succeeds after."""
    import sqlite3

    rt = open_runtime()
    rt.store.create_list("l")
    client = TestClient(create_app(open_runtime()), raise_server_exceptions=False)
    body = {"entries": [{"id": "1", "pdq": "a" * 64}]}
    holder = sqlite3.connect(home / "blindmatch.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        r = client.post("/v1/lists/l/entries", json=body, headers=ADMIN)
        assert r.status_code == 503, r.text
        assert r.json()["error"]["code"] == "database_busy"
        assert "retry-after" in {k.lower() for k in r.headers}
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    r = client.post("/v1/lists/l/entries", json=body, headers=ADMIN)
    assert r.status_code == 200 and r.json()["added"] == 1


def test_entries_carry_a_companion_hash(client: TestClient) -> None:
    """An entry POSTed with its companion hash keeps it (what `table build` makes keys of);
    a malformed companion is refused like a malformed PDQ."""
    pdq, companion = "a" * 64, "5" * 64
    assert client.put("/v1/lists/hc", json={"source": "test"}, headers=ADMIN).status_code == 201
    r = client.post(
        "/v1/lists/hc/entries",
        json={"entries": [{"id": "e1", "pdq": pdq, "pdq_companion": companion}]},
        headers=ADMIN,
    )
    assert r.status_code == 200 and r.json()["added"] == 1
    assert companion in client.get("/v1/lists/hc/export", headers=ADMIN).text
    r = client.post(
        "/v1/lists/hc/entries",
        json={"entries": [{"id": "e2", "pdq": pdq, "pdq_companion": "zz"}]},
        headers=ADMIN,
    )
    assert r.status_code == 422 and r.json()["error"]["code"] == "malformed_list"


def test_entries_carry_hot_companion_hashes(client: TestClient) -> None:
    """An entry POSTed with hot companion hashes keeps them (what `table build` makes
    keys of); malformed ones are refused like a malformed PDQ, too many as invalid."""
    pdq, companion = "a" * 64, "5" * 64
    hot = ["1" * 64, "2" * 64]
    assert client.put("/v1/lists/hh", json={"source": "test"}, headers=ADMIN).status_code == 201
    r = client.post(
        "/v1/lists/hh/entries",
        json={"entries": [{"id": "e1", "pdq": pdq, "pdq_companion": companion, "pdq_hot": hot},
                          {"id": "e2", "pdq": "b" * 64, "pdq_hot": None}]},
        headers=ADMIN,
    )  # fmt: skip
    assert r.status_code == 200 and r.json()["added"] == 2
    rows = client.get("/v1/lists/hh/export", params={"format": "jsonl"}, headers=ADMIN).text
    assert [json.loads(x).get("pdq_hot") for x in rows.splitlines()] == [hot, None]
    # the same again is unchanged; without them, e1 has changed (no longer hot)
    r = client.post("/v1/lists/hh/entries", headers=ADMIN, json={"entries": [
        {"id": "e1", "pdq": pdq, "pdq_companion": companion, "pdq_hot": hot}]})  # fmt: skip
    assert r.status_code == 200 and r.json()["unchanged"] == 1
    for bad, code in [
        ([hot[0], "zz"], "malformed_list"),
        ([hot[0], hot[0]], "malformed_list"),
        ("1" * 64, "invalid_request"),
        ([f"{i:064x}" for i in range(97)], "invalid_request"),
    ]:
        r = client.post(
            "/v1/lists/hh/entries",
            json={"entries": [{"id": "e3", "pdq": pdq, "pdq_hot": bad}]},
            headers=ADMIN,
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == code, (bad, r.json())
    r = client.post("/v1/lists/hh/entries", headers=ADMIN,
                    json={"entries": [{"id": "e4", "md5": "c" * 32, "pdq_hot": hot}]})  # fmt: skip
    assert r.status_code == 422 and "pdq_hot needs a pdq" in r.json()["error"]["message"]
    assert client.get("/v1/lists/hh", headers=ADMIN).json()["entries"] == 2  # nothing added
