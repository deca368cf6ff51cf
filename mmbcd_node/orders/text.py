"""HL7 v2 text: character sets (MSH-18) and escape sequences (HL7 v2.5 §2.7).

hl7apy keeps escape sequences as they are and the ``hl7`` package's unescaper skips
sequences it cannot read; an order interface must instead refuse a field it cannot
read, so the unescaper here raises ``Hl7Rejection`` (AE 102) naming the field.
"""

from __future__ import annotations

import re

from mmbcd_node.orders.errors import DATA_TYPE_ERROR, ErrorLocation, content_error

# MSH-18 value -> Python codec. Empty means 7-bit ASCII (HL7 v2.5 §2.15.9.18).
CHARSETS = {
    "": "ascii",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/15": "iso8859-15",
    "UNICODE UTF-8": "utf-8",
}

_FORMATTING = re.compile(r"\.(br|sp|fi|nf|ce|in[+-]?\d*|ti[+-]?\d*|sk[+-]?\d*)")
_HEX = re.compile(r"X([0-9A-Fa-f]{2})+")


def codec_for(charset: str) -> str | None:
    """The Python codec for an MSH-18 value, or None when this node does not know it."""
    return CHARSETS.get(charset.strip().upper().replace("ISO ", "").replace("ISO", ""))


def unescape(value: str, *, separators: str, codec: str,
             location: ErrorLocation | None = None) -> str:
    """Replace HL7 escape sequences in ``value`` by the text they stand for.

    ``separators`` is MSH-1 followed by MSH-2 (``|^~\\&``). Field, component,
    subcomponent, repetition and escape sequences give their character; ``\\H\\`` and
    ``\\N\\`` (highlighting) are dropped; ``\\.br\\`` and ``\\.sp\\`` give a line break;
    ``\\Xhh..\\`` gives the bytes decoded in the message's character set. An
    unterminated, unknown or malformed sequence raises ``Hl7Rejection`` (AE 102).
    """
    field_sep, component, repetition, escape, subcomponent = tuple(separators[:5])
    if escape not in value:
        return value
    simple = {"F": field_sep, "S": component, "T": subcomponent, "R": repetition,
              "E": escape, "H": "", "N": ""}
    out: list[str] = []
    position = 0
    while True:
        start = value.find(escape, position)
        if start < 0:
            out.append(value[position:])
            return "".join(out)
        out.append(value[position:start])
        end = value.find(escape, start + 1)
        if end < 0:
            raise content_error(DATA_TYPE_ERROR, f"{_where(location)}unterminated escape "
                                f"sequence at character {start + 1}", location)
        sequence = value[start + 1:end]
        if sequence in simple:
            out.append(simple[sequence])
        elif _FORMATTING.fullmatch(sequence):
            out.append("\n" if sequence in ("br", ".br", ".sp") or sequence.startswith(".sp")
                       else " " if sequence.startswith((".in", ".ti", ".sk")) else "")
        elif _HEX.fullmatch(sequence):
            try:
                out.append(bytes.fromhex(sequence[1:]).decode(codec))
            except UnicodeDecodeError:
                raise content_error(DATA_TYPE_ERROR, f"{_where(location)}escape \\{sequence}\\ "
                                    f"is not valid {codec}", location) from None
            if "\x00" in out[-1]:  # no field may hold a NUL (nor can PostgreSQL's text)
                raise content_error(DATA_TYPE_ERROR, f"{_where(location)}escape \\{sequence}\\ "
                                    "stands for a NUL character", location)
        else:
            raise content_error(DATA_TYPE_ERROR, f"{_where(location)}unknown escape sequence "
                                f"\\{sequence}\\", location)
        position = end + 1


def escape(value: str, separators: str = "|^~\\&") -> str:
    """Escape the delimiter characters in ``value`` for use inside an HL7 field."""
    field_sep, component, repetition, esc, subcomponent = tuple(separators[:5])
    table = {esc: "E", field_sep: "F", component: "S", subcomponent: "T", repetition: "R"}
    text = "".join(f"{esc}{table[c]}{esc}" if c in table else c for c in value)
    # Segment terminators inside a value would end the segment.
    return text.replace("\r", f"{esc}.br{esc}").replace("\n", f"{esc}.br{esc}")


def reencode(raw: str, *, separators: str, codec: str,
             location: ErrorLocation | None = None) -> str:
    """``raw`` (a segment or field in the message's own delimiters) in the standard ones.

    Every value is unescaped (``unescape``) and escaped again with ``|^~\\&``, so text
    from any sender can be echoed in a message of ours: a delimiter escape stays an
    escape, ``\\Xhh\\`` becomes its character and a line break (``\\.br\\``) a space.
    The HL7 null ``""`` is kept as it is.
    """
    field_sep, component, repetition, _, subcomponent = tuple(separators[:5])

    def value(text: str) -> str:
        if text == '""':
            return text
        plain = unescape(text, separators=separators, codec=codec, location=location)
        return escape(" ".join(plain.splitlines()))

    return "|".join(
        "~".join("^".join("&".join(value(sub) for sub in part.split(subcomponent))
                          for part in rep.split(component))
                 for rep in field.split(repetition))
        for field in raw.split(field_sep))


def _where(location: ErrorLocation | None) -> str:
    return f"{location}: " if location else ""
