"""Which of a study's images its result is made of: one per breast and standard view.

The rule (the README's "What the node analyses" says the same):

1. Images the model cannot take are set aside with their reason: multi-frame objects
   (tomosynthesis), For Processing images unless the bundle was trained on them,
   images whose laterality or view is unknown, and work-up views (spot compression,
   magnification, and views other than CC and MLO).
2. Of the remaining images of each breast and view (R/L x CC/MLO), one is analysed:
   an implant-displaced image when the breast has one, else a standard one; among
   those the latest acquired (then the highest Instance Number, then the last
   received). The others are set aside as superseded.
3. A breast and view with no image is reported missing; the study is analysed on what
   is there (a partial result). A study with no image left is not analysable.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mmbcd_node.images.source_image import IMPLANT_DISPLACED, SourceImage

STANDARD_VIEWS = ("CC", "MLO")
EXPECTED = tuple((side, view) for side in ("R", "L") for view in STANDARD_VIEWS)


@dataclass(frozen=True)
class NotAnalysed:
    """An image of the study that the result does not use, and why."""

    sop_instance_uid: str
    label: str  # laterality and view, "R CC"
    reason: str


@dataclass(frozen=True)
class ImageSelection:
    """The images analysed, those set aside with their reasons, and the missing views."""

    analysed: list[SourceImage] = field(default_factory=list)
    not_analysed: list[NotAnalysed] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # "R MLO", ...

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def statement(self) -> str:
        """One line: what was analysed, what is missing, how many images were set aside."""
        parts = [f"{len(self.analysed)} image(s) analysed"]
        if self.missing:
            parts.append("missing views: " + ", ".join(self.missing))
        if self.not_analysed:
            parts.append(f"{len(self.not_analysed)} image(s) not analysed")
        return "; ".join(parts)

    def nothing_reason(self) -> str:
        """Why nothing could be analysed: every image with its reason."""
        if not self.not_analysed:
            return "no mammogram is stored for the study"
        return "nothing analysable: " + "; ".join(
            f"{n.sop_instance_uid} ({n.label}): {n.reason}" for n in self.not_analysed)


def select_images(images: list[SourceImage], *, allow_for_processing: bool) -> ImageSelection:
    """Apply the rule to ``images`` (in the order they were received)."""
    candidates: dict[tuple[str, str], list[tuple[int, SourceImage]]] = {}
    not_analysed: list[NotAnalysed] = []
    for order, image in enumerate(images):
        reason = _excluded(image, allow_for_processing)
        if reason:
            not_analysed.append(NotAnalysed(image.sop_instance_uid, image.label, reason))
            continue
        assert image.laterality and image.view
        candidates.setdefault((image.laterality, image.view), []).append((order, image))
    analysed = []
    for key in EXPECTED:
        group = candidates.get(key, [])
        if not group:
            continue
        implant = [item for item in group if IMPLANT_DISPLACED in item[1].modifiers]
        pool = implant or group
        chosen = max(pool, key=lambda item: (item[1].acquired, _instance_number(item[1]),
                                             item[0]))[1]
        analysed.append(chosen)
        for _, other in group:
            if other is chosen:
                continue
            why = ("implant-displaced view of this breast preferred" if implant and
                   other not in [i for _, i in implant]
                   else f"superseded by the later image {chosen.sop_instance_uid}")
            not_analysed.append(NotAnalysed(other.sop_instance_uid, other.label, why))
    not_analysed = _tomosynthesis_notes(not_analysed, analysed)
    missing = [f"{side} {view}" for side, view in EXPECTED if (side, view) not in candidates]
    return ImageSelection(analysed=analysed, not_analysed=not_analysed, missing=missing)


def _excluded(image: SourceImage, allow_for_processing: bool) -> str | None:
    if image.frames > 1:
        return "tomosynthesis only" if image.tomosynthesis else \
            f"multi-frame image ({image.frames} frames)"
    if image.for_processing and not allow_for_processing:
        return "For Processing image; the bundle analyses For Presentation images"
    if image.laterality is None:
        return "laterality unknown (no Image Laterality, Laterality or R/L in the header)"
    if image.view is None:
        return "view unknown (no View Code Sequence, View Position or view in the header)"
    workup = sorted(image.modifiers - {IMPLANT_DISPLACED})
    if workup:
        return f"work-up view ({', '.join(workup)})"
    if image.view not in STANDARD_VIEWS:
        return f"{image.view} is not a standard view (CC, MLO)"
    return None


def _tomosynthesis_notes(notes: list[NotAnalysed],
                         analysed: list[SourceImage]) -> list[NotAnalysed]:
    """A tomosynthesis object of a view whose 2D image is analysed says so."""
    views = {image.label for image in analysed}
    return [NotAnalysed(n.sop_instance_uid, n.label,
                        "tomosynthesis; the 2D image of this view is analysed")
            if n.reason == "tomosynthesis only" and n.label in views else n for n in notes]


def _instance_number(image: SourceImage) -> int:
    try:
        return int(image.dataset.get("InstanceNumber") or 0)
    except (TypeError, ValueError):
        return 0
