"""Cutting an attempt's output streams into lines as their bytes come, with memory bounded
whatever a task prints (the local runner's capture)."""

from __future__ import annotations

from collections.abc import Callable


class LineSplitter:
    """Cuts a stream into lines for `on_lines` as its bytes come, one call with every line a
    chunk completed. A line is held until its newline comes, up to `limit` bytes: a longer one
    goes out in pieces of that size (cut between characters), so a stream that never prints a
    newline cannot grow memory."""

    def __init__(self, limit: int, on_lines: Callable[[list[str]], None] | None = None) -> None:
        self.limit = max(4, limit)  # room for one UTF-8 character
        self._on_lines = on_lines
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> None:
        if self._on_lines is None:
            return
        self._partial += chunk
        lines: list[str] = []
        end = self._partial.rfind(b"\n")
        if end >= 0:
            complete = self._partial[:end]
            del self._partial[: end + 1]
            raw = complete.split(b"\n")
            if max(map(len, raw)) <= self.limit:
                # the usual case, all in C: a newline never falls inside a UTF-8 character, so
                # the lines decode as one text exactly as they would one by one
                lines = complete.decode("utf-8", "replace").split("\n")
            else:
                lines = [_decode(piece) for line in raw for piece in self._pieces(line)]
        if len(self._partial) > self.limit:
            *pieces, rest = self._pieces(self._partial)
            lines += map(_decode, pieces)
            self._partial = bytearray(rest)
        if lines:
            self._on_lines(lines)

    def close(self) -> None:
        """The last line, when the stream ended without a newline."""
        if self._partial:
            self._on_lines([_decode(self._partial)])
            self._partial = bytearray()

    def _pieces(self, data: bytes | bytearray) -> list[bytes | bytearray]:
        """`data` cut into pieces of at most `limit` bytes (the last one may be shorter)."""
        pieces, start = [], 0
        while len(data) - start > self.limit:
            cut = _char_start(data, start + self.limit)
            pieces.append(data[start:cut])
            start = cut
        pieces.append(data[start:])
        return pieces


def _decode(data: bytes | bytearray) -> str:
    return data.decode("utf-8", "replace")


def _char_start(data: bytes | bytearray, at: int) -> int:
    """`at`, or up to 3 bytes before it: where a UTF-8 character starts (not a continuation
    byte), so a cut line does not turn one character into two replacement marks."""
    cut = at
    while cut > at - 3 and data[cut] & 0xC0 == 0x80:
        cut -= 1
    return cut
