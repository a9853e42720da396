"""Enforcement of a confirmed case: the policy, Synapse's admin API, statements of reasons.

A reviewer confirms a case (the lead's ``review.cases``); :meth:`Enforcer.on_confirmed`
then

1. counts the account's earlier confirmed cases that still stand (an overturned one is no
   strike) and asks the :class:`EnforcementPolicy` what this one does — ``warn``,
   ``suspend`` or ``deactivate``;
2. records the action and its statement of reasons (EU DSA Art. 17: the decision, the
   facts and circumstances, the ground, whether automated means were used, how to appeal)
   in one transaction;
3. sends the statement to the user as a Synapse server notice, then restricts the account
   through Synapse's admin API (:class:`SynapseAdmin`).

Every step Synapse confirms is recorded; calling ``on_confirmed`` again for the same case
resumes the steps that failed and never decides twice. :meth:`Enforcer.on_overturned`
lifts a suspension (unless another standing case still suspends the account) and restores
the case's quarantined media. A deactivated account is not reactivated automatically: see
docs/enforcement.md. Statements export as the EU DSA Transparency Database's API JSON
(:func:`dsa_statement`), without personal data.

Configuration (environment): ``BLINDMATCH_ENFORCEMENT_POLICY`` (default
:data:`DEFAULT_POLICY`), ``BLINDMATCH_SYNAPSE_URL``, ``BLINDMATCH_SYNAPSE_ADMIN_TOKEN_FILE``,
and the statement's texts (:meth:`StatementConfig.from_env`).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Engine, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import sessionmaker

from blindmatch.errors import ConfigError, EnforcementFailed, InvalidArgument
from blindmatch.review.types import CONFIRM_CATEGORIES, ConfirmedCase, EvidenceFile
from blindmatch.store.models import Case, EnforcementActionRecord, StatementOfReasons

#: ``AuditLog(engine).append`` (the lead's ``review.audit``): actor, action, subject, detail.
AuditHook = Callable[[str, str, str, "dict[str, Any] | None"], object]

ACTIONS = ("warn", "suspend", "deactivate")  # in order of severity
CATEGORIES = CONFIRM_CATEGORIES
DEFAULT_POLICY = "suspend@1,deactivate@2"
APPEAL_PATH = "/_blindmatch/v1/appeal"
DEFAULT_APPEAL_WINDOW_DAYS = 183  # at least six months (EU DSA Art. 20(1))


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)  # SQLite returns naive datetimes


# -- the policy ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EnforcementPolicy:
    """What the n-th confirmed case of an account does: ``steps`` are ``(from_offence,
    action)``, the first from offence 1, offences and severity increasing. Written
    compactly as ``warn@1,suspend@2,deactivate@4`` (warn on the first confirmed case,
    suspend from the second, deactivate from the fourth); a bare action means ``@1``."""

    steps: tuple[tuple[int, str], ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ConfigError("enforcement policy: give at least one action, e.g. 'suspend@1'")
        if self.steps[0][0] != 1:
            raise ConfigError(
                "enforcement policy: the first action must apply from the 1st confirmed case "
                f"(@1), not @{self.steps[0][0]}"
            )
        for (n0, a0), (n1, a1) in zip(self.steps, self.steps[1:], strict=False):
            if n1 <= n0:
                raise ConfigError(
                    f"enforcement policy: case numbers must increase ({a0}@{n0}, then {a1}@{n1})"
                )
            if ACTIONS.index(a1) <= ACTIONS.index(a0):
                raise ConfigError(
                    f"enforcement policy: actions must get stricter ({a0}, then {a1}); "
                    f"the order is {', '.join(ACTIONS)}"
                )

    @classmethod
    def parse(cls, text: str) -> EnforcementPolicy:
        """Parse ``action@n,...``; raises :class:`~blindmatch.errors.ConfigError` naming
        the allowed actions."""
        steps: list[tuple[int, str]] = []
        for part in text.split(","):
            part = part.strip()
            if not part:
                raise ConfigError(
                    f"enforcement policy {text!r}: empty item; write e.g. 'warn@1,suspend@2'"
                )
            action, _, number = part.partition("@")
            action = action.strip().lower()
            if action not in ACTIONS:
                raise ConfigError(
                    f"enforcement policy {text!r}: unknown action {action!r}; "
                    f"allowed: {', '.join(ACTIONS)}"
                )
            if not number:
                n = 1
            else:
                try:
                    n = int(number.strip())
                except ValueError:
                    n = 0
                if n < 1:
                    raise ConfigError(
                        f"enforcement policy {text!r}: {part!r} needs a positive case number "
                        "after '@' (the n-th confirmed case of the account)"
                    )
            steps.append((n, action))
        return cls(tuple(steps))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EnforcementPolicy:
        env = os.environ if environ is None else environ
        return cls.parse(env.get("BLINDMATCH_ENFORCEMENT_POLICY") or DEFAULT_POLICY)

    def action_for(self, offence: int) -> str:
        """The action for the account's ``offence``-th confirmed case (1-based)."""
        if offence < 1:
            raise InvalidArgument(f"offence must be at least 1, not {offence}")
        action = self.steps[0][1]
        for n, a in self.steps:
            if offence >= n:
                action = a
        return action

    def __str__(self) -> str:
        return ",".join(f"{a}@{n}" for n, a in self.steps)


