"""The review console (``blindmatch.service.console``) through FastAPI's TestClient: login,
sessions and CSRF, the queue, a case page with its decision, the wellness defaults and the
audit of every reveal, escalation, appeals by a different senior reviewer, errors."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.protocol import encrypt_attachment
from blindmatch.review.appeals import Appeals
from blindmatch.review.enforcement import EnforcementPolicy, Enforcer
from blindmatch.review.operator import Operator, ReportMedia
from blindmatch.service.console import SECURITY_HEADERS, create_console
from tests.review.conftest import PASSWORD, World


@dataclass
class FakeAdmin:
    """Synapse's admin API as the enforcer calls it, recorded."""

    calls: list[tuple[str, ...]] = field(default_factory=list)

    def suspend(self, user_id: str, suspend: bool = True) -> None:
        self.calls.append(("suspend" if suspend else "unsuspend", user_id))

    def deactivate(self, user_id: str) -> None:
        self.calls.append(("deactivate", user_id))

    def send_server_notice(self, user_id: str, content: Mapping[str, Any]) -> str:
        self.calls.append(("notice", user_id))
        return f"$notice{len(self.calls)}"

    def unquarantine_media(self, server_name: str, media_id: str) -> None:
        self.calls.append(("unquarantine", media_id))


@dataclass
class Console:
    world: World
    operator: Operator
    admin: FakeAdmin
    media_path: Path

    def client(self) -> TestClient:
        return TestClient(create_console(self.operator), raise_server_exceptions=False)


@pytest.fixture
def console(world: World, tmp_path: Path) -> Console:
    admin = FakeAdmin()
    engine = world.store.engine
    enforcer = Enforcer(engine, EnforcementPolicy.parse("suspend@1,deactivate@3"), admin,
                        audit=world.audit.append)  # fmt: skip
    media_path = tmp_path / "media"
    appeals = Appeals(engine, enforcer=enforcer, audit=world.audit.append)
    media = ReportMedia(engine, media_path, world.audit)
    op = Operator(engine, enforcer=enforcer, appeals=appeals, media=media, audit=world.audit)
    for name, role in (("rita", "reviewer"), ("sam", "senior"), ("tess", "senior"),
                       ("ada", "admin")):  # fmt: skip
        world.reviewers.add(name, PASSWORD, role)
    return Console(world, op, admin, media_path)


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html
    return m.group(1)


def login(client: TestClient, name: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    form = {"name": name, "password": password, "csrf": _csrf(page.text)}
    return client.post("/login", data=form, follow_redirects=False)


def logged_in(console: Console, name: str) -> tuple[TestClient, str]:
    c = console.client()
    r = login(c, name)
    assert r.status_code == 303 and r.headers["location"] == "/queue", r.text
    return c, _csrf(c.get("/queue").text)


def report_case(console: Console, account: str = "@mallory:x", *, store_blob: bool = True,
                tamper: bool = False) -> tuple[str, bytes, str]:  # fmt: skip
    """A verified report of a (benign, generated) picture as the module stores it, with the
    encrypted attachment in a Synapse-style media store; (case id, picture, media id)."""
    buf = io.BytesIO()
    synthetic_photo(3).save(buf, format="JPEG", quality=85)
    picture = buf.getvalue()
    media_id = "AbCdEfGhIjKlMnOp" + str(len(console.world.state.cases()))
    blob, file = encrypt_attachment(picture, url=f"mxc://hs.test/{media_id}")
    if store_blob:
        d = console.media_path / "local_content" / media_id[:2] / media_id[2:4]
        d.mkdir(parents=True, exist_ok=True)
        (d / media_id[4:]).write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]) if tamper else blob)
    payload = {"msgtype": "m.image", "body": "holiday.jpg", "file": file.to_json(),
               "org.matrix.msc4xxx.franking_key": "k"}  # fmt: skip
    evidence = {
        "format": "blindmatch-report", "version": 1, "reporter": "@bob:x", "reason": "abuse",
        "event_id": "$ev", "room_id": "!r:x", "sender": account, "origin_server_ts": 1,
        "commitment": "00", "tag": "00", "payload": payload,
        "context": [{"event_id": "$c1", "verified": True,
                     "payload": {"msgtype": "m.text", "body": "look at this"}},
                    {"event_id": "$c2", "verified": False,
                     "payload": {"msgtype": "m.text", "body": "claimed text"}}],
    }  # fmt: skip
    case_id = console.world.state.add_case(
        kind="report", account=account, room="!r:x", event_id="$ev",
        blobs=[f"mxc://hs.test/{media_id}"], evidence=json.dumps(evidence).encode(),
    )  # fmt: skip
    return case_id, picture, media_id


