"""Through a real Synapse: a match review finds benign stops blocking (the negative bank).

A listed copy is refused and opens a case; a reviewer decides it is a false positive; the
same picture, uploaded and vouched afresh, is then delivered, and the listed entry is
disputed. (Every picture is a generated, benign stand-in.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from blindmatch.integrations.matrix.events import voucher_field
from blindmatch.review import Reviewers
from blindmatch.store.db import open_store
from tests.conftest import run_cli
from tests.integration.matrix.conftest import MatrixWorld, jpeg, rejection, running_world
from tests.integration.matrix.test_synapse_module import listed_copy


@pytest.fixture(scope="module")
def matrix_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MatrixWorld]:
    """A world of its own: the negative bank it fills would let the listed picture through
    in every later test of the shared world."""
    with running_world(tmp_path_factory.mktemp("false-positive")) as world:
        yield world


def test_a_false_positive_stops_blocking_and_disputes_the_entry(matrix_world: MatrixWorld) -> None:
    db = matrix_world.database_url
    Reviewers(open_store(db).engine).add("ann", "correct horse battery")
    s = matrix_world.new_sender(invite_recipient=True)
    copy = listed_copy()
    mxc, digest, _ = s.encrypted_upload(jpeg(copy))
    body = rejection(s.send(voucher_field([(s.voucher_for(copy), mxc, digest)])))
    case = body["org.blindmatch.case"]
    shown = run_cli("cases", "show", case, "--json", "--database-url", db).json_lines[0]
    assert all(m.get("probe") for m in shown["entries"])  # the hash that matched is kept
    assert all("the picture" in m["variant"] for m in shown["entries"])  # and how it matched
    res = run_cli("cases", "decide", case, "false_positive", "--reviewer", "ann",
                  "--database-url", db)  # fmt: skip
    assert res.code == 0, res.err
    # The same picture again: a new upload, a new voucher — delivered this time.
    mxc2, digest2, _ = s.encrypted_upload(jpeg(copy))
    r = s.send(voucher_field([(s.voucher_for(copy), mxc2, digest2)]))
    assert r.status == 200, r.body
    assert matrix_world.download(mxc2, matrix_world.recipient).status == 200
    disputes = run_cli("disputes", "export", "--database-url", db)
    assert disputes.code == 0 and '"entry_id": "listed-10"' in disputes.out
