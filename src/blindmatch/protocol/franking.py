"""Message franking: reports of end-to-end-encrypted messages that the server can verify.

Property 5 of the design brief, after Facebook's scheme as analysed by Grubbs, Lu and
Ristenpart (CRYPTO 2017) and ``shared/design/workflow.md``. Three parties, one message:

1. **Sender.** Draws a fresh 32-byte franking key ``Kf`` and puts it *inside* the payload it
   encrypts, under :data:`FRANKING_KEY_FIELD`. The *message* is the canonical JSON
   (:func:`canonical_json`) of that payload **without** the franking-key field. The sender
   sends ``C = HMAC-SHA256(Kf, message)`` *outside* the encryption (:func:`frank`).
2. **Server.** Sees only ``C`` (a PRF output under a key it never sees: nothing about the
   message) and the metadata it already has; it attaches
   ``R = key_id ‖ HMAC-SHA256(Ks[key_id], "blindmatch/v1/franking-tag\\0" ‖ key_id ‖ C ‖
   sender ‖ room ‖ timestamp)`` (:meth:`FrankingKeyring.tag`; strings are u16-length-prefixed
   UTF-8, ``key_id`` u32, ``timestamp`` u64 milliseconds, all big-endian).
3. **Recipient.** Decrypts, recomputes ``C`` from the payload (:func:`open_franked`) and
   refuses the message if it differs (a sender that sends a wrong ``C`` makes its message
   unreportable; recipients must not display such messages as reportable). Keeps the payload,
   ``C``, ``R`` and the context.
4. **Report.** The recipient sends ``(payload, C, R, context)``; the server checks ``C``
   against the payload's message and franking key, and ``R`` against ``C`` and the context
   (:meth:`FrankingKeyring.verify_report`). Both hold only if the accused sent exactly this
   message, in this room, at this time.

**Why HMAC is a commitment here.** ``C`` must bind: no recipient may find
``(Kf', m') ≠ (Kf, m)`` with the same ``C``. HMAC-SHA256 with a key of one fixed length is
collision resistant in (key, message) as long as SHA-256 is; variable-length keys are not
(HMAC pads short keys with zeros and hashes long ones, so ``k`` and ``k ‖ 00`` collide), which
is why every franking key is exactly 32 bytes and anything else is refused. ``C`` hides the
message because ``Kf`` is fresh, uniform and secret (HMAC is a PRF).

**Attachments.** Matrix encrypts an attachment with AES-256-CTR and puts the key, the IV and
the SHA-256 of the ciphertext inside the encrypted event (``EncryptedFile``: ``key.k``,
``iv``, ``hashes.sha256``). Those fields are part of the franked message, so ``C`` commits to
them. CTR decryption is a *function* of (key, IV, ciphertext): one ciphertext under one key and
IV has exactly one plaintext, and SHA-256's collision resistance pins the ciphertext. So the
franked message determines the attachment's plaintext uniquely. This is what fails with
AES-GCM alone ("invisible salamanders", Dodis et al., CRYPTO 2018): GCM's tag is not
key-committing, so a ciphertext can be crafted that authenticates under two keys to two
plaintexts, and committing to the ciphertext does not pin the plaintext unless the key is
committed too. Here the key itself is committed and there is no tag to forge at all
(integrity comes from the SHA-256 inside the E2EE payload). :func:`verify_attachment`
checks a reported blob against the franked ``EncryptedFile``; :func:`decrypt_attachment`
gives the server the plaintext for review.

**The counter.** The 16-byte IV is 8 random bytes then a 64-bit block counter that starts at
zero (what Matrix clients write, and :func:`encrypt_attachment`). "One plaintext" holds only
if every party runs the counter the same way, and they do not: Matrix clients (nio's
``decrypt_attachment`` among them) increment the low 64 bits and *wrap* within them, while a
128-bit counter (``cryptography``'s CTR, used here) carries into the high half. For an IV
whose low half is zero the two agree on every attachment (:data:`MAX_ATTACHMENT_BYTES` is
2**28 blocks, far from 2**64); for a sender-chosen IV ``prefix ‖ FF…FF`` they part from the
second block on, so a recipient would see one picture and the server review another. So an
:class:`EncryptedFile` whose IV has a non-zero low half can be neither built nor parsed: it
is refused with a :class:`~blindmatch.errors.ProtocolError`, and nothing is decrypted for it
under either convention.

**Key rotation.** ``R`` starts with the 4-byte id of the server key that made it; a
:class:`FrankingKeyring` holds every key still accepted for reports and the one used for new
tags. Dropping an old key ends the reportability of messages tagged with it: keep keys at
least as long as reports are accepted.

All of this is pure (no I/O); errors are :class:`~blindmatch.errors.ProtocolError` with a
message naming the problem for malformed input, and one opaque message
(``"franking report did not verify"``) for every cryptographic mismatch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from blindmatch.errors import ProtocolError
from blindmatch.protocol import _wire as w
from blindmatch.protocol.hazmat.rng import Rng, system_rng

FRANKING_KEY_BYTES = 32
COMMITMENT_BYTES = 32
TAG_BYTES = 4 + 32
#: Where the franking key travels inside the encrypted payload (unpadded base64).
FRANKING_KEY_FIELD = "org.blindmatch.franking_key"
MAX_MESSAGE_BYTES = 1 << 20  # Matrix events are at most 64 KiB; this is generous
MAX_ID_BYTES = 255  # Matrix user and room ids
MAX_JSON_DEPTH = 64
MAX_TIMESTAMP = (1 << 63) - 1
MAX_KEY_ID = (1 << 32) - 1
MAX_ATTACHMENT_BYTES = 1 << 32
IV_BYTES = 16
#: The IV's first 8 bytes are random; the last 8 are the block counter and must be zero.
IV_NONCE_BYTES = 8
_JSON_INT = (1 << 53) - 1
_TAG_LABEL = b"blindmatch/v1/franking-tag\x00"
_FAILED = "franking report did not verify"


def _bad(message: str) -> ProtocolError:
    return ProtocolError(message)


# -- canonical JSON ------------------------------------------------------------------------
def _check_json(value: object, depth: int) -> None:
    if depth > MAX_JSON_DEPTH:
        raise _bad(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, (bool, str)):
        return
    if isinstance(value, int):
        if not -_JSON_INT <= value <= _JSON_INT:
            raise _bad("JSON integers must lie within ±(2**53 - 1) (Matrix canonical JSON)")
        return
    if isinstance(value, float):
        raise _bad("floats are not allowed in canonical JSON")
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, str):
                raise _bad("JSON object keys must be strings")
            _check_json(v, depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for v in value:
            _check_json(v, depth + 1)
        return
    raise _bad(f"{type(value).__name__} is not a JSON value")


def canonical_json(value: object) -> bytes:
    """Matrix canonical JSON: keys sorted by code point, no whitespace, UTF-8, integers only.

    Implemented here (on the standard library's encoder, exactly as Matrix's reference
    ``canonicaljson`` package does) so that the protocol core needs no Matrix dependency; the
    tests cross-check it against ``canonicaljson`` and the Matrix specification's examples.
    Floats, integers beyond ±(2**53 − 1), non-string keys, unpaired surrogates and nesting
    deeper than :data:`MAX_JSON_DEPTH` are refused.
    """
    _check_json(value, 0)
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"),
                      sort_keys=True)  # fmt: skip
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("JSON strings must be valid Unicode (no unpaired surrogates)") from None


# -- base64 as Matrix writes it -------------------------------------------------------------
def _b64encode(raw: bytes, *, urlsafe: bool = False) -> str:
    enc = base64.urlsafe_b64encode(raw) if urlsafe else base64.b64encode(raw)
    return enc.decode("ascii").rstrip("=")


def _b64decode(text: object, size: int, what: str, *, urlsafe: bool = False) -> bytes:
    """Strict unpadded base64 of exactly ``size`` bytes (the canonical encoding only)."""
    if not isinstance(text, str) or len(text) > 4 * size:
        raise _bad(f"{what} must be unpadded base64 of {size} bytes")
    try:
        padded = (text + "=" * (-len(text) % 4)).encode("ascii")
        raw = (
            base64.urlsafe_b64decode(padded) if urlsafe else base64.b64decode(padded, validate=True)
        )
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise _bad(f"{what} must be unpadded base64 of {size} bytes") from None
    if len(raw) != size or _b64encode(raw, urlsafe=urlsafe) != text:
        raise _bad(f"{what} must be unpadded base64 of {size} bytes")
    return raw


# -- commitment (sender, recipient) ----------------------------------------------------------
def _check_key(franking_key: object) -> bytes:
    if not isinstance(franking_key, bytes) or len(franking_key) != FRANKING_KEY_BYTES:
        raise _bad(f"a franking key is exactly {FRANKING_KEY_BYTES} bytes")
    return franking_key


def _check_message(message: object) -> bytes:
    if not isinstance(message, bytes):
        raise _bad("a franked message is bytes (canonical JSON)")
    if len(message) > MAX_MESSAGE_BYTES:
        raise _bad(f"a franked message is at most {MAX_MESSAGE_BYTES} bytes")
    return message


def _check_commitment(commitment: object) -> bytes:
    if not isinstance(commitment, bytes) or len(commitment) != COMMITMENT_BYTES:
        raise _bad(f"a franking commitment is {COMMITMENT_BYTES} bytes")
    return commitment


def new_franking_key(rng: Rng = system_rng) -> bytes:
    """A fresh 32-byte franking key (one per message, never reused)."""
    return _check_key(rng(FRANKING_KEY_BYTES))


def commit(franking_key: bytes, message: bytes) -> bytes:
    """``C = HMAC-SHA256(Kf, message)``."""
    key, msg = _check_key(franking_key), _check_message(message)
    return hmac.digest(key, msg, "sha256")


def check_commitment(franking_key: bytes, message: bytes, commitment: bytes) -> None:
    """Raise :class:`~blindmatch.errors.ProtocolError` unless ``C`` commits to ``message``."""
    expected = commit(franking_key, message)
    if not hmac.compare_digest(expected, _check_commitment(commitment)):
        raise _bad(_FAILED)


def franked_message(payload: Mapping[str, object]) -> tuple[bytes, bytes]:
    """``(message, Kf)`` of a decrypted payload: the canonical JSON of the payload without
    :data:`FRANKING_KEY_FIELD`, and the franking key that field carries."""
    if not isinstance(payload, Mapping):
        raise _bad("a franked payload is a JSON object")
    if FRANKING_KEY_FIELD not in payload:
        raise _bad(f"the payload carries no {FRANKING_KEY_FIELD}")
    key = _b64decode(payload[FRANKING_KEY_FIELD], FRANKING_KEY_BYTES, "the franking key")
    rest = {k: v for k, v in payload.items() if k != FRANKING_KEY_FIELD}
    return _check_message(canonical_json(rest)), key


@dataclass(frozen=True)
class Franked:
    """What the sender gets from :func:`frank`: the payload to encrypt (with the franking key
    inside) and ``C`` to send outside the encryption."""

    payload: dict[str, object] = field(repr=False)
    commitment: bytes
    message: bytes = field(repr=False)

    @property
    def franking_key(self) -> bytes:
        return _b64decode(self.payload[FRANKING_KEY_FIELD], FRANKING_KEY_BYTES, "franking key")


def frank(payload: Mapping[str, object], rng: Rng = system_rng) -> Franked:
    """Sender: add a fresh franking key to ``payload`` and commit to the message."""
    if not isinstance(payload, Mapping):
        raise _bad("a franked payload is a JSON object")
    if FRANKING_KEY_FIELD in payload:
        raise _bad(f"the payload already carries {FRANKING_KEY_FIELD}")
    key = new_franking_key(rng)
    message = _check_message(canonical_json(payload))
    out = {**payload, FRANKING_KEY_FIELD: _b64encode(key)}
    return Franked(out, commit(key, message), message)


def open_franked(payload: Mapping[str, object], commitment: bytes) -> tuple[bytes, bytes]:
    """Recipient: check ``C`` against the decrypted payload; returns ``(message, Kf)``.

    Raises :class:`~blindmatch.errors.ProtocolError` if the payload is malformed or ``C``
    does not commit to it (the message must then not be shown as reportable)."""
    message, key = franked_message(payload)
    check_commitment(key, message, commitment)
    return message, key


# -- the server's tag --------------------------------------------------------------------------
def _check_id(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise _bad(f"{what} must be a non-empty string")
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(f"{what} must be valid Unicode") from None
    if len(raw) > MAX_ID_BYTES:
        raise _bad(f"{what} is at most {MAX_ID_BYTES} bytes")
    return value


@dataclass(frozen=True)
class FrankingContext:
    """What the server binds to ``C``: who sent it, where, and when (the server's own
    receive time, milliseconds since the Unix epoch). ``room`` is the room id, or the
    recipient's id for a channel without a room."""

    sender: str
    room: str
    timestamp_ms: int

    def __post_init__(self) -> None:
        _check_id(self.sender, "sender")
        _check_id(self.room, "room")
        ts = self.timestamp_ms
        if type(ts) is not int or not 0 <= ts <= MAX_TIMESTAMP:
            raise _bad("timestamp_ms must be an integer in [0, 2**63)")

    def encode(self) -> bytes:
        return w.text(self.sender) + w.text(self.room) + self.timestamp_ms.to_bytes(8, "big")


