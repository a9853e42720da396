"""The review console: server-rendered pages over :class:`~blindmatch.review.operator.Operator`
(issue 13). ``blindmatch serve`` mounts it at ``/review``; docs/review.md explains it.

* No page but the login page without a session (a redirect to it). Login checks the
  password (argon2, :meth:`Reviewers.authenticate`) and a double-submit CSRF cookie; the
  session is a random token in an HttpOnly, SameSite=Strict cookie (Secure over https)
  that the database knows by its hash. A disabled reviewer's sessions end at once.
* Every POST carries the session's CSRF token (``csrf`` form field): without it, or with
  another, 403 and nothing changes. Logout is a POST.
* Pictures are blurred and greyscale by default (CSS). ``POST /cases/ID/reveal`` reveals
  one picture, audited (``media.reveal``) and counted (the daily exposure counter in the
  header); only the page it answers shows it unblurred. Picture bytes come from
  ``/cases/ID/media/MEDIA``, which is audited too (``media.view``) and never cached.
* Security headers on every answer: a CSP without inline scripts or styles (the console
  uses no script at all), ``X-Frame-Options: DENY``, ``Referrer-Policy: no-referrer``,
  ``Cache-Control: no-store``, ``X-Content-Type-Options: nosniff``.
* A library error (:class:`~blindmatch.errors.BlindmatchError`) is a readable page with its
  status; anything else a plain 500 page, never a traceback.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from blindmatch.errors import (
    AppealRefused,
    BlindmatchError,
    CaseNotFound,
    EnforcementFailed,
    InvalidArgument,
    InvalidCaseState,
    NotAllowed,
    ReviewerNotFound,
)
from blindmatch.review.cases import KINDS
from blindmatch.review.operator import Operator
from blindmatch.review.reviewers import Reviewer, Session, same_token
from blindmatch.review.types import CONFIRM_CATEGORIES

SESSION_COOKIE = "blindmatch_review"
LOGIN_CSRF_COOKIE = "blindmatch_login_csrf"
QUEUE_TABS = ("all", "match", "report", "threshold")
MAX_FORM_FIELD = 20_000
_HERE = Path(__file__).parent
log = logging.getLogger("blindmatch.console")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; media-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class LoginRequired(Exception):
    """No live session: answered by a redirect to the login page."""


class CsrfRefused(Exception):
    """A POST without the session's CSRF token."""


def _status(e: BlindmatchError) -> int:
    if isinstance(e, AppealRefused):
        return {"unknown_appeal": 404, "appeal_decided": 409, "appeal_open": 409,
                "own_decision": 403, "not_assigned": 403,
                "no_eligible_reviewer": 403}.get(e.reason, 422)  # fmt: skip
    for cls, status in ((CaseNotFound, 404), (ReviewerNotFound, 404), (NotAllowed, 403),
                        (InvalidCaseState, 409), (InvalidArgument, 422),
                        (EnforcementFailed, 502)):  # fmt: skip
        if isinstance(e, cls):
            return status
    return 400


