"""Reviewer accounts: argon2 passwords, roles, sessions that end on logout and disable."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from blindmatch.errors import InvalidArgument, ReviewerExists, ReviewerNotFound
from blindmatch.review.reviewers import same_token
from blindmatch.store.models import Reviewer as Row

from .conftest import PASSWORD


def test_passwords_are_stored_as_argon2id_and_checked(world) -> None:
    r = world.reviewers
    ann = r.add("ann", PASSWORD, "senior")
    with world.store.engine.connect() as c:
        stored = c.execute(select(Row.password_hash)).scalar_one()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored
    assert r.authenticate("ann", PASSWORD) == ann
    assert r.authenticate("ann", PASSWORD + "x") is None
    assert r.authenticate("nobody", PASSWORD) is None


def test_bad_names_roles_passwords_and_duplicates_are_refused(world) -> None:
    r = world.reviewers
    with pytest.raises(InvalidArgument, match="role"):
        r.add("ann", PASSWORD, "boss")
    with pytest.raises(InvalidArgument, match="at least 12"):
        r.add("ann", "short")
    with pytest.raises(InvalidArgument, match="reviewer name"):
        r.add("Ann Smith", PASSWORD)
    r.add("ann", PASSWORD)
    with pytest.raises(ReviewerExists):
        r.add("ann", PASSWORD)
    with pytest.raises(ReviewerNotFound):
        r.set_disabled("bob")


def test_a_session_ends_on_logout_on_disable_and_on_password_change(world) -> None:
    r = world.reviewers
    ann = r.add("ann", PASSWORD)
    token, csrf = r.start_session(ann)
    s = r.session(token)
    assert s is not None and s.reviewer.name == "ann" and same_token(s.csrf, csrf)
    assert r.session(token + "x") is None and r.session(None) is None
    r.end_session(token)
    assert r.session(token) is None
    token, _ = r.start_session(ann)
    r.set_disabled("ann")
    assert r.session(token) is None
    assert r.authenticate("ann", PASSWORD) is None  # disabled: no login either
    r.set_disabled("ann", False)
    token, _ = r.start_session(r.get("ann"))
    r.set_password("ann", PASSWORD + "!")
    assert r.session(token) is None


def test_an_expired_session_is_refused(world) -> None:
    ann = world.reviewers.add("ann", PASSWORD)
    token, _ = world.reviewers.start_session(ann, hours=-1)
    assert world.reviewers.session(token) is None


def test_same_token_refuses_empty_and_different() -> None:
    assert same_token("abc", "abc")
    assert not same_token("abc", "abd") and not same_token("", "") and not same_token(None, "a")