# -- the statement of reasons ---------------------------------------------------------------
@dataclass(frozen=True)
class StatementConfig:
    """The configurable texts of a statement of reasons.

    ``ground``: ``illegal`` (the DSA's "illegal content": ``legal_ground`` and
    ``legal_explanation``) or ``incompatible`` (content incompatible with the terms:
    ``terms_ground``, ``terms_explanation``). Both texts are shown to the user; the DSA
    export carries the one of the chosen ground."""

    ground: str = "illegal"
    legal_ground: str = (
        "Child sexual abuse material: Directive 2011/93/EU, Art. 5, as transposed in the "
        "law of the operator's Member State"
    )
    legal_explanation: str = (
        "A picture sent from the account matches an entry that child-protection hotlines "
        "list as known child sexual abuse material, and a trained reviewer confirmed it."
    )
    terms_ground: str = "Terms of service: sharing child sexual abuse material is prohibited"
    terms_explanation: str = (
        "Sharing a picture listed as child sexual abuse material breaks the terms of service."
    )
    appeal_how: str = (
        f"Appeal within {DEFAULT_APPEAL_WINDOW_DAYS} days: POST {APPEAL_PATH} on this "
        'server with {"case_id": "<case id>", "text": "<why the decision is wrong>"} '
        "(your client's appeal command does this), quoting the case id."
    )
    appeal_window_days: int = DEFAULT_APPEAL_WINDOW_DAYS
    other_redress: str = (
        "You may also refer the decision to a certified out-of-court dispute settlement "
        "body (EU DSA Art. 21) or to a court."
    )

    def __post_init__(self) -> None:
        if self.ground not in ("illegal", "incompatible"):
            raise ConfigError(
                f"statement ground must be 'illegal' or 'incompatible', not {self.ground!r}"
            )
        if self.appeal_window_days < 183:
            raise ConfigError(
                "the appeal window must be at least 183 days (six months, EU DSA Art. 20(1)), "
                f"not {self.appeal_window_days}"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> StatementConfig:
        """``BLINDMATCH_DSA_GROUND``, ``BLINDMATCH_DSA_LEGAL_GROUND``,
        ``BLINDMATCH_DSA_LEGAL_EXPLANATION``, ``BLINDMATCH_DSA_TERMS_GROUND``,
        ``BLINDMATCH_DSA_TERMS_EXPLANATION``, ``BLINDMATCH_APPEAL_HOW``,
        ``BLINDMATCH_APPEAL_WINDOW_DAYS``; unset ones keep their defaults."""
        env = os.environ if environ is None else environ
        names = {"ground": "BLINDMATCH_DSA_GROUND", "legal_ground": "BLINDMATCH_DSA_LEGAL_GROUND",
                 "legal_explanation": "BLINDMATCH_DSA_LEGAL_EXPLANATION",
                 "terms_ground": "BLINDMATCH_DSA_TERMS_GROUND",
                 "terms_explanation": "BLINDMATCH_DSA_TERMS_EXPLANATION",
                 "appeal_how": "BLINDMATCH_APPEAL_HOW"}  # fmt: skip
        kw: dict[str, Any] = {k: env[v] for k, v in names.items() if env.get(v)}
        days = env.get("BLINDMATCH_APPEAL_WINDOW_DAYS")
        if days:
            try:
                kw["appeal_window_days"] = int(days)
            except ValueError:
                raise ConfigError(
                    f"BLINDMATCH_APPEAL_WINDOW_DAYS must be a whole number of days, not {days!r}"
                ) from None
        return cls(**kw)


_RESTRICTIONS = {
    "warn": "a warning; your account is not restricted",
    "suspend": "your account is suspended: it cannot send messages, join rooms or change "
    "its profile until the suspension is lifted (you can still read and appeal)",
    "deactivate": "your account is deactivated (terminated): it can no longer sign in",
}
_KINDS = {
    "match": "a picture you tried to send matched a picture listed as known child sexual "
    "abuse material; the message was refused and the picture quarantined",
    "threshold": "pictures you sent matched pictures listed as known child sexual abuse "
    "material, enough of them to reach the server's threshold",
    "report": "a message you sent was reported by a recipient, and the report verified "
    "(it is exactly what you sent)",
}


def _flat_entries(entries: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A case's entry refs as ``{hotline, list, entry_id, distance}`` rows (the module
    stores ``{"distance", "refs": [...]}``; a flat row is taken as it is)."""
    out: list[dict[str, Any]] = []
    for m in entries:
        refs = m.get("refs")
        if isinstance(refs, list):
            for r in refs:
                row = {k: r.get(k) for k in ("hotline", "list", "entry_id")}
                out.append({**row, "distance": m.get("distance")})
        else:
            out.append({k: m.get(k) for k in ("hotline", "list", "entry_id", "distance")})
    return out


def build_statement(
    case: ConfirmedCase,
    *,
    puid: str,
    action: str,
    offence: int,
    policy: EnforcementPolicy,
    config: StatementConfig,
    case_created_at: datetime | None = None,
) -> dict[str, Any]:
    """Every element of EU DSA Art. 17(3), as blindmatch stores it."""
    if action not in ACTIONS:
        raise InvalidArgument(f"action must be one of {', '.join(ACTIONS)}, not {action!r}")
    entries = _flat_entries(case.entries)
    listed = sorted({f"{e['list']} ({e['hotline']})" for e in entries if e.get("list")})
    kind = _KINDS.get(case.kind, f"a case of kind {case.kind!r}")
    facts = (
        f"Case {case.case_id}: {kind}. Category {case.category} (industry classification). "
        + (f"Listed on: {', '.join(listed)}. " if listed else "")
        + f"This is the account's confirmed case number {offence}; the policy is {policy}."
    )
    automated_detection = case.kind in ("match", "threshold")
    return {
        "puid": puid,
        "case_id": case.case_id,
        "account": case.account,
        "decided_at": _aware(case.decided_at).isoformat(),
        "decision": {
            "action": action,
            "restriction": _RESTRICTIONS[action],
            "content": "the message was refused and its picture quarantined"
            if case.kind in ("match", "threshold")
            else None,
            "offence": offence,
            "policy": str(policy),
        },
        "facts": {
            "summary": facts,
            "kind": case.kind,
            "category": case.category,
            "entries": entries,
            "room": case.room,
            "event_id": case.event_id,
            "case_created_at": _aware(case_created_at or case.decided_at).isoformat(),
        },
        "ground": {
            "type": config.ground,
            "legal_ground": config.legal_ground,
            "legal_explanation": config.legal_explanation,
            "terms_ground": config.terms_ground,
            "terms_explanation": config.terms_explanation,
        },
        "automation": {
            "detection_automated": automated_detection,
            "detection": "automated: private matching of the picture against hotline lists "
            "before encryption"
            if automated_detection
            else "a user report (not automated)",
            "decision_automated": False,
            "decision": "taken by a trained human reviewer after review of the case",
        },
        "redress": {
            "case_id": case.case_id,
            "appeal": config.appeal_how.replace("<case id>", case.case_id),
            "endpoint": f"POST {APPEAL_PATH}",
            "window_days": config.appeal_window_days,
            "other": config.other_redress,
        },
    }


def statement_text(body: Mapping[str, Any]) -> str:
    """The statement as the user reads it in the server notice."""
    d, f, g, a, r = (body[k] for k in ("decision", "facts", "ground", "automation", "redress"))
    lines = [
        f"Statement of reasons (EU Digital Services Act, Art. 17) — case {body['case_id']}",
        "",
        f"Decision: {d['restriction']}." + (f" Also: {d['content']}." if d.get("content") else ""),
        f"Facts and circumstances: {f['summary']}",
        f"Legal ground: {g['legal_ground']}. {g['legal_explanation']}",
        f"Contractual ground: {g['terms_ground']}. {g['terms_explanation']}",
        f"Automated means: detection {a['detection']}; the decision was "
        + ("automated." if a["decision_automated"] else f"{a['decision']}."),
        f"How to appeal: {r['appeal']} {r['other']}",
        f"Reference: {body['puid']}",
    ]
    return "\n".join(lines)


# The DSA Transparency Database's API values (transparency.dsa.ec.europa.eu, API v1:
# app/Http/Requests/StatementStoreRequest.php and app/Models/Statement.php of
# github.com/digital-services-act/transparency-database).
DSA_DECISION_ACCOUNT = {"suspend": "DECISION_ACCOUNT_SUSPENDED",
                        "deactivate": "DECISION_ACCOUNT_TERMINATED"}  # fmt: skip
DSA_VALUES: dict[str, tuple[str, ...]] = {
    "decision_visibility": ("DECISION_VISIBILITY_CONTENT_REMOVED",
                            "DECISION_VISIBILITY_CONTENT_DISABLED",
                            "DECISION_VISIBILITY_CONTENT_DEMOTED",
                            "DECISION_VISIBILITY_CONTENT_AGE_RESTRICTED",
                            "DECISION_VISIBILITY_CONTENT_INTERACTION_RESTRICTED",
                            "DECISION_VISIBILITY_CONTENT_LABELLED",
                            "DECISION_VISIBILITY_OTHER"),
    "decision_account": ("DECISION_ACCOUNT_SUSPENDED", "DECISION_ACCOUNT_TERMINATED"),
    "account_type": ("ACCOUNT_TYPE_BUSINESS", "ACCOUNT_TYPE_PRIVATE"),
    "decision_ground": ("DECISION_GROUND_ILLEGAL_CONTENT",
                        "DECISION_GROUND_INCOMPATIBLE_CONTENT"),
    "content_type": ("CONTENT_TYPE_APP", "CONTENT_TYPE_AUDIO", "CONTENT_TYPE_IMAGE",
                     "CONTENT_TYPE_PRODUCT", "CONTENT_TYPE_SYNTHETIC_MEDIA", "CONTENT_TYPE_TEXT",
                     "CONTENT_TYPE_VIDEO", "CONTENT_TYPE_OTHER"),
    "category": ("STATEMENT_CATEGORY_PROTECTION_OF_MINORS",),  # the one blindmatch uses
    "category_specification": ("KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL",),
    "source_type": ("SOURCE_ARTICLE_16", "SOURCE_TRUSTED_FLAGGER",
                    "SOURCE_TYPE_OTHER_NOTIFICATION", "SOURCE_VOLUNTARY"),
    "automated_detection": ("Yes", "No"),
    "automated_decision": ("AUTOMATED_DECISION_FULLY", "AUTOMATED_DECISION_PARTIALLY",
                           "AUTOMATED_DECISION_NOT_AUTOMATED"),
    "incompatible_content_illegal": ("Yes", "No"),
}  # fmt: skip
DSA_REQUIRED = ("decision_ground", "content_type", "category", "content_date",
                "application_date", "decision_facts", "source_type", "automated_detection",
                "automated_decision", "puid")  # fmt: skip


def dsa_statement(body: Mapping[str, Any], *, lifted_at: datetime | None = None) -> dict[str, Any]:
    """One statement in the DSA Transparency Database's API JSON (``POST
    /api/v1/statement``; a list goes in ``{"statements": [...]}``). No personal data:
    neither the account, the room nor the event; the facts name the case and the lists."""
    d, f, g, a = (body[k] for k in ("decision", "facts", "ground", "automation"))
    out: dict[str, Any] = {}
    if f["kind"] in ("match", "threshold"):
        out["decision_visibility"] = ["DECISION_VISIBILITY_CONTENT_DISABLED"]
    account = DSA_DECISION_ACCOUNT.get(d["action"])
    if account is not None:
        out["decision_account"] = account
        if lifted_at is not None:
            out["end_date_account_restriction"] = lifted_at.date().isoformat()
    if not out:  # a warning about a reported message: nothing else is restricted
        out["decision_visibility"] = ["DECISION_VISIBILITY_OTHER"]
        out["decision_visibility_other"] = "Warning to the account holder"
    out["account_type"] = "ACCOUNT_TYPE_PRIVATE"
    if g["type"] == "illegal":
        out["decision_ground"] = "DECISION_GROUND_ILLEGAL_CONTENT"
        out["illegal_content_legal_ground"] = g["legal_ground"][:500]
        out["illegal_content_explanation"] = g["legal_explanation"][:2000]
    else:
        out["decision_ground"] = "DECISION_GROUND_INCOMPATIBLE_CONTENT"
        out["incompatible_content_ground"] = g["terms_ground"][:500]
        out["incompatible_content_explanation"] = g["terms_explanation"][:2000]
        out["incompatible_content_illegal"] = "Yes"
    out["content_type"] = ["CONTENT_TYPE_IMAGE"]
    out["category"] = "STATEMENT_CATEGORY_PROTECTION_OF_MINORS"
    out["category_specification"] = ["KEYWORD_CHILD_SEXUAL_ABUSE_MATERIAL"]
    out["content_date"] = f["case_created_at"][:10]
    out["application_date"] = body["decided_at"][:10]
    out["decision_facts"] = f["summary"][:5000]
    out["source_type"] = "SOURCE_ARTICLE_16" if f["kind"] == "report" else "SOURCE_VOLUNTARY"
    out["automated_detection"] = "Yes" if a["detection_automated"] else "No"
    out["automated_decision"] = (
        "AUTOMATED_DECISION_FULLY"
        if a["decision_automated"]
        else "AUTOMATED_DECISION_NOT_AUTOMATED"
    )
    out["puid"] = body["puid"]
    return out


# -- Synapse's admin API --------------------------------------------------------------------
class AdminApi(Protocol):
    """What the enforcer needs from the homeserver (:class:`SynapseAdmin`; a fake in tests)."""

    def suspend(self, user_id: str, suspend: bool = True) -> None: ...
    def deactivate(self, user_id: str) -> None: ...
    def send_server_notice(self, user_id: str, content: Mapping[str, Any]) -> str: ...
    def unquarantine_media(self, server_name: str, media_id: str) -> None: ...


class SynapseAdmin:
    """A small client of Synapse's admin API (checked against Synapse 1.163):

    * ``PUT /_synapse/admin/v1/suspend/{user_id}`` ``{"suspend": bool}`` — registered
      unconditionally (no ``experimental_features`` needed), local users only; a suspended
      user can still sign in, read, redact their own events and leave rooms;
    * ``POST /_synapse/admin/v1/deactivate/{user_id}`` ``{"erase": false}``;
    * ``POST /_synapse/admin/v1/send_server_notice`` — needs ``server_notices`` in
      homeserver.yaml (and ``auto_join: true`` for a suspended user to see it: a suspended
      user cannot accept the invitation);
    * ``POST /_synapse/admin/v1/media/unquarantine/{server_name}/{media_id}``.

    The access token must be a server admin's; it is read from a file, never logged."""

    def __init__(self, base_url: str, token: str, timeout: float = 30.0) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"the Synapse URL must start with http:// or https://: {base_url!r}")
        if not token or any(c.isspace() for c in token):
            raise ConfigError("the Synapse admin access token is empty or has white space in it")
        self.base_url = base_url.rstrip("/")
        self._token = token
        self.timeout = timeout

    @classmethod
    def from_token_file(cls, base_url: str, token_file: str | Path) -> SynapseAdmin:
        try:
            token = Path(token_file).read_text().strip()
        except OSError as e:
            raise ConfigError(f"cannot read the Synapse admin token file {token_file}: {e}") from e
        return cls(base_url, token)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SynapseAdmin:
        env = os.environ if environ is None else environ
        url, path = (
            env.get("BLINDMATCH_SYNAPSE_URL"),
            env.get("BLINDMATCH_SYNAPSE_ADMIN_TOKEN_FILE"),
        )
        if not url or not path:
            raise ConfigError(
                "set BLINDMATCH_SYNAPSE_URL and BLINDMATCH_SYNAPSE_ADMIN_TOKEN_FILE (a file "
                "holding a Synapse server admin's access token) to enforce decisions"
            )
        return cls.from_token_file(url, path)

    def _call(self, method: str, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.base_url + path,
            data=json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {self._token}",
                "Content-Type": "application/json",
            },  # fmt: skip
        )
        what = f"{method} {path.split('?')[0]}"
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            detail = e.read()[:300].decode("utf-8", "replace")
            raise EnforcementFailed(f"Synapse refused {what}: {e.code} {detail}", e.code) from None
        except (OSError, ValueError) as e:
            raise EnforcementFailed(f"Synapse unreachable for {what}: {e}") from None
        try:
            answer = json.loads(raw) if raw else {}
        except ValueError:
            raise EnforcementFailed(f"Synapse answered {what} with something not JSON") from None
        return answer if isinstance(answer, dict) else {}

    @staticmethod
    def _q(part: str) -> str:
        return urllib.parse.quote(part, safe="")

    def suspend(self, user_id: str, suspend: bool = True) -> None:
        self._call("PUT", f"/_synapse/admin/v1/suspend/{self._q(user_id)}", {"suspend": suspend})

    def deactivate(self, user_id: str) -> None:
        self._call("POST", f"/_synapse/admin/v1/deactivate/{self._q(user_id)}", {"erase": False})

    def send_server_notice(self, user_id: str, content: Mapping[str, Any]) -> str:
        answer = self._call("POST", "/_synapse/admin/v1/send_server_notice",
                            {"user_id": user_id, "content": dict(content)})  # fmt: skip
        event_id = answer.get("event_id")
        if not isinstance(event_id, str):
            raise EnforcementFailed("Synapse sent the server notice but returned no event id")
        return event_id

    def unquarantine_media(self, server_name: str, media_id: str) -> None:
        self._call(
            "POST",
            f"/_synapse/admin/v1/media/unquarantine/{self._q(server_name)}/{self._q(media_id)}",
            {},
        )


