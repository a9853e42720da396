"""The second private distance check: conditional disclosure of a key iff ``d ≤ R``.

The cryptographic core of ``docs/protocol.md`` §11 "Next: the second private distance check"
(issue 12 item 3), pure and not yet wired into vouchers, the server session or the clients.
Exponential ElGamal on ristretto255 (:mod:`~blindmatch.protocol.hazmat.group`, ``rbcl``).

Notation: ``G`` the generator, ``ℓ`` the group order, a PDQ hash's bit ``i`` is
:func:`~blindmatch.protocol.lookup.pdq_bit` and maps to ``±1`` (bit 1 → +1, bit 0 → −1).
``Enc(m; r) = (r·G, m·G + r·X)``; ``Dec((c1, c2)) = c2 − x·c1`` gives ``m·G``.

1. **Key** (:class:`DistanceKey`): the server's ``x`` (uniform non-zero scalar), ``X = x·G``.
2. **Encrypted bits** (:meth:`DistanceKey.encrypt_bits`, or :func:`encrypt_bits` from ``X``
   alone): for a listed entry ``y``, ``C_i = Enc(y_i; r_i)`` for ``i = 0 … 255``, fresh
   ``r_i``. With ``x`` this is two fixed-base multiplications per bit
   (``c2 = (y_i + x·r_i)·G``).
3. **Response** (:func:`respond`), the client, from its own hash ``s`` (bits ``s_i = ±1``), a
   32-byte key ``κ`` and a stream (an :data:`~blindmatch.protocol.hazmat.rng.Rng`; in the
   integration, a DRBG keyed by the opening seed, so the recipient can recompute it):

   * ``E = Σ s_i·C_i = Enc(Σ s_i y_i) = Enc(256 − 2d)``, ``d`` the Hamming distance: point
     additions and subtractions only;
   * ``K = κ'·G`` with ``κ' = SHA-512("blindmatch/distance/v1/kappa" ‖ κ) mod ℓ``
     (:func:`key_point`);
   * for ``j = 0 … R``, drawing ``ρ_j`` then ``t_j`` (uniform non-zero scalars,
     :func:`~blindmatch.protocol.hazmat.group.random_scalar`) from the stream in that order:
     ``D_j = ρ_j·(E − (0, (256 − 2j)·G)) + t_j·(G, X) + (0, K)``, a fresh encryption of
     ``ρ_j·2(j − d)·G + K``: ``K`` exactly when ``d = j``, otherwise a uniform point that
     tells nothing about ``K`` or ``d`` (``ρ_j`` is uniform, secret and used once);
   * the ``R + 1`` ciphertexts shuffled (Fisher–Yates,
     :func:`~blindmatch.protocol.hazmat.rng.shuffle`, drawing from the same stream after the
     last ``t_R``).

   The re-randomisation ``t_j·(G, X)`` is needed: without it ``c1 = ρ_j·c1(E)``, and a server
   that knows the ``r_i`` could test a guess of ``s`` from the ratio of ``c1`` to the
   plaintext (``tests/protocol/test_distance.py`` runs that test).
4. **Disclosure** (:func:`disclose`), the server: decrypts all ``R + 1`` ciphertexts (one
   variable-base multiplication and one subtraction each, whatever the outcome) and returns
   ``HKDF-SHA256(P_j, salt="blindmatch/distance/v1", info="disclosed key")`` for each, in the
   response's order. Exactly one equals :func:`disclosed_key` ``(κ)`` iff ``d ≤ R`` (for
   ``d ≠ j``, ``2(j − d) ≢ 0 mod ℓ`` and ``ρ_j ≠ 0``, so never by accident); the server tries
   each, e.g. as the AEAD key of what the check protects. It never learns ``j``.

Wire formats (fixed sizes; every point a canonical non-identity ristretto255 encoding, or
:class:`~blindmatch.errors.InvalidDistanceCheck`):

* :class:`EncryptedBits`: ``c1_0 ‖ c2_0 ‖ c1_1 ‖ c2_1 ‖ … ‖ c1_255 ‖ c2_255`` in bit order,
  :data:`ENCRYPTED_BITS_BYTES` = 16,384 bytes.
* :class:`Response`: ``R + 1`` ciphertexts ``c1 ‖ c2`` in shuffled order,
  :func:`response_bytes` ``(R) = 64·(R + 1)`` bytes (2,048 at ``R = 31``).
* :class:`DistanceKey`: ``x``, 32 bytes little-endian, ``0 < x < ℓ``
  (:class:`~blindmatch.errors.InvalidKey` otherwise); the public key ``X`` is 32 bytes.

Everything here is pure: randomness only through the ``rng`` / ``stream`` arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from blindmatch.errors import InvalidDistanceCheck, InvalidHash, InvalidKey, ProtocolError
from blindmatch.protocol.hazmat import group
from blindmatch.protocol.hazmat.kdf import hkdf_sha256
from blindmatch.protocol.hazmat.rng import Rng, shuffle, system_rng
from blindmatch.protocol.lookup import PDQ_BITS, PDQ_BYTES, pdq_bit

DOMAIN = b"blindmatch/distance/v1"
_KAPPA_DOMAIN = DOMAIN + b"/kappa"
_KEY_INFO = b"disclosed key"
KEY_BYTES = 32
CIPHERTEXT_BYTES = 2 * group.POINT_BYTES
ENCRYPTED_BITS_BYTES = PDQ_BITS * CIPHERTEXT_BYTES
#: The largest radius a response can check (``d`` ranges over ``0 … 256``).
MAX_RADIUS = PDQ_BITS
_BAD = "malformed distance-check message"

Ciphertext = tuple[bytes, bytes]

_G = group.GENERATOR
_TWO_G = group.add(_G, _G)
_G256 = group.base_mul(group.scalar_from_int(PDQ_BITS))


def response_bytes(radius: int) -> int:
    """The size of a :class:`Response` for ``radius``: ``64·(radius + 1)`` bytes."""
    _check_radius(radius)
    return CIPHERTEXT_BYTES * (radius + 1)


def _check_radius(radius: int) -> None:
    if not isinstance(radius, int) or not 0 <= radius <= MAX_RADIUS:
        raise ProtocolError(f"a distance-check radius is an integer in 0 … {MAX_RADIUS}")


def _check_pdq(pdq: bytes) -> None:
    if not isinstance(pdq, bytes) or len(pdq) != PDQ_BYTES:
        raise InvalidHash("a PDQ hash is 32 bytes")


def _check_public(public: bytes) -> None:
    if not group.is_valid_point(public):
        raise InvalidKey("not a valid distance-check public key")


def _parse_ciphertexts(data: object, count: int) -> tuple[Ciphertext, ...]:
    if not isinstance(data, bytes) or len(data) != count * CIPHERTEXT_BYTES:
        raise InvalidDistanceCheck(_BAD)
    out = []
    for k in range(count):
        o = k * CIPHERTEXT_BYTES
        c1, c2 = data[o : o + 32], data[o + 32 : o + 64]
        if not (group.is_valid_point(c1) and group.is_valid_point(c2)):
            raise InvalidDistanceCheck(_BAD)
        out.append((c1, c2))
    return tuple(out)


@dataclass(frozen=True)
class EncryptedBits:
    """The 256 encryptions ``Enc(±1)`` of one entry's bits, in :func:`pdq_bit` order."""

    ciphertexts: tuple[Ciphertext, ...]

    def to_bytes(self) -> bytes:
        return b"".join(c1 + c2 for c1, c2 in self.ciphertexts)

    @classmethod
    def from_bytes(cls, data: bytes) -> EncryptedBits:
        """Strict: exactly 16,384 bytes, every point valid; else ``InvalidDistanceCheck``."""
        return cls(_parse_ciphertexts(data, PDQ_BITS))


