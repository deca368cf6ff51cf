"""The coded concepts our result objects use, standard ones and our private scheme.

Standard codes come from DCM (PS3.16 Annex D), SCT and UCUM. What the standard has no
code for (the ROI detector score, the attention weight, the history provenance) is
coded in the private scheme ``99MMBCD``, which every object using it declares in its
Coding Scheme Identification Sequence (PS3.3 C.12.1.1.4) so a reader can look it up.
"""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom import Dataset
from pydicom.sr.codedict import codes

import mmbcd_node

PRIVATE_SCHEME = "99MMBCD"
PRIVATE_SCHEME_NAME = "mmbcd-node result concepts"


def _private(value: str, meaning: str) -> CodedConcept:
    return CodedConcept(value=value, scheme_designator=PRIVATE_SCHEME, meaning=meaning)


# Standard concepts.
PROBABILITY_OF_CANCER = CodedConcept("111047", "DCM", "Probability of cancer")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
MAMMOGRAPHY = CodedConcept("71651007", "SCT", "Mammography")
BREAST = CodedConcept("76752008", "SCT", "Breast")
SELECTED_REGION = CodedConcept("111099", "DCM", "Selected region")
LATERALITY = {
    "R": CodedConcept("24028007", "SCT", "Right"),
    "L": CodedConcept("7771000", "SCT", "Left"),
}
# CID 4014 View for Mammography, by the view names ``ml.views.view_of`` reads.
MAMMOGRAPHY_VIEW = {
    "CC": CodedConcept("399162004", "SCT", "cranio-caudal"),
    "MLO": CodedConcept("399368009", "SCT", "medio-lateral oblique"),
    "ML": CodedConcept("399260004", "SCT", "medio-lateral"),
    "LM": CodedConcept("399352003", "SCT", "latero-medial"),
    "XCCL": CodedConcept("399099002", "SCT", "cranio-caudal exaggerated laterally"),
    "XCCM": CodedConcept("441555000", "SCT", "cranio-caudal exaggerated medially"),
    "SIO": CodedConcept("399110001", "SCT", "superolateral to inferomedial oblique"),
    "FB": CodedConcept("399196006", "SCT", "caudo-cranial (from below)"),
}
DEVICE_OBSERVER = codes.DCM.Device
SOURCE_IMAGE = CodedConcept("260753009", "SCT", "Source")
INDICATIONS = CodedConcept("121109", "DCM", "Indications for Procedure")

# Private concepts (declared by ``coding_scheme_identification``).
ROI_DETECTOR_SCORE = _private("ROI-SCORE", "ROI detector score")
ATTENTION_WEIGHT = _private("ATTENTION", "Attention weight of ROI")
HISTORY_SOURCE = _private("HISTORY-SOURCE", "Clinical history source")
HISTORY_TEXT = _private("HISTORY-TEXT", "Clinical history used")
VIEWS_USED = _private("VIEWS-USED", "Views used")
VIEW_NOT_SCORED = _private("VIEW-ERROR", "View not scored")
IMAGE_NOT_ANALYSED = _private("INPUT-NOTE", "Input not analysed")
OPERATING_POINT = _private("OPERATING-POINT", "Calibration and operating point")


def coding_scheme_identification() -> Dataset:
    """The Coding Scheme Identification Sequence item declaring ``99MMBCD``."""
    item = Dataset()
    item.CodingSchemeDesignator = PRIVATE_SCHEME
    item.CodingSchemeName = PRIVATE_SCHEME_NAME
    item.CodingSchemeResponsibleOrganization = mmbcd_node.MANUFACTURER
    return item
