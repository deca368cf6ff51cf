"""ROI selection after the detector: NMS at IoU 0.1, top K, ties ranked by position, padding
mask, whole-breast fallback."""

from __future__ import annotations

import torch

from ml.crops import crop_rois, square_boxes
from ml.detector import select_rois


def test_nms_at_iou_point_one_keeps_the_highest_score_of_overlapping_boxes():
    proposals = torch.tensor([[10.0, 10, 50, 50, 0.9],   # kept
                              [14.0, 14, 54, 54, 0.95],  # overlaps the first, higher: kept
                              [100.0, 100, 140, 140, 0.5],
                              [30.0, 30, 70, 70, 0.4]])  # IoU with the second ~0.3 > 0.1
    rois = select_rois(proposals, k=8, iou=0.1, image_size=(200, 200))
    assert rois.mask.tolist() == [True, True] + [False] * 6
    assert rois.boxes[:2].tolist() == [[14.0, 14, 54, 54], [100.0, 100, 140, 140]]
    assert rois.scores[:2].tolist() == [0.949999988079071, 0.5]
    assert torch.all(rois.boxes[2:] == 0) and not rois.whole_breast


def test_top_k_by_score_and_never_duplicated():
    boxes = [[i * 20.0, 0, i * 20 + 10, 10, 0.1 + i / 100] for i in range(12)]
    rois = select_rois(torch.tensor(boxes), k=8, iou=0.1, image_size=(50, 400))
    assert bool(rois.mask.all())
    assert rois.scores.tolist() == sorted(rois.scores.tolist(), reverse=True)
    assert len({tuple(b) for b in rois.boxes.tolist()}) == 8
    assert rois.boxes[0].tolist() == [220.0, 0, 230, 10]


def test_equal_scores_are_ranked_by_position_whatever_the_input_order():
    # 20 separate boxes at one score; k = 5 must be the same 5, in the same order, for
    # every order in which the detector lists them
    boxes = [[(i % 5) * 40.0, (i // 5) * 40.0, (i % 5) * 40 + 10, (i // 5) * 40 + 10, 0.001]
             for i in range(20)]
    proposals = torch.tensor(boxes)
    chosen = []
    for seed in range(6):
        order = torch.randperm(20, generator=torch.Generator().manual_seed(seed))
        chosen.append(select_rois(proposals[order], k=5, iou=0.1,
                                  image_size=(200, 200)).boxes.tolist())
    assert all(c == chosen[0] for c in chosen)
    assert chosen[0] == [[x, 0.0, x + 10, 10.0] for x in (0.0, 40.0, 80.0, 120.0, 160.0)]


def test_no_detection_gives_the_whole_breast_region_as_the_single_roi():
    rois = select_rois(torch.zeros(0, 5), k=8, iou=0.1, image_size=(300, 200))
    assert rois.whole_breast
    assert rois.mask.tolist() == [True] + [False] * 7
    assert rois.boxes[0].tolist() == [0.0, 0.0, 200.0, 300.0]


def test_square_crop_keeps_aspect_ratio_and_centre():
    squares = square_boxes(torch.tensor([[10.0, 20, 50, 40]]), margin=0.25, min_side=8)
    assert squares.tolist() == [[0.0, 0.0, 60.0, 60.0]]  # side 40 * 1.5, centred on (30, 30)


def test_crop_shows_the_box_content_in_three_normalised_channels():
    image = torch.zeros(100, 100)
    image[40:60, 40:60] = 1.0
    crops = crop_rois(image, torch.tensor([[40.0, 40, 60, 60], [0.0, 0, 20, 20]]), size=32,
                      margin=0.0, min_side=4, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert crops.shape == (2, 3, 32, 32)
    # (1 - 0.5) / 0.5 inside; the outermost samples interpolate with the pixels outside
    torch.testing.assert_close(crops[0][:, 1:-1, 1:-1], torch.ones(3, 30, 30))
    assert bool((crops[0] > 0).all())
    torch.testing.assert_close(crops[1], -torch.ones(3, 32, 32))
    assert torch.equal(crops[:, 0], crops[:, 2])  # one gray channel replicated