@dataclass(frozen=True)
class FrankingReport:
    """A recipient's report: the message and franking key, ``C``, ``R`` and the context."""

    message: bytes = field(repr=False)
    franking_key: bytes = field(repr=False)
    commitment: bytes
    tag: bytes
    context: FrankingContext

    @classmethod
    def from_payload(
        cls,
        payload: Mapping[str, object],
        commitment: bytes,
        tag: bytes,
        context: FrankingContext,
    ) -> FrankingReport:
        """A report from the decrypted payload as the recipient kept it."""
        message, key = franked_message(payload)
        return cls(message, key, commitment, tag, context)


class FrankingKeyring:
    """The server's franking keys: id → 32-byte key, and the id used for new tags."""

    __slots__ = ("_current", "_keys")

    def __init__(self, keys: Mapping[int, bytes], current: int) -> None:
        if not isinstance(keys, Mapping) or not keys:
            raise _bad("a franking keyring needs at least one key")
        for key_id, key in keys.items():
            if type(key_id) is not int or not 0 <= key_id <= MAX_KEY_ID:
                raise _bad("franking key ids are integers in [0, 2**32)")
            if not isinstance(key, bytes) or len(key) != 32:
                raise _bad("a server franking key is 32 bytes")
        if current not in keys:
            raise _bad("the current franking key id is not in the keyring")
        self._keys = dict(keys)
        self._current = current

    @classmethod
    def generate(cls, key_id: int = 0, rng: Rng = system_rng) -> FrankingKeyring:
        return cls({key_id: rng(32)}, key_id)

    def rotated(self, key_id: int, rng: Rng = system_rng) -> FrankingKeyring:
        """A keyring that tags with a fresh key ``key_id`` and still verifies the old tags."""
        if key_id in self._keys:
            raise _bad("that franking key id is already in use")
        return FrankingKeyring({**self._keys, key_id: rng(32)}, key_id)

    def without(self, key_id: int) -> FrankingKeyring:
        """A keyring that no longer accepts tags made with ``key_id`` (not the current key)."""
        if key_id == self._current:
            raise _bad("the current franking key cannot be dropped")
        return FrankingKeyring({k: v for k, v in self._keys.items() if k != key_id}, self._current)

    @property
    def current(self) -> int:
        return self._current

    @property
    def key_ids(self) -> tuple[int, ...]:
        return tuple(sorted(self._keys))

    def key(self, key_id: int) -> bytes:
        """The raw key (for persisting the keyring; it is a server secret)."""
        return self._keys[key_id]

    def __repr__(self) -> str:
        return f"FrankingKeyring(ids={self.key_ids}, current={self._current}, <keys hidden>)"

    def _mac(self, key_id: int, commitment: bytes, context: FrankingContext) -> bytes:
        data = _TAG_LABEL + w.u32(key_id) + commitment + context.encode()
        return key_id.to_bytes(4, "big") + hmac.digest(self._keys[key_id], data, "sha256")

    def tag(self, commitment: bytes, context: FrankingContext) -> bytes:
        """``R`` (36 bytes: key id ‖ HMAC) for a message the server relays."""
        if not isinstance(context, FrankingContext):
            raise _bad("a franking context is a FrankingContext")
        return self._mac(self._current, _check_commitment(commitment), context)

    def verify_report(self, report: FrankingReport) -> None:
        """Raise :class:`~blindmatch.errors.ProtocolError` unless ``C`` commits to the
        reported message under its franking key and ``R`` is this server's tag of ``C`` in
        the reported context."""
        if not isinstance(report, FrankingReport) or not isinstance(
            report.context, FrankingContext
        ):
            raise _bad("a franking report is a FrankingReport")
        tag = report.tag
        if not isinstance(tag, bytes) or len(tag) != TAG_BYTES:
            raise _bad(f"a franking tag is {TAG_BYTES} bytes")
        check_commitment(report.franking_key, report.message, report.commitment)
        key_id = int.from_bytes(tag[:4], "big")
        if key_id not in self._keys:
            raise _bad(_FAILED)
        if not hmac.compare_digest(self._mac(key_id, report.commitment, report.context), tag):
            raise _bad(_FAILED)


