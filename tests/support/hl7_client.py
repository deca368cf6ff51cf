"""HL7 test peers: order messages as a RIS writes them, and an MLLP client.

``order_message(...)`` builds ORM^O01 / OMI^O23 text with the fields the node maps;
``MllpConnection`` keeps one TCP (or TLS) connection open for several messages,
which is what RIS interfaces do and what ``hl7apy.mllp`` failed at;
``mllp_send_file`` runs the ``hl7`` package's ``mllp_send`` command as a second,
independent client.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SB, EB = b"\x0b", b"\x1c\x0d"


@dataclass
class Ack:
    """A parsed acknowledgement: MSA-1, MSA-2 and the ERR segment's code, if any."""

    raw: bytes
    segments: list[list[str]]

    @classmethod
    def parse(cls, raw: bytes) -> Ack:
        text = raw.decode("latin-1")
        return cls(raw, [seg.split("|") for seg in text.split("\r") if seg])

    def segment(self, name: str) -> list[str] | None:
        return next((s for s in self.segments if s[0] == name), None)

    @property
    def code(self) -> str:
        msa = self.segment("MSA")
        return msa[1] if msa else ""

    @property
    def control_id(self) -> str:
        msa = self.segment("MSA")
        return msa[2] if msa and len(msa) > 2 else ""

    @property
    def msh(self) -> list[str]:
        return self.segment("MSH") or []

    @property
    def error_code(self) -> str:
        """Table 0357 code from ERR-3.1 (v2.5+) or ERR-1.4.1 (v2.3.x/2.4); "" if none."""
        err = self.segment("ERR")
        if not err:
            return ""
        if len(err) > 3 and err[3]:
            return err[3].split("^")[0]
        parts = err[1].split("^")
        return parts[3].split("&")[0] if len(parts) > 3 else ""

    @property
    def error_text(self) -> str:
        err = self.segment("ERR")
        if err and len(err) > 8:
            return err[8]
        msa = self.segment("MSA")
        return msa[3] if msa and len(msa) > 3 else ""


def order_message(control_id: str = "MSG0001", *, message_type: str = "ORM^O01",
                  version: str = "2.3.1", control: str = "NW", placer: str = "PL1",
                  filler: str | None = None, patient_id: str = "PAT1", patient_issuer: str = "HOSP",
                  accession: str = "ACC1", obr18: str | None = None, obr3: str | None = None,
                  orc3: str | None = None, study_uid: str = "", clinical: str = "lump left breast",
                  reason: str = "R1^Palpable lump^L", notes: tuple[str, ...] = (),
                  priority: str = "R", charset: str = "", processing_id: str = "P",
                  order_date: str = "20261130", sending: tuple[str, str] = ("RIS", "HOSP"),
                  extra_orders: int = 0, ipc_accession: str | None = None) -> str:
    """One order message as text (segments joined by CR).

    ORM^O01 puts the accession in OBR-18 (unless ``obr18`` overrides) and the
    priority in ORC-7.6; OMI^O23 adds TQ1 (priority in TQ1-9) and IPC (accession in
    IPC-1, Study Instance UID in IPC-3). ``obr3``/``orc3`` override the filler number
    fields, for sites that carry the accession there.
    """
    omi = message_type.startswith("OMI")
    if filler is None:  # PL1 -> FI1; any other placer number gets its own filler number
        filler = "FI" + placer[2:] if placer.startswith("PL") else f"F-{placer}" if placer else ""
    msh = (f"MSH|^~\\&|{sending[0]}|{sending[1]}|MMBCD|NODE|{order_date}120000||{message_type}|"
           f"{control_id}|{processing_id}|{version}||||||{charset}")
    segments = [msh, f"PID|1||{patient_id}^^^{patient_issuer}^MR||Doe^Jane||19700101|F",
                "PV1|1|O"]
    for index in range(1 + extra_orders):
        suffix = "" if index == 0 else f"-{index}"
        orc_filler = orc3 if orc3 is not None else filler + suffix
        segments.append(f"ORC|{control}|{placer}{suffix}|{orc_filler}||SC||"
                        f"^^^{order_date}^^{priority}")
        if omi:
            segments.append(f"TQ1|1||||||{order_date}||{priority}")
        obr = [""] * 32
        obr[0] = "OBR"
        obr[1] = str(index + 1)
        obr[2] = placer + suffix
        obr[3] = obr3 if obr3 is not None else filler + suffix
        obr[4] = "MAMMO^Mammography bilateral^99RIS"
        obr[7] = f"{order_date}0900"
        obr[13] = clinical
        obr[18] = (obr18 if obr18 is not None else ("" if omi else accession + suffix))
        obr[19] = f"RP{index + 1}"
        obr[27] = f"^^^{order_date}^^{priority}"
        obr[31] = reason
        segments.append("|".join(obr))
        segments += [f"NTE|{n + 1}||{note}" for n, note in enumerate(notes)]
        if omi:
            ipc_acc = ipc_accession if ipc_accession is not None else accession + suffix
            segments.append(f"IPC|{ipc_acc}^HOSP|RP{index + 1}|{study_uid}|SPS{index + 1}")
        elif study_uid:
            segments.append(f"ZDS|{study_uid}^MMBCD^Application^DICOM")
    return "\r".join(segments) + "\r"


def encode(text: str, charset: str = "") -> bytes:
    codec = {"": "ascii", "8859/1": "latin-1", "UNICODE UTF-8": "utf-8"}[charset]
    return text.encode(codec)


class MllpConnection:
    """One MLLP connection for many request/ACK exchanges."""

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 30.0,
                 tls: ssl.SSLContext | None = None, source: str | None = None) -> None:
        """Connect to ``host:port``, from the local address ``source`` when given."""
        sock = socket.create_connection((host, port), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        self.sock: socket.socket = tls.wrap_socket(sock, server_hostname=host) if tls else sock
        self.buffer = b""

    def send(self, payload: bytes | str) -> Ack:
        """Send one framed message and wait for its framed ACK."""
        data = payload.encode("ascii") if isinstance(payload, str) else payload
        self.sock.sendall(SB + data + EB)
        return self.receive()

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def receive(self) -> Ack:
        while EB not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; got {self.buffer!r}")
            self.buffer += chunk
        frame, self.buffer = self.buffer.split(EB, 1)
        assert frame.startswith(SB), frame
        return Ack.parse(frame[1:])

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> MllpConnection:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def send_one(port: int, payload: bytes | str) -> Ack:
    with MllpConnection(port) as connection:
        return connection.send(payload)


def mllp_send_file(port: int, path: Path) -> list[Ack]:
    """Send the messages in ``path`` (one per line, loose format) with ``mllp_send``."""
    tool = shutil.which("mllp_send") or str(Path(sys.executable).with_name("mllp_send"))
    result = subprocess.run([tool, "--loose", "--port", str(port), "--file", str(path),
                             "127.0.0.1"], capture_output=True, timeout=60, check=True)
    # mllp_send prints each framed ACK followed by a newline.
    return [Ack.parse(frame.strip(b"\x0b\x1c\r\n")) for frame in result.stdout.split(EB)
            if frame.strip(b"\x0b\x1c\r\n")]
