from __future__ import annotations

from collections.abc import Iterator

import pytest

from blindmatch.ncmec.conformance import ConformanceServer, running


@pytest.fixture
def ncmec() -> Iterator[ConformanceServer]:
    """A local CyberTipline conformance server (accounts esp/secret and other/pw2)."""
    with running({"esp": "secret", "other": "pw2"}) as server:
        yield server
