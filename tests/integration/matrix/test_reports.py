"""Franking on the server: the tag stored per relayed event, and verified reports.

Raw HTTP against the session's Synapse: the sender's client franks the payload
(``blindmatch.protocol.frank``) and puts ``C`` beside the ciphertext; the recipient reports
the decrypted payload with ``POST /_blindmatch/v1/report``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from blindmatch.integrations.matrix.homeserver import Response, User
from blindmatch.integrations.matrix.state import MatrixState
from blindmatch.protocol import encrypt_attachment, frank
from tests.conftest import run_cli
from tests.integration.matrix.conftest import MatrixWorld, Sender, rejection


def send_franked(s: Sender, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Send ``payload`` franked (as if Megolm-encrypted); returns (event id, franked payload)."""
    f = frank(payload)
    r = s.send(raw=None, extra={"org.blindmatch.franking": {
        "v": 1, "commitment": base64.b64encode(f.commitment).decode()}})  # fmt: skip
    assert r.status == 200, r.body
    return str(r.json()["event_id"]), dict(f.payload)


def report(world: MatrixWorld, user: User, body: dict[str, Any]) -> Response:
    return world.hs.http.request(
        "POST", "/_blindmatch/v1/report", json_body=body, token=user.access_token
    )


def test_a_verified_report_opens_a_case(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender(invite_recipient=True)
    first_id, first = send_franked(s, {"msgtype": "m.text", "body": "hello"})
    event_id, payload = send_franked(s, {"msgtype": "m.text", "body": "something abusive"})
    r = report(matrix_world, matrix_world.recipient, {
        "event_id": event_id, "room_id": s.room_id, "payload": payload, "reason": "abuse",
        "context": [{"event_id": first_id, "payload": first},
                    {"event_id": first_id, "payload": {**first, "body": "edited"}}],
    })  # fmt: skip
    assert r.status == 200, r.body
    answer = r.json()
    case_id = answer["org.blindmatch.case"]
    assert answer["verified"] is True and answer["context_verified"] == [True, False]
    res = run_cli("cases", "list", "--kind", "report", "--json", "--database-url",
                  matrix_world.database_url)  # fmt: skip
    [c] = [c for c in res.json_lines if c["id"] == case_id]
    assert (c["account"], c["room"], c["event_id"]) == (s.user.user_id, s.room_id, event_id)
    evidence = json.loads(MatrixState.open(matrix_world.database_url).case_evidence(case_id) or b"")
    assert evidence["reporter"] == matrix_world.recipient.user_id
    assert evidence["payload"]["body"] == "something abusive" and evidence["reason"] == "abuse"


def test_reports_that_do_not_verify_are_refused(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender(invite_recipient=True)
    event_id, payload = send_franked(s, {"msgtype": "m.text", "body": "what was sent"})
    base = {"event_id": event_id, "room_id": s.room_id, "payload": payload, "reason": "x"}
    cases = [
        # the recipient claims the sender wrote something else
        ({**base, "payload": {**payload, "body": "what was not sent"}}, 403,
         "report_not_verified"),
        # ... or drops the franking key
        ({**base, "payload": {"msgtype": "m.text", "body": "what was sent"}}, 403,
         "report_not_verified"),
        ({**base, "event_id": "$nosuchevent"}, 404, "not_franked"),
        ({**base, "payload": "text"}, 400, "malformed_report"),
        ({**base, "context": [{"event_id": 3}]}, 400, "malformed_report"),
        ({**base, "surprise": 1}, 400, "malformed_report"),
    ]  # fmt: skip
    for body, status, reason in cases:
        r = report(matrix_world, matrix_world.recipient, body)
        assert (r.status, r.json()["org.blindmatch.reason"]) == (status, reason), body
    # Someone outside the room cannot report (nor learn whether the event exists).
    outsider = matrix_world.new_sender()
    r = report(matrix_world, outsider.user, base)
    assert (r.status, r.json()["org.blindmatch.reason"]) == (403, "not_a_member")
    # Without a login: Synapse's own 401.
    r = matrix_world.hs.http.request("POST", "/_blindmatch/v1/report", json_body=base)
    assert r.status == 401
    # The event from another room does not verify against this one.
    other = matrix_world.new_sender(invite_recipient=True)
    r = report(matrix_world, matrix_world.recipient, {**base, "room_id": other.room_id})
    assert (r.status, r.json()["org.blindmatch.reason"]) == (404, "not_franked")


def image_content(counter_half: bytes) -> dict[str, Any]:
    """An ``m.image`` content whose EncryptedFile's IV ends in ``counter_half``."""
    _, file = encrypt_attachment(b"benign bytes", url="mxc://hs/blob")
    obj = file.to_json()
    obj["iv"] = base64.b64encode(file.iv[:8] + counter_half).decode().rstrip("=")
    return {"msgtype": "m.image", "body": "a.jpg", "file": obj}


def test_a_report_of_an_attachment_with_a_nonzero_iv_counter_is_refused(
    matrix_world: MatrixWorld,
) -> None:
    """Matrix clients decrypt such an attachment with a 64-bit wrapping counter, the
    reviewer's decryption would carry into 128 bits: different bytes, so no report."""
    s = matrix_world.new_sender(invite_recipient=True)
    good_id, good = send_franked(s, image_content(bytes(8)))
    bad_id, bad = send_franked(s, image_content(b"\xff" * 8))
    thumb = {**image_content(bytes(8)), "info": {"thumbnail_file": image_content(
        (1).to_bytes(8, "big"))["file"]}}  # fmt: skip
    thumb_id, thumb = send_franked(s, thumb)
    for event_id, payload in ((bad_id, bad), (thumb_id, thumb)):
        r = report(matrix_world, matrix_world.recipient,
                   {"event_id": event_id, "room_id": s.room_id, "payload": payload})  # fmt: skip
        assert r.status == 403, r.body
        assert r.json()["org.blindmatch.reason"] == "unverifiable_attachment"
        assert "low 64 bits" in r.json()["org.blindmatch.message"]
    # The same message with a zero counter half is reported; as context, the other is not
    # counted as verified.
    r = report(matrix_world, matrix_world.recipient, {
        "event_id": good_id, "room_id": s.room_id, "payload": good,
        "context": [{"event_id": bad_id, "payload": bad}],
    })  # fmt: skip
    assert r.status == 200, r.body
    assert r.json()["context_verified"] == [False]


def test_a_redacted_message_can_still_be_reported(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender(invite_recipient=True)
    event_id, payload = send_franked(s, {"msgtype": "m.text", "body": "soon deleted"})
    red = matrix_world.hs.http.request(
        "PUT", f"/_matrix/client/v3/rooms/{s.room_id}/redact/{event_id}/r1", json_body={},
        token=s.user.access_token,
    )  # fmt: skip
    assert red.status == 200, red.body
    r = report(matrix_world, matrix_world.recipient,
               {"event_id": event_id, "room_id": s.room_id, "payload": payload})  # fmt: skip
    assert r.status == 200, r.body


def test_a_malformed_franking_field_is_refused_at_send(matrix_world: MatrixWorld) -> None:
    s = matrix_world.new_sender()
    for bad in ({"v": 1, "commitment": "AAAA"}, {"v": 2, "commitment": "A" * 43},
                {"commitment": "A" * 43}, "C", {"v": 1, "commitment": "!" * 43}):  # fmt: skip
        body = rejection(s.send(extra={"org.blindmatch.franking": bad}))
        assert body["org.blindmatch.reason"] == "malformed_franking", bad
