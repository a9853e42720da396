"""Bounded big-endian readers and writers for the protocol's binary formats.

Every read checks the remaining length first; a short or over-long buffer
raises the caller's :class:`~blindmatch.errors.ProtocolError` subclass and
nothing else.
"""

from __future__ import annotations

import struct

from blindmatch.errors import ProtocolError


class Reader:
    def __init__(self, data: bytes, error: type[ProtocolError], what: str) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise error(f"{what} must be bytes")
        self._data = bytes(data)
        self._pos = 0
        self._error = error
        self._what = what

    def fail(self) -> ProtocolError:
        return self._error(f"malformed {self._what}")

    def take(self, n: int) -> bytes:
        if n < 0 or self._pos + n > len(self._data):
            raise self.fail()
        out = self._data[self._pos : self._pos + n]
        self._pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        v: int = struct.unpack(">H", self.take(2))[0]
        return v

    def u32(self) -> int:
        v: int = struct.unpack(">I", self.take(4))[0]
        return v

    def text(self) -> str:
        """A UTF-8 string with a u16 length prefix."""
        raw = self.take(self.u16())
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise self.fail() from None

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def end(self) -> None:
        if self._pos != len(self._data):
            raise self.fail()


def u8(v: int) -> bytes:
    return struct.pack(">B", v)


def u16(v: int) -> bytes:
    return struct.pack(">H", v)


def u32(v: int) -> bytes:
    return struct.pack(">I", v)


def text(s: str) -> bytes:
    raw = s.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("string too long for the wire format")
    return u16(len(raw)) + raw
