"""Acknowledgements (original mode, HL7 v2 §2.9.2) for the messages the listener receives.

The ACK echoes the incoming MSH-12 version and MSH-10 (in MSA-2), swaps sender and
receiver, and uses ``ACK^<trigger>^ACK`` in MSH-9. Errors carry an ERR segment with
the Table 0357 code: ERR-1 in v2.3.x/2.4, ERR-2 (location), ERR-3 (code) and ERR-4
(severity) from v2.5 on. It is written by hand because the incoming version may be
one hl7apy cannot build (an unsupported version still gets its AR).
"""

from __future__ import annotations

import itertools
from datetime import datetime

from mmbcd_node.orders.errors import CODE_TEXT, Hl7Rejection
from mmbcd_node.orders.message import MessageHeader
from mmbcd_node.orders.text import codec_for, escape

_counter = itertools.count(1)
SEPARATORS = "|^~\\&"


def build_ack(header: MessageHeader | None, ack_code: str,
              error: Hl7Rejection | None = None, *, text: str = "") -> bytes:
    """The acknowledgement for a message with ``header`` (None when it had no MSH).

    ``ack_code`` is AA, AE or AR; ``error`` adds the ERR segment and MSA-3 text.
    Encoded in the incoming message's character set when known, else ASCII.
    """
    fields = header.fields if header is not None else ("MSH", "|", "^~\\&")

    def msh(n: int) -> str:
        return fields[n] if n < len(fields) else ""

    version = (header.version if header else "") or "2.5"
    trigger = header.trigger if header else ""
    charset = header.charset if header else ""
    codec = codec_for(charset) or "ascii"
    now = datetime.now().astimezone()
    control_id = f"ACK{now:%Y%m%d%H%M%S}{next(_counter):06d}"
    message_text = error.text if error else text
    segments = [
        "|".join(["MSH", "^~\\&", msh(5), msh(6), msh(3), msh(4),
                  now.strftime("%Y%m%d%H%M%S%z"), "", f"ACK^{trigger}^ACK", control_id,
                  msh(11) or "P", version, "", "", "", "", "",
                  charset if codec_for(charset) else ""]).rstrip("|"),
        "|".join(["MSA", ack_code, header.control_id if header else "",
                  escape(message_text[:80])]).rstrip("|"),
    ]
    if error is not None:
        segments.append(_err_segment(error, version))
    return ("\r".join(segments) + "\r").encode(codec, errors="replace")


def _err_segment(error: Hl7Rejection, version: str) -> str:
    code = error.error_code
    code_text = CODE_TEXT.get(code, "")
    loc = error.location
    if _before_25(version):
        # ERR-1 (ELD): segment ^ sequence ^ field ^ code&text&HL70357
        location = (f"{loc.segment}^{loc.sequence}^{loc.field or ''}" if loc else "^^")
        return f"ERR|{location}^{code}&{code_text}&HL70357"
    location = ""
    if loc is not None:
        location = f"{loc.segment}^{loc.sequence}"
        if loc.field is not None:
            location += f"^{loc.field}^1"
            if loc.component is not None:
                location += f"^{loc.component}"
    severity = "E"
    # ERR-2 location, ERR-3 code, ERR-4 severity, ERR-8 user message.
    return "|".join(["ERR", "", location, f"{code}^{code_text}^HL70357", severity, "", "", "",
                     escape(error.text)])


def _before_25(version: str) -> bool:
    parts = version.split(".")
    try:
        return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0) < (2, 5)
    except ValueError:
        return False
