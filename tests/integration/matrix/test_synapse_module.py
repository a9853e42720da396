"""The blindmatch Synapse module against a real Synapse (started once per session).

Each test sends as a fresh account, so no earlier test's uploads are pending for it.
"""

from __future__ import annotations

import base64
import hashlib
import io
import secrets

import pytest
from PIL import Image

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.errors import InvalidManifest, InvalidTable
from blindmatch.integrations.matrix.events import files_field, voucher_field
from blindmatch.integrations.matrix.homeserver import build_table_dir
from blindmatch.integrations.matrix.state import MatrixState
from blindmatch.protocol import AccountSecret, ClientSession, verify_table
from tests.conftest import run_cli
from tests.integration.matrix.conftest import (
    LISTED_SEED,
    MatrixWorld,
    break_a_point,
    forge_evidence,
    jpeg,
    listed_pdq,
    not_opened,
    rejection,
    stats,
)

BENIGN = synthetic_photo(11)


def listed_copy() -> Image.Image:
    """The listed picture as a sender would have it: re-compressed (at full size, so its
    PDQ is the listed one: whether a resized copy's probes find the entry depends on the
    public seed, docs/protocol.md §11, which is the protocol's business, not this module's)."""
    return Image.open(io.BytesIO(jpeg(synthetic_photo(LISTED_SEED), quality=75)))


# -- the table endpoints -----------------------------------------------------------
def test_table_manifest_and_trust_are_served_with_etags(matrix_world: MatrixWorld) -> None:
    http = matrix_world.hs.http
    for path, name in (("table", "table.bin"), ("manifest", "manifest.json"),
                       ("trust", "trust.json")):  # fmt: skip
        r = http.request("GET", f"/_blindmatch/v1/{path}")
        assert r.status == 200
        assert r.body == (matrix_world.table_dir / name).read_bytes().rstrip(b"\n") or (
            r.body == (matrix_world.table_dir / name).read_bytes()
        )
        etag = r.headers["ETag"]
        assert etag == '"' + hashlib.sha256(r.body).hexdigest() + '"'
        again = http.request("GET", f"/_blindmatch/v1/{path}", headers={"If-None-Match": etag})
        assert again.status == 304 and again.body == b""
        other = http.request("GET", f"/_blindmatch/v1/{path}", headers={"If-None-Match": '"x"'})
        assert other.status == 200 and other.body == r.body
    info = http.request("GET", "/_blindmatch/v1/info").json()
    session = matrix_world.client_session()
    assert info["voucher_bytes"] == session.voucher_bytes
    assert info["table_digest"] == session.table.digest.hex()
    assert info["policy"] == "block" and info["require_voucher"] is True


