"""What the CLI tests of list-side hashes (companions, hot entries) share: build a table from
lists with the CLI (JSON and human output), make vouchers for some pictures and open them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import run_cli


def ok(*args: object) -> list[dict]:
    """Run the CLI; exit 0, or 1 (``voucher open`` when something matched)."""
    res = run_cli(*args)
    assert res.code in (0, 1), res.err
    return res.json_lines


@dataclass
class Probed:
    summary: dict  # table build --json, with the signed manifest under "manifest"
    human: str  # table build's human output
    opened: dict[str, dict]  # voucher open --json per picture file name


def build_and_probe(
    root: Path, mode: str, table_args: list[object], seed: str, pictures: list[Path]
) -> Probed:
    """``table build`` (``table_args``: the ``--list`` options and any others) into
    ``root/table-<mode>``, then ``voucher make`` for ``pictures`` and ``voucher open``."""
    table, vouchers = root / f"table-{mode}", root / f"vouchers-{mode}"
    (summary,) = ok("table", "build", *table_args, "--out", table, "--lsh-seed", seed, "--json")
    res = run_cli("table", "build", *table_args, "--out", root / f"h-{mode}", "--lsh-seed", seed)
    assert res.code == 0, res.err
    summary["manifest"] = json.loads((table / "manifest.json").read_text())["manifest"]
    ok("voucher", "make", "--table", table, "--out", vouchers, "--json", "--workers", 1,
       *pictures)  # fmt: skip
    out = ok("voucher", "open", "--key", table / "server.key", "--json",
             *sorted(vouchers.iterdir()))  # fmt: skip
    opened = {Path(x["path"]).name.removesuffix(".voucher"): x for x in out}
    return Probed(summary, res.out, opened)
