"""HTTP service: hash uploads, match hashes or uploads, manage lists.

Every route needs an API key (``Authorization: Bearer KEY`` or ``X-API-Key``);
writes need a key with write scope. Every error is a JSON body
``{"error": {"code", "message"}}``, a failure inside the service included (a coded
500 that keeps the connection open). Request bodies are capped in size and must
arrive in time; image decoding is bounded by a pixel limit and a budget of pixels
decoded at once (see ``blindmatch.service.limits``). Outside dev mode the OpenAPI
spec needs a key and the browsable docs are off.
"""

import asyncio
import hmac
import logging
import os
import tempfile
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import Depends, FastAPI, File, Header, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from blindmatch._version import __version__
from blindmatch.errors import (
    BlindmatchError,
    DatabaseBusy,
    DatabaseError,
    InputError,
    InvalidField,
    InvalidHash,
    ListExists,
    ListFormatError,
    ListNotFound,
    ServiceBusy,
)
from blindmatch.hashing import Hashes, hash_bytes, open_image, sniff
from blindmatch.hashing.image import decode_cost
from blindmatch.lists import (
    ListEntry,
    dump_list,
    normalise_md5,
    normalise_pdq,
    normalise_sha256,
    validate_list_name,
)
from blindmatch.lists.model import (
    MAX_DESCRIPTION_LENGTH,
    MAX_PDQ_HOT,
    MAX_SOURCE_ID_LENGTH,
    MAX_SOURCE_LENGTH,
    MAX_VERSION_LENGTH,
)
from blindmatch.matching import DEFAULT_MIN_QUALITY
from blindmatch.runtime import Runtime
from blindmatch.service.limits import MIN_DECODE_COST, DecodeBudget, FifoGate

_STATUS = {
    ListNotFound: 404,
    ListExists: 409,
    InputError: 422,
    InvalidHash: 422,
    ListFormatError: 422,
    InvalidField: 422,
    ServiceBusy: 503,
    DatabaseBusy: 503,  # another writer held the lock past the wait: try again
    DatabaseError: 503,  # the database is unreachable or failed: not the request's fault
}
HASH_SLOTS = 1  # uploads hashed at once per worker process (the GIL serialises them anyway)
BODY_TIMEOUT = 30.0  # seconds a request body may pause between two chunks
log = logging.getLogger("blindmatch.service")


def _error(status: int, code: str, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, **extra}}, status_code=status)


