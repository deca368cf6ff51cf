"""A realistic model prediction over a small 4-view mammography study.

The views are the receiver's synthetic mammograms (``tests/support/mammo.py``: Digital
Mammography For Presentation, 12-bit, Image Laterality, View Code Sequence, windowing,
MLO orientations with a foot direction such as A, FR), 256 x 208 pixels so every result
object is quick to build and validate.
"""

from __future__ import annotations

import dataclasses

import pydicom
import pytest
from pydicom.uid import generate_uid

from ml.types import (
    LevelOperatingPoint,
    OperatingPoints,
    RoiPrediction,
    StudyPrediction,
    ViewPrediction,
)
from mmbcd_node.images.source_image import source_image
from mmbcd_node.results.result_set import (
    BundleIdentity,
    HistoryProvenance,
    OrderContext,
    ResultSet,
)
from tests.support.mammo import make_mammogram

UID_ROOT = "1.2.826.0.1.3680043.10.1453."
SERIES_NUMBERS = 9900
PIXEL_SPACING = 0.1
BUNDLE = BundleIdentity(name="mmbcd-demo", version="1.0.0",
                        digest="sha256:" + "ab12" * 14,
                        parameters={"threshold": 0.5, "top_k": 8, "nms_iou": 0.1})


def make_study(views: tuple[tuple[str, str], ...] = (("R", "CC"), ("L", "CC"),
                                                     ("R", "MLO"), ("L", "MLO")),
               accession: str = "ACC20260001") -> list[pydicom.Dataset]:
    """The 4 standard views of one synthetic screening study."""
    study_uid = generate_uid()
    return [make_mammogram(study_uid=study_uid, patient_id="PAT-0001", accession=accession,
                           laterality=laterality, view=view, seed=number,
                           PatientName="Phantom^Jane")
            for number, (laterality, view) in enumerate(views, start=1)]


# ROIs per (laterality, view): (box, detector score, attention); attention sums to 1.
ROIS = {
    ("R", "CC"): [((40.0, 60.0, 90.0, 110.0), 0.91, 0.62),
                  ((100.0, 150.0, 130.0, 190.0), 0.35, 0.38)],
    ("L", "CC"): [((120.0, 80.0, 170.0, 120.0), 0.40, 1.0)],
    ("R", "MLO"): [((30.0, 40.0, 80.0, 100.0), 0.88, 0.55),
                   ((90.0, 120.0, 120.0, 150.0), 0.20, 0.25),
                   ((60.0, 180.0, 100.0, 220.0), 0.15, 0.20)],
    ("L", "MLO"): [((110.0, 100.0, 160.0, 150.0), 0.30, 1.0)],
}
VIEW_PROBABILITY = {("R", "CC"): 0.81, ("L", "CC"): 0.22, ("R", "MLO"): 0.74, ("L", "MLO"): 0.18}


def make_prediction(views: list[pydicom.Dataset],
                    failed_view: tuple[str, str] | None = None) -> StudyPrediction:
    """A prediction like the pipeline's: ROIs per view, breast = max, study = max.

    ``failed_view`` (laterality, view) is reported as unreadable, as the pipeline does
    for a view whose pixels cannot be decoded.
    """
    predictions = []
    for ds in views:
        key = (str(ds.ImageLaterality), str(ds.ViewPosition))
        if key == failed_view:
            predictions.append(ViewPrediction(str(ds.SOPInstanceUID), key[0], key[1], None,
                                              error="pixel data could not be decoded"))
            continue
        rois = [RoiPrediction(box, score, attention) for box, score, attention in ROIS[key]]
        predictions.append(ViewPrediction(str(ds.SOPInstanceUID), key[0], key[1],
                                          VIEW_PROBABILITY[key], rois))
    breasts: dict[str, float] = {}
    for view in predictions:
        if view.probability is not None and view.laterality:
            breasts[view.laterality] = max(breasts.get(view.laterality, 0.0), view.probability)
    return StudyPrediction(study_uid=str(views[0].StudyInstanceUID),
                           probability=max(breasts.values()) if breasts else None,
                           breasts=breasts, views=predictions, bundle_digest=BUNDLE.digest,
                           history_used=True, operating=OPERATING)


# Per-level operating points of a calibrated bundle, as ``mmbcd-train fusion`` fits them.
OPERATING = OperatingPoints(
    view=LevelOperatingPoint(0.42, "specificity:0.90", "specificity 0.901, sensitivity 0.712 "
                                                       "on 384 validation cases"),
    breast=LevelOperatingPoint(0.45, "specificity:0.90", "specificity 0.905, sensitivity "
                                                         "0.803 on 192 validation cases"),
    study=LevelOperatingPoint(0.5, "specificity:0.90", "specificity 0.900, sensitivity 0.861 "
                                                       "on 96 validation cases"),
    calibration="platt, validation split (96 studies)")

ORDER = OrderContext(accession_number="ACC20260001", placer_order_number="PL-778",
                     filler_order_number="FI-991", requested_procedure_id="RP-12",
                     requested_procedure_description="Screening mammography",
                     reason_for_requested_procedure="Palpable lump right breast")
HISTORY = HistoryProvenance(text="Palpable lump upper outer quadrant right breast; "
                                 "mother had breast cancer at 52.",
                            source_fields=("OBR-13", "OBR-31"))


def make_result_set(failed_view: tuple[str, str] | None = None,
                    sources: list[pydicom.Dataset] | None = None,
                    **changes: object) -> ResultSet:
    """A complete result set over a fresh synthetic study (or over ``sources``, views of
    one study at least 256 x 208 pixels); ``changes`` replace fields."""
    views = sources if sources is not None else make_study()
    result = ResultSet(prediction=make_prediction(views, failed_view),
                       views=[source_image(ds) for ds in views],
                       bundle=BUNDLE, uid_root=UID_ROOT, series_numbers=SERIES_NUMBERS,
                       history=HISTORY, order=ORDER, device_serial_number="MMBCD")
    return dataclasses.replace(result, **changes) if changes else result


@pytest.fixture
def result_set() -> ResultSet:
    """A 4-view result set with order and history, every view scored."""
    return make_result_set()
