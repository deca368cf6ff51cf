"""What a received object is to this node: a mammogram to keep, something else, or our own.

The Storage SCP accepts every storage class so that a whole-study push never fails;
only mammograms are stored. Objects this node produced, routed back by a PACS, are
recognised so that results can never loop through the model again.
"""

from __future__ import annotations

import enum

from pydicom.uid import (
    BreastProjectionXRayImageStorageForPresentation,
    BreastProjectionXRayImageStorageForProcessing,
    BreastTomosynthesisImageStorage,
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
)

from mmbcd_node import MANUFACTURER, MODEL_NAME
from mmbcd_node.receive.header import InstanceHeader

MAMMOGRAPHY_SOP_CLASSES = frozenset({
    DigitalMammographyXRayImageStorageForPresentation,
    DigitalMammographyXRayImageStorageForProcessing,
    BreastTomosynthesisImageStorage,
    BreastProjectionXRayImageStorageForPresentation,
    BreastProjectionXRayImageStorageForProcessing,
})


class ObjectKind(enum.StrEnum):
    MAMMOGRAM = "mammogram"  # stored and processed
    OTHER = "other"  # acknowledged and audited, not stored
    OWN = "own"  # created by this node; acknowledged and audited, never stored


def classify(header: InstanceHeader, uid_root: str) -> ObjectKind:
    """Decide what to do with a received object from its header.

    Own objects are recognised by ``uid_root`` as prefix of the SOP Instance UID, or
    by our Manufacturer / Manufacturer's Model Name. Mammograms are the mammography
    SOP classes, and any image (pixel data present) with Modality MG, such as a
    Secondary Capture of digitised film.
    """
    if is_own_object(header, uid_root):
        return ObjectKind.OWN
    if header.sop_class_uid in MAMMOGRAPHY_SOP_CLASSES:
        return ObjectKind.MAMMOGRAM
    if header.modality == "MG" and header.has_pixels:
        return ObjectKind.MAMMOGRAM
    return ObjectKind.OTHER


def is_own_object(header: InstanceHeader, uid_root: str) -> bool:
    """True when this node created the object (UID root, Manufacturer or Model Name)."""
    root = uid_root.strip()
    if root and header.sop_instance_uid.startswith(root):
        return True
    return (header.text("Manufacturer") == MANUFACTURER
            or header.text("ManufacturerModelName") == MODEL_NAME)