@dataclass(frozen=True)
class Response:
    """The client's ``R + 1`` re-randomised, shuffled ciphertexts."""

    ciphertexts: tuple[Ciphertext, ...]

    @property
    def radius(self) -> int:
        return len(self.ciphertexts) - 1

    def to_bytes(self) -> bytes:
        return b"".join(c1 + c2 for c1, c2 in self.ciphertexts)

    @classmethod
    def from_bytes(cls, data: bytes, *, radius: int) -> Response:
        """Strict: exactly :func:`response_bytes` ``(radius)`` bytes, every point valid."""
        _check_radius(radius)
        return cls(_parse_ciphertexts(data, radius + 1))


class DistanceKey:
    """The server's ElGamal key for the distance check. The secret stays out of ``repr``."""

    __slots__ = ("_x", "public")

    def __init__(self, secret: bytes) -> None:
        if (
            not isinstance(secret, bytes)
            or len(secret) != group.SCALAR_BYTES
            or not 0 < group.scalar_to_int(secret) < group.ORDER
        ):
            raise InvalidKey("not a valid distance-check key")
        self._x = secret
        self.public: bytes = group.base_mul(secret)

    @classmethod
    def generate(cls, rng: Rng = system_rng) -> DistanceKey:
        return cls(group.random_scalar(rng))

    def to_bytes(self) -> bytes:
        return self._x

    @classmethod
    def from_bytes(cls, data: bytes) -> DistanceKey:
        return cls(data)

    def __repr__(self) -> str:
        return f"DistanceKey(public={self.public.hex()[:16]}…)"

    def encrypt_bits(self, pdq: bytes, rng: Rng = system_rng) -> EncryptedBits:
        """:func:`encrypt_bits` with the secret at hand: ``c2 = (y_i + x·r_i)·G``, two
        fixed-base multiplications per bit instead of a fixed- and a variable-base one."""
        _check_pdq(pdq)
        x = group.scalar_to_int(self._x)
        out = []
        for i in range(PDQ_BITS):
            r = group.random_scalar(rng)
            y = 1 if pdq_bit(pdq, i) else -1
            c2 = group.base_mul(group.scalar_from_int(y + x * group.scalar_to_int(r)))
            out.append((group.base_mul(r), c2))
        return EncryptedBits(tuple(out))

    def decrypt(self, ciphertext: Ciphertext) -> bytes:
        """``c2 − x·c1`` (the identity's encoding if the plaintext is zero)."""
        c1, c2 = ciphertext
        return group.sub(c2, group.mul(self._x, c1))