# -- attachments --------------------------------------------------------------------------------
def _check_iv(iv: object) -> bytes:
    """Matrix's rule: 8 random bytes, then a 64-bit block counter that starts at zero. A
    non-zero counter half is refused: Matrix clients wrap the counter within the low 64 bits
    and a 128-bit counter does not, so the two would decrypt the blob differently (module
    docstring, "The counter")."""
    if not isinstance(iv, bytes) or len(iv) != IV_BYTES:
        raise _bad(f"an attachment iv is {IV_BYTES} bytes")
    if any(iv[IV_NONCE_BYTES:]):
        raise _bad(
            "the attachment iv's low 64 bits (its block counter) must be zero, as Matrix "
            "clients write them: from another start a 64-bit and a 128-bit counter decrypt "
            "the blob differently"
        )
    return iv


@dataclass(frozen=True)
class EncryptedFile:
    """The parts of a Matrix ``EncryptedFile`` (v2) that fix an attachment's plaintext."""

    key: bytes = field(repr=False)  # AES-256 key (JWK "k", unpadded base64url)
    iv: bytes  # 8 random bytes ‖ a zero 64-bit block counter (unpadded base64)
    sha256: bytes  # SHA-256 of the ciphertext (unpadded base64)
    url: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.key, bytes) or len(self.key) != 32:
            raise _bad("an attachment key is 32 bytes")
        _check_iv(self.iv)
        if not isinstance(self.sha256, bytes) or len(self.sha256) != 32:
            raise _bad("an attachment sha256 is 32 bytes")
        if self.url is not None and not isinstance(self.url, str):
            raise _bad("an encrypted file's url is a string")

    @classmethod
    def from_json(cls, obj: object) -> EncryptedFile:
        """Parse and check an ``EncryptedFile`` object as found in event content."""
        if not isinstance(obj, Mapping):
            raise _bad("an encrypted file is a JSON object")
        if obj.get("v") != "v2":
            raise _bad("only EncryptedFile version v2 is supported")
        jwk = obj.get("key")
        if not isinstance(jwk, Mapping) or jwk.get("kty") != "oct" or jwk.get("alg") != "A256CTR":
            raise _bad("an encrypted file's key must be an oct JWK with alg A256CTR")
        key = _b64decode(jwk.get("k"), 32, "the attachment key", urlsafe=True)
        iv = _b64decode(obj.get("iv"), 16, "the attachment iv")
        hashes = obj.get("hashes")
        if not isinstance(hashes, Mapping):
            raise _bad("an encrypted file needs hashes.sha256")
        digest = _b64decode(hashes.get("sha256"), 32, "the attachment sha256")
        url = obj.get("url")
        if url is not None and not isinstance(url, str):
            raise _bad("an encrypted file's url is a string")
        return cls(key, iv, digest, url)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "v": "v2",
            "key": {
                "kty": "oct",
                "key_ops": ["encrypt", "decrypt"],
                "alg": "A256CTR",
                "k": _b64encode(self.key, urlsafe=True),
                "ext": True,
            },
            "iv": _b64encode(self.iv),
            "hashes": {"sha256": _b64encode(self.sha256)},
        }
        if self.url is not None:
            out["url"] = self.url
        return out