def figure_classes(html: str) -> dict[str, str]:
    return {m.group(2): m.group(1) for m in re.finditer(
        r'<figure class="pic (\w+)" data-media="([^"]+)"', html)}  # fmt: skip


def status_of(console: Console, case_id: str) -> str:
    return console.world.review.summary(case_id).status


def actions(console: Console, subject: str) -> list[str]:
    return [e.action for e in console.world.audit.entries(subject=subject)]


# -- login, sessions, CSRF ---------------------------------------------------------------------
def test_no_page_without_a_session(console: Console) -> None:
    case_id = console.world.match_case("@a:x", "e-a1")
    c = console.client()
    for path in ("/", "/queue", f"/cases/{case_id}", "/appeals", "/admin",
                 f"/cases/{case_id}/media/AbCdEfGh"):  # fmt: skip
        r = c.get(path, follow_redirects=False)
        assert (r.status_code, r.headers.get("location")) == (303, "/login"), path
        assert case_id not in r.text
    r = c.post(f"/cases/{case_id}/decide", data={"decision": "false_positive", "csrf": "x"},
               follow_redirects=False)  # fmt: skip
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert status_of(console, case_id) == "open"
    # A made-up session cookie is no session.
    c.cookies.set("blindmatch_review", "forged")
    assert c.get("/queue", follow_redirects=False).status_code == 303
    login_page = c.get("/login")
    assert login_page.status_code == 200 and 'name="password"' in login_page.text