def encrypt_bits(pdq: bytes, public: bytes, rng: Rng = system_rng) -> EncryptedBits:
    """``Enc(y_i; r_i) = (r_i·G, ±G + r_i·X)`` for the 256 bits of ``pdq`` (±1 each)."""
    _check_pdq(pdq)
    _check_public(public)
    out = []
    for i in range(PDQ_BITS):
        r = group.random_scalar(rng)
        rx = group.mul(r, public)
        c2 = group.add(rx, _G) if pdq_bit(pdq, i) else group.sub(rx, _G)
        out.append((group.base_mul(r), c2))
    return EncryptedBits(tuple(out))


def _kappa(key: bytes) -> bytes:
    if not isinstance(key, bytes) or len(key) != KEY_BYTES:
        raise ProtocolError(f"a distance-check key is {KEY_BYTES} bytes")
    return group.reduce_scalar(hashlib.sha512(_KAPPA_DOMAIN + key).digest())


def key_point(key: bytes) -> bytes:
    """``K = κ'·G``, the point the server decrypts exactly when ``d ≤ R``."""
    return group.base_mul(_kappa(key))


def _point_key(point: bytes) -> bytes:
    return hkdf_sha256(point, salt=DOMAIN, info=_KEY_INFO)


def disclosed_key(key: bytes) -> bytes:
    """The 32-byte value :func:`disclose` yields when the check passes (derived from
    :func:`key_point`); the integration encrypts what the check protects under it."""
    return _point_key(key_point(key))


def encrypted_distance(encrypted: EncryptedBits, pdq: bytes) -> Ciphertext:
    """``E = Σ s_i·C_i = Enc(256 − 2d)``: one addition or subtraction per bit and component.

    Total: the identity is carried along, never refused, so that no choice of the server's
    ciphertexts can turn the client's bits into an error the server observes."""
    _check_pdq(pdq)
    c1e = c2e = group.IDENTITY
    for i, (c1, c2) in enumerate(encrypted.ciphertexts):
        op = group.add if pdq_bit(pdq, i) else group.sub
        c1e, c2e = op(c1e, c1), op(c2e, c2)
    return c1e, c2e


def respond(
    encrypted: EncryptedBits,
    pdq: bytes,
    *,
    public: bytes,
    radius: int,
    key: bytes,
    stream: Rng,
) -> Response:
    """The client's answer: ``R + 1`` ciphertexts, one of which decrypts to
    :func:`key_point` ``(key)`` iff ``hamming(pdq, y) ≤ radius`` (module docstring, step 3).

    A deterministic function of its arguments: every random value is drawn from ``stream``
    (``ρ_0, t_0, ρ_1, t_1, …, ρ_R, t_R``, then the shuffle). Costs 512 point additions,
    3 variable-base and 1 fixed-base multiplications per ``j``, and one more fixed-base one.
    """
    _check_radius(radius)
    _check_public(public)
    if len(encrypted.ciphertexts) != PDQ_BITS:
        raise InvalidDistanceCheck(_BAD)
    kpt = key_point(key)
    c1e, c2e = encrypted_distance(encrypted, pdq)
    c2j = group.sub(c2e, _G256)  # E − Enc(256 − 2j) at j = 0; + 2G per step
    out: list[Ciphertext] = []
    for _ in range(radius + 1):
        rho = group.random_scalar(stream)
        t = group.random_scalar(stream)
        d1 = group.add(group.mul_total(rho, c1e), group.base_mul(t))
        d2 = group.add(group.add(group.mul_total(rho, c2j), group.mul(t, public)), kpt)
        out.append((d1, d2))
        c2j = group.add(c2j, _TWO_G)
    shuffle(stream, out)
    return Response(tuple(out))


def disclose(response: Response, dk: DistanceKey) -> list[bytes]:
    """The server's ``R + 1`` candidate keys, in the response's order: exactly one equals
    :func:`disclosed_key` ``(κ)`` iff ``d ≤ R``. The same work whatever the outcome: every
    ciphertext is decrypted and hashed."""
    return [_point_key(dk.decrypt(ct)) for ct in response.ciphertexts]


def decrypted_points(response: Response, dk: DistanceKey) -> Sequence[bytes]:
    """The plaintext points themselves (for tests and analysis; :func:`disclose` hashes them)."""
    return [dk.decrypt(ct) for ct in response.ciphertexts]


__all__ = [
    "CIPHERTEXT_BYTES",
    "ENCRYPTED_BITS_BYTES",
    "MAX_RADIUS",
    "DistanceKey",
    "EncryptedBits",
    "Response",
    "decrypted_points",
    "disclose",
    "disclosed_key",
    "encrypt_bits",
    "encrypted_distance",
    "key_point",
    "respond",
    "response_bytes",
]
