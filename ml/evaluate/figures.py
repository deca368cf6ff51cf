"""Pictures of an evaluation: ROC curves (PNG) and attention pictures like the paper's
Fig. 3: the view with each ROI box and its attention score, the most-attended box red
and the others green."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ml.preprocess import display_lut, read_dataset
from ml.types import RoiPrediction

_FONT = Path(__file__).parent.parent / "fonts" / "DejaVuSans.ttf"
RED = (230, 30, 30)
GREEN = (40, 200, 60)


def roc_png(curves: dict[str, tuple[Sequence[int], Sequence[float]]], path: Path,
            title: str = "ROC") -> Path:
    """One ROC curve per entry (name -> labels, scores), with its AUC, written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score, roc_curve

    figure, axis = plt.subplots(figsize=(5, 5), dpi=100)
    for name, (labels, scores) in curves.items():
        fpr, tpr, _ = roc_curve(labels, scores)
        axis.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(labels, scores):.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set(xlabel="False-positive rate", ylabel="Recall (true-positive rate)", title=title,
             xlim=(0, 1), ylim=(0, 1.01))
    axis.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def reliability_png(levels: dict[str, tuple[Sequence[int], Sequence[float]]], path: Path,
                    title: str = "Reliability", bins: int = 10) -> Path:
    """A reliability diagram: per level, the observed cancer rate against the mean
    predicted probability in ``bins`` equal-width bins (marker area ~ cases), with the
    level's expected calibration error; the diagonal is perfect calibration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ml.calibration import expected_calibration_error, reliability_bins

    figure, axis = plt.subplots(figsize=(5, 5), dpi=100)
    for name, (labels, probabilities) in levels.items():
        points = reliability_bins(labels, probabilities, bins)
        ece = expected_calibration_error(labels, probabilities, bins)
        axis.plot([p for p, _, _ in points], [o for _, o, _ in points], marker="o",
                  label=f"{name} (ECE {ece:.3f})")
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    axis.set(xlabel="Predicted probability (bin mean)", ylabel="Observed cancer rate",
             title=title, xlim=(0, 1), ylim=(0, 1.01))
    axis.legend(loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def display_image(source: Path | str, voi: str = "window") -> np.ndarray:
    """The stored image of a DICOM file as 8-bit display values (MONOCHROME1 inverted)."""
    ds = read_dataset(source)
    lut, low = display_lut(ds, voi)
    index = np.clip(ds.pixel_array.astype(np.int32) - low, 0, lut.size - 1)
    return np.asarray(lut[index] * 255, dtype=np.uint8)


def attention_picture(source: Path | str, rois: Sequence[RoiPrediction], path: Path,
                      caption: str = "", truth: Sequence[Sequence[float]] = ()) -> Path:
    """Draw ``rois`` (stored-pixel boxes) on the view with their attention scores: the
    most-attended box red, the others green; ``truth`` boxes (if known) dotted white."""
    image = Image.fromarray(display_image(source)).convert("RGB")
    draw = ImageDraw.Draw(image)
    size = max(12, image.height // 50)
    font = ImageFont.truetype(str(_FONT), size)
    width = max(2, image.height // 400)
    for box in truth:
        x0, y0, x1, y1 = box
        for i in range(int(x0), int(x1), 8):
            draw.line([(i, y0), (min(i + 4, x1), y0)], fill="white", width=1)
            draw.line([(i, y1), (min(i + 4, x1), y1)], fill="white", width=1)
        for j in range(int(y0), int(y1), 8):
            draw.line([(x0, j), (x0, min(j + 4, y1))], fill="white", width=1)
            draw.line([(x1, j), (x1, min(j + 4, y1))], fill="white", width=1)
    top = max(range(len(rois)), key=lambda i: rois[i].attention) if rois else -1
    order = sorted(range(len(rois)), key=lambda i: i == top)  # red drawn last, on top
    for i in order:
        roi = rois[i]
        colour = RED if i == top else GREEN
        draw.rectangle(roi.box, outline=colour, width=width)
        draw.text((roi.box[0] + 2, max(0.0, roi.box[1] - size - 2)), f"{roi.attention:.2f}",
                  fill=colour, font=font)
    if caption:
        draw.text((8, 8), caption, fill=(255, 255, 0), font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path
