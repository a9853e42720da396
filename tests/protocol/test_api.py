"""The public API is what __all__ says, and the core stays pure."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import blindmatch.protocol as protocol
import blindmatch.protocol.hazmat as hazmat

SRC = Path(protocol.__file__).resolve().parent
FORBIDDEN_IMPORTS = {
    "logging", "socket", "sqlite3", "sqlalchemy", "pickle", "marshal", "shelve", "subprocess",
    "pathlib", "shutil", "tempfile", "urllib", "http", "requests", "httpx",
    "blindmatch.store", "blindmatch.service", "blindmatch.cli", "blindmatch.runtime",
    "blindmatch.files", "blindmatch.batch", "blindmatch.matching",
}  # fmt: skip


def test_all_is_unique_importable_and_complete() -> None:
    for mod in (protocol, hazmat):
        names = list(mod.__all__)
        assert len(names) == len(set(names))
        for name in names:
            assert hasattr(mod, name), name
    public = {
        n
        for n in dir(protocol)
        if isinstance(getattr(protocol, n), type)
        and getattr(protocol, n).__module__.startswith("blindmatch.protocol")
    }
    classes_not_exported = public - set(protocol.__all__)
    assert not classes_not_exported, classes_not_exported


def test_hazmat_docstring_warns() -> None:
    assert hazmat.__doc__ is not None and "warning" in hazmat.__doc__.lower()


def test_protocol_does_no_io_and_no_logging() -> None:
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                    assert node.func.id not in {"open", "print", "input"}, path
                continue
            for n in names:
                assert not any(n == f or n.startswith(f + ".") for f in FORBIDDEN_IMPORTS), (
                    path,
                    n,
                )


def test_every_protocol_module_imports() -> None:
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC.parent.parent).with_suffix("")
        importlib.import_module(".".join(rel.parts).removesuffix(".__init__"))