def test_a_tampered_table_is_refused_by_the_client(matrix_world: MatrixWorld) -> None:
    http = matrix_world.hs.http
    table = bytearray(http.request("GET", "/_blindmatch/v1/table").body)
    manifest = http.request("GET", "/_blindmatch/v1/manifest").body
    table[len(table) // 2] ^= 1
    with pytest.raises((InvalidManifest, InvalidTable)):
        verify_table(bytes(table), manifest, matrix_world.trust)
    # A table signed by keys the client does not trust is refused too.
    rogue = build_table_dir(matrix_world.table_dir.parent / "rogue", {"x": listed_pdq()})
    with pytest.raises(InvalidManifest):
        verify_table(
            (rogue / "table.bin").read_bytes(),
            (rogue / "manifest.json").read_bytes(),
            matrix_world.trust,
        )


# -- delivered and blocked -------------------------------------------------------------
def test_an_ordinary_encrypted_image_is_delivered(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender(invite_recipient=True)
    image = jpeg(BENIGN)
    mxc, digest, _ = s.encrypted_upload(image)
    field = voucher_field([(s.voucher_for(BENIGN), mxc, digest)])
    r = s.send(field)
    assert r.status == 200, r.body
    event_id = r.json()["event_id"]
    # The recipient gets the event with the voucher beside the ciphertext, and the blob.
    got = matrix_world.hs.http.request(
        "GET",
        f"/_matrix/client/v3/rooms/{s.room_id}/event/{event_id}",
        token=matrix_world.recipient.access_token,
    )
    assert got.status == 200
    assert got.json()["content"]["org.blindmatch.voucher"] == field
    dl = matrix_world.download(mxc, matrix_world.recipient)
    assert dl.status == 200 and hashlib.sha256(dl.body).hexdigest() == digest
    # A plain encrypted text message (no upload pending) needs no voucher.
    assert s.send().status == 200
    state = MatrixState.open(matrix_world.database_url)
    [b] = state.bindings(media_ids=[mxc.rsplit("/", 1)[1]])
    assert (b.account, b.room, b.event_id, b.outcome) == (s.user.user_id, s.room_id, event_id,
                                                          "accepted")  # fmt: skip


def test_a_listed_image_is_blocked_with_a_case_and_its_blob_quarantined(
    matrix_world: MatrixWorld,
) -> None:
    s = matrix_world.new_sender(invite_recipient=True)
    copy = listed_copy()
    mxc, digest, _ = s.encrypted_upload(jpeg(copy))
    assert matrix_world.download(mxc, matrix_world.recipient).status == 200  # before the send
    field = voucher_field([(s.voucher_for(copy), mxc, digest)])
    body = rejection(s.send(field))
    assert body["org.blindmatch.reason"] == "listed_image"
    case = body["org.blindmatch.case"]
    assert case.startswith("BM-") and body["org.blindmatch.appeal"]["case"] == case
    assert "known abuse image" in body["org.blindmatch.message"]
    # Quarantined: Synapse refuses to serve the blob to anyone.
    assert matrix_world.download(mxc, matrix_world.recipient).status == 404
    assert matrix_world.download(mxc, s.user).status == 404
    # Sending the same event again gets the same answer and no second case.
    again = rejection(s.send(field))
    assert again["org.blindmatch.case"] == case
    # The case is listed, against the account, with the listed entry.
    res = run_cli("cases", "list", "--json", "--database-url", matrix_world.database_url)
    assert res.code == 0, res.err
    cases = [c for c in res.json_lines if c["id"] == case]
    assert len(cases) == 1
    c = cases[0]
    assert (c["kind"], c["account"], c["room"]) == ("match", s.user.user_id, s.room_id)
    assert c["blobs"] == [mxc]
    refs = [r for m in c["entries"] for r in m["refs"]]
    assert {r["entry_id"] for r in refs} == {"listed-10"}
    assert all(m["distance"] <= 31 for m in c["entries"])
    # Nothing was delivered to the recipient.
    msgs = matrix_world.hs.http.request(
        "GET",
        f"/_matrix/client/v3/rooms/{s.room_id}/messages?dir=b&limit=50",
        token=matrix_world.recipient.access_token,
    ).json()
    assert not [e for e in msgs["chunk"] if e["type"] == "m.room.encrypted"]


# -- what the server enforces about vouchers -----------------------------------------
def test_an_encrypted_event_after_an_upload_needs_a_voucher(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender()
    mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
    body = rejection(s.send())  # a modified client skips the voucher
    assert body["org.blindmatch.reason"] == "voucher_required"
    assert mxc in body["org.blindmatch.message"]
    # Binding another upload while this one stays unbound is refused as well.
    mxc2, digest2, _ = s.encrypted_upload(jpeg(BENIGN))
    body = rejection(s.send(voucher_field([(s.voucher_for(BENIGN), mxc2, digest2)])))
    assert body["org.blindmatch.reason"] == "voucher_required"
    # Binding both in one event (an image and its thumbnail, say) is accepted.
    field = voucher_field(
        [(s.voucher_for(BENIGN), mxc, digest), (s.voucher_for(BENIGN), mxc2, digest2)]
    )
    assert s.send(field).status == 200
    assert s.send().status == 200  # nothing pending any more


def test_a_plaintext_upload_is_not_pending(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender()
    s.upload(jpeg(BENIGN), "image/jpeg")  # e.g. an avatar: its pixels are visible to the server
    assert s.send().status == 200
    # An encrypted blob made to start like a bitmap (a few thousand re-encryptions) does
    # not decode: it is still an upload that needs a voucher, whatever its content type.
    s.upload(b"BM" + secrets.token_bytes(5000), "image/bmp")
    assert rejection(s.send())["org.blindmatch.reason"] == "voucher_required"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: "not an object", "malformed_voucher"),
        (lambda f: [], "malformed_voucher"),
        (lambda f: [f] * 5, "malformed_voucher"),
        (lambda f: {**f, "v": 2}, "unsupported_version"),
        (lambda f: {**f, "v": "1"}, "malformed_voucher"),
        (lambda f: {**f, "extra": 1}, "malformed_voucher"),
        (lambda f: {**f, "voucher": f["voucher"][:-8] + "!!!!!!!!"}, "malformed_voucher"),
        (lambda f: {**f, "voucher": f["voucher"][:400]}, "malformed_voucher"),
        (lambda f: {**f, "voucher": f["voucher"] + "AAAA" * 64}, "voucher_oversized"),
        (lambda f: {**f, "blob": "https://example.org/x"}, "malformed_voucher"),
        (lambda f: {**f, "blob": "mxc://elsewhere.example/abc"}, "blob_unknown"),
        (lambda f: {**f, "blob": f["blob"][:-3] + "zzz"}, "blob_unknown"),
        (lambda f: {**f, "blob_sha256": "AB" * 32}, "malformed_voucher"),
        (lambda f: {**f, "blob_sha256": "ab" * 32}, "blob_hash_mismatch"),
    ],
)
def test_malformed_fields_are_refused_with_a_reason(
    matrix_world: MatrixWorld, mutate: object, reason: str
) -> None:
    s = matrix_world.new_sender()
    mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
    good = voucher_field([(s.voucher_for(BENIGN), mxc, digest)])
    assert isinstance(good, dict)
    body = rejection(s.send(mutate(good)))  # type: ignore[operator]
    assert body["org.blindmatch.reason"] == reason, body
    assert s.send(good).status == 200  # the honest event still goes through afterwards


def test_forged_voucher_bytes_are_refused(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender()
    real = s.voucher_for(BENIGN)
    listed = s.voucher_for(listed_copy())
    for forged, reason in (
        (secrets.token_bytes(len(real)), "malformed_voucher"),  # random bytes
        (real[:40] + secrets.token_bytes(len(real) - 40), "invalid_voucher"),  # right header
    ):
        mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
        body = rejection(s.send(voucher_field([(forged, mxc, digest)])))
        assert body["org.blindmatch.reason"] == reason, body
        assert "org.blindmatch.case" not in body
        ok = s.send(voucher_field([(s.voucher_for(BENIGN), mxc, digest)]))  # bind it honestly
        assert ok.status == 200, ok.body
    # A listed image's voucher opens; one flipped bit anywhere after its pairs breaks the
    # authenticated middle layer. That is a match attempt with a forged voucher: refused
    # exactly as a match is (no error that only opened vouchers get: docs/protocol.md §5).
    again = s.voucher_for(listed_copy())  # a fresh voucher id: the first forgery's is bound
    for forged in (
        listed[:-1] + bytes([listed[-1] ^ 1]),
        again[:-2000] + bytes([again[-2000] ^ 0x80]) + again[-1999:],
    ):
        mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
        body = rejection(s.send(voucher_field([(forged, mxc, digest)])))
        assert body["org.blindmatch.reason"] == "listed_image", body
        assert body["org.blindmatch.case"]
    # What the server cannot see: a voucher that does not open (an honest non-match, or
    # a tampered one) reveals nothing, by design (property 1). The recipient's check of
    # the commitment is what catches a voucher made for another image.
    mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
    flipped = real[:-1] + bytes([real[-1] ^ 1])
    assert s.send(voucher_field([(flipped, mxc, digest)])).status == 200


def test_a_forged_listed_voucher_is_refused_as_a_match_and_kept_for_review(
    matrix_world: MatrixWorld,
) -> None:
    """Block policy: a listed picture's voucher with a flipped byte in C_ev (its pair opens,
    its evidence layer does not) gets the answer a match gets — reason, message, case and
    appeal, blob quarantined — and the case keeps the forged voucher and says which layer
    failed. The same forgery of an unlisted picture's voucher does not open: accepted."""
    s = matrix_world.new_sender()
    real = rejection(s.send_image(listed_copy()))  # a real match, for the answer's shape
    forged = forge_evidence(s.voucher_for(listed_copy()), s.session)
    mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
    body = rejection(s.send(voucher_field([(forged, mxc, digest)])))
    assert body["org.blindmatch.reason"] == real["org.blindmatch.reason"] == "listed_image"
    assert set(body) == set(real)
    case = body["org.blindmatch.case"]
    assert body["org.blindmatch.message"] == real["org.blindmatch.message"].replace(
        real["org.blindmatch.case"], case
    )
    assert matrix_world.download(mxc, s.user).status == 404  # quarantined as for a match
    # C_mid's associated data covers every other byte: the middle layer is what fails
    from blindmatch.protocol.server import TAMPERED_MID

    state = MatrixState.open(matrix_world.database_url)
    [kept] = state.kept_vouchers(case)
    assert (kept.voucher_id, kept.tampered, kept.voucher) == (
        forged[24:40].hex(), TAMPERED_MID, forged  # the voucher id: bytes 24-40
    )  # fmt: skip
    [c] = [c for c in state.cases(kind="match", account=s.user.user_id) if c.id == case]
    assert c.tampered == {kept.voucher_id: TAMPERED_MID} and c.blobs == [mxc]
    assert state.kept_vouchers(real["org.blindmatch.case"]) == []  # a real match keeps none
    # The same forgery of an unlisted picture's voucher: nothing opens, nothing to see.
    mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
    unlisted = forge_evidence(s.voucher_for(BENIGN), s.session)
    assert s.send(voucher_field([(unlisted, mxc, digest)])).status == 200


def test_replays_of_an_opened_and_an_unopened_voucher_get_the_same_answers(
    matrix_world: MatrixWorld,
) -> None:
    """A voucher whose event was refused for a reason that needs no secret (another voucher
    of it is malformed) was never opened: sent again, a listed one gets the policy's answer
    and an unlisted one is accepted, as if fresh. Once bound, replaying either — one that
    opened, one that did not — gets the same refusal, voucher_replayed."""
    s = matrix_world.new_sender()
    listed, unlisted = s.voucher_for(listed_copy()), s.voucher_for(BENIGN)
    for v in (listed, unlisted):
        bad = break_a_point(s.voucher_for(BENIGN), s.session)
        (m1, d1, _), (m2, d2, _) = s.encrypted_upload(jpeg(BENIGN)), s.encrypted_upload(b"x")
        body = rejection(s.send(voucher_field([(v, m1, d1), (bad, m2, d2)])))
        assert body["org.blindmatch.reason"] == "invalid_voucher"
        assert not_opened(matrix_world, s)  # refused for its form: nothing of it was opened
        fresh = [(s.voucher_for(BENIGN), m1, d1), (s.voucher_for(BENIGN), m2, d2)]
        assert s.send(voucher_field(fresh)).status == 200  # the two uploads bound honestly
    mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
    first = rejection(s.send(voucher_field([(listed, mxc, digest)])))
    assert first["org.blindmatch.reason"] == "listed_image"  # the block policy's answer
    mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
    assert s.send(voucher_field([(unlisted, mxc, digest)])).status == 200
    for v in (listed, unlisted):  # now both are bound: replays
        mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
        body = rejection(s.send(voucher_field([(v, mxc, digest)])))
        assert body["org.blindmatch.reason"] == "voucher_replayed"
        assert "org.blindmatch.case" not in body


def test_a_voucher_bound_to_another_users_blob_is_refused(matrix_world: MatrixWorld) -> None:
    owner, thief = matrix_world.new_sender(), matrix_world.new_sender()
    mxc, digest, _ = owner.encrypted_upload(jpeg(BENIGN))
    body = rejection(thief.send(voucher_field([(thief.voucher_for(BENIGN), mxc, digest)])))
    assert body["org.blindmatch.reason"] == "blob_not_yours"


def test_replayed_vouchers_and_rebound_blobs_are_refused(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender()
    v1 = s.voucher_for(BENIGN)
    mxc1, d1, _ = s.encrypted_upload(jpeg(BENIGN))
    first = s.send(voucher_field([(v1, mxc1, d1)]))
    assert first.status == 200
    # The same voucher on a new blob: replay.
    mxc2, d2, _ = s.encrypted_upload(jpeg(BENIGN))
    assert rejection(s.send(voucher_field([(v1, mxc2, d2)])))["org.blindmatch.reason"] == (
        "voucher_replayed"
    )
    # The first blob again, with a fresh voucher: already bound.
    body = rejection(s.send(voucher_field([(s.voucher_for(BENIGN), mxc1, d1)])))
    assert body["org.blindmatch.reason"] == "blob_already_bound"
    # Another account replaying the voucher with its own blob: replay.
    other = matrix_world.new_sender()
    mxc3, d3, _ = other.encrypted_upload(jpeg(BENIGN))
    body = rejection(other.send(voucher_field([(v1, mxc3, d3)])))
    assert body["org.blindmatch.reason"] == "voucher_replayed"
    # The same voucher twice in one event.
    v = s.voucher_for(BENIGN)
    body = rejection(s.send(voucher_field([(v, mxc2, d2), (v, mxc3, d3)])))
    assert body["org.blindmatch.reason"] == "voucher_replayed"


def test_a_voucher_for_another_table_is_refused(matrix_world: MatrixWorld) -> None:
    from blindmatch.private import load_trust_file

    other = build_table_dir(matrix_world.table_dir.parent / "other", {"x": listed_pdq()})
    verified = verify_table(
        (other / "table.bin").read_bytes(),
        (other / "manifest.json").read_bytes(),
        load_trust_file(str(other / "trust.json")),
    )
    foreign = ClientSession(verified, AccountSecret.generate())
    s = matrix_world.new_sender()
    mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
    v = foreign.make_voucher(listed_pdq())
    body = rejection(s.send(voucher_field([(v, mxc, digest)])))
    assert body["org.blindmatch.reason"] == "wrong_table"


def test_refusals_are_recorded_and_never_a_server_error(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender()
    mxc, digest, _ = s.encrypted_upload(jpeg(BENIGN))
    hostile = [
        {"v": 1, "voucher": None, "blob": mxc, "blob_sha256": digest},
        {"v": 1, "voucher": "\u00e9" * 10, "blob": mxc, "blob_sha256": digest},
        {"v": True, "voucher": "", "blob": mxc, "blob_sha256": digest},
        [None, 3],
        {"v": 1, "voucher": base64.b64encode(b"BMVC" + b"\0" * 60).decode(), "blob": mxc,
         "blob_sha256": digest},
    ]  # fmt: skip
    for value in hostile:
        r = s.send(value)
        assert r.status == 403, (value, r.status, r.body)
    state = MatrixState.open(matrix_world.database_url)
    mine = state.rejections(s.user.user_id)
    assert len(mine) == len(hostile)
    assert stats(matrix_world)["events_rejected"] >= len(hostile)
    assert "internal_error" not in {reason for _, _, reason in mine}


# -- blobs accounted for without a voucher ------------------------------------------------
def test_an_encrypted_file_is_declared_instead_of_vouched(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender(invite_recipient=True)
    mxc, digest = s.upload(pdf := secrets.token_bytes(3000)), hashlib.sha256(pdf).hexdigest()
    r = s.send(extra={"org.blindmatch.files": files_field([(mxc, digest)])})
    assert r.status == 200, r.body
    assert s.send().status == 200  # the file is accounted for: nothing pending
    assert matrix_world.download(mxc, matrix_world.recipient).status == 200
    # A declared file cannot be vouched for later, nor declared by someone else.
    body = rejection(s.send(voucher_field([(s.voucher_for(BENIGN), mxc, digest)])))
    assert body["org.blindmatch.reason"] == "blob_already_bound"
    other = matrix_world.new_sender()
    body = rejection(other.send(extra={"org.blindmatch.files": files_field([(mxc, digest)])}))
    assert body["org.blindmatch.reason"] == "blob_already_bound"
    mxc3 = s.upload(pdf)
    body = rejection(other.send(extra={"org.blindmatch.files": files_field([(mxc3, digest)])}))
    assert body["org.blindmatch.reason"] == "blob_not_yours"
    assert s.send(extra={"org.blindmatch.files": files_field([(mxc3, digest)])}).status == 200
    # Declared files are checked like vouched blobs.
    mxc2, digest2 = s.upload(secrets.token_bytes(100)), "00" * 32
    body = rejection(s.send(extra={"org.blindmatch.files": files_field([(mxc2, digest2)])}))
    assert body["org.blindmatch.reason"] == "blob_hash_mismatch"
    for bad in ([], [{"v": 1, "blob": mxc2}], {"v": 1, "blob": mxc2, "blob_sha256": digest2}):
        body = rejection(s.send(extra={"org.blindmatch.files": bad}))
        assert body["org.blindmatch.reason"] == "malformed_voucher", bad


def test_a_plaintext_reference_accounts_for_an_upload(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender()
    data = secrets.token_bytes(2000)
    mxc = s.upload(data)
    r = matrix_world.hs.http.request(
        "PUT", f"/_matrix/client/v3/rooms/{s.room_id}/send/m.room.message/p1",
        json_body={"msgtype": "m.file", "body": "notes.bin", "url": mxc},
        token=s.user.access_token,
    )  # fmt: skip
    assert r.status == 200, r.body
    assert s.send().status == 200  # its use is visible to the server: not pending
    body = rejection(s.send(voucher_field(
        [(s.voucher_for(BENIGN), mxc, hashlib.sha256(data).hexdigest())])))  # fmt: skip
    assert body["org.blindmatch.reason"] == "blob_already_bound"
