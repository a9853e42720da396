"""The recipient's check of an ``m.room.encrypted`` event (protocol properties 5 and 6).

The homeserver binds each voucher to the *ciphertext* of its blob and cannot see what
the blob decrypts to; only the recipient can check that the voucher was made for the
picture it is about to show. For every received event, :func:`check_event`:

1. reads the **raw** event (nio drops the outer fields when it decrypts) and decrypts it
   with nio (``decrypt_event``: Megolm, replay and device checks are nio's);
2. checks the franking commitment: ``org.blindmatch.franking.commitment`` (outer) against
   the decrypted payload and its ``org.blindmatch.franking_key``
   (:func:`~blindmatch.protocol.franking.open_franked`);
3. for every attachment in the payload (``file``, ``info.thumbnail_file``): finds its
   voucher in the outer ``org.blindmatch.voucher`` and its opening seed in the payload's
   ``org.blindmatch.opening`` (both by ``mxc`` URI), refuses an ``EncryptedFile`` the
   server could not verify a report of (:meth:`EncryptedFile.from_json
   <blindmatch.protocol.franking.EncryptedFile.from_json>`: ``v2``, an AES-256-CTR key and
   an IV whose low 64 bits, the block counter, are zero), downloads the blob, checks its
   SHA-256 against the voucher's ``blob_sha256`` and the ``EncryptedFile``'s hash,
   decrypts it (:func:`~blindmatch.protocol.franking.decrypt_attachment`: the very function
   the server reviews a reported blob with), hashes the picture as the sender must have
   (:func:`~blindmatch.integrations.matrix.client.hash_image`) and checks the voucher with
   :func:`~blindmatch.protocol.verify_voucher_for_image` (commitment = the blob's SHA-256).
   Under a distance-checked table (docs/protocol.md §11) it also fetches the module's
   challenge for the voucher (``POST /_blindmatch/v1/challenge``: a function of the voucher,
   so the very challenge the sender answered) and checks the ``answer`` beside the voucher
   against the one the picture and seed give: a sender who answered anything else (to slip
   a listed picture past the server's check) is caught here.
   A video (what the decrypted bytes are, not what the event says) is vPDQ-hashed
   (:func:`~blindmatch.integrations.matrix.client.hash_video`), the same frames are chosen,
   and each chosen frame's PDQ is checked against its voucher (the field's order) and seed
   (``frame`` = its place among the chosen).

The result is a :class:`Verdict`: ``ok``, or hidden with a :class:`Hidden` reason
(``undecryptable`` often means the room key has not arrived yet: check ``verdict.raw`` again
after the next sync). A hidden
message must not be shown; one whose franking verified can be reported
(:meth:`BlindmatchClient.report <blindmatch.integrations.matrix.client.BlindmatchClient.report>`):
the verdict keeps everything a report needs (the decrypted payload with its franking key,
the commitment, event id, room, sender, server timestamp).

The check needs the same hashing build on both sides (docs/protocol.md §5, "Same hashes on
both sides"): a recipient on another decoder may see ``voucher_not_for_image`` for an
honest sender and should then say "cannot check" rather than accuse.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from nio import BadEvent, Event, MegolmEvent, MemoryDownloadResponse, UnknownBadEvent
from nio.exceptions import EncryptionError

from blindmatch.errors import BlindmatchError, InputError, InvalidVoucher, ProtocolError
from blindmatch.hashing.sniff import sniff
from blindmatch.integrations.matrix.events import (
    ANSWER_KEY,
    FRANKING_FIELD,
    MAX_ATTACHMENTS,
    OPENING_FIELD,
    VOUCHER_FIELD,
    unb64,
)
from blindmatch.protocol import (
    EncryptedFile,
    decrypt_attachment,
    open_franked,
    verify_voucher_for_image,
)

if TYPE_CHECKING:
    from blindmatch.integrations.matrix.client import BlindmatchClient

_TABLE_ID = slice(8, 24)  # where a voucher names its table (docs/protocol.md §5)
MAX_VOUCHER_BYTES = 64 * 1024


class Hidden(StrEnum):
    """Why a received message is hidden."""

    UNDECRYPTABLE = "undecryptable"  # nio could not decrypt it (no room key, bad event)
    MISSING_FRANKING = "missing_franking"  # no org.blindmatch.franking outside
    BAD_FRANKING = "bad_franking"  # the commitment does not open to this payload
    MISSING_VOUCHER = "missing_voucher"  # an attachment without a (well-formed) voucher
    MISSING_OPENING = "missing_opening"  # no opening seed inside for that attachment
    BLOB_UNAVAILABLE = "blob_unavailable"  # the blob could not be downloaded (e.g. quarantined)
    BLOB_MISMATCH = "blob_mismatch"  # blob hash ≠ the voucher's / the EncryptedFile's
    # a malformed EncryptedFile, or one against Matrix's rules (an IV whose 64-bit counter
    # half is not zero): it may decrypt differently elsewhere, so neither shown nor reportable
    UNVERIFIABLE_ATTACHMENT = "unverifiable_attachment"
    UNKNOWN_TABLE = "unknown_table"  # the voucher names a table this client cannot verify
    UNSUPPORTED_ATTACHMENT = "unsupported_attachment"  # no picture or video: unchecked
    VOUCHER_NOT_FOR_IMAGE = "voucher_not_for_image"  # the voucher was made for another image
    # a distance-checked table's voucher whose challenge the server would not give: the
    # answer cannot be checked
    CHECK_UNAVAILABLE = "check_unavailable"


MESSAGES: dict[Hidden, str] = {
    Hidden.UNDECRYPTABLE: "could not be decrypted",
    Hidden.MISSING_FRANKING: "no franking commitment: cannot be reported, not shown",
    Hidden.BAD_FRANKING: "bad franking: the message does not match its commitment",
    Hidden.MISSING_VOUCHER: "an attachment has no voucher",
    Hidden.MISSING_OPENING: "an attachment's voucher cannot be checked (no opening)",
    Hidden.BLOB_UNAVAILABLE: "an attachment could not be downloaded",
    Hidden.BLOB_MISMATCH: "an attachment does not match the blob its voucher names",
    Hidden.UNVERIFIABLE_ATTACHMENT: "an attachment's EncryptedFile is malformed or breaks "
    "Matrix's rules (e.g. a non-zero IV counter): not shown, and a report could not verify",
    Hidden.UNKNOWN_TABLE: "a voucher was made with a table this client cannot verify",
    Hidden.UNSUPPORTED_ATTACHMENT: "an attachment is no picture or video and cannot be checked",
    Hidden.VOUCHER_NOT_FOR_IMAGE: "voucher not for this image",
    Hidden.CHECK_UNAVAILABLE: "an attachment's distance check cannot be verified (the "
    "server gave no challenge for its voucher); try again later",
}


@dataclass(frozen=True)
class CheckedAttachment:
    mxc: str
    blob_sha256: bytes
    where: str  # "file" or "info.thumbnail_file"
    plaintext: bytes | None = field(default=None, repr=False)  # only when the event is ok
    kind: str = "image"  # "image" or "video": what the decrypted bytes are (sniffed)


@dataclass(frozen=True)
class Verdict:
    """The recipient's verdict on one event, and what a report of it needs."""

    event_id: str
    room_id: str
    sender: str
    origin_server_ts: int
    reason: Hidden | None  # None: ok
    detail: str = ""
    payload: dict[str, Any] | None = field(default=None, repr=False)  # decrypted content
    commitment: bytes | None = None  # the franking commitment C
    franking_ok: bool = False
    attachments: tuple[CheckedAttachment, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # as received

    @property
    def ok(self) -> bool:
        return self.reason is None

    @property
    def reportable(self) -> bool:
        """The server can verify a report of it (payload and commitment verified, and no
        attachment the server would decrypt differently: the module refuses those)."""
        return (
            self.payload is not None
            and self.franking_ok
            and self.reason is not Hidden.UNVERIFIABLE_ATTACHMENT
        )

    @property
    def message(self) -> str:
        return "ok" if self.reason is None else MESSAGES[self.reason]

    @property
    def images(self) -> list[bytes]:
        """The decrypted pictures to show (none unless the event is ok)."""
        if not self.ok:
            return []
        return [
            a.plaintext for a in self.attachments if a.plaintext is not None and a.kind == "image"
        ]

    @property
    def videos(self) -> list[bytes]:
        """The decrypted videos to show (none unless the event is ok)."""
        if not self.ok:
            return []
        return [
            a.plaintext for a in self.attachments if a.plaintext is not None and a.kind == "video"
        ]


def _attachments(payload: Mapping[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if "file" in payload:
        out.append(("file", payload["file"]))
    info = payload.get("info")
    if isinstance(info, Mapping) and "thumbnail_file" in info:
        out.append(("info.thumbnail_file", info["thumbnail_file"]))
    return out


_Outer = tuple[bytes, str, bytes | None]


def _outer_vouchers(content: Mapping[str, Any]) -> dict[str, list[_Outer]] | None:
    """mxc → [(voucher bytes, blob_sha256 hex, answer or None), …] from the outer field, in
    its order (a picture has one, a video one per chosen frame); None if malformed."""
    raw = content.get(VOUCHER_FIELD)
    if raw is None:
        return {}
    items = raw if isinstance(raw, list) else [raw]
    if not 1 <= len(items) <= MAX_ATTACHMENTS:
        return None
    out: dict[str, list[_Outer]] = {}
    for item in items:
        if not isinstance(item, Mapping) or item.get("v") != 1:
            return None
        blob, digest, text = item.get("blob"), item.get("blob_sha256"), item.get("voucher")
        if not isinstance(blob, str) or not isinstance(digest, str) or not isinstance(text, str):
            return None
        if len(text) > 2 * MAX_VOUCHER_BYTES or any(d != digest for _, d, _ in out.get(blob, [])):
            return None
        answer_text = item.get(ANSWER_KEY)
        if answer_text is not None and (
            not isinstance(answer_text, str) or len(answer_text) > 2 * MAX_VOUCHER_BYTES
        ):
            return None
        try:
            answer = None if answer_text is None else unb64(answer_text)
            out.setdefault(blob, []).append((unb64(text), digest, answer))
        except ProtocolError:
            return None
    return out


def _openings(payload: Mapping[str, Any]) -> dict[str, dict[int, bytes]]:
    """mxc → {frame: opening seed}; a picture's seed has no ``frame`` (0)."""
    out: dict[str, dict[int, bytes]] = {}
    raw = payload.get(OPENING_FIELD)
    if not isinstance(raw, list):
        return out
    for item in raw[:MAX_ATTACHMENTS]:
        if isinstance(item, Mapping) and isinstance(item.get("blob"), str):
            frame = item.get("frame", 0)
            if type(frame) is not int or not 0 <= frame < MAX_ATTACHMENTS:
                continue
            try:
                out.setdefault(item["blob"], {}).setdefault(frame, unb64(item.get("seed"), 32))
            except ProtocolError:
                continue
    return out


def _open_franking(
    outer: Mapping[str, Any], payload: dict[str, Any]
) -> tuple[bytes | None, Hidden | None, dict[str, Any]]:
    """(commitment, problem, payload as franked)."""
    f = outer.get(FRANKING_FIELD)
    if not isinstance(f, Mapping) or f.get("v") != 1:
        return None, Hidden.MISSING_FRANKING, payload
    try:
        commitment = unb64(f.get("commitment"), 32)
    except ProtocolError:
        return None, Hidden.BAD_FRANKING, payload
    candidates = [payload]
    # nio copies an outer m.relates_to into a decrypted payload that lacks one: the
    # sender franked the payload without it.
    if "m.relates_to" in payload and payload.get("m.relates_to") == outer.get("m.relates_to"):
        candidates.append({k: v for k, v in payload.items() if k != "m.relates_to"})
    for p in candidates:
        try:
            open_franked(p, commitment)
        except ProtocolError:
            continue
        return commitment, None, p
    return commitment, Hidden.BAD_FRANKING, payload


async def check_event(client: BlindmatchClient, room_id: str, raw: Mapping[str, Any]) -> Verdict:
    """The recipient's verdict on one raw ``m.room.encrypted`` event (module docstring)."""
    event_id = str(raw.get("event_id", ""))
    sender = str(raw.get("sender", ""))
    ts = raw.get("origin_server_ts")
    ts = ts if isinstance(ts, int) and not isinstance(ts, bool) else 0
    outer = raw.get("content")
    outer = outer if isinstance(outer, Mapping) else {}

    def verdict(reason: Hidden | None, detail: str = "", **kw: Any) -> Verdict:
        v = Verdict(event_id, room_id, sender, ts, reason, detail, raw=dict(raw), **kw)
        client.remember(v)
        return v

    # 1. Decrypt with nio, from the raw event.
    event = Event.parse_event(dict(raw))
    if not isinstance(event, MegolmEvent):
        return verdict(Hidden.UNDECRYPTABLE, "not a Megolm event")
    event.room_id = room_id
    try:
        decrypted = client.decrypt_event(event)
    except EncryptionError as e:
        return verdict(Hidden.UNDECRYPTABLE, str(e))
    if isinstance(decrypted, (BadEvent, UnknownBadEvent)) or not isinstance(
        decrypted.source.get("content"), dict
    ):
        return verdict(Hidden.UNDECRYPTABLE, "the decrypted event is malformed")
    payload = dict(decrypted.source["content"])

    # 2. Franking.
    commitment, problem, payload = _open_franking(outer, payload)
    if problem is not None:
        return verdict(problem, payload=payload, commitment=commitment)
    keep: dict[str, Any] = {"payload": payload, "commitment": commitment, "franking_ok": True}

    # 3. Attachments.
    found = _attachments(payload)
    if not found:
        return verdict(None, **keep)
    vouchers = _outer_vouchers(outer)
    if vouchers is None:
        return verdict(Hidden.MISSING_VOUCHER, "the voucher field is malformed", **keep)
    openings = _openings(payload)
    checked: list[CheckedAttachment] = []
    for where, file in found:
        url = file.get("url") if isinstance(file, Mapping) else None
        if not isinstance(url, str) or url not in vouchers:
            return verdict(Hidden.MISSING_VOUCHER, where, **keep)
        its = vouchers[url]  # one voucher for a picture, one per chosen frame for a video
        blob_hex = its[0][1]
        seeds = openings.get(url, {})
        if not seeds:
            return verdict(Hidden.MISSING_OPENING, where, **keep)
        try:  # the server's parser: Matrix's rules, the IV's zero counter half among them
            encrypted = EncryptedFile.from_json(file)
        except ProtocolError as e:  # before anything is downloaded or decrypted
            return verdict(Hidden.UNVERIFIABLE_ATTACHMENT, f"{where}: {e.message}", **keep)
        committed = encrypted.sha256
        resp = await client.download(mxc=url)
        if not isinstance(resp, MemoryDownloadResponse):
            return verdict(Hidden.BLOB_UNAVAILABLE, f"{where}: {resp}", **keep)
        blob = resp.body
        digest = hashlib.sha256(blob).digest()
        if not (hmac.compare_digest(digest.hex(), blob_hex) and digest == committed):
            return verdict(Hidden.BLOB_MISMATCH, where, **keep)
        try:
            plaintext = decrypt_attachment(encrypted, blob)
        except ProtocolError as e:
            return verdict(Hidden.BLOB_MISMATCH, f"{where}: {e.message}", **keep)
        tables = []
        for voucher, _, _ in its:
            verified = client.table_by_id(voucher[_TABLE_ID])
            if verified is None:  # a table newer than ours?
                await client.refresh_table()
                verified = client.table_by_id(voucher[_TABLE_ID])
            if verified is None:
                return verdict(Hidden.UNKNOWN_TABLE, where, **keep)
            tables.append(verified)
        kind = sniff(plaintext[:512])
        if kind is None or kind[0] not in ("image", "video"):
            return verdict(Hidden.UNSUPPORTED_ATTACHMENT, where, **keep)
        # A distance-checked table's voucher: the challenge the sender answered (a function
        # of the voucher: the module gives the same bytes again). No answer, or no
        # challenge to check it against: not shown.
        challenges: list[bytes | None] = []
        for (voucher, _, answer), verified in zip(its, tables, strict=True):
            if verified.table.distance is None:
                challenges.append(None)
                continue
            if answer is None:
                return verdict(Hidden.MISSING_VOUCHER, f"{where}: no distance-check answer",
                               **keep)  # fmt: skip
            try:
                challenges.append(await client.fetch_challenge(voucher, verified))
            except BlindmatchError as e:
                return verdict(Hidden.CHECK_UNAVAILABLE, f"{where}: {e.message}", **keep)
        try:
            if kind[0] == "image":
                if len(its) != 1:
                    return verdict(Hidden.VOUCHER_NOT_FOR_IMAGE,
                                   f"{where}: a picture has one voucher", **keep)  # fmt: skip
                if 0 not in seeds:
                    return verdict(Hidden.MISSING_OPENING, where, **keep)
                hashes = await client.hash_image(plaintext, companions=tables[0].has_companions)
                verify_voucher_for_image(
                    tables[0],
                    its[0][0],
                    seeds[0],
                    hashes.pdq,
                    confidence=hashes.confidence,
                    variants=hashes.variants,
                    commitment=digest,
                    challenge=challenges[0],
                    answer=its[0][2] if challenges[0] is not None else None,
                )
            else:
                # The same vPDQ hash and the same choice of frames as the sender's: the
                # vouchers, in the field's order, are those of the chosen frames.
                video = await client.hash_video(plaintext)
                frames = video.chosen_frames
                if len(its) != len(frames):
                    detail = f"{where}: {len(its)} vouchers for {len(frames)} chosen frames"
                    return verdict(Hidden.VOUCHER_NOT_FOR_IMAGE, detail, **keep)
                for j, frame in enumerate(frames):
                    if j not in seeds:
                        return verdict(Hidden.MISSING_OPENING, f"{where}: frame {j}", **keep)
                    try:
                        verify_voucher_for_image(
                            tables[j], its[j][0], seeds[j], bytes.fromhex(frame.pdq),
                            commitment=digest, challenge=challenges[j],
                            answer=its[j][2] if challenges[j] is not None else None,
                        )  # fmt: skip
                    except InvalidVoucher:
                        detail = f"{where}: frame {j} at {frame.timestamp:g} s"
                        return verdict(Hidden.VOUCHER_NOT_FOR_IMAGE, detail, **keep)
        except InputError as e:  # no honest sender could have hashed it either
            return verdict(Hidden.UNSUPPORTED_ATTACHMENT, f"{where}: {e.message}", **keep)
        except InvalidVoucher:
            return verdict(Hidden.VOUCHER_NOT_FOR_IMAGE, where, **keep)
        checked.append(CheckedAttachment(url, digest, where, plaintext, kind[0]))
    return verdict(None, attachments=tuple(checked), **keep)


__all__ = [
    "MESSAGES",
    "CheckedAttachment",
    "Hidden",
    "Verdict",
    "check_event",
]
