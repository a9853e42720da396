"""The review console in a real headless browser (Playwright, Debian's chromium) over a
real Synapse with the blindmatch module: a user reports a (benign, generated) picture, a
reviewer takes the case, reveals the picture and confirms it — Synapse then refuses the
sender's messages, and the confirmed case becomes a CyberTipline report that ``serve``'s
outbox worker sends to a local NCMEC conformance server —, the sender appeals through the
module, and a second senior reviewer overturns the decision in the console — the sender can
send again.

Screenshots of the main pages go to ``$BLINDMATCH_SCREENSHOTS`` when it is set (the
pictures in docs/review/ come from ``BLINDMATCH_SCREENSHOTS=docs/review``)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import secrets
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from blindmatch.demo.synthetic import synthetic_photo
from blindmatch.integrations.matrix.events import voucher_field
from blindmatch.integrations.matrix.homeserver import free_port
from blindmatch.protocol import EncryptedFile, encrypt_attachment, frank
from tests.integration.matrix.conftest import (
    LISTED_SEED,
    MatrixWorld,
    jpeg,
    rejection,
    running_world,
)
from tests.integration.matrix.test_enforcement import appeal, say
from tests.integration.matrix.test_reports import report

CHROMIUM = Path("/usr/bin/chromium")
PASSWORD = "a long reviewer password"


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixWorld]:
    with running_world(tmp_path_factory.mktemp("console"), server_notices=True) as w:
        yield w


class Served:
    """An ASGI app served by uvicorn on 127.0.0.1 in a background thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 60  # bounded wait for start-up, not a timing assertion
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.server.started, "uvicorn did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def test_review_take_reveal_confirm_appeal_overturn(
    world: MatrixWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with contextlib.ExitStack() as stack:
        _flow(world, tmp_path, monkeypatch, stack)


