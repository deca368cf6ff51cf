"""The synthetic images: findings where their boxes say, boxes inside the breast,
consistent positions on CC and MLO, realistic texture, pectoral muscle on MLO only,
MONOCHROME1 stored inverted."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pydicom
import pytest

from ml.synth import findings
from ml.synth.config import SynthConfig
from ml.synth.findings import BENIGN_KINDS, MALIGNANT_KINDS, Finding, sample_finding
from ml.synth.mammogram_file import write_mammogram
from ml.synth.study import BreastPlan, plan_study, render_view
from ml.synth.texture import power_law_noise

CONFIG = SynthConfig(sizes=((512, 416),), subtle_fraction=0.0, occult_fraction=0.0,
                     one_view_fraction=0.0, benign_finding_rate=0.0, monochrome1_fraction=0.0)


def _with_finding(kind: str, index: int, laterality: str = "L"):
    """A study whose ``laterality`` breast carries exactly one obvious ``kind`` finding."""
    plan = plan_study(21, index, malignant=False, config=CONFIG)
    rng = np.random.default_rng(index)
    finding = sample_finding(kind, rng, "obvious")
    breasts = dict(plan.breasts)
    breasts[laterality] = BreastPlan(laterality, breasts[laterality].shape, (finding,))
    return dataclasses.replace(plan, breasts=breasts)


@pytest.mark.parametrize("kind", MALIGNANT_KINDS + BENIGN_KINDS)
@pytest.mark.parametrize("laterality", ["R", "L"])
def test_finding_changes_the_image_inside_its_box_and_the_box_is_in_the_breast(
        kind: str, laterality: str) -> None:
    for index in range(2):
        plan = _with_finding(kind, index, laterality)
        for view in ("CC", "MLO"):
            with_it = render_view(plan, laterality, view)
            without = render_view(plan, laterality, view, with_findings=False)
            (drawn,) = with_it.findings
            assert drawn.box is not None
            x0, y0, x1, y1 = drawn.box
            assert 0 <= x0 < x1 <= plan.cols and 0 <= y0 < y1 <= plan.rows
            change = np.abs(with_it.pixels.astype(np.int64) - without.pixels.astype(np.int64))
            inside = change[int(y0):int(math.ceil(y1)), int(x0):int(math.ceil(x1))].sum()
            if kind != "coarse_calcifications":  # scattered: its box is the spread
                centre = (int((y0 + y1) / 2), int((x0 + x1) / 2))
                assert with_it.mask[centre], (kind, view, drawn.box)
            # Spicules and blurred margins reach a little past the box; most of the
            # added density is inside it.
            assert inside > 0.6 * change.sum(), (kind, view, inside / change.sum())
            box_mask = with_it.mask[int(y0):int(math.ceil(y1)), int(x0):int(math.ceil(x1))]
            assert box_mask.mean() > 0.5, (kind, view)


def test_lesion_is_denser_than_its_surroundings() -> None:
    plan = _with_finding("circumscribed_mass", 3)
    view = render_view(plan, "L", "CC")
    x0, y0, x1, y1 = (int(c) for c in view.findings[0].box)
    cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
    half = max(2, (x1 - x0) // 6)
    core = view.pixels[cy - half:cy + half, cx - half:cx + half].mean()
    plain = render_view(plan, "L", "CC", with_findings=False).pixels
    assert core > plain[cy - half:cy + half, cx - half:cx + half].mean()


def test_same_finding_sits_at_the_same_distance_from_the_nipple_on_cc_and_mlo() -> None:
    for index in range(6):
        plan = _with_finding("spiculated_mass", 10 + index, "R")
        centres = {}
        for view in ("CC", "MLO"):
            box = render_view(plan, "R", view).findings[0].box
            # Right breast: chest wall on the right edge, nipple the leftmost breast point.
            centres[view] = plan.cols - (box[0] + box[2]) / 2
        # Distance from the chest wall differs only by the MLO's deeper projection.
        assert abs(centres["CC"] - centres["MLO"]) < 0.2 * plan.cols


def test_upper_outer_finding_is_high_on_mlo_and_lateral_on_cc() -> None:
    plan = _with_finding("circumscribed_mass", 5, "L")
    finding = plan.breasts["L"].findings[0]
    moved = dataclasses.replace(finding, lateral=0.7, superior=0.7, depth=0.5)
    breasts = dict(plan.breasts)
    breasts["L"] = BreastPlan("L", breasts["L"].shape, (moved,))
    plan = dataclasses.replace(plan, breasts=breasts)
    for view in ("CC", "MLO"):
        rendered = render_view(plan, "L", view)
        rows_with_breast = np.nonzero(rendered.mask.any(axis=1))[0]
        middle = (rows_with_breast.min() + rows_with_breast.max()) / 2
        box = rendered.findings[0].box
        assert (box[1] + box[3]) / 2 < middle, view  # lateral is up on CC, upper-outer on MLO


def test_a_cluster_reaching_past_the_image_edge_is_clipped_not_an_error() -> None:
    image = np.zeros((64, 64), np.float32)
    points = ((0.0, 0.0, 0.3), (40.0, 40.0, 0.3))  # (dx, dy, r) mm; the second far outside
    box = findings._dots(image, 60.0, 60.0, points, contrast=0.5, mm=2.0, turn=0.0)
    assert image[58:62, 58:62].max() > 0.2  # the dot inside is drawn
    assert box[2] > 64  # the box still spans the dot outside


def test_occult_and_one_view_cancers_have_no_box_where_invisible() -> None:
    plan = _with_finding("ill_defined_mass", 7)
    finding: Finding = plan.breasts["L"].findings[0]
    for changed, boxed in ((dataclasses.replace(finding, visibility="occult"), set()),
                           (dataclasses.replace(finding, hidden_on="CC"), {"MLO"})):
        breasts = dict(plan.breasts)
        breasts["L"] = BreastPlan("L", breasts["L"].shape, (changed,))
        variant = dataclasses.replace(plan, breasts=breasts)
        got = {view for view in ("CC", "MLO")
               if render_view(variant, "L", view).findings[0].box is not None}
        assert got == boxed


def test_pectoral_muscle_only_on_mlo_at_the_chest_wall_top() -> None:
    plan = plan_study(4, 0, malignant=False, config=CONFIG)
    for laterality in ("R", "L"):
        mlo = render_view(plan, laterality, "MLO")
        cc = render_view(plan, laterality, "CC")
        wall = -1 if laterality == "R" else 0  # right breasts: chest wall on the right
        # MLO: the muscle (with the axilla) fills the chest-wall corner at the top.
        assert mlo.mask[2, wall] and mlo.mask[2, 5 if wall == 0 else -6]
        assert not cc.mask[2, wall]  # CC: nothing but air at the top of the chest wall
        far = 0 if wall == -1 else -1
        assert not mlo.mask[:, far].any() and not cc.mask[:, far].any()  # air past the nipple


def test_texture_follows_a_power_law_not_white_noise() -> None:
    field = power_law_noise((256, 256), 3.0, np.random.default_rng(0))
    spectrum = np.abs(np.fft.fft2(field)) ** 2
    f = np.sqrt(np.add.outer(np.fft.fftfreq(256) ** 2, np.fft.fftfreq(256) ** 2))
    low = spectrum[(f > 0.01) & (f < 0.02)].mean()
    high = spectrum[(f > 0.2) & (f < 0.4)].mean()
    slope = math.log(high / low) / math.log(0.3 / 0.015)
    assert -3.5 < slope < -2.5


def test_monochrome1_is_stored_inverted_and_reads_back_like_monochrome2(tmp_path: Path) -> None:
    base = plan_study(8, 1, malignant=True, config=SynthConfig(sizes=((256, 208),),
                                                              bits_stored=(14,)))
    stored = {}
    for photometric in ("MONOCHROME1", "MONOCHROME2"):
        plan = dataclasses.replace(base, photometric=photometric)
        path = write_mammogram(tmp_path / f"{photometric}.dcm", plan,
                               render_view(plan, "R", "CC"))
        ds = pydicom.dcmread(path)
        assert ds.PhotometricInterpretation == photometric
        stored[photometric] = ds.pixel_array.astype(np.int64)
    top = 2 ** 14 - 1
    assert np.array_equal(stored["MONOCHROME1"], top - stored["MONOCHROME2"])
    # Air is black on screen: 0 in MONOCHROME2, the maximum in MONOCHROME1.
    assert stored["MONOCHROME2"][0, 0] == 0 and stored["MONOCHROME1"][0, 0] == top


@pytest.mark.parametrize("bits", [12, 16])
def test_values_use_the_stored_bit_depth(bits: int) -> None:
    plan = plan_study(8, 2, malignant=False,
                      config=SynthConfig(sizes=((256, 208),), bits_stored=(bits,),
                                         monochrome1_fraction=0.0))
    pixels = render_view(plan, "L", "MLO").pixels
    assert pixels.max() < 2 ** bits
    assert pixels.max() > 2 ** (bits - 2)  # dense tissue reaches the upper range


def test_full_field_size_is_supported() -> None:
    plan = plan_study(2, 0, malignant=True,
                      config=SynthConfig(sizes=((4096, 3328),), bits_stored=(14,)))
    rendered = render_view(plan, "L", "CC")
    assert rendered.pixels.shape == (4096, 3328)
    assert rendered.mask.mean() > 0.1  # the breast fills a realistic part of the field
