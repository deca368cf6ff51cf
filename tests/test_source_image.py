"""The input contract: what a received header becomes, and what no default can rescue."""

from __future__ import annotations

import pytest
from pydicom.dataset import Dataset
from sqlalchemy.exc import IntegrityError, OperationalError

from mmbcd_node.images.image_selection import select_images
from mmbcd_node.images.source_image import ImageRejected, source_image
from mmbcd_node.work.failures import is_transient
from tests.support.mammo import make_mammogram


def test_spacing_comes_from_imager_then_pixel_then_nominal_scanned_spacing() -> None:
    ds = make_mammogram(ImagerPixelSpacing=[0.07, 0.08], PixelSpacing=[0.1, 0.1])
    assert source_image(ds).spacing.source == "ImagerPixelSpacing"
    ds = make_mammogram(ImagerPixelSpacing=None, PixelSpacing=[0.1, 0.2])
    spacing = source_image(ds).spacing
    assert (spacing.row, spacing.column, spacing.source) == (0.1, 0.2, "PixelSpacing")
    ds = make_mammogram(ImagerPixelSpacing=None, PixelSpacing=None,
                        NominalScannedPixelSpacing=[0.05, 0.05])
    assert source_image(ds).spacing.source == "NominalScannedPixelSpacing"
    assert source_image(make_mammogram(ImagerPixelSpacing=None, PixelSpacing=None)).spacing \
        is None


def test_lut_data_written_as_us_is_rewritten_as_ow_with_the_same_entries() -> None:
    ds = make_mammogram()
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.add_new("LUTData", "US", list(range(4096)))
    ds.VOILUTSequence = [item]
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            del ds[keyword]
    lut = source_image(ds).dataset.VOILUTSequence[0]
    assert lut["LUTData"].VR == "OW" and lut.LUTData[:4] == b"\x00\x00\x01\x00"


def test_voi_lut_beside_a_window_is_dropped_and_the_window_used() -> None:
    ds = make_mammogram(WindowCenter=2048, WindowWidth=4096)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.add_new("LUTData", "US", list(range(4096)))
    ds.VOILUTSequence = [item]
    image = source_image(ds)
    assert "VOILUTSequence" not in image.dataset and image.dataset.WindowWidth == 4096
    assert any("beside a window" in note for note in image.defaults)


def test_malformed_orientation_and_window_become_unknown_and_dropped_with_a_note() -> None:
    ds = make_mammogram(PatientOrientation=["XYZ"], WindowWidth=0)
    image = source_image(ds)
    assert image.orientation is None and "WindowCenter" not in image.dataset
    assert any("Window" in note for note in image.defaults)


@pytest.mark.parametrize(("overrides", "attribute"), [
    ({"PhotometricInterpretation": "YBR_FULL"}, "PhotometricInterpretation"),
    ({"BitsStored": 6}, "BitsStored"),
    ({"Rows": None}, "Rows"),
])
def test_an_image_no_default_can_rescue_is_rejected_naming_it_and_the_attribute(
        overrides, attribute) -> None:
    ds = make_mammogram(**overrides)
    with pytest.raises(ImageRejected, match=attribute) as raised:
        source_image(ds)
    assert str(ds.SOPInstanceUID) in str(raised.value)


def test_a_later_retake_replaces_the_earlier_image_of_the_same_view() -> None:
    first = make_mammogram(laterality="R", view="CC", AcquisitionTime="101500")
    retake = make_mammogram(study_uid=first.StudyInstanceUID, laterality="R", view="CC",
                            AcquisitionTime="102000")
    selection = select_images([source_image(retake), source_image(first)],
                              allow_for_processing=False)
    assert [i.sop_instance_uid for i in selection.analysed] == [retake.SOPInstanceUID]
    assert "superseded" in selection.not_analysed[0].reason
    assert selection.missing == ["R MLO", "L CC", "L MLO"]


def test_only_database_io_and_memory_failures_are_transient() -> None:
    assert is_transient(OperationalError("select", {}, Exception("gone")))
    assert is_transient(OSError("stale file handle")) and is_transient(MemoryError())
    assert not is_transient(IntegrityError("insert", {}, Exception("dup")))
    assert not is_transient(ValueError("bad header")) and not is_transient(KeyError("x"))
