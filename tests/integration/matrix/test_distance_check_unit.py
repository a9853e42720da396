"""The distance check in the Matrix integration, without a homeserver: the ``answer`` beside
a voucher (events.py) and the module's challenge endpoint (a stub module API).

Benign pictures only: the table lists ``synthetic_photo(10)``; the vouchers are of
``synthetic_photo(10)`` re-compressed (a candidate) and ``synthetic_photo(11)``.
"""

from __future__ import annotations

import base64
import io
import secrets
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("synapse", reason="the matrix extra (matrix-synapse) is not installed")

from synapse.api.errors import Codes  # noqa: E402

from blindmatch.demo.synthetic import synthetic_photo  # noqa: E402
from blindmatch.errors import EventRejected  # noqa: E402
from blindmatch.hashing.image import pdq_with_vector_from_rgb  # noqa: E402
from blindmatch.integrations.matrix import module as module_py  # noqa: E402
from blindmatch.integrations.matrix.events import (  # noqa: E402
    ANSWER_KEY,
    Attachment,
    parse_voucher_field,
    voucher_field,
)
from blindmatch.integrations.matrix.homeserver import build_table_dir  # noqa: E402
from blindmatch.integrations.matrix.module import BlindmatchModule, parse_config  # noqa: E402
from blindmatch.private import load_trust_file, query_hashes  # noqa: E402
from blindmatch.protocol import (  # noqa: E402
    AccountSecret,
    ClientSession,
    answer_for_image,
    new_opening_seed,
    verify_table,
)
from blindmatch.protocol.challenge import answer_bytes, challenge_bytes  # noqa: E402
from tests.integration.matrix.test_fail_closed import StubApi, event  # noqa: E402

MXC = "mxc://hs.test/abcdef"
DIGEST = "ab" * 32


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


class AuthApi(StubApi):
    """The stub API with an authenticated requester."""

    async def get_user_by_req(self, request: Any) -> Any:
        return SimpleNamespace(user=SimpleNamespace(to_string=lambda: "@a:hs.test"))


@pytest.fixture(scope="module")
def checked_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pdq, _ = pdq_with_vector_from_rgb(np.asarray(synthetic_photo(10)))
    return build_table_dir(
        tmp_path_factory.mktemp("checked") / "table", {"listed-10": bytes.fromhex(pdq.hex)},
        distance_radius=31,
    )  # fmt: skip


@pytest.fixture(scope="module")
def session(checked_dir: Path) -> ClientSession:
    trust = load_trust_file(str(checked_dir / "trust.json"))
    verified = verify_table((checked_dir / "table.bin").read_bytes(),
                            (checked_dir / "manifest.json").read_bytes(), trust)  # fmt: skip
    return ClientSession(verified, AccountSecret.generate())


def voucher_of(session: ClientSession, image: Image.Image) -> tuple[bytes, bytes, Any]:
    """(voucher, opening seed, hashes) for a picture, as the client makes them."""
    hashes = query_hashes(np.asarray(image), companions=session.verified.has_companions)
    seed = new_opening_seed()
    pdq, confidence, variants = hashes
    v = session.make_voucher(pdq, confidence=confidence, variants=variants, opening_seed=seed)
    return v, seed, hashes


def make_module(table_dir: Path, tmp_path: Path, api: StubApi, **extra: Any) -> BlindmatchModule:
    cfg = parse_config(
        {"table_dir": str(table_dir), "database_url": f"sqlite:///{tmp_path / 'bm.db'}", **extra}
    )
    return BlindmatchModule(cfg, api)  # type: ignore[arg-type]


