"""``blindmatch demo matrix``: the README's main job, end to end on a real Synapse.

The demo starts its own Synapse with the module (SQLite, 127.0.0.1), two users, and checks
its own outcomes; this test reads its JSON account and checks each step independently of
the demo's own verdict, and that nothing it started is left running.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest.importorskip("synapse", reason="the matrix extra (matrix-synapse) is not installed")
pytest.importorskip("nio", reason="the matrix extra (matrix-nio) is not installed")


def test_the_messenger_demo_shows_every_step(cli, home: Path) -> None:
    res = cli("demo", "matrix", "--json")
    steps = {s["step"]: s for s in res.json_lines}
    assert list(steps) == ["table", "homeserver", "users", "ordinary_photo", "listed_photo",
                           "report", "skipped_voucher", "decoy_voucher", "cases"]  # fmt: skip
    assert res.code == 0, res.out
    assert all(s["ok"] for s in steps.values())
    assert steps["table"]["signatures"] == 3  # the platform and two hotlines
    assert (
        steps["ordinary_photo"]["delivered"] and steps["ordinary_photo"]["recipient_check"] == "ok"
    )
    refused = steps["listed_photo"]["refused"]
    assert refused["reason"] == "listed_image" and refused["case"].startswith("BM-")
    assert steps["listed_photo"]["delivered_to_recipient"] == 0
    assert steps["report"]["case"] and steps["report"]["forged_report"] == "report_not_verified"
    assert steps["skipped_voucher"]["refused"]["reason"] == "voucher_required"
    assert steps["decoy_voucher"]["recipient_check"] == "voucher_not_for_image"
    kinds = sorted(c["kind"] for c in steps["cases"]["cases"])
    assert kinds == ["match", "report", "report"]
    assert {c["id"] for c in steps["cases"]["cases"]} == {
        refused["case"],
        steps["report"]["case"],
        steps["decoy_voucher"]["case"],
    }
    # Everything the demo started has stopped.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(home / "demo-matrix") not in ps.stdout
