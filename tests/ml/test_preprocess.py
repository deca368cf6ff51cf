"""DICOM -> model image: LUTs, photometric interpretation, bit depth, crop, flips, box mapping."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import DigitalMammographyXRayImageStorageForProcessing

from ml.preprocess import PreprocessError, PreprocessParams, prepare_view
from tests.support.mammo import make_mammogram

WHOLE = PreprocessParams(voi="none", breast_threshold=-1.0, orient="none")  # no crop, no flip


def _view(pixels: np.ndarray, bits: int = 12, **overrides) -> Dataset:
    rows, cols = pixels.shape
    return make_mammogram(rows=rows, cols=cols, bits_stored=bits,
                          PixelData=pixels.astype(np.uint16).tobytes(), **overrides)


def _ramp(rows: int = 64, cols: int = 48, bits: int = 12) -> np.ndarray:
    top = (1 << bits) - 1
    return np.round(np.linspace(0, 1, rows * cols).reshape(rows, cols) * top)


def test_monochrome1_is_inverted_so_that_breast_is_bright():
    pixels = _ramp()
    mono2 = prepare_view(_view(pixels), WHOLE).image
    mono1 = prepare_view(_view(pixels, PhotometricInterpretation="MONOCHROME1"), WHOLE).image
    np.testing.assert_allclose(mono1, 1.0 - mono2, atol=1e-6)
    assert mono2[0, 0] == 0.0 and mono2[-1, -1] == 1.0


@pytest.mark.parametrize("bits", [12, 14, 16])
def test_images_are_scaled_by_bits_stored_not_by_the_array_dtype(bits):
    pixels = _ramp(bits=bits)
    image = prepare_view(_view(pixels, bits=bits), WHOLE).image
    assert image.dtype == np.float32
    np.testing.assert_allclose(image, pixels / ((1 << bits) - 1), atol=1e-6)


def test_bit_depth_is_kept_until_normalisation():
    pixels = _ramp(bits=14)
    image = prepare_view(_view(pixels, bits=14), WHOLE).image
    assert len(np.unique(image)) == len(np.unique(pixels))  # no 8-bit squashing


def test_window_maps_center_and_width_linearly():
    pixels = _ramp(bits=12)
    ds = _view(pixels, WindowCenter=1024, WindowWidth=1024)
    image = prepare_view(ds, PreprocessParams(voi="window", breast_threshold=-1.0,
                                              orient="none")).image
    expected = np.clip((pixels - (1024 - 0.5)) / (1024 - 1) + 0.5, 0, 1)  # PS3.3 C.11.2.1.2
    np.testing.assert_allclose(image, expected, atol=1e-6)


def _with_voi_lut(ds: Dataset) -> Dataset:
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = [int(round(((v / 4095) ** 0.5) * 4095)) for v in range(4096)]  # gamma 0.5
    item.LUTExplanation = "GAMMA"
    ds.VOILUTSequence = Sequence([item])
    return ds


def test_voi_lut_is_used_when_the_bundle_asks_for_it_and_window_otherwise():
    pixels = _ramp(bits=12)
    ds = _with_voi_lut(_view(pixels, WindowCenter=1024, WindowWidth=1024))
    lut_image = prepare_view(ds, PreprocessParams(voi="voi_lut", breast_threshold=-1.0,
                                                  orient="none")).image
    window_image = prepare_view(ds, PreprocessParams(voi="window", breast_threshold=-1.0,
                                                     orient="none")).image
    np.testing.assert_allclose(lut_image, np.round(np.sqrt(pixels / 4095) * 4095) / 4095,
                               atol=1e-6)
    np.testing.assert_allclose(window_image,
                               np.clip((pixels - 1023.5) / 1023 + 0.5, 0, 1), atol=1e-6)


def test_rescale_slope_and_intercept_are_applied_before_the_window():
    pixels = _ramp(bits=12)
    ds = _view(pixels, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=2000,
               WindowWidth=4000)
    image = prepare_view(ds, PreprocessParams(voi="window", breast_threshold=-1.0,
                                              orient="none")).image
    values = pixels * 2 - 100
    np.testing.assert_allclose(image, np.clip((values - 1999.5) / 3999 + 0.5, 0, 1), atol=1e-6)


def test_for_processing_images_are_refused_unless_the_bundle_allows_them():
    ds = make_mammogram(sop_class=DigitalMammographyXRayImageStorageForProcessing)
    with pytest.raises(PreprocessError, match="FOR PROCESSING"):
        prepare_view(ds, PreprocessParams())
    assert prepare_view(ds, PreprocessParams(allow_for_processing=True)).image.size


def test_unsupported_photometric_interpretation_names_the_attribute():
    ds = _view(_ramp(), PhotometricInterpretation="PALETTE COLOR")
    with pytest.raises(PreprocessError, match="PhotometricInterpretation"):
        prepare_view(ds, WHOLE)


def _breast_phantom(rows: int, cols: int, chest_wall: str) -> np.ndarray:
    """Dark background, a bright half-disc against the chest wall on the given side."""
    y, x = np.mgrid[0:rows, 0:cols]
    x_from_wall = x if chest_wall == "left" else cols - 1 - x
    inside = (x_from_wall / (0.6 * cols)) ** 2 + ((y - rows / 2) / (0.4 * rows)) ** 2 < 1
    return np.where(inside, 2000, 20).astype(np.uint16)


@pytest.mark.parametrize("chest_wall", ["left", "right"])
def test_breast_region_crop_and_chest_wall_left_orientation(chest_wall):
    pixels = _breast_phantom(200, 160, chest_wall)
    prepared = prepare_view(_view(pixels, WindowCenter=None, WindowWidth=None),
                            PreprocessParams(voi="none", region_margin=0))
    assert prepared.flipped == (chest_wall == "right")
    height, width = prepared.image.shape
    assert height < 200 * 0.9 and width < 160 * 0.7  # cropped to the breast
    column_mass = prepared.image.sum(axis=0)
    assert column_mass[: width // 2].sum() > column_mass[width // 2:].sum()  # wall on the left


@pytest.mark.parametrize("chest_wall", ["left", "right"])
def test_a_box_on_a_known_pixel_maps_back_to_that_stored_pixel(chest_wall):
    pixels = _breast_phantom(200, 160, chest_wall)
    row, col = 103, (30 if chest_wall == "left" else 129)
    pixels[row, col] = 4095  # the one brightest pixel
    prepared = prepare_view(_view(pixels, WindowCenter=None, WindowWidth=None),
                            PreprocessParams(voi="none", region_margin=3))
    y, x = np.unravel_index(np.argmax(prepared.image), prepared.image.shape)
    assert prepared.region != (0, 0, 160, 200)  # the crop moved the origin
    assert prepared.to_stored((x, y, x + 1, y + 1)) == (col, row, col + 1, row + 1)


def test_laterality_and_view_come_from_the_header_and_unknown_view_is_kept():
    prepared = prepare_view(make_mammogram(laterality="R", view="MLO"), PreprocessParams())
    assert (prepared.laterality, prepared.view) == ("R", "MLO")
    unknown = make_mammogram(ViewCodeSequence=None, ViewPosition=None, PatientOrientation=None,
                             SeriesDescription="BREAST")
    assert prepare_view(unknown, PreprocessParams()).view is None