def _as_file(file: EncryptedFile | Mapping[str, object]) -> EncryptedFile:
    return file if isinstance(file, EncryptedFile) else EncryptedFile.from_json(file)


def _check_blob(data: object, what: str) -> bytes:
    if not isinstance(data, bytes):
        raise _bad(f"{what} must be bytes")
    if len(data) > MAX_ATTACHMENT_BYTES:
        raise _bad(f"{what} is larger than {MAX_ATTACHMENT_BYTES} bytes")
    return data


def _ctr(key: bytes, iv: bytes, data: bytes) -> bytes:
    """Raw AES-256-CTR, 128-bit counter. It agrees with Matrix's 64-bit wrapping counter only
    because every IV that reaches it passed :func:`_check_iv` (counter half zero) and the
    data is at most :data:`MAX_ATTACHMENT_BYTES`: reach it through :class:`EncryptedFile`."""
    c = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor()
    return c.update(data) + c.finalize()


def encrypt_attachment(
    plaintext: bytes, *, url: str | None = None, rng: Rng = system_rng
) -> tuple[bytes, EncryptedFile]:
    """AES-256-CTR as Matrix clients encrypt attachments: fresh key, 8 random IV bytes then
    a zero 64-bit counter; returns the ciphertext and its ``EncryptedFile``."""
    data = _check_blob(plaintext, "an attachment")
    key, iv = rng(32), _check_iv(rng(IV_NONCE_BYTES) + bytes(IV_BYTES - IV_NONCE_BYTES))
    ciphertext = _ctr(key, iv, data)
    return ciphertext, EncryptedFile(key, iv, hashlib.sha256(ciphertext).digest(), url)


