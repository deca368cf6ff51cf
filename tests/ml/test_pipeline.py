"""Pipeline on synthetic DICOM studies with the packaged tiny bundle."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import JPEGLSLossless, generate_uid

from ml.pipeline import Pipeline, resolve_device
from ml.types import StudyInput, ViewInput
from tests.support.bf16_agreement import TOLERANCE, agreement, synthetic_views
from tests.support.mammo import make_mammogram, write_mammogram

VIEWS = [("R", "CC"), ("L", "CC"), ("R", "MLO"), ("L", "MLO")]
ROWS, COLS = 640, 512


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    return Pipeline(None, device="cpu")


def _study(seed: int, history: str = "palpable lump in the left breast") -> StudyInput:
    study_uid = generate_uid()
    views = []
    for i, (laterality, view) in enumerate(VIEWS):
        ds = make_mammogram(study_uid=study_uid, laterality=laterality, view=view, rows=ROWS,
                            cols=COLS, seed=seed * 10 + i)
        views.append(ViewInput(ds, ds.SOPInstanceUID))
    return StudyInput(study_uid, views, history)


def test_four_view_study_has_documented_shapes_and_ranges(pipeline):
    study = _study(1)
    [prediction] = pipeline.predict([study])
    assert prediction.study_uid == study.study_uid
    assert prediction.bundle_digest == pipeline.bundle.digest
    assert prediction.history_used and prediction.threshold == pipeline.bundle.threshold
    assert [v.sop_instance_uid for v in prediction.views] == \
        [v.sop_instance_uid for v in study.views]
    k = pipeline.bundle.detector_params.k
    for view, (laterality, name) in zip(prediction.views, VIEWS, strict=True):
        assert view.error is None and 0.0 <= view.probability <= 1.0
        assert (view.laterality, view.view) == (laterality, name)
        assert 1 <= len(view.rois) <= k
        assert sum(r.attention for r in view.rois) == pytest.approx(1.0, abs=1e-5)
        assert all(r.attention > 0 for r in view.rois)
        scores = [r.detector_score for r in view.rois]
        assert scores == sorted(scores, reverse=True)  # highest detector score first
        assert view.breast_region is not None
        bx0, by0, bx1, by1 = view.breast_region
        assert 0 <= bx0 < bx1 <= COLS and 0 <= by0 < by1 <= ROWS
        for roi in view.rois:
            x0, y0, x1, y1 = roi.box
            assert 0 <= x0 < x1 <= COLS and 0 <= y0 < y1 <= ROWS  # stored pixel grid
            # Every ROI lies in the breast region the model looked at.
            assert bx0 <= x0 + 1e-3 and x1 <= bx1 + 1e-3 and by0 <= y0 + 1e-3 and y1 <= by1 + 1e-3
    # Each level is its own calibration of the highest raw view score beneath it.
    calibration = pipeline.bundle.calibration
    assert [v.probability for v in prediction.views] == pytest.approx(
        [calibration.view.one(v.score or 0.0) for v in prediction.views])
    by_side = {s: calibration.breast.one(max(v.score or 0.0 for v in prediction.views
                                             if v.laterality == s)) for s in "RL"}
    assert prediction.breasts == pytest.approx(by_side)
    assert prediction.probability == pytest.approx(
        calibration.study.one(max(v.score or 0.0 for v in prediction.views)))


def test_unreadable_view_is_reported_and_the_other_views_still_score(pipeline, tmp_path):
    study = _study(2)
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a dicom file at all")
    for_processing = make_mammogram(laterality="L", view="CC",
                                    sop_class="1.2.840.10008.5.1.4.1.1.1.2.1")
    study = StudyInput(study.study_uid, [*study.views, ViewInput(broken, "1.2.3.4"),
                                         ViewInput(for_processing, "1.2.3.5")], "")
    [prediction] = pipeline.predict([study])
    assert [v.error is None for v in prediction.views] == [True] * 4 + [False, False]
    assert prediction.views[4].probability is None and "InvalidDicomError" in \
        prediction.views[4].error
    assert "FOR PROCESSING" in prediction.views[5].error
    assert prediction.views[5].laterality == "L"
    assert prediction.probability is not None and not prediction.history_used


def test_views_batched_across_studies_score_as_they_do_alone(pipeline):
    first, second = _study(3, "screening, no complaints"), _study(4, "bloody nipple discharge")
    together = pipeline.predict([first, second])
    alone = [pipeline.predict([first])[0], pipeline.predict([second])[0]]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose([v.probability for v in a.views],
                                   [v.probability for v in b.views], atol=1e-5)
        assert [r.box for r in a.views[0].rois] == [r.box for r in b.views[0].rois]


def test_history_text_changes_the_score(pipeline):
    study = _study(5)
    with_history = pipeline.predict([study])[0].probability
    without = pipeline.predict([StudyInput(study.study_uid, study.views, "")])[0].probability
    assert with_history != without


def test_compressed_dicom_files_are_read_from_disk(pipeline, tmp_path):
    ds = make_mammogram(laterality="R", view="MLO", rows=ROWS, cols=COLS, bits_stored=14)
    path = write_mammogram(tmp_path / "view.dcm", ds, JPEGLSLossless)
    [prediction] = pipeline.predict([StudyInput(ds.StudyInstanceUID,
                                                [ViewInput(path, ds.SOPInstanceUID)])])
    assert prediction.views[0].error is None
    assert prediction.breasts.keys() == {"R"}


def test_view_of_unknown_laterality_counts_for_the_study_only(pipeline):
    ds = make_mammogram(rows=ROWS, cols=COLS, ImageLaterality=None,
                        SeriesDescription="SCREENING")  # no side anywhere
    [prediction] = pipeline.predict([StudyInput(ds.StudyInstanceUID,
                                                [ViewInput(ds, ds.SOPInstanceUID)])])
    assert prediction.breasts == {}
    (view,) = prediction.views
    assert view.score is not None
    assert prediction.probability == pipeline.bundle.calibration.study.one(view.score)


def test_device_auto_uses_the_cpu_without_cuda_and_cuda_is_refused_when_absent():
    import torch
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            resolve_device("cuda")


def test_display_lut_applied_on_the_device_gives_the_same_result_as_on_the_cpu(pipeline):
    from tests.support.mammo import mammo_pixels

    mirrored = np.fliplr(mammo_pixels(ROWS, COLS, 16, seed=8)).copy()  # chest wall on the right
    views = [make_mammogram(rows=ROWS, cols=COLS, photometric="MONOCHROME1", seed=7),
             make_mammogram(rows=ROWS, cols=COLS, bits_stored=16, PixelData=mirrored.tobytes())]
    study = StudyInput(generate_uid(), [ViewInput(ds, ds.SOPInstanceUID) for ds in views], "x")
    [on_cpu] = pipeline.predict([study])
    pipeline.display_on_device = True  # the GPU path's gather, run here on the CPU
    try:
        [on_device] = pipeline.predict([study])
    finally:
        pipeline.display_on_device = False
    for a, b in zip(on_cpu.views, on_device.views, strict=True):
        assert a.error is None and b.error is None
        assert a.probability == pytest.approx(b.probability, abs=1e-6)
        assert [r.box for r in a.rois] == [r.box for r in b.rois]


def test_bf16_autocast_on_a_capable_cpu_stays_close_to_float32(pipeline):
    import torch

    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        with pytest.raises(ValueError, match="bfloat16"):
            Pipeline(pipeline.bundle, device="cpu", bf16=True)
        return
    study = _study(9)
    [exact] = pipeline.predict([study])
    [fast] = Pipeline(pipeline.bundle, device="cpu", bf16=True).predict([study])
    for a, b in zip(exact.views, fast.views, strict=True):
        assert b.error is None and 0.0 <= b.probability <= 1.0
        # The detector runs in float32 under bf16 autocast, so the ROI set is the same.
        assert [r.box for r in b.rois] == [r.box for r in a.rois]
        assert b.probability == pytest.approx(a.probability, abs=0.05)
        assert sum(r.attention for r in b.rois) == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_bf16_agrees_with_float32_on_64_views_including_views_without_a_detection(device):
    """Per bundle (the demo's and the random tiny one), 64 views; the demo detector finds
    nothing confident in most of them, where rounding could change the ROI set. On the
    CPU where it has native bf16, on CUDA where a GPU is present."""
    import torch

    from ml.manifest import default_bundle_path

    if device == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        pytest.skip("this CPU has no native bfloat16 (AVX512-BF16 or AMX)")
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    studies = synthetic_views(64, seed=5000)
    views = [view for bundle in ("demo", "random-tiny")
             for view in agreement(default_bundle_path().parent / bundle, device, studies)]
    assert len(views) == 128
    assert sum(not v.confident for v in views) >= 16
    assert all(v.same_rois for v in views)
    assert max(v.difference for v in views) <= TOLERANCE
