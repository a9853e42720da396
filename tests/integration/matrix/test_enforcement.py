"""Enforcement against a real Synapse: a confirmed match suspends the account (Synapse
itself refuses its sends) and sends the statement of reasons as a server notice; the user
appeals through the module's endpoint; a second, senior reviewer overturns; the suspension
is lifted and the quarantined picture restored."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.integrations.matrix.events import voucher_field
from blindmatch.integrations.matrix.homeserver import Response, User
from blindmatch.integrations.matrix.state import MatrixState
from blindmatch.review.appeals import Appeals, Reviewer
from blindmatch.review.enforcement import (
    ConfirmedCase,
    EnforcementPolicy,
    Enforcer,
    SynapseAdmin,
)
from tests.integration.matrix.conftest import (
    LISTED_SEED,
    MatrixWorld,
    jpeg,
    rejection,
    running_world,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixWorld]:
    with running_world(tmp_path_factory.mktemp("enforce"), server_notices=True) as w:
        yield w


def say(world: MatrixWorld, user: User, room: str, text: str) -> Response:
    return world.hs.http.request(
        "PUT", f"/_matrix/client/v3/rooms/{room}/send/m.room.message/{secrets.token_hex(8)}",
        json_body={"msgtype": "m.text", "body": text}, token=user.access_token,
    )  # fmt: skip


def notices(world: MatrixWorld, user: User) -> list[dict[str, Any]]:
    """The m.room.message events the user sees in rooms they joined (the notice room is
    joined for them: ``auto_join``)."""
    r = world.hs.http.request("GET", "/_matrix/client/v3/sync?timeout=0", token=user.access_token)
    assert r.status == 200, r.body
    out = []
    for room in r.json().get("rooms", {}).get("join", {}).values():
        for ev in room.get("timeline", {}).get("events", []):
            if ev.get("type") == "m.room.message" and "org.blindmatch.statement" in ev["content"]:
                out.append(ev)
    return out


def appeal(world: MatrixWorld, user: User, body: dict[str, Any]) -> Response:
    return world.hs.http.request(
        "POST", "/_blindmatch/v1/appeal", json_body=body, token=user.access_token
    )


def test_confirm_suspend_notify_appeal_overturn(world: MatrixWorld, tmp_path: Path) -> None:
    s = world.new_sender(invite_recipient=True)
    assert say(world, s.user, s.room_id, "hello before").status == 200
    mxc, digest, _ = s.encrypted_upload(jpeg(synthetic_photo(LISTED_SEED)))
    blocked = s.send(voucher_field([(s.voucher_for(synthetic_photo(LISTED_SEED)), mxc, digest)]))
    case_id = rejection(blocked)["org.blindmatch.case"]
    assert world.download(mxc, world.recipient).status == 404  # quarantined

    admin_user = world.hs.register_user("moderator", secrets.token_hex(12), admin=True)
    token_file = tmp_path / "admin.token"
    token_file.write_text(admin_user.access_token + "\n")
    admin = SynapseAdmin.from_token_file(world.hs.url, token_file)
    engine = MatrixState.open(world.database_url).engine
    enforcer = Enforcer(engine, EnforcementPolicy.parse("suspend@1,deactivate@3"), admin)
    [case] = [c for c in MatrixState(engine).cases(account=s.user.user_id) if c.id == case_id]
    confirmed = ConfirmedCase(case.id, case.kind, case.account, case.room, case.event_id, "A1",
                              case.entry_refs, "rita", datetime.now(UTC))  # fmt: skip

    action = enforcer.on_confirmed(confirmed)
    assert (action.action, action.notified) == ("suspend", True)
    # Synapse itself refuses the suspended account's messages.
    refused = say(world, s.user, s.room_id, "hello while suspended")
    assert refused.status == 403 and refused.json()["errcode"] == "M_USER_SUSPENDED", refused.body
    # The statement of reasons reached the user, in a room they can read while suspended.
    [notice] = [n for n in notices(world, s.user)
                if n["content"]["org.blindmatch.statement"]["case"] == case_id]  # fmt: skip
    assert notice["event_id"] == action.notice_event_id
    assert "Statement of reasons" in notice["content"]["body"]
    assert "/_blindmatch/v1/appeal" in notice["content"]["body"]

    # Someone else cannot appeal it, and learns nothing: the answer of a case that does
    # not exist.
    other = world.new_sender()
    theirs = appeal(world, other.user, {"case_id": case_id, "text": "mine"})
    nothing = appeal(world, other.user, {"case_id": "BM-AAAA-BBBB-CCCC", "text": "mine"})
    assert theirs.status == nothing.status == 404 and theirs.json() == nothing.json()
    assert appeal(world, s.user, {"case_id": case_id}).status == 400
    # The suspended user appeals through the module.
    r = appeal(world, s.user, {"case_id": case_id, "text": "this is my own holiday photo"})
    assert r.status == 200, r.body
    appeal_id = r.json()["appeal"]
    again = appeal(world, s.user, {"case_id": case_id, "text": "again"})
    assert (again.status, again.json()["org.blindmatch.reason"]) == (409, "appeal_open")

    appeals = Appeals(engine, enforcer=enforcer)
    seniors = [Reviewer("rita", "senior"), Reviewer("sam", "senior")]
    assert appeals.assign(appeal_id, seniors).assigned_to == "sam"
    done, undone = appeals.decide(appeal_id, Reviewer("sam", "senior"), "overturned",
                                  "a false match")  # fmt: skip
    assert done.status == "overturned" and undone is not None
    assert (undone.lift, undone.restored) == ("lifted", [mxc])
    assert say(world, s.user, s.room_id, "hello after").status == 200
    assert world.download(mxc, world.recipient).status == 200  # restored
    engine.dispose()
