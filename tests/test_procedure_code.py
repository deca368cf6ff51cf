"""OBR-4 as the Requested Procedure Code of the result objects."""

from __future__ import annotations

import dataclasses

import pydicom

from mmbcd_node.orders.procedure_code import ProcedureCode, procedure_code
from mmbcd_node.results.structured_report import build_structured_report
from tests.support.dicom_validation import dciodvfy_errors, write
from tests.support.predictions import ORDER, make_result_set


def test_the_first_coded_triplet_of_obr_4_is_the_code() -> None:
    assert procedure_code("MG-BI^Mammo \\T\\ tomo^99RIS") == ProcedureCode(
        "MG-BI", "99RIS", "Mammo & tomo")
    assert procedure_code("MAMMO^Mammography^^77067^Screening mammography^CPT") == \
        ProcedureCode("77067", "CPT", "Screening mammography")
    assert procedure_code("MAMMO^Mammography") is None  # no coding system: no DICOM code
    assert procedure_code("") is None and procedure_code(None) is None


def test_the_order_s_procedure_code_is_in_the_referenced_request(tmp_path) -> None:
    order = dataclasses.replace(ORDER, requested_procedure_code=(
        "MG-BILATERAL-DIAGNOSTIC", "99RIS", "Diagnostic mammography, both breasts"))
    path = write(build_structured_report(make_result_set(order=order)), tmp_path, "sr.dcm")
    assert dciodvfy_errors(path) == []
    (request,) = pydicom.dcmread(path).ReferencedRequestSequence
    (code,) = request.RequestedProcedureCodeSequence
    assert (code.LongCodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == (
        "MG-BILATERAL-DIAGNOSTIC", "99RIS", "Diagnostic mammography, both breasts")
    assert "CodeValue" not in code  # longer than SH: Long Code Value instead