class ErrorShield:
    """The outermost guard: an exception no handler took becomes a coded JSON 500
    (one log line, no traceback flood) and is not raised on to the server, which would
    close the kept-alive connection (uvicorn does once a response has started; Starlette
    re-raises after its own 500)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, receive, tracked)
        except Exception as e:  # noqa: BLE001 - the point: no exception reaches the server
            log.error(
                "internal error on %s %s: %s", scope.get("method"), scope.get("path"),
                type(e).__name__, exc_info=e,
            )  # fmt: skip
            if not started:
                resp = _error(500, "internal_error", "the service failed on this request")
                await resp(scope, receive, send)
            # else: half a response cannot be mended; the server closes that connection


class BodySizeLimit:
    """Cap request bodies: a declared oversize body (Content-Length) gets a JSON
    413 at once; an undeclared (chunked) one is counted as it arrives and
    stopped with an HTTP 413 error, which the app's error handler renders. A body
    that pauses longer than ``timeout`` seconds between chunks is stopped with a 408.

    (FastAPI's own ``max_body_size`` answers declared sizes in plain text, outside
    the app's error handlers, so every error would no longer be JSON.)"""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float = BODY_TIMEOUT) -> None:
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope.get("headers", ()):
                if name == b"content-length" and (
                    not value.isdigit() or int(value) > self.max_bytes
                ):
                    resp = _error(
                        413, "too_large", f"request body is over {self.max_bytes:,} bytes"
                    )
                    await resp(scope, receive, send)
                    return
            seen = 0
            done = False

            async def counted() -> Message:
                nonlocal seen, done
                if done:  # the body is in: wait for a disconnect as long as it takes
                    return await receive()
                try:
                    msg = await asyncio.wait_for(receive(), self.timeout)
                except TimeoutError:
                    raise StarletteHTTPException(
                        408, f"the request body paused for over {self.timeout:g} s"
                    ) from None
                done = msg["type"] != "http.request" or not msg.get("more_body", False)
                seen += len(msg.get("body", b""))
                if seen > self.max_bytes:
                    raise StarletteHTTPException(
                        413, f"request body is over {self.max_bytes:,} bytes"
                    )
                return msg

            await self.app(scope, counted, send)
            return
        await self.app(scope, receive, send)


class HashQuery(BaseModel):
    pdq: str | None = None
    md5: str | None = None
    sha256: str | None = None
    lists: list[str] | None = None
    threshold: int | None = Field(default=None, ge=0, le=128)


class ListCreate(BaseModel):
    source: str = Field(default="", max_length=MAX_SOURCE_LENGTH)
    version: str = Field(default="", max_length=MAX_VERSION_LENGTH)
    description: str = Field(default="", max_length=MAX_DESCRIPTION_LENGTH)
    pdq_threshold: int = Field(default=31, ge=0, le=128)


class EntryIn(BaseModel):
    id: str = Field(min_length=1, max_length=MAX_SOURCE_ID_LENGTH)
    pdq: str | None = Field(default=None, max_length=80)
    pdq_companion: str | None = Field(default=None, max_length=80)
    # A hot entry's hot companion hashes (at most 96; ListEntry.pdq_hot checks them).
    pdq_hot: list[Annotated[str, Field(max_length=80)]] | None = Field(
        default=None, max_length=MAX_PDQ_HOT
    )
    md5: str | None = Field(default=None, max_length=48)
    sha256: str | None = Field(default=None, max_length=80)
    category: str | None = Field(default=None, max_length=16)
    removed: bool = False


class EntriesIn(BaseModel):
    entries: list[EntryIn] = Field(max_length=100_000)
    source: str | None = Field(default=None, max_length=MAX_SOURCE_LENGTH)
    version: str | None = Field(default=None, max_length=MAX_VERSION_LENGTH)


def create_app(rt: Runtime) -> FastAPI:
    settings = rt.settings
    settings.check_service_secrets()
    admin_key = settings.effective_admin_key()
    docs = settings.dev  # outside dev mode: /openapi.json needs a key, no /docs or /redoc
    app = FastAPI(
        title="blindmatch",
        version=__version__,
        description="Hash images and videos, match them against hash lists, manage lists. "
        "Ships and tests with benign images only.",
        docs_url="/docs" if docs else None,
        redoc_url="/redoc" if docs else None,
        openapi_url="/openapi.json" if docs else None,
    )
    matcher = rt.matcher  # loaded once; refreshed after every write and before every match
    max_pixels = settings.max_pixels
    budget = DecodeBudget(settings.decode_budget)
    gate = FifoGate(HASH_SLOTS)  # the CPU-bound hashing, in arrival order
    app.state.decode_budget = budget

    @app.exception_handler(ServiceBusy)
    async def _busy(_: Request, e: ServiceBusy) -> JSONResponse:
        return JSONResponse(
            {"error": e.as_dict()}, status_code=503, headers={"Retry-After": str(e.retry_after)}
        )

    @app.exception_handler(BlindmatchError)
    async def _bm_error(_: Request, e: BlindmatchError) -> JSONResponse:
        status = next((s for t, s in _STATUS.items() if isinstance(e, t)), 400)
        headers = {"Retry-After": "1"} if isinstance(e, DatabaseBusy) else None
        return JSONResponse({"error": e.as_dict()}, status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        details = [
            {"loc": [str(x) for x in err.get("loc", ())], "msg": str(err.get("msg", ""))}
            for err in e.errors()
        ]
        return _error(422, "invalid_request", "the request is not valid", details=details)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {
            401: "unauthorized",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            408: "timeout",
            413: "too_large",
        }
        return _error(e.status_code, code.get(e.status_code, "http_error"), str(e.detail))

    @app.exception_handler(ValueError)
    async def _value(_: Request, e: ValueError) -> JSONResponse:
        return _error(422, "invalid_request", str(e))

    def scope_of(
        authorization: Annotated[str | None, Header()] = None,
        x_api_key: Annotated[str | None, Header()] = None,
    ) -> str:
        key = x_api_key
        if authorization and authorization.lower().startswith("bearer "):
            key = authorization[7:].strip()
        if not key:
            raise StarletteHTTPException(401, "an API key is required")
        if admin_key and hmac.compare_digest(key.encode(), admin_key.encode()):
            return "write"
        scope = rt.store.api_key_scope(key)
        if scope is None:
            raise StarletteHTTPException(401, "unknown or revoked API key")
        return scope

    def reader(scope: Annotated[str, Depends(scope_of)]) -> str:
        return scope

    def writer(scope: Annotated[str, Depends(scope_of)]) -> str:
        if scope != "write":
            raise StarletteHTTPException(403, "this key may not change lists")
        return scope

    Read = Depends(reader)
    Write = Depends(writer)

    def _decode_cost(data: bytes) -> int:
        """Pixels to reserve for decoding ``data`` (``decode_cost``: the header's size,
        doubled for modes that need a second full-size buffer). Images over the pixel
        limit are refused before decoding and unreadable headers fail at once, so both
        cost the minimum."""
        return decode_cost(data, max_pixels) or MIN_DECODE_COST

    def _hash_upload(data: bytes, variants: bool = False) -> Hashes:
        kind = sniff(data[:512])
        if kind is not None and kind[0] == "video":
            fd, path = tempfile.mkstemp(prefix="blindmatch-upload-")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                return hash_bytes(data, video_path=path, max_pixels=max_pixels)
            finally:
                os.unlink(path)
        # keypoints: the matcher computes them itself, only when a listed entry has any
        return hash_bytes(data, variants=variants, keypoints=False, max_pixels=max_pixels)

    if not docs:

        @app.get("/openapi.json", include_in_schema=False, dependencies=[Read])
        def openapi_spec() -> JSONResponse:
            return JSONResponse(app.openapi())

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "pdq_entries": len(matcher)}

    @app.post("/v1/hash", tags=["hashing"], dependencies=[Read])
    def hash_upload(file: Annotated[UploadFile, File()]) -> dict[str, Any]:
        """Hash an uploaded image or video (PDQ or vPDQ, MD5, SHA-256)."""
        data = file.file.read()
        with gate.enter(), budget.reserve(_decode_cost(data)):
            return _hash_upload(data).to_json()

    @app.post("/v1/match/hash", tags=["matching"], dependencies=[Read])
    def match_hash(q: HashQuery) -> dict[str, Any]:
        """Match a PDQ, MD5 or SHA-256 against lists."""
        if not (q.pdq or q.md5 or q.sha256):
            raise InvalidHash("give at least one of pdq, md5, sha256")
        matcher.refresh()  # other processes (``blindmatch lists import``) may have written
        found = matcher.match_values(
            pdq=normalise_pdq(q.pdq) if q.pdq else None,
            md5=normalise_md5(q.md5) if q.md5 else None,
            sha256=normalise_sha256(q.sha256) if q.sha256 else None,
            lists=q.lists,
            threshold=q.threshold,
        )
        return {"matches": [m.to_json() for m in found]}

    @app.post("/v1/match/upload", tags=["matching"], dependencies=[Read])
    def match_upload(
        file: Annotated[UploadFile, File()],
        lists: Annotated[list[str] | None, Query(alias="list")] = None,
        threshold: Annotated[int | None, Query(ge=0, le=128)] = None,
        min_quality: Annotated[int, Query(ge=0, le=100)] = DEFAULT_MIN_QUALITY,
    ) -> dict[str, Any]:
        """Hash an upload and match it against lists (robust: flips, rotations,
        frames, and listed pictures found inside crops by their keypoints)."""
        data = file.file.read()
        # first come, first served; pixels held while keypoints may decode again
        with gate.enter(), budget.reserve(_decode_cost(data)):
            h = _hash_upload(data, variants=True)
            matcher.refresh()  # other processes (``blindmatch lists add``) may have written
            found = matcher.match(
                h,
                lists=lists,
                threshold=threshold,
                min_quality=min_quality,
                image=lambda: np.asarray(open_image(data, max_pixels=max_pixels)),
                lazy_keypoints=True,
            )
        return {"hashes": h.to_json(), "matches": [m.to_json() for m in found]}

    @app.get("/v1/lists", tags=["lists"], dependencies=[Read])
    def all_lists() -> dict[str, Any]:
        return {"lists": [i.to_json() for i in rt.store.lists()]}

    @app.get("/v1/lists/{name}", tags=["lists"], dependencies=[Read])
    def one_list(name: str) -> dict[str, Any]:
        return rt.store.get_list(name).to_json()

    @app.put("/v1/lists/{name}", tags=["lists"], dependencies=[Write], status_code=201)
    def create_list(name: str, body: ListCreate) -> dict[str, Any]:
        validate_list_name(name)
        info = rt.store.create_list(
            name,
            source=body.source,
            version=body.version,
            description=body.description,
            pdq_threshold=body.pdq_threshold,
        )
        return info.to_json()

    @app.post("/v1/lists/{name}/entries", tags=["lists"], dependencies=[Write])
    def add_entries(name: str, body: EntriesIn) -> dict[str, Any]:
        """Add, change or tombstone entries (one transaction); matchable on return."""
        entries = []
        for i, e in enumerate(body.entries):
            try:
                entries.append(
                    ListEntry(
                        source_id=e.id,
                        pdq=e.pdq,
                        pdq_companion=e.pdq_companion,
                        pdq_hot=tuple(e.pdq_hot or ()),
                        md5=e.md5,
                        sha256=e.sha256,
                        category=e.category,
                        removed=e.removed,
                    )
                )
            except (InvalidHash, ValueError) as err:
                raise ListFormatError(f"entry {i}: {err}") from None
        rt.store.get_list(name)
        summary = rt.store.import_entries(
            name, entries, create=False, source=body.source, version=body.version
        )
        matcher.refresh()
        return summary.to_json()

    @app.delete("/v1/lists/{name}", tags=["lists"], dependencies=[Write])
    def delete_list(name: str) -> dict[str, Any]:
        rt.store.remove_list(name)
        matcher.refresh()
        return {"removed": name}

    @app.get("/v1/lists/{name}/export", tags=["lists"], dependencies=[Read])
    def export_list(name: str, format: Literal["csv", "jsonl", "te"] = "csv") -> Response:
        data = dump_list(list(rt.store.live_entries(name)), format)
        media = {"csv": "text/csv", "jsonl": "application/jsonl", "te": "text/plain"}[format]
        return Response(data, media_type=media)

    # The review console (docs/review.md): its own login and sessions, no API key.
    from blindmatch.review.operator import Operator
    from blindmatch.service.console import create_console

    operator = Operator.from_settings(settings, engine=rt.store.engine)
    app.mount("/review", create_console(operator))
    if operator.outbox is not None:  # confirmed cases become CyberTipline reports
        from contextlib import asynccontextmanager

        from blindmatch.ncmec.worker import OutboxWorker, interval_from_env

        interval = interval_from_env()

        @asynccontextmanager
        async def _lifespan(_: FastAPI) -> Any:
            worker = OutboxWorker(operator.outbox, interval).start()
            try:
                yield
            finally:
                worker.stop()

        app.router.lifespan_context = _lifespan

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(ErrorShield)  # added last: the outermost of the two
    return app


def app_from_env() -> FastAPI:
    """The app for ``uvicorn --factory`` (``serve --workers N`` starts one per worker
    process): settings from the environment, as ``serve`` set them."""
    from blindmatch.runtime import open_runtime

    return create_app(open_runtime())