# -- the enforcer ---------------------------------------------------------------------------
@dataclass(frozen=True)
class EnforcementAction:
    """A recorded enforcement (a row of ``enforcement_actions`` with its statement)."""

    id: int
    case_id: str
    account: str
    action: str
    offence: int
    category: str
    reviewer: str
    decided_at: datetime
    applied_at: datetime | None
    notice_event_id: str | None
    notice_error: str | None
    lifted_at: datetime | None
    lifted_by: str | None
    lift_outcome: str | None
    puid: str
    statement: dict[str, Any] = field(repr=False)
    statement_text: str = field(repr=False)

    @property
    def notified(self) -> bool:
        return self.notice_event_id is not None

    def to_json(self) -> dict[str, Any]:
        def iso(t: datetime | None) -> str | None:
            return t.isoformat() if t else None

        return {"id": self.id, "case_id": self.case_id, "account": self.account,
                "action": self.action, "offence": self.offence, "category": self.category,
                "reviewer": self.reviewer, "decided_at": iso(self.decided_at),
                "applied_at": iso(self.applied_at), "notified": self.notified,
                "notice_event_id": self.notice_event_id, "notice_error": self.notice_error,
                "lifted_at": iso(self.lifted_at), "lifted_by": self.lifted_by,
                "lift_outcome": self.lift_outcome, "puid": self.puid,
                "statement": self.statement}  # fmt: skip