def ask(m: BlindmatchModule, body: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[int, Any]:
    """POST /_blindmatch/v1/challenge with ``body`` as the parsed JSON object."""
    import asyncio

    monkeypatch.setattr(module_py, "parse_json_object_from_request", lambda request: body)
    return asyncio.run(m.handle_challenge_request(object()))


# -- the answer field (events.py) --------------------------------------------------------------
def test_the_answer_travels_beside_the_voucher_and_is_checked_for_size(
    session: ClientSession,
) -> None:
    params = session.table.distance
    assert params is not None
    size = answer_bytes(params)
    voucher = voucher_of(session, synthetic_photo(11))[0]
    tid = session.table.table_id
    tables, answers = {tid: len(voucher)}, {tid: size}
    answer = secrets.token_bytes(size)

    def parse(field: Any, answers: dict[bytes, int] = answers) -> list[Attachment]:
        got = parse_voucher_field(
            {"org.blindmatch.voucher": field}, server_name="hs.test", tables=tables,
            answers=answers,
        )  # fmt: skip
        assert got is not None
        return got

    field = voucher_field([(voucher, MXC, DIGEST)], [answer])
    assert isinstance(field, dict) and set(field) == {"v", "voucher", "blob", "blob_sha256",
                                                      ANSWER_KEY}  # fmt: skip
    [a] = parse(field)
    assert a.answer == answer and a.voucher == voucher

    def refused(field: Any, answers: dict[bytes, int] = answers) -> str:
        with pytest.raises(EventRejected) as e:
            parse(field, answers)
        return e.value.reason

    missing = {k: v for k, v in field.items() if k != ANSWER_KEY}
    assert refused(missing) == "malformed_voucher"  # a checked table's voucher needs one
    short = {**field, ANSWER_KEY: base64.b64encode(answer[:-3]).decode()}
    assert refused(short) == "malformed_voucher"
    long = {**field, ANSWER_KEY: base64.b64encode(answer + bytes(3)).decode()}
    assert refused(long) == "malformed_voucher"
    not_b64 = {**field, ANSWER_KEY: "!" * len(field[ANSWER_KEY])}
    assert refused(not_b64) == "malformed_voucher"
    assert refused({**field, ANSWER_KEY: 7}) == "malformed_voucher"
    # a table without the check: an answer is refused, none is fine
    assert refused(field, {}) == "malformed_voucher"
    assert parse(missing, {})[0].answer is None


# -- the challenge endpoint -----------------------------------------------------------------
def test_the_challenge_is_the_same_bytes_and_size_for_every_voucher(
    checked_dir: Path, session: ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make_module(checked_dir, tmp_path, AuthApi())
    params = session.table.distance
    assert params is not None
    unrelated, seed, hashes = voucher_of(session, synthetic_photo(11))
    candidate = voucher_of(session, _jpeg(synthetic_photo(10), 40))[0]
    bodies = []
    for v in (unrelated, unrelated, candidate):
        status, body = ask(m, {"voucher": base64.b64encode(v).decode()}, monkeypatch)
        assert status == 200 and set(body) == {"challenge"}
        bodies.append(base64.b64decode(body["challenge"]))
    assert bodies[0] == bodies[1]  # deterministic: the recipient gets what the sender got
    assert {len(b) for b in bodies} == {challenge_bytes(params)}  # one shape for all
    # and it is a challenge the client can answer (it verifies against the table)
    pdq, confidence, variants = hashes
    answer = answer_for_image(session.verified, bodies[0], seed, pdq, confidence=confidence,
                              variants=variants)  # fmt: skip
    assert len(answer) == answer_bytes(params)
    assert m.stats.challenges == 3


def test_a_bad_challenge_request_gets_a_400_never_a_crash(
    checked_dir: Path, session: ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make_module(checked_dir, tmp_path, AuthApi())
    voucher = voucher_of(session, synthetic_photo(11))[0]
    good = base64.b64encode(voucher).decode()
    from tests.integration.matrix.conftest import break_a_point

    other = build_table_dir(tmp_path / "other", {"x": bytes(32)})
    other_trust = load_trust_file(str(other / "trust.json"))
    other_session = ClientSession(
        verify_table((other / "table.bin").read_bytes(), (other / "manifest.json").read_bytes(),
                     other_trust),
        AccountSecret.generate(),
    )  # fmt: skip
    foreign = other_session.make_voucher(bytes(32))
    cases = {
        "no voucher": {},
        "extra key": {"voucher": good, "table": "x"},
        "not a string": {"voucher": 12},
        "not base64": {"voucher": "?" * len(good)},
        "too long": {"voucher": good + "AAAA" * 10},
        "too short": {"voucher": base64.b64encode(voucher[:-3]).decode()},
        "not a voucher": {"voucher": base64.b64encode(b"XXXX" + voucher[4:]).decode()},
        "another table": {"voucher": base64.b64encode(foreign).decode()},
        "a point broken": {"voucher": base64.b64encode(break_a_point(voucher, session)).decode()},
        "a list": [good],
    }
    reasons = {}
    for name, body in cases.items():
        status, answer = ask(m, body, monkeypatch)
        assert status == 400, (name, status, answer)
        assert answer["errcode"] == "M_BAD_JSON" and "challenge" not in answer, name
        reasons[name] = answer["org.blindmatch.reason"]
    assert reasons["another table"] == "wrong_table"
    assert reasons["a point broken"] == "invalid_voucher"
    assert reasons["too long"] == "voucher_oversized"
    assert {reasons[k] for k in ("no voucher", "extra key", "not a string", "not base64",
                                 "too short", "not a voucher", "a list")} == {
        "malformed_voucher"}  # fmt: skip
    # the machinery failing: a 500 with the module's reason, logged, never an exception
    monkeypatch.setattr(m.current.session, "begin", lambda v: 1 / 0)
    status, answer = ask(m, {"voucher": good}, monkeypatch)
    assert status == 500 and answer["org.blindmatch.reason"] == "internal_error"


def test_a_table_without_the_check_gives_no_challenge(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = build_table_dir(tmp_path / "plain", {"x": bytes(32)})
    m = make_module(plain, tmp_path, AuthApi())
    trust = load_trust_file(str(plain / "trust.json"))
    s = ClientSession(verify_table((plain / "table.bin").read_bytes(),
                                   (plain / "manifest.json").read_bytes(), trust),
                      AccountSecret.generate())  # fmt: skip
    status, answer = ask(m, {"voucher": base64.b64encode(s.make_voucher(bytes(32))).decode()},
                         monkeypatch)  # fmt: skip
    assert status == 400 and answer["org.blindmatch.reason"] == "malformed_voucher"


def test_challenges_are_rate_limited_per_account(
    checked_dir: Path, session: ClientSession, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = make_module(checked_dir, tmp_path, AuthApi(), max_challenges_per_hour=2)
    good = {"voucher": base64.b64encode(voucher_of(session, synthetic_photo(11))[0]).decode()}
    assert [ask(m, good, monkeypatch)[0] for _ in range(2)] == [200, 200]
    status, answer = ask(m, {"voucher": 1}, monkeypatch)  # every attempt counts
    assert status == 429 and answer["org.blindmatch.reason"] == "too_many_challenges"
    assert answer["retry_after_ms"] > 0


# -- the event path: an answer that is missing or not of the table's form -------------------------
def test_a_checked_voucher_without_a_well_formed_answer_is_refused(
    checked_dir: Path, session: ClientSession, tmp_path: Path
) -> None:
    import asyncio

    api = AuthApi()
    m = make_module(checked_dir, tmp_path, api)
    params = session.table.distance
    assert params is not None
    voucher = voucher_of(session, synthetic_photo(11))[0]
    answer = secrets.token_bytes(answer_bytes(params))
    field = voucher_field([(voucher, MXC, DIGEST)], [answer])
    assert isinstance(field, dict)
    missing = {k: v for k, v in field.items() if k != ANSWER_KEY}
    for value in (missing, {**field, ANSWER_KEY: field[ANSWER_KEY][:-8]}):
        got = asyncio.run(m.check_event_for_spam(event({"org.blindmatch.voucher": value})))
        assert isinstance(got, tuple) and got[0] == Codes.FORBIDDEN
        assert got[1]["org.blindmatch.reason"] == "malformed_voucher"
    # of the right size but no points: refused before anything is opened (the form check
    # every voucher of an event passes first), as a voucher whose point does not decode
    a = Attachment(voucher, "hs.test", "abcdef", DIGEST, session.table.table_id, answer)
    with pytest.raises(EventRejected) as e:
        module_py._check_form(a, m._tables())
    assert e.value.reason == "invalid_voucher"
    no_answer = Attachment(voucher, "hs.test", "abcdef", DIGEST, session.table.table_id)
    with pytest.raises(EventRejected) as e:
        module_py._check_form(no_answer, m._tables())
    assert e.value.reason == "malformed_voucher"
