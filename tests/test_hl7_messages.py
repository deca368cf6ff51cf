"""Reading order messages and writing ACKs: field mapping, character sets, escapes, errors.

These run the parser and ACK builder directly; what is stored is tested in
test_orders_intake.py and the network side in test_hl7_listener.py.
"""

from __future__ import annotations

import pytest

from mmbcd_node.config import ConfigError
from mmbcd_node.orders.ack import build_ack
from mmbcd_node.orders.errors import Hl7Rejection
from mmbcd_node.orders.mapping import FieldMapping, ParsedOrder, read_orders
from mmbcd_node.orders.message import parse_order_message, peek_header
from tests.support.hl7_client import Ack, encode, order_message

OMI = {"message_type": "OMI^O23^OMI_O23", "version": "2.5.1"}


def read(text: str | bytes, mapping: dict[str, list[str]] | None = None) -> list[ParsedOrder]:
    raw = text.encode("ascii") if isinstance(text, str) else text
    return read_orders(parse_order_message(raw, ["P"]), FieldMapping.from_config(mapping or {}))


def rejection(text: str | bytes, mapping: dict[str, list[str]] | None = None) -> Hl7Rejection:
    with pytest.raises(Hl7Rejection) as caught:
        read(text, mapping)
    return caught.value


@pytest.mark.parametrize("version", ["2.3", "2.3.1", "2.4", "2.5"])
def test_orm_o01_accession_comes_from_obr18(version: str) -> None:
    (order,) = read(order_message(version=version, accession="ACC-18"))
    assert order.accession == "ACC-18"
    assert order.patient_id == "PAT1" and order.patient_id_issuer == "HOSP"
    assert (order.placer_number, order.filler_number) == ("PL1", "FI1")
    assert order.requested_procedure_id == "RP1"


@pytest.mark.parametrize("version", ["2.5", "2.5.1"])
def test_omi_o23_accession_and_study_uid_come_from_ipc(version: str) -> None:
    (order,) = read(order_message(**{**OMI, "version": version}, accession="IPC-ACC",
                                  obr18="OBR-ACC", study_uid="1.2.826.0.1.99.5"))
    assert order.accession == "IPC-ACC"
    assert order.accession_issuer == "HOSP"
    assert order.study_uid == "1.2.826.0.1.99.5"


def test_accession_falls_back_to_obr18_when_ipc1_is_empty() -> None:
    (order,) = read(order_message(**OMI, ipc_accession="", obr18="FROM-OBR18"))
    assert order.accession == "FROM-OBR18"


@pytest.mark.parametrize("field_name, kwargs", [
    ("OBR-3", {"obr3": "ACC-IN-OBR3"}),
    ("ORC-3", {"orc3": "ACC-IN-ORC3"}),
])
def test_site_moves_accession_to_filler_field_by_mapping_only(field_name: str,
                                                              kwargs: dict[str, str]) -> None:
    text = order_message(accession="NOT-THIS", **kwargs)
    expected = next(iter(kwargs.values()))
    (default,) = read(text)
    assert default.accession == "NOT-THIS"
    (mapped,) = read(text, {"accession": [field_name]})
    assert mapped.accession == expected


def test_line_breaks_around_the_message_are_tolerated() -> None:
    (order,) = read("\r\n" + order_message().replace("\r", "\r\n") + "\n")
    assert order.accession == "ACC1"


def test_study_uid_from_zds_segment_in_orm() -> None:
    (order,) = read(order_message(study_uid="1.2.3.4.5"))
    assert order.study_uid == "1.2.3.4.5"


def test_history_is_obr13_then_obr31_text_then_notes_each_with_its_field() -> None:
    (order,) = read(order_message(clinical="lump left breast 2 months",
                                  reason="R1^Palpable lump^L", notes=("prior surgery right",
                                                                      "family history")))
    assert order.history_sources == [("OBR-13", "lump left breast 2 months"),
                                     ("OBR-31", "Palpable lump"),
                                     ("NTE-3", "prior surgery right"),
                                     ("NTE-3", "family history")]
    assert order.history_text == ("lump left breast 2 months\nPalpable lump\n"
                                  "prior surgery right\nfamily history")
    assert order.reason == "Palpable lump"


def test_history_repeated_in_another_field_is_read_once() -> None:
    (order,) = read(order_message(clinical="Palpable lump  right breast",
                                  reason="R1^palpable lump right breast^L",
                                  notes=("family history",)))
    assert [field for field, _ in order.history_sources] == ["OBR-13", "OBR-31", "NTE-3"]
    assert order.history_text == "Palpable lump  right breast\nfamily history"


def test_coded_reason_without_text_gives_its_code() -> None:
    (order,) = read(order_message(reason="SCREEN"))
    assert order.history_sources[-1] == ("OBR-31", "SCREEN")


def test_escape_sequences_are_unescaped_before_use() -> None:
    (order,) = read(order_message(clinical="pain \\T\\ lump\\.br\\size 2\\S\\3 cm \\X41\\ "
                                           "\\H\\bold\\N\\ \\E\\ \\F\\ \\R\\"))
    assert order.history_sources[0] == ("OBR-13", "pain & lump\nsize 2^3 cm A bold \\ | ~")


@pytest.mark.parametrize("clinical", [r"lump \Q\ left", r"lump \T left", r"bad \XZZ\ hex"])
def test_broken_escape_sequence_is_ae_102_naming_the_field(clinical: str) -> None:
    error = rejection(order_message(clinical=clinical))
    assert (error.ack_code, error.error_code) == ("AE", 102)
    assert "OBR-13" in error.text