@dataclass(frozen=True)
class Overturned:
    """What :meth:`Enforcer.on_overturned` did: ``lift`` is ``lifted`` (the suspension
    ended, or a warning had nothing to lift), ``kept`` (another standing case still
    suspends the account), ``reactivation_needed`` (a deactivated account) or ``none`` (no
    enforcement was recorded for the case); ``restored``: the media un-quarantined."""

    case_id: str
    action: str | None
    lift: str
    restored: list[str]


def _view(r: EnforcementActionRecord, s: StatementOfReasons) -> EnforcementAction:
    def opt(t: datetime | None) -> datetime | None:
        return _aware(t) if t is not None else None

    return EnforcementAction(
        r.id, r.case_id, r.account, r.action, r.offence, r.category, r.reviewer,
        _aware(r.decided_at), opt(r.applied_at), r.notice_event_id, r.notice_error,
        opt(r.lifted_at), r.lifted_by, r.lift_outcome, s.puid, json.loads(s.body), s.text,
    )  # fmt: skip


def _mxc(uri: str) -> tuple[str, str] | None:
    if not uri.startswith("mxc://"):
        return None
    server, _, media_id = uri.removeprefix("mxc://").partition("/")
    return (server, media_id) if server and media_id and "/" not in media_id else None


class Enforcer:
    """Apply the policy to confirmed cases, and undo it for overturned ones.

    ``audit``: the lead's ``AuditLog(engine).append`` (called once per step: AUDIT HOOK
    below); ``restore_media``: un-quarantine in blindmatch's state too (the Matrix module's
    :meth:`~blindmatch.integrations.matrix.state.MatrixState.mark_restored`; default: on
    the same engine)."""

    def __init__(
        self,
        engine: Engine,
        policy: EnforcementPolicy,
        admin: AdminApi,
        *,
        statement: StatementConfig | None = None,
        audit: AuditHook | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.admin = admin
        self.statement = statement or StatementConfig()
        self.audit = audit
        self._session = sessionmaker(engine, expire_on_commit=False)

    def _audit(self, actor: str, action: str, subject: str, detail: dict[str, Any]) -> None:
        # AUDIT HOOK: the one place enforcement reports to the audit log (review.audit).
        if self.audit is not None:
            self.audit(actor, action, subject, detail)

    # -- reading --------------------------------------------------------------------------
    def action(self, case_id: str) -> EnforcementAction | None:
        with self._session() as s:
            r = s.scalar(select(EnforcementActionRecord).where(
                EnforcementActionRecord.case_id == case_id))  # fmt: skip
            if r is None:
                return None
            st = s.scalar(select(StatementOfReasons).where(StatementOfReasons.action_id == r.id))
            assert st is not None
            return _view(r, st)

    def standing_offences(self, account: str) -> int:
        """The account's confirmed cases that still stand (not overturned)."""
        with self._session() as s:
            n = s.scalar(select(func.count()).select_from(EnforcementActionRecord).where(
                EnforcementActionRecord.account == account,
                EnforcementActionRecord.lifted_at.is_(None)))  # fmt: skip
            return int(n or 0)

    # -- a confirmed case -------------------------------------------------------------------
    def on_confirmed(self, case: ConfirmedCase) -> EnforcementAction:
        """Decide (once per case), record, notify, restrict. Raises
        :class:`~blindmatch.errors.EnforcementFailed` when Synapse refused the restriction:
        the decision stays recorded, and calling again resumes."""
        if case.category not in CATEGORIES:
            raise InvalidArgument(
                f"category must be one of {', '.join(CATEGORIES)}, not {case.category!r}"
            )
        if not case.account.startswith("@") or ":" not in case.account:
            raise InvalidArgument(f"account must be a Matrix user id, not {case.account!r}")
        existing = self.action(case.case_id)
        if existing is None:
            existing = self._decide(case)
        return self._apply(existing)

    def _decide(self, case: ConfirmedCase) -> EnforcementAction:
        try:
            with self._session.begin() as s:
                row = s.get(Case, case.case_id)
                created = _aware(row.created_at) if row is not None else None
                offence = 1 + int(s.scalar(select(func.count()).select_from(
                    EnforcementActionRecord).where(
                    EnforcementActionRecord.account == case.account,
                    EnforcementActionRecord.lifted_at.is_(None))) or 0)  # fmt: skip
                action = self.policy.action_for(offence)
                rec = EnforcementActionRecord(
                    case_id=case.case_id, account=case.account, action=action, offence=offence,
                    category=case.category, reviewer=case.reviewer,
                    decided_at=_aware(case.decided_at),
                )  # fmt: skip
                s.add(rec)
                s.flush()
                puid = f"SOR-{case.case_id}"
                body = build_statement(case, puid=puid, action=action, offence=offence,
                                       policy=self.policy, config=self.statement,
                                       case_created_at=created)  # fmt: skip
                st = StatementOfReasons(puid=puid, action_id=rec.id, case_id=case.case_id,
                                        account=case.account, body=json.dumps(body),
                                        text=statement_text(body), created_at=_now())  # fmt: skip
                s.add(st)
                s.flush()
                view = _view(rec, st)
        except IntegrityError:  # decided concurrently for the same case: take that one
            again = self.action(case.case_id)
            if again is None:
                raise
            return again
        self._audit(f"reviewer:{case.reviewer}", "enforcement.decide", f"case:{case.case_id}",
                    {"account": case.account, "action": view.action, "offence": view.offence,
                     "policy": str(self.policy), "statement": view.puid})  # fmt: skip
        return view

    def _apply(self, a: EnforcementAction) -> EnforcementAction:
        if a.lifted_at is not None:
            return a  # overturned meanwhile: nothing left to apply
        if a.notice_event_id is None:
            content = {"msgtype": "m.text", "body": a.statement_text,
                       "org.blindmatch.statement": {"puid": a.puid, "case": a.case_id,
                                                    "action": a.action}}  # fmt: skip
            try:
                event_id = self.admin.send_server_notice(a.account, content)
            except EnforcementFailed as e:  # the restriction still applies; retried later
                self._update(a.id, notice_error=e.message)
            else:
                self._update(a.id, notice_event_id=event_id, notice_error=None, notified=True)
                detail = {"case": a.case_id, "statement": a.puid, "event_id": event_id}
                self._audit("system", "statement.notify", f"account:{a.account}", detail)
        if a.applied_at is None:
            if a.action == "suspend":
                self.admin.suspend(a.account, True)
            elif a.action == "deactivate":
                self.admin.deactivate(a.account)
            self._update(a.id, applied_at=_now())
            self._audit("system", f"account.{a.action}", f"account:{a.account}",
                        {"case": a.case_id, "statement": a.puid})  # fmt: skip
        got = self.action(a.case_id)
        assert got is not None
        return got

    def _update(self, action_id: int, *, notified: bool = False, **values: Any) -> None:
        with self._session.begin() as s:
            r = s.get(EnforcementActionRecord, action_id)
            assert r is not None
            for k, v in values.items():
                setattr(r, k, v)
            if notified:
                st = s.scalar(select(StatementOfReasons).where(
                    StatementOfReasons.action_id == action_id))  # fmt: skip
                if st is not None:
                    st.notified_at = _now()

    # -- an overturned case -------------------------------------------------------------------
    def on_overturned(self, case_id: str, reviewer: str) -> Overturned:
        """Undo a case's enforcement after an appeal overturned it: lift the suspension
        unless another standing case still suspends or deactivated the account; a
        deactivated account is recorded as ``reactivation_needed`` (Synapse deletes its
        devices, password and memberships on deactivation: not undone automatically).
        Then restore the case's quarantined media."""
        with self._session() as s:
            row = s.get(Case, case_id)
            blobs = json.loads(row.blobs) if row is not None else []
        a = self.action(case_id)
        if row is None and a is None:
            raise InvalidArgument(f"no case {case_id!r}")
        lift = "none"
        if a is not None and a.lifted_at is not None:
            lift = a.lift_outcome or "lifted"
        elif a is not None:
            with self._session() as s:
                others = set(s.scalars(select(EnforcementActionRecord.action).where(
                    EnforcementActionRecord.account == a.account,
                    EnforcementActionRecord.lifted_at.is_(None),
                    EnforcementActionRecord.id != a.id,
                    EnforcementActionRecord.applied_at.is_not(None))))  # fmt: skip
            if a.action == "deactivate":
                lift = "reactivation_needed"
            elif a.action == "suspend" and others & {"suspend", "deactivate"}:
                lift = "kept"
            else:
                if a.action == "suspend" and a.applied_at is not None:
                    self.admin.suspend(a.account, False)
                lift = "lifted"
            self._update(a.id, lifted_at=_now(), lifted_by=reviewer, lift_outcome=lift)
            self._audit(f"reviewer:{reviewer}", "account.unsuspend" if lift == "lifted"
                        and a.action == "suspend" else "enforcement.overturn",
                        f"account:{a.account}", {"case": case_id, "lift": lift})  # fmt: skip
        restored = self.restore_media(case_id, blobs, reviewer)
        return Overturned(case_id, a.action if a else None, lift, restored)

    def restore_media(self, case_id: str, blobs: Sequence[str], reviewer: str) -> list[str]:
        """Un-quarantine a case's media in Synapse and in blindmatch's state."""
        from blindmatch.integrations.matrix.state import MatrixState

        state = MatrixState(self.engine)
        restored = []
        for uri in blobs:
            parts = _mxc(uri)
            if parts is None:
                continue
            self.admin.unquarantine_media(*parts)
            state.mark_restored(parts[1])
            restored.append(uri)
        if restored:
            self._audit(f"reviewer:{reviewer}", "media.restore", f"case:{case_id}",
                        {"media": restored})  # fmt: skip
        return restored

    # -- statements -------------------------------------------------------------------------
    def statements(
        self,
        *,
        account: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[EnforcementAction]:
        """Recorded actions with their statements, oldest first."""
        return list_statements(self.engine, account=account, since=since, until=until,
                               limit=limit)  # fmt: skip


def list_statements(
    engine: Engine,
    *,
    account: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int | None = None,
) -> list[EnforcementAction]:
    with sessionmaker(engine)() as s:
        q = (
            select(EnforcementActionRecord, StatementOfReasons)
            .join(StatementOfReasons, StatementOfReasons.action_id == EnforcementActionRecord.id)
            .order_by(StatementOfReasons.created_at, StatementOfReasons.puid)
        )
        if account:
            q = q.where(EnforcementActionRecord.account == account)
        if since:
            q = q.where(StatementOfReasons.created_at >= since)
        if until:
            q = q.where(StatementOfReasons.created_at < until)
        if limit:
            q = q.limit(limit)
        return [_view(r, st) for r, st in s.execute(q).all()]


def dsa_export(actions: Sequence[EnforcementAction]) -> dict[str, Any]:
    """``{"statements": [...]}``: the body of the DSA Transparency Database's batch
    endpoint (``POST /api/v1/statements``)."""
    return {"statements": [dsa_statement(a.statement, lifted_at=a.lifted_at) for a in actions]}


__all__ = [
    "ACTIONS",
    "DEFAULT_POLICY",
    "DSA_REQUIRED",
    "DSA_VALUES",
    "AdminApi",
    "ConfirmedCase",
    "EnforcementAction",
    "EnforcementPolicy",
    "Enforcer",
    "EvidenceFile",
    "Overturned",
    "StatementConfig",
    "SynapseAdmin",
    "build_statement",
    "dsa_export",
    "dsa_statement",
    "list_statements",
    "statement_text",
]
