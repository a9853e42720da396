"""Locust users for ``bench/bench_service_load.py`` (see there): FastHttpUser, the lighter
client, so that the load generator takes less of the two cores from the server.
Configured by environment: BM_KEY (a read key), BM_WRITE_KEY (a write key), BM_IMAGES (a
folder of benign JPEGs), BM_LIST (the list the writer adds to)."""

from __future__ import annotations

import os
import random
import secrets
from pathlib import Path

from locust import constant, task
from locust.contrib.fasthttp import FastHttpUser

KEY = os.environ.get("BM_KEY", "")
WRITE_KEY = os.environ.get("BM_WRITE_KEY", "")
IMAGES = sorted(Path(os.environ.get("BM_IMAGES", ".")).glob("*.jpg"))
LIST = os.environ.get("BM_LIST", "writes")
BOUNDARY = "blindmatch-bench-boundary"


def _multipart(data: bytes) -> bytes:
    """One ``file`` field, as a browser or ``curl -F`` sends it (FastHttpUser has no files=)."""
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="picture.jpg"\r\nContent-Type: image/jpeg\r\n\r\n'
    ).encode()
    return head + data + f"\r\n--{BOUNDARY}--\r\n".encode()


BODIES = [_multipart(p.read_bytes()) for p in IMAGES]


class HashUser(FastHttpUser):
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


class UploadUser(FastHttpUser):
    """POST /v1/match/upload with one of the benign pictures, back to back."""

    wait_time = constant(0)

    @task
    def match_upload(self) -> None:
        self.client.post(
            "/v1/match/upload",
            data=random.choice(BODIES),
            headers={"X-API-Key": KEY, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            name="/v1/match/upload",
        )


class WriterUser(FastHttpUser):
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
