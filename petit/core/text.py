"""Rendering untrusted text (values from job files, names, output) for error lines: bounded in
length and in work, and always one printable line."""

from __future__ import annotations

import reprlib
import unicodedata

MAX_MESSAGE_CHARS = 500


class _ShortRepr(reprlib.Repr):
    """repr() for error messages about values read from job files: bounded in length AND in
    work. A YAML alias bomb is a few lines whose full repr is gigabytes (`{x!r:.60}` still builds
    all of it before cutting), and Python refuses to print an int of more than 4300 digits."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 2
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 4
        self.maxstring = self.maxother = 60
        self.maxlong = 40

    def repr_int(self, x: int, level: int) -> str:
        if x.bit_length() > 200:  # about 60 digits: more than is shown anyway
            return f"<integer of {x.bit_length()} bits>"
        return super().repr_int(x, level)


_SHORT_REPR = _ShortRepr()


def short_repr(value, limit: int = 100) -> str:
    """At most `limit` characters of repr(value), computed in bounded time. Used for every value
    a job file error quotes."""
    text = _SHORT_REPR.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(text: str) -> str:
    """Error lines go to terminals, logs and JSON replies: escape what would break the line
    (newlines, U+2028), drive the terminal (ESC), reorder the text (bidi marks) or fail to
    encode (lone surrogates, from escapes or undecodable file names)."""
    if text.isprintable():
        return text
    return "".join(
        ch if ch.isprintable() or unicodedata.category(ch) == "Zs" else ascii(ch)[1:-1]
        for ch in text
    )


def clip(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    return (
        text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more characters)"
    )