def decrypt_attachment(file: EncryptedFile | Mapping[str, object], ciphertext: bytes) -> bytes:
    """The attachment's plaintext, after checking the ciphertext against the committed hash.

    ``file`` must come from a franked payload whose report verified; the plaintext is then
    the one the sender sent (see the module docstring). An IV whose counter half is not zero
    is refused (:class:`~blindmatch.errors.ProtocolError`) before anything is decrypted."""
    f = _as_file(file)
    blob = _check_blob(ciphertext, "the attachment ciphertext")
    if not hmac.compare_digest(hashlib.sha256(blob).digest(), f.sha256):
        raise _bad(_FAILED)
    return _ctr(f.key, f.iv, blob)


def verify_attachment(
    file: EncryptedFile | Mapping[str, object], ciphertext: bytes, plaintext: bytes
) -> None:
    """Raise unless ``ciphertext`` has the committed hash and decrypts, under the committed
    key and IV, to exactly ``plaintext`` (never for an IV with a non-zero counter half)."""
    claimed = _check_blob(plaintext, "the reported plaintext")
    if not hmac.compare_digest(decrypt_attachment(file, ciphertext), claimed):
        raise _bad(_FAILED)


__all__ = [
    "COMMITMENT_BYTES",
    "FRANKING_KEY_BYTES",
    "FRANKING_KEY_FIELD",
    "IV_BYTES",
    "IV_NONCE_BYTES",
    "TAG_BYTES",
    "EncryptedFile",
    "Franked",
    "FrankingContext",
    "FrankingKeyring",
    "FrankingReport",
    "canonical_json",
    "check_commitment",
    "commit",
    "decrypt_attachment",
    "encrypt_attachment",
    "franked_message",
    "frank",
    "new_franking_key",
    "open_franked",
    "verify_attachment",
]