def _flow(world: MatrixWorld, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stack: Any) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (/usr/bin/chromium)")
    shots = os.environ.get("BLINDMATCH_SCREENSHOTS")

    def shot(page: Any, name: str) -> None:
        if shots:
            Path(shots).mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(Path(shots) / f"{name}.png"), full_page=True)

    # A user sends a franked picture message; the recipient reports it (a verified report
    # hands the server the attachment's key).
    s = world.new_sender(invite_recipient=True)
    assert say(world, s.user, s.room_id, "hello before").status == 200
    picture = jpeg(synthetic_photo(7))
    blob, keys = encrypt_attachment(picture)
    mxc = s.upload(blob)
    file = EncryptedFile(keys.key, keys.iv, keys.sha256, mxc)
    # The upload is bound by its voucher (the picture is not listed: the send goes through).
    franked = frank({"msgtype": "m.image", "body": "beach.jpg", "file": file.to_json()})
    sent = s.send(
        voucher_field([(s.voucher_for(synthetic_photo(7)), mxc, hashlib.sha256(blob).hexdigest())]),
        extra={"org.blindmatch.franking": {
            "v": 1, "commitment": base64.b64encode(franked.commitment).decode()}},
    )  # fmt: skip
    assert sent.status == 200, sent.body
    event_id, payload = str(sent.json()["event_id"]), dict(franked.payload)
    body = {"event_id": event_id, "room_id": s.room_id, "payload": payload,
            "reason": "unwanted picture"}  # fmt: skip
    r = report(world, world.recipient, body)
    assert r.status == 200, r.body
    case_id = r.json()["org.blindmatch.case"]
    # Another account sends the listed picture: blocked, a match case of category A1.
    other = world.new_sender(invite_recipient=True)
    blocked = rejection(other.send_image(synthetic_photo(LISTED_SEED)))["org.blindmatch.case"]
    media_id = mxc.rsplit("/", 1)[-1]

    # The operator's console, as `blindmatch serve` mounts it, enforcing through Synapse.
    admin_user = world.hs.register_user("moderator", secrets.token_hex(12), admin=True)
    token_file = tmp_path / "admin.token"
    token_file.write_text(admin_user.access_token + "\n")
    for k, v in {"BLINDMATCH_HOME": str(tmp_path / "home"),
                 "BLINDMATCH_DATABASE_URL": world.database_url,
                 "BLINDMATCH_SYNAPSE_URL": world.hs.url,
                 "BLINDMATCH_SYNAPSE_ADMIN_TOKEN_FILE": str(token_file),
                 "BLINDMATCH_SYNAPSE_MEDIA_PATH": str(world.hs.root / "media"),
                 "BLINDMATCH_ENFORCEMENT_POLICY": "suspend@1,deactivate@3"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    # NCMEC: a local conformance server stands in for the CyberTipline (never the real one).
    from blindmatch.ncmec.conformance import running as ncmec_running

    ncmec = stack.enter_context(ncmec_running())
    password_file = tmp_path / "ncmec.password"
    password_file.write_text("secret\n")
    for k, v in {"BLINDMATCH_NCMEC_URL": ncmec.base_url, "BLINDMATCH_NCMEC_USER": "esp",
                 "BLINDMATCH_NCMEC_PASSWORD_FILE": str(password_file),
                 "BLINDMATCH_NCMEC_REPORTER_EMAIL": "safety@platform.invalid",
                 "BLINDMATCH_NCMEC_INTERVAL_SECONDS": "0.2"}.items():  # fmt: skip
        monkeypatch.setenv(k, v)
    from blindmatch.review import Review, Reviewers
    from blindmatch.runtime import open_runtime
    from blindmatch.service import create_app

    rt = open_runtime()
    reviewers = Reviewers(rt.store.engine)
    reviewers.add("rita", PASSWORD, "senior")
    reviewers.add("sam", PASSWORD, "senior")

    with Served(create_app(rt)) as served, sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=["--no-sandbox"])  # fmt: skip
        base = f"{served.url}/review"

        def log_in(name: str) -> Any:
            page = browser.new_context(viewport={"width": 1200, "height": 900}).new_page()
            page.goto(f"{base}/queue")
            assert page.url == f"{base}/login"  # no page without a session
            page.fill("#name", name)
            page.fill("#password", PASSWORD)
            return page

        # Reviewer A: log in, take the case from the queue, reveal the picture, confirm A1.
        a = log_in("rita")
        shot(a, "login")
        a.click("form[action$='/login'] button")
        assert a.url == f"{base}/queue"
        order = a.eval_on_selector_all("tr.case-row", "rs => rs.map(r => r.dataset.case)")
        assert {blocked, case_id} <= set(order)
        assert order == [c.id for c in Review(rt.store.engine).queue()]  # the library's order
        row = a.locator(f"tr[data-case='{case_id}']")
        assert row.count() == 1 and "report" in row.inner_text()
        shot(a, "queue")
        row.locator("button", has_text="Take").click()
        assert a.url == f"{base}/cases/{case_id}"
        assert a.inner_text("#assignee") == "rita"
        fig = f"figure[data-media='{media_id}']"
        assert "blurred" in (a.get_attribute(fig, "class") or "")
        img = f"{fig} img"
        a.wait_for_function("s => document.querySelector(s).complete", arg=img)
        assert a.eval_on_selector(img, "e => e.naturalWidth") > 0  # served, decrypted
        assert "blur" in a.eval_on_selector(img, "e => getComputedStyle(e).filter")
        assert "revealed today: 0" in a.inner_text("#exposures")
        shot(a, "case-blurred")
        a.click(f"{fig} button")
        assert "revealed" in (a.get_attribute(fig, "class") or "")
        a.wait_for_function("s => document.querySelector(s).complete", arg=img)
        style = a.eval_on_selector(img, "e => getComputedStyle(e).filter")
        assert "blur" not in style and "grayscale" in style
        assert "revealed today: 1" in a.inner_text("#exposures")
        shot(a, "case-revealed")
        a.select_option("#decision", "confirmed")
        a.select_option("#category", "A1")
        a.fill("#reason", "checked against the report")
        a.click("#decide-form button")
        assert "Decision recorded" in a.inner_text("#done")
        assert a.inner_text("#status") == "decided"
        assert "suspend" in a.inner_text("#enforcement")
        # The confirmed case became a CyberTipline report: queued, then sent by `serve`'s
        # outbox worker (bounded wait for the worker's round, not a timing assertion).
        assert a.locator("#ncmec").count() == 1
        deadline = time.monotonic() + 60
        while "finished" not in a.inner_text("#ncmec") and time.monotonic() < deadline:
            time.sleep(0.3)
            a.reload()
        assert "finished" in a.inner_text("#ncmec"), a.inner_text("#ncmec")
        [sent_report] = ncmec.reports.values()
        assert sent_report.state == "finished" and len(sent_report.files) == 1
        disabled = ET.fromstring(sent_report.xml).find(
            "personOrUserReported/accountTemporarilyDisabled"
        )  # the report says the account was suspended, and when
        assert disabled is not None and disabled.text == "true" and disabled.get("disabledDate")

        # Synapse itself refuses the suspended sender's messages.
        refused = say(world, s.user, s.room_id, "hello while suspended")
        assert refused.status == 403 and refused.json()["errcode"] == "M_USER_SUSPENDED"
        # The sender appeals through the module's endpoint.
        r = appeal(world, s.user, {"case_id": case_id, "text": "it is a beach photo"})
        assert r.status == 200, r.body
        appeal_id = r.json()["appeal"]

        # Reviewer A decided the case: the console refuses them its appeal.
        a.goto(f"{base}/appeals")
        a.locator(f"[data-appeal='{appeal_id}'] button", has_text="Assign to me").click()
        assert "other than the one who decided" in a.inner_text("#error")

        # Senior reviewer B takes the appeal and overturns the decision.
        b = log_in("sam")
        b.click("form[action$='/login'] button")
        b.goto(f"{base}/appeals")
        b.locator(f"[data-appeal='{appeal_id}'] button", has_text="Assign to me").click()
        box = b.locator(f"[data-appeal='{appeal_id}']")
        assert "sam" in box.inner_text()
        box.locator("select").select_option("overturned")
        box.locator("textarea").fill("an ordinary beach photo, not abuse")
        shot(b, "appeal")
        box.locator("button", has_text="Decide appeal").click()
        assert "overturned" in b.inner_text("#decided-appeals")
        b.goto(f"{base}/cases/{case_id}")
        assert "false_positive" in b.inner_text("#decision")
        browser.close()

    assert say(world, s.user, s.room_id, "hello after").status == 200
    from blindmatch.review import AuditLog

    audit = AuditLog(rt.store.engine)
    done = [(e.actor, e.action) for e in audit.entries(subject=f"case:{case_id}")]
    assert ("reviewer:rita", "media.reveal") in done and ("reviewer:rita", "media.view") in done
    assert audit.verify().ok
    rt.store.engine.dispose()
