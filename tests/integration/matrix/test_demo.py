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
    # A fixed lookup-key seed keeps this test deterministic; the demo draws a fresh one per
    # run (the listed copy it sends matched for 130 of 130 random seeds).
    res = cli("demo", "matrix", "--json", "--table-seed", "42" * 32)
    steps = {s["step"]: s for s in res.json_lines}
    assert list(steps) == ["table", "homeserver", "users", "ordinary_photo", "listed_photo",
                           "report", "skipped_voucher", "decoy_voucher", "cases"]  # fmt: skip
    assert res.code == 0, res.out
    assert all(s["ok"] for s in steps.values())
    assert steps["table"]["signatures"] == 3  # the platform and two hotlines
    assert steps["table"]["table_seed"] == "42" * 32
    assert (
        steps["ordinary_photo"]["delivered"] and steps["ordinary_photo"]["recipient_check"] == "ok"
    )
    # the re-compressed, the mirrored, the rotated-thumbnail (with this table seed; ~85 in
    # 100 random ones) and the cropped (hot tier) copies are all refused
    assert steps["table"]["hot_companions"] > 40
    copies = steps["listed_photo"]["copies"]
    assert [c["edit"].split()[0] for c in copies] == ["resized", "mirrored", "turned", "cropped"]
    for c in copies:
        assert c["refused"]["reason"] == "listed_image" and c["refused"]["case"].startswith("BM-")
        assert c["delivered_to_recipient"] == 0
    assert steps["report"]["case"] and steps["report"]["forged_report"] == "report_not_verified"
    assert steps["skipped_voucher"]["refused"]["reason"] == "voucher_required"
    assert steps["decoy_voucher"]["recipient_check"] == "voucher_not_for_image"
    kinds = sorted(c["kind"] for c in steps["cases"]["cases"])
    assert kinds == ["match", "match", "match", "match", "report", "report"]
    assert {c["id"] for c in steps["cases"]["cases"]} == {
        *(c["refused"]["case"] for c in copies),
        steps["report"]["case"],
        steps["decoy_voucher"]["case"],
    }
    # Everything the demo started has stopped.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert str(home / "demo-matrix") not in ps.stdout


def test_a_bad_table_seed_is_a_usage_error(cli, home: Path) -> None:
    with pytest.raises(SystemExit) as e:
        cli("demo", "matrix", "--table-seed", "xyz")
    assert e.value.code == 2
