"""Byte streams shaped like the landing's sources: short reads, as networks and inflaters give."""

from __future__ import annotations


class Chunked:
    """Returns at most ``size`` bytes a read (a network body, an inflater), never more than asked."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.pos = data, size, 0

    def read(self, n: int = -1) -> bytes:
        out = self.data[self.pos: self.pos + min(n if n > 0 else self.size, self.size)]
        self.pos += len(out)
        return out