def test_latin1_text_is_decoded_as_msh18_declares() -> None:
    text = order_message(charset="8859/1", clinical="Knoten rechts, Größe 2 cm, Mamma-Ca?")
    (order,) = read(encode(text, "8859/1"))
    assert order.history_sources[0][1] == "Knoten rechts, Größe 2 cm, Mamma-Ca?"


def test_utf8_text_is_decoded_as_msh18_declares() -> None:
    text = order_message(charset="UNICODE UTF-8", clinical="nódulo mama izquierda — 乳房")
    (order,) = read(encode(text, "UNICODE UTF-8"))
    assert order.history_sources[0][1] == "nódulo mama izquierda — 乳房"


def test_non_ascii_bytes_without_msh18_are_ae_102() -> None:
    raw = order_message(clinical="Größe").encode("latin-1")
    error = rejection(raw)
    assert (error.ack_code, error.error_code) == ("AE", 102)
    assert "MSH-18" in error.text


def test_utf8_declared_but_latin1_sent_is_ae_102() -> None:
    raw = order_message(charset="UNICODE UTF-8", clinical="Größe").encode("latin-1")
    assert rejection(raw).error_code == 102


def test_unknown_character_set_is_ae_103() -> None:
    error = rejection(order_message(charset="KLINGON"))
    assert (error.ack_code, error.error_code) == ("AE", 103)


@pytest.mark.parametrize("case, text, ack, code", [
    ("no MSH", "PID|1||PAT1\rORC|NW|PL1\rOBR|1|PL1\r", "AE", 100),
    ("binary garbage", b"\x00\xff\x13garbage\x9c\x02" * 20, "AE", 100),
    ("wrong field separator", order_message().replace("|", "#"), "AE", 102),
    ("segment with another separator", order_message().replace("PID|", "PID#"), "AE", 100),
    ("unknown message type", order_message(message_type="ADT^A01"), "AR", 200),
    ("unknown trigger", order_message(message_type="ORM^O02"), "AR", 201),
    ("unsupported version", order_message(version="2.9"), "AR", 203),
    ("OMI in a version without it", order_message(message_type="OMI^O23", version="2.3"),
     "AR", 203),
    ("processing id", order_message(processing_id="D"), "AR", 202),
    ("no control id", order_message(control_id=""), "AE", 101),
    ("no patient id", order_message(patient_id=""), "AE", 101),
    ("no OBR", "\r".join(s for s in order_message().split("\r") if not s.startswith("OBR")),
     "AE", 100),
    ("no placer or filler", order_message(placer="", filler=""), "AE", 101),
    ("unknown order control", order_message(control="ZZ"), "AE", 103),
    ("bad study uid", order_message(study_uid="not.a.uid"), "AE", 102),
    ("control character", order_message(clinical="lump\x07bell"), "AE", 102),
])
def test_bad_input_gets_specific_ack_code(case: str, text: str | bytes, ack: str,
                                          code: int) -> None:
    error = rejection(text)
    assert (error.ack_code, error.error_code) == (ack, code), f"{case}: {error.text}"


def test_several_orders_in_one_message_are_read_separately() -> None:
    orders = read(order_message(extra_orders=1, accession="ACC"))
    assert [o.placer_number for o in orders] == ["PL1", "PL1-1"]
    assert [o.accession for o in orders] == ["ACC", "ACC-1"]


@pytest.mark.parametrize("message_type, version, field, value", [
    ("ORM^O01", "2.3.1", "ORC-7.6", "S"),
    ("OMI^O23^OMI_O23", "2.5.1", "TQ1-9", "S"),
])
def test_stat_priority_is_read_per_version(message_type: str, version: str, field: str,
                                           value: str) -> None:
    (order,) = read(order_message(message_type=message_type, version=version, priority=value))
    assert order.urgent
    (routine,) = read(order_message(message_type=message_type, version=version, priority="R"))
    assert not routine.urgent


def test_mapping_rejects_unknown_target_and_bad_path() -> None:
    with pytest.raises(ConfigError, match="hl7.mapping.accesion"):
        FieldMapping.from_config({"accesion": ["OBR-18"]})
    with pytest.raises(ConfigError, match="hl7.mapping.accession"):
        FieldMapping.from_config({"accession": ["OBR18"]})


def test_ack_for_v23_carries_err1_and_echoes_header() -> None:
    header = peek_header(order_message("CTRL-9", version="2.3.1").encode())
    error = Hl7Rejection("AE", 101, "patient id (PID-3) is empty", None)
    ack = Ack.parse(build_ack(header, "AE", error))
    assert ack.msh[8] == "ACK^O01^ACK"
    assert ack.msh[11] == "2.3.1"
    assert (ack.msh[2], ack.msh[4]) == ("MMBCD", "RIS")  # sender and receiver swapped
    assert (ack.code, ack.control_id, ack.error_code) == ("AE", "CTRL-9", "101")
    assert ack.segment("ERR")[1].endswith("101&Required field missing&HL70357")


def test_ack_for_v25_carries_err3_code_and_err4_severity() -> None:
    header = peek_header(order_message("CTRL-10", **OMI).encode())
    from mmbcd_node.orders.errors import ErrorLocation
    error = Hl7Rejection("AR", 203, "version not supported", ErrorLocation("MSH", 12))
    ack = Ack.parse(build_ack(header, "AR", error))
    err = ack.segment("ERR")
    assert ack.msh[8] == "ACK^O23^ACK" and ack.msh[11] == "2.5.1"
    assert err[2] == "MSH^1^12^1"
    assert err[3] == "203^Unsupported version id^HL70357"
    assert err[4] == "E"


def test_ack_in_latin1_message_keeps_its_charset() -> None:
    header = peek_header(encode(order_message(charset="8859/1", clinical="ö"), "8859/1"))
    ack = Ack.parse(build_ack(header, "AA"))
    assert ack.msh[17] == "8859/1" and ack.code == "AA"
