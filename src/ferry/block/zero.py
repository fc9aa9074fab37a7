"""Zero detection: the test that keeps zero data from ever being stored or sent."""

from __future__ import annotations

_PROBE = bytes(4096)


def is_zero(data: bytes | bytearray | memoryview) -> bool:
    """True when every byte is zero: a cheap probe of the start, then one memcmp."""
    n = len(data)
    return n == 0 or (data[:4096] == _PROBE[: min(n, 4096)] and data == bytes(n))