def test_wrong_password_and_login_csrf_are_refused(console: Console) -> None:
    c = console.client()
    r = login(c, "rita", "not the password at all")
    assert r.status_code == 401 and "Wrong name or password" in r.text
    assert "blindmatch_review" not in c.cookies
    assert login(c, "nobody", PASSWORD).status_code == 401
    # The login form's double-submit token must match its cookie.
    c.get("/login")
    r = c.post("/login", data={"name": "rita", "password": PASSWORD, "csrf": "guess"},
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 403 and "blindmatch_review" not in c.cookies
    assert c.get("/queue", follow_redirects=False).status_code == 303
    ok = login(c, "rita")
    assert ok.status_code == 303
    cookie = ok.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")


def test_a_post_without_the_session_csrf_token_changes_nothing(console: Console) -> None:
    case_id = console.world.match_case("@a:x", "e-a1")
    c, token = logged_in(console, "rita")
    for data in ({"decision": "false_positive"},
                 {"decision": "false_positive", "csrf": "wrong" + token}):  # fmt: skip
        r = c.post(f"/cases/{case_id}/decide", data=data, follow_redirects=False)
        assert r.status_code == 403 and "CSRF" in r.text
    assert c.post(f"/cases/{case_id}/take", data={}).status_code == 403
    assert c.post(f"/cases/{case_id}/note", data={"text": "x", "csrf": ""}).status_code == 403
    # Another reviewer's token is not this session's.
    _, other = logged_in(console, "sam")
    assert c.post(f"/cases/{case_id}/close", data={"reason": "x", "csrf": other}).status_code == 403
    assert c.post("/logout", data={}).status_code == 403
    s = console.world.review.summary(case_id)
    assert (s.status, s.assignee, s.decision) == ("open", None, None)
    assert not {"case.decide", "case.assign", "case.note", "case.close"} & set(
        actions(console, f"case:{case_id}"))  # fmt: skip
    assert c.get("/queue", follow_redirects=False).status_code == 200  # still logged in
    # With the token, the same form works.
    r = c.post(f"/cases/{case_id}/decide", data={"decision": "false_positive", "csrf": token},
               follow_redirects=False)  # fmt: skip
    assert r.status_code == 303 and status_of(console, case_id) == "decided"


def test_logout_ends_the_session(console: Console) -> None:
    c, token = logged_in(console, "rita")
    cookie = c.cookies["blindmatch_review"]
    r = c.post("/logout", data={"csrf": token}, follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/login")
    assert c.get("/queue", follow_redirects=False).status_code == 303
    # The old cookie is dead on the server too, not only deleted in the browser.
    again = console.client()
    again.cookies.set("blindmatch_review", cookie)
    assert again.get("/queue", follow_redirects=False).status_code == 303


def test_a_disabled_reviewer_is_logged_out_at_once(console: Console) -> None:
    case_id = console.world.match_case("@a:x", "e-a1")
    c, token = logged_in(console, "rita")
    assert c.get("/queue").status_code == 200
    console.world.reviewers.set_disabled("rita")
    assert c.get("/queue", follow_redirects=False).status_code == 303
    r = c.post(f"/cases/{case_id}/take", data={"csrf": token}, follow_redirects=False)
    assert r.headers["location"] == "/login" and status_of(console, case_id) == "open"
    assert console.world.review.summary(case_id).assignee is None
    assert login(c, "rita").status_code == 401


def test_security_headers_and_readable_errors(console: Console) -> None:
    c, _ = logged_in(console, "rita")
    for path in ("/queue", "/login", "/cases/BM-NOPE", "/no/such/page", "/admin"):
        r = c.get(path)
        for k, v in SECURITY_HEADERS.items():
            assert r.headers[k] == v, (path, k)
        assert "script-src" not in r.headers["Content-Security-Policy"]  # default-src 'none'
    nope = c.get("/cases/BM-NOPE")
    assert nope.status_code == 404 and "no case" in nope.text and "Traceback" not in nope.text
    assert c.get("/admin").status_code == 403  # a reviewer is no admin
    assert c.get("/queue?kind=bogus").status_code == 422


# -- the queue and a case ---------------------------------------------------------------------
def test_the_queue_sorts_gravest_first_then_oldest(console: Console) -> None:
    w = console.world
    report_id, _, _ = report_case(console)  # no listed category: last
    b2 = w.match_case("@b:x", "e-b2")
    a1 = w.match_case("@c:x", "e-a1")  # newest, gravest
    a1_later = w.match_case("@d:x", "e-a1")
    c, _ = logged_in(console, "rita")
    page = c.get("/queue").text
    shown = re.findall(r'data-case="([^"]+)"', page)
    assert shown == [a1, a1_later, b2, report_id]
    assert shown == [s.id for s in w.review.queue()]
    assert re.findall(r'data-case="([^"]+)"', c.get("/queue?kind=report").text) == [report_id]
    assert re.findall(r'data-case="([^"]+)"', c.get("/queue?kind=match").text) == [a1, a1_later,
                                                                                    b2]  # fmt: skip


def test_take_and_decide_from_the_page(console: Console) -> None:
    w = console.world
    case_id = w.match_case("@mallory:x", "e-a1")
    c, token = logged_in(console, "rita")
    assert c.post(f"/cases/{case_id}/take", data={"csrf": token}).status_code == 200
    assert w.review.summary(case_id).assignee == "rita"
    page = c.get(f"/cases/{case_id}").text
    assert "e-a1" in page and "cat-A1" in page and "hl-a" in page
    # Confirmed without a category: the library's message, not a 500.
    r = c.post(f"/cases/{case_id}/decide", data={"decision": "confirmed", "csrf": token})
    assert r.status_code == 422 and "category" in r.text and status_of(console, case_id) == "open"
    r = c.post(f"/cases/{case_id}/note", data={"text": "matches the listed picture",
                                               "csrf": token})  # fmt: skip
    assert "matches the listed picture" in r.text
    r = c.post(
        f"/cases/{case_id}/decide",
        data={
            "decision": "confirmed",
            "category": "A1",
            "reason": "listed, checked",
            "csrf": token,
        },
    )
    assert r.status_code == 200 and "Decision recorded" in r.text
    s = w.review.summary(case_id)
    assert (s.status, s.decision, s.category) == ("decided", "confirmed", "A1")
    assert ("suspend", "@mallory:x") in console.admin.calls  # the enforcer ran
    assert "suspend (offence 1)" in c.get(f"/cases/{case_id}").text
    # Decided: no second decision from the page.
    r = c.post(f"/cases/{case_id}/decide", data={"decision": "false_positive", "csrf": token})
    assert r.status_code == 409 and w.review.summary(case_id).decision == "confirmed"


def test_an_escalated_case_is_decided_by_a_senior_only(console: Console) -> None:
    case_id = console.world.match_case("@a:x", "e-b2")
    rita, rt = logged_in(console, "rita")
    rita.post(f"/cases/{case_id}/decide", data={"decision": "escalate", "csrf": rt})
    assert status_of(console, case_id) == "escalated"
    page = rita.get(f"/cases/{case_id}").text
    assert 'id="decide-form"' not in page and "senior reviewer" in page
    r = rita.post(f"/cases/{case_id}/decide", data={"decision": "false_positive", "csrf": rt})
    assert r.status_code == 403 and "senior" in r.text and "Traceback" not in r.text
    assert status_of(console, case_id) == "escalated"
    sam, st = logged_in(console, "sam")
    assert 'id="decide-form"' in sam.get(f"/cases/{case_id}").text
    r = sam.post(f"/cases/{case_id}/decide", data={"decision": "false_positive", "csrf": st})
    assert r.status_code == 200 and console.world.review.summary(case_id).decision == (
        "false_positive")  # fmt: skip


# -- pictures: wellness and audit --------------------------------------------------------------
def test_pictures_are_blurred_until_a_reveal_that_is_audited_and_counted(console: Console) -> None:
    case_id, _, media_id = report_case(console)
    other_id, _, other_media = report_case(console, "@eve:x")
    c, token = logged_in(console, "rita")
    page = c.get(f"/cases/{case_id}").text
    assert figure_classes(page) == {media_id: "blurred"}
    assert "revealed today: 0" in page
    assert "franking verified" in page and "NOT verified" in page and "claimed text" in page
    r = c.post(f"/cases/{case_id}/reveal", data={"media": media_id, "csrf": token})
    assert r.status_code == 200 and figure_classes(r.text) == {media_id: "revealed"}
    assert "revealed today: 1" in r.text
    [e] = console.world.audit.entries(subject=f"case:{case_id}", action="media.reveal")
    assert (e.actor, e.detail) == ("reviewer:rita", {"media": media_id})
    # The reveal holds for that answer only: the page is blurred again when loaded.
    assert figure_classes(c.get(f"/cases/{case_id}").text) == {media_id: "blurred"}
    # One picture at a time: revealing another case's picture shows that one only.
    r = c.post(f"/cases/{other_id}/reveal", data={"media": other_media, "csrf": token})
    assert figure_classes(r.text) == {other_media: "revealed"} and "revealed today: 2" in r.text
    assert console.world.review.exposures_today(console.world.reviewers.get("rita")) == 2
    # Revealing without the token, or a picture the case does not have: refused, not counted.
    assert c.post(f"/cases/{case_id}/reveal", data={"media": media_id}).status_code == 403
    assert (
        c.post(f"/cases/{case_id}/reveal", data={"media": other_media, "csrf": token}).status_code
        == 422
    )
    assert console.world.review.exposures_today(console.world.reviewers.get("rita")) == 2


def test_the_picture_route_is_audited_and_never_cached(console: Console) -> None:
    case_id, picture, media_id = report_case(console)
    c, _ = logged_in(console, "rita")
    r = c.get(f"/cases/{case_id}/media/{media_id}")
    assert r.status_code == 200 and r.content == picture
    assert r.headers["content-type"] == "image/jpeg"
    assert r.headers["cache-control"] == "no-store"
    [e] = console.world.audit.entries(subject=f"case:{case_id}", action="media.view")
    assert (e.actor, e.detail) == ("reviewer:rita", {"media": media_id})
    assert c.get(f"/cases/{case_id}/media/Nope12345").status_code == 404
    # A confirmed case hands the decrypted picture on, with whether it was revealed.
    files = console.operator.media(case_id) if console.operator.media else []
    assert [(f.data, f.viewed_by_reviewer) for f in files] == [(picture, False)]


def test_a_missing_or_replaced_blob_shows_no_picture_and_says_why(console: Console) -> None:
    gone, _, gone_media = report_case(console, store_blob=False)
    swapped, _, swapped_media = report_case(console, tamper=True)
    match = console.world.match_case("@a:x", "e-a1")
    c, _ = logged_in(console, "rita")
    page = c.get(f"/cases/{gone}").text
    assert figure_classes(page) == {} and "not in the media store" in page
    page = c.get(f"/cases/{swapped}").text
    assert figure_classes(page) == {} and "does not match the reported message" in page
    assert c.get(f"/cases/{swapped}/media/{swapped_media}").status_code == 404
    assert c.get(f"/cases/{gone}/media/{gone_media}").status_code == 404
    assert "end-to-end encrypted upload" in c.get(f"/cases/{match}").text


# -- appeals ---------------------------------------------------------------------------------
def test_an_appeal_is_decided_by_a_different_senior_only(console: Console) -> None:
    w = console.world
    case_id = w.match_case("@mallory:x", "e-a1")
    sam, s_tok = logged_in(console, "sam")
    sam.post(f"/cases/{case_id}/decide", data={"decision": "confirmed", "category": "A1",
                                               "csrf": s_tok})  # fmt: skip
    assert ("suspend", "@mallory:x") in console.admin.calls
    appeal = console.operator.appeals.open(case_id, "@mallory:x", "my own holiday photo")
    rita, _ = logged_in(console, "rita")
    assert rita.get("/appeals").status_code == 403  # a reviewer has no appeals page
    page = sam.get("/appeals").text
    assert appeal.id in page and "my own holiday photo" in page
    # The senior who decided the case cannot take, nor decide, its appeal.
    r = sam.post(f"/appeals/{appeal.id}/assign", data={"csrf": s_tok})
    assert r.status_code == 403 and "other than the one who decided" in r.text
    r = sam.post(f"/appeals/{appeal.id}/decide", data={"outcome": "overturned", "reason": "x",
                                                       "csrf": s_tok})  # fmt: skip
    assert r.status_code == 403
    assert w.review.summary(case_id).decision == "confirmed"
    tess, t_tok = logged_in(console, "tess")
    assert tess.post(f"/appeals/{appeal.id}/assign", data={"csrf": t_tok}).status_code == 200
    assert console.operator.appeals.get(appeal.id).assigned_to == "tess"
    r = tess.post(f"/appeals/{appeal.id}/decide", data={"outcome": "overturned",
                                                        "reason": "not the listed picture",
                                                        "csrf": t_tok})  # fmt: skip
    assert r.status_code == 200 and "not the listed picture" in r.text
    assert console.operator.appeals.get(appeal.id).status == "overturned"
    s = w.review.summary(case_id)
    assert (s.decision, s.category) == ("false_positive", None)  # the case shows the outcome
    assert ("unsuspend", "@mallory:x") in console.admin.calls
    assert "appeal.overturned" in actions(console, f"case:{case_id}")


# -- wiring ---------------------------------------------------------------------------------
def test_from_settings_enforces_only_with_a_synapse_url(world: World, tmp_path: Path) -> None:
    from blindmatch.config import load_settings

    settings = load_settings({"BLINDMATCH_HOME": str(tmp_path)})
    said: list[str] = []
    off = Operator.from_settings(settings, engine=world.store.engine, environ={}, say=said.append)
    assert off.enforcer is None and off.on_confirmed == []
    assert any("enforcement off" in s for s in said)
    assert any("BLINDMATCH_SYNAPSE_MEDIA_PATH is not set" in s for s in said)
    token = tmp_path / "t"
    token.write_text("secret-admin-token\n")
    env = {"BLINDMATCH_SYNAPSE_URL": "http://127.0.0.1:9", "BLINDMATCH_SYNAPSE_ADMIN_TOKEN_FILE":
           str(token), "BLINDMATCH_SYNAPSE_MEDIA_PATH": str(tmp_path)}  # fmt: skip
    on = Operator.from_settings(settings, engine=world.store.engine, environ=env, say=said.append)
    assert on.enforcer is not None and on.on_confirmed == [on.enforcer.on_confirmed]
    # The list the NCMEC outbox joins is the one the review calls.
    seen: list[str] = []
    on.on_confirmed.clear()
    on.on_confirmed.append(lambda c: seen.append(c.case_id))
    case_id = world.match_case("@a:x", "e-a1")
    on.review.decide(case_id, world.reviewers.add("rita", PASSWORD), "confirmed", category="A1")
    assert seen == [case_id]


def test_blindmatch_serve_mounts_the_console_at_review(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from blindmatch.runtime import open_runtime
    from blindmatch.service import create_app

    monkeypatch.setenv("BLINDMATCH_HOME", str(tmp_path))
    monkeypatch.delenv("BLINDMATCH_DATABASE_URL", raising=False)
    monkeypatch.delenv("BLINDMATCH_SYNAPSE_URL", raising=False)
    client = TestClient(create_app(open_runtime()))
    r = client.get("/review/queue", follow_redirects=False)
    assert (r.status_code, r.headers["location"]) == (303, "/review/login")
    page = client.get("/review/login")
    assert page.status_code == 200 and 'action="/review/login"' in page.text
    assert "Path=/review" in page.headers["set-cookie"]
    assert client.get("/review/static/console.css").headers["content-type"].startswith("text/css")
