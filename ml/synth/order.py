"""The HL7 v2.3.1 ORM^O01 order a RIS sends for a synthetic study.

MSH / PID / PV1 / ORC / OBR plus the widespread ZDS segment: OBR-13 (relevant clinical
information) carries the clinical history, OBR-18 the accession number, OBR-19 the
requested procedure id, ORC-2 / ORC-3 (and OBR-2 / OBR-3) the placer and filler
order numbers, ZDS-1 the Study Instance UID (``uid^100^Application^DICOM``). Free
text is escaped by hl7apy (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``); segments are separated
by carriage returns, so the text can be framed for MLLP as it is.
"""

from __future__ import annotations

import datetime as dt

from hl7apy.base_datatypes import ST
from hl7apy.core import Message, Segment

from ml.synth.study import StudyPlan

SENDING_APPLICATION = "SYNTH_RIS"
SENDING_FACILITY = "SYNTH"
PROCEDURE_CODE = "MGBIL^MAMMOGRAPHY BILATERAL^L"


def _order_time(plan: StudyPlan) -> str:
    """The order is placed two hours before the images are taken."""
    taken = dt.datetime.strptime(plan.study_date + plan.study_time, "%Y%m%d%H%M%S")
    return (taken - dt.timedelta(hours=2)).strftime("%Y%m%d%H%M%S")


def order_message(plan: StudyPlan) -> str:
    """ER7 text (segments separated by ``\\r``) of the new-order message of ``plan``."""
    ordered = _order_time(plan)
    message = Message("ORM_O01", version="2.3.1")
    msh = message.msh
    msh.msh_3 = SENDING_APPLICATION
    msh.msh_4 = SENDING_FACILITY
    msh.msh_5 = "MMBCD"
    msh.msh_6 = "MMBCD"
    msh.msh_7 = ordered
    msh.msh_9 = "ORM^O01"
    msh.msh_10 = f"MSG{plan.accession}"
    msh.msh_11 = "P"
    msh.msh_18 = "8859/1"

    patient = message.add_group("ORM_O01_PATIENT")
    patient.pid.pid_1 = "1"
    patient.pid.pid_3 = f"{plan.patient_id}^^^SYNTH"
    patient.pid.pid_5 = plan.patient_name  # FAMILY^GIVEN, letters and apostrophes only
    patient.pid.pid_7 = plan.birth_date
    patient.pid.pid_8 = "F"
    patient.add_group("ORM_O01_PATIENT_VISIT").pv1.pv1_2 = "O"

    order = message.add_group("ORM_O01_ORDER")
    orc = order.orc
    orc.orc_1 = "NW"
    orc.orc_2 = f"{plan.placer_order}^{SENDING_APPLICATION}"
    orc.orc_3 = f"{plan.filler_order}^{SENDING_APPLICATION}"
    orc.orc_5 = "SC"
    orc.orc_9 = ordered
    obr = order.add_group("ORM_O01_ORDER_DETAIL").add_group("ORM_O01_CHOICE").obr
    obr.obr_1 = "1"
    obr.obr_2 = orc.orc_2.value
    obr.obr_3 = orc.orc_3.value
    obr.obr_4 = PROCEDURE_CODE
    obr.obr_7 = ordered
    obr.obr_13.obr_13_1 = ST(plan.history)  # escaped on output
    obr.obr_18 = plan.accession
    obr.obr_19 = plan.requested_procedure_id
    obr.obr_24 = "MG"

    zds = Segment("ZDS", version="2.3.1")
    zds.zds_1 = f"{plan.study_uid}^100^Application^DICOM"
    message.add(zds)
    return message.to_er7()