def age(t: datetime | None, now: datetime | None = None) -> str:
    """``t``'s age in words a queue shows: ``12 min``, ``5 h``, ``3 d``."""
    if t is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(UTC)) - t).total_seconds()))
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def create_console(operator: Operator) -> FastAPI:
    """The console as an ASGI app over ``operator`` (mount it, e.g. at ``/review``)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, title="blindmatch review")
    env = Environment(
        loader=FileSystemLoader(str(_HERE / "templates")),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["age"] = age
    env.filters["when"] = lambda t: t.strftime("%Y-%m-%d %H:%M UTC") if t else "-"
    css = (_HERE / "static" / "console.css").read_bytes()
    review, reviewers, audit = operator.review, operator.reviewers, operator.audit

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    def cookie_path(request: Request) -> str:
        return base(request) or "/"

    def render(request: Request, template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        sess: Session | None = getattr(request.state, "session", None)
        me = sess.reviewer if sess else None
        ctx.update(
            base=base(request), me=me, csrf=sess.csrf if sess else None,
            exposures=review.exposures_today(me) if me else None,
        )  # fmt: skip
        return HTMLResponse(env.get_template(template).render(**ctx), status_code=status)

    def session_of(request: Request) -> Session:
        sess = reviewers.session(request.cookies.get(SESSION_COOKIE))
        if sess is None:
            raise LoginRequired()
        request.state.session = sess
        return sess

    async def posted(request: Request) -> tuple[Session, dict[str, str]]:
        """The session and form of a POST whose CSRF token is the session's."""
        sess = session_of(request)
        form = await request.form()
        fields = {k: v for k, v in form.items() if isinstance(v, str)}
        if not same_token(fields.get("csrf"), sess.csrf):
            audit.append(f"reviewer:{sess.reviewer.name}", "console.csrf_refused",
                         f"path:{request.url.path}"[:200])  # fmt: skip
            raise CsrfRefused()
        for k, v in fields.items():
            if len(v) > MAX_FORM_FIELD:
                raise InvalidArgument(f"the field {k!r} is longer than {MAX_FORM_FIELD} characters")
        return sess, fields

    def need(me: Reviewer, role: str, what: str) -> None:
        if not me.can(role):
            raise NotAllowed(f"{what} needs the role {role} or higher (you are {me.role})")

    def redirect(request: Request, path: str) -> RedirectResponse:
        return RedirectResponse(base(request) + path, status_code=303)

    # -- errors and headers ---------------------------------------------------------------
    @app.middleware("http")
    async def _headers(request: Request, call_next: Callable[[Request], Awaitable[Response]]
                       ) -> Response:  # fmt: skip
        response = await call_next(request)
        for k, v in SECURITY_HEADERS.items():
            response.headers.setdefault(k, v)
        return response

    @app.exception_handler(LoginRequired)
    async def _login(request: Request, _: LoginRequired) -> Response:
        r = redirect(request, "/login")
        if request.cookies.get(SESSION_COOKIE):
            r.delete_cookie(SESSION_COOKIE, path=cookie_path(request))
        return r

    @app.exception_handler(CsrfRefused)
    async def _csrf(request: Request, _: CsrfRefused) -> Response:
        return render(request, "error.html", 403, title="Refused",
                      message="This form was not sent from your console session (missing or "
                      "wrong CSRF token). Nothing was changed: reload the page and try "
                      "again.")  # fmt: skip

    @app.exception_handler(BlindmatchError)
    async def _bm(request: Request, e: BlindmatchError) -> Response:
        status = _status(e)
        message = e.message
        if isinstance(e, EnforcementFailed):
            message = ("The decision is recorded, but enforcing it at Synapse failed: "
                       f"{e.message}")  # fmt: skip
        return render(request, "error.html", status, title="Not done", message=message,
                      code=e.code)  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> Response:
        text = {404: "There is no such page.", 405: "That is not how this page is used."}
        return render(request, "error.html", e.status_code, title="Not found"
                      if e.status_code == 404 else "Refused",
                      message=text.get(e.status_code, str(e.detail)))  # fmt: skip

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception) -> Response:
        log.exception("review console: unexpected failure")
        return render(request, "error.html", 500, title="Internal error",
                      message="Something failed inside the console; it is logged. Nothing "
                      "is shown of it here.")  # fmt: skip

    # -- static ---------------------------------------------------------------------------
    @app.get("/static/console.css", include_in_schema=False)
    def _css() -> Response:
        return Response(css, media_type="text/css")

    # -- login ----------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def home(request: Request) -> Response:
        session_of(request)
        return redirect(request, "/queue")

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request) -> Response:
        if reviewers.session(request.cookies.get(SESSION_COOKIE)) is not None:
            return redirect(request, "/queue")
        token = secrets.token_urlsafe(32)
        r = render(request, "login.html", login_csrf=token)
        r.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=900, path=cookie_path(request),
                     httponly=True, samesite="strict",
                     secure=request.url.scheme == "https")  # fmt: skip
        return r

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = await request.form()
        name, password = str(form.get("name", ""))[:64], str(form.get("password", ""))[:1024]
        if not same_token(str(form.get("csrf", "")), request.cookies.get(LOGIN_CSRF_COOKIE)):
            return render(request, "error.html", 403, title="Refused",
                          message="The login form has expired or was not sent from this "
                          "console. Open the login page again.")  # fmt: skip
        who = reviewers.authenticate(name, password)
        if who is None:
            audit.append("system", "reviewer.login_failed", f"reviewer:{name or '-'}")
            token = secrets.token_urlsafe(32)
            again = render(request, "login.html", 401, login_csrf=token, name=name,
                           error="Wrong name or password, or the account is disabled.")  # fmt: skip
            again.set_cookie(LOGIN_CSRF_COOKIE, token, max_age=900, path=cookie_path(request),
                             httponly=True, samesite="strict",
                             secure=request.url.scheme == "https")  # fmt: skip
            return again
        token, _csrf = reviewers.start_session(who)
        audit.append(f"reviewer:{who.name}", "reviewer.login", f"reviewer:{who.name}")
        r = redirect(request, "/queue")
        r.set_cookie(SESSION_COOKIE, token, path=cookie_path(request), httponly=True,
                     samesite="strict", secure=request.url.scheme == "https")  # fmt: skip
        r.delete_cookie(LOGIN_CSRF_COOKIE, path=cookie_path(request))
        return r

    @app.post("/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        sess, _ = await posted(request)
        reviewers.end_session(request.cookies.get(SESSION_COOKIE))
        audit.append(f"reviewer:{sess.reviewer.name}", "reviewer.logout",
                     f"reviewer:{sess.reviewer.name}")  # fmt: skip
        r = redirect(request, "/login")
        r.delete_cookie(SESSION_COOKIE, path=cookie_path(request))
        return r

    # -- the queue ------------------------------------------------------------------------
    @app.get("/queue", include_in_schema=False)
    def queue(request: Request, kind: str = "all") -> Response:
        session_of(request)
        if kind not in QUEUE_TABS:
            raise InvalidArgument(
                f"unknown queue {kind!r}; expected one of {', '.join(QUEUE_TABS)}"
            )
        rows = review.queue(kind=None if kind == "all" else kind)
        return render(request, "queue.html", rows=rows, tab=kind, tabs=QUEUE_TABS,
                      now=datetime.now(UTC))  # fmt: skip

    @app.post("/cases/{case_id}/take", include_in_schema=False)
    async def take(request: Request, case_id: str) -> Response:
        sess, _ = await posted(request)
        review.assign(case_id, sess.reviewer)
        return redirect(request, f"/cases/{case_id}")

    # -- a case ---------------------------------------------------------------------------
    def case_page(request: Request, case_id: str, status: int = 200, **extra: Any) -> Response:
        sess = request.state.session
        detail = review.case(case_id, sess.reviewer)
        media = operator.case_media(case_id)
        action = operator.enforcer.action(case_id) if operator.enforcer else None
        appeals = operator.appeals.list(case_id=case_id)
        ncmec = operator.outbox.report_for_case(case_id) if operator.outbox else None
        me = sess.reviewer
        st = detail.summary.status
        can_decide = st == "open" or (st == "escalated" and me.can("senior"))
        return render(request, "case.html", status, c=detail, s=detail.summary, media=media,
                      action=action, appeals=appeals, categories=CONFIRM_CATEGORIES,
                      can_decide=can_decide, enforcing=operator.enforcer is not None,
                      ncmec=ncmec, reporting=operator.outbox is not None,
                      now=datetime.now(UTC), **extra)  # fmt: skip

    @app.get("/cases/{case_id}", include_in_schema=False)
    def show(request: Request, case_id: str, done: str | None = None) -> Response:
        session_of(request)
        return case_page(request, case_id, done=done, revealed=None)

    @app.post("/cases/{case_id}/reveal", include_in_schema=False)
    async def reveal(request: Request, case_id: str) -> Response:
        sess, form = await posted(request)
        media_id = form.get("media", "")
        if operator.picture(case_id, media_id) is None:
            review.summary(case_id)  # CaseNotFound first
            raise InvalidArgument(f"case {case_id} has no picture {media_id!r} to reveal")
        review.record_reveal(case_id, sess.reviewer, media_id)
        return case_page(request, case_id, revealed=media_id, done=None)

    @app.get("/cases/{case_id}/media/{media_id}", include_in_schema=False)
    def picture(request: Request, case_id: str, media_id: str) -> Response:
        sess = session_of(request)
        review.summary(case_id)  # CaseNotFound
        p = operator.picture(case_id, media_id)
        if p is None or p.data is None or p.mimetype is None:
            raise StarletteHTTPException(404)
        audit.append(f"reviewer:{sess.reviewer.name}", "media.view", f"case:{case_id}",
                     {"media": media_id})  # fmt: skip
        return Response(p.data, media_type=p.mimetype, headers={
            "Cache-Control": "no-store", "Content-Disposition": "inline"})  # fmt: skip

    @app.post("/cases/{case_id}/note", include_in_schema=False)
    async def note(request: Request, case_id: str) -> Response:
        sess, form = await posted(request)
        review.note(case_id, sess.reviewer, form.get("text", ""))
        return redirect(request, f"/cases/{case_id}?done=note")

    @app.post("/cases/{case_id}/decide", include_in_schema=False)
    async def decide(request: Request, case_id: str) -> Response:
        sess, form = await posted(request)
        decision = form.get("decision", "")
        category = form.get("category") or None if decision == "confirmed" else None
        review.decide(case_id, sess.reviewer, decision, category=category,
                      reason=form.get("reason", ""))  # fmt: skip
        return redirect(request, f"/cases/{case_id}?done=decided")

    @app.post("/cases/{case_id}/close", include_in_schema=False)
    async def close(request: Request, case_id: str) -> Response:
        sess, form = await posted(request)
        review.close(case_id, sess.reviewer, form.get("reason", ""))
        return redirect(request, f"/cases/{case_id}?done=closed")

    # -- appeals --------------------------------------------------------------------------
    @app.get("/appeals", include_in_schema=False)
    def appeals_page(request: Request) -> Response:
        me = session_of(request).reviewer
        need(me, "senior", "the appeals page")
        open_ = operator.appeals.list(status="open")
        decided = [a for a in operator.appeals.list() if a.status != "open"][-20:]
        return render(request, "appeals.html", open_appeals=open_, decided=decided[::-1],
                      now=datetime.now(UTC))  # fmt: skip

    @app.post("/appeals/{appeal_id}/assign", include_in_schema=False)
    async def appeal_assign(request: Request, appeal_id: str) -> Response:
        sess, _ = await posted(request)
        operator.assign_appeal(appeal_id, sess.reviewer)
        return redirect(request, "/appeals")

    @app.post("/appeals/{appeal_id}/decide", include_in_schema=False)
    async def appeal_decide(request: Request, appeal_id: str) -> Response:
        sess, form = await posted(request)
        operator.decide_appeal(appeal_id, sess.reviewer, form.get("outcome", ""),
                               form.get("reason", ""))  # fmt: skip
        return redirect(request, "/appeals")

    # -- admin ----------------------------------------------------------------------------
    @app.get("/admin", include_in_schema=False)
    def admin(request: Request) -> Response:
        me = session_of(request).reviewer
        need(me, "admin", "the admin page")
        return render(request, "admin.html", reviewers=reviewers.all(), check=audit.verify(),
                      enforcing=operator.enforcer is not None)  # fmt: skip

    return app


__all__ = ["KINDS", "LOGIN_CSRF_COOKIE", "SECURITY_HEADERS", "SESSION_COOKIE", "age",
           "create_console"]  # fmt: skip
