"""The file-backed table history (rollback protection that survives a restart)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from blindmatch.errors import ConfigError
from blindmatch.table_history import FileTableHistory

A, B = b"A" * 32, b"B" * 32


def test_what_is_recorded_is_read_back_by_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "state" / "history.json"
    FileTableHistory(path).record(A, 7, b"\x07" * 32)
    again = FileTableHistory(path)
    assert again.last(A) == (7, b"\x07" * 32)
    assert again.last(B) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["platforms"] == {
        A.hex(): {"sequence": 7, "table_digest": "07" * 32}
    }
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_the_highest_sequence_wins_across_writers(tmp_path: Path) -> None:
    path = tmp_path / "history.json"
    first, second = FileTableHistory(path), FileTableHistory(path)
    first.record(A, 9, b"\x09" * 32)
    second.record(A, 4, b"\x04" * 32)  # a writer that is behind never lowers it
    second.record(B, 1, b"\x01" * 32)
    assert first.last(A) == (9, b"\x09" * 32) and first.last(B) == (1, b"\x01" * 32)


BAD_KEY = '{"format": "blindmatch-table-history", "version": 1, "platforms": {"ab": {}}}'


@pytest.mark.parametrize("text", ["{", "[]", '{"format": "other", "version": 1}', BAD_KEY])
def test_an_unreadable_history_is_an_error_not_a_reset(tmp_path: Path, text: str) -> None:
    path = tmp_path / "history.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="not a table history file"):
        FileTableHistory(path).last(A)
    with pytest.raises(ConfigError):
        FileTableHistory(path).record(A, 1, b"\x01" * 32)
    assert path.read_text() == text
