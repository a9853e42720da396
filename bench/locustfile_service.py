"""Locust users for ``bench/bench_service_load.py`` (see there). Configured by environment:
BM_KEY (a read key), BM_WRITE_KEY (a write key), BM_IMAGES (a folder of benign JPEGs),
BM_LIST (the list the writer adds to)."""

from __future__ import annotations

import os
import random
import secrets
from pathlib import Path

from locust import HttpUser, constant, task

KEY = os.environ.get("BM_KEY", "")
WRITE_KEY = os.environ.get("BM_WRITE_KEY", "")
IMAGES = sorted(Path(os.environ.get("BM_IMAGES", ".")).glob("*.jpg"))
DATA = [p.read_bytes() for p in IMAGES]
LIST = os.environ.get("BM_LIST", "writes")


class HashUser(HttpUser):
    """POST /v1/match/hash with a random PDQ, back to back."""

    wait_time = constant(0)

    @task
    def match_hash(self) -> None:
        self.client.post(
            "/v1/match/hash",
            json={"pdq": secrets.token_hex(32)},
            headers={"X-API-Key": KEY},
            name="/v1/match/hash",
        )


class UploadUser(HttpUser):
    """POST /v1/match/upload with one of the benign pictures, back to back."""

    wait_time = constant(0)

    @task
    def match_upload(self) -> None:
        data = random.choice(DATA)
        self.client.post(
            "/v1/match/upload",
            files={"file": ("picture.jpg", data, "image/jpeg")},
            headers={"X-API-Key": KEY},
            name="/v1/match/upload",
        )


class WriterUser(HttpUser):
    """One entry a second into another list (the review saw one fail with 'database is
    locked' during a large import)."""

    wait_time = constant(1)
    fixed_count = 1

    @task
    def add_entry(self) -> None:
        self.client.post(
            f"/v1/lists/{LIST}/entries",
            json={"entries": [{"id": secrets.token_hex(8), "pdq": secrets.token_hex(32)}]},
            headers={"X-API-Key": WRITE_KEY},
            name="/v1/lists/{name}/entries",
        )
