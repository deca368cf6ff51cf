"""The TID 1600 Image Library of the TID 1500 report, from the normalised source images.

highdicom's ``ImageLibrary`` reads Patient Orientation and Imager Pixel Spacing from
every projection image and fails when a modality left either out. Here the entries are
made from the input contract's ``SourceImage`` instead: TID 1602/1603 descriptors
(laterality, view, orientation, spacing) are written only when known, and an image
whose spacing is unknown carries none, so its coordinates read as pixels (PS3.16
TID 1603 makes the spacing rows conditional on the image having one).
"""

from __future__ import annotations

from collections.abc import Sequence

from highdicom.sr import (
    CodeContentItem,
    CodedConcept,
    ContainerContentItem,
    ContentItem,
    ContentSequence,
    ImageContentItem,
    NumContentItem,
    RelationshipTypeValues,
    TextContentItem,
)
from pydicom.sr.codedict import codes as dicom_codes

from mmbcd_node.images.source_image import SourceImage
from mmbcd_node.results import codes
from mmbcd_node.results.view_codes import image_view

ACQ = RelationshipTypeValues.HAS_ACQ_CONTEXT
PIXELS = CodedConcept("{pixels}", "UCUM", "Pixels")
MILLIMETRE = CodedConcept("mm", "UCUM", "millimeter")
_MODALITY = CodedConcept("MG", "DCM", "Mammography")


def image_library(images: Sequence[SourceImage]) -> ContainerContentItem:
    """Image Library (TID 1600) with one Image Library Group of the mammograms."""
    group = ContainerContentItem(dicom_codes.DCM.ImageLibraryGroup,
                                 relationship_type=RelationshipTypeValues.CONTAINS)
    group.ContentSequence = ContentSequence([_entry(image) for image in images])
    library = ContainerContentItem(dicom_codes.DCM.ImageLibrary,
                                   relationship_type=RelationshipTypeValues.CONTAINS)
    library.ContentSequence = ContentSequence([group])
    return library


def _entry(image: SourceImage) -> ImageContentItem:
    ds = image.dataset
    item = ImageContentItem(name=codes.SOURCE_IMAGE,
                            referenced_sop_class_uid=str(ds.SOPClassUID),
                            referenced_sop_instance_uid=image.sop_instance_uid,
                            relationship_type=RelationshipTypeValues.CONTAINS)
    # Modality first (TID 1602 row 1): the projection descriptors (TID 1603) depend on it.
    descriptors: list[ContentItem] = [
        CodeContentItem(dicom_codes.DCM.Modality, _MODALITY, ACQ),
        NumContentItem(dicom_codes.DCM.PixelDataRows, int(ds.Rows), PIXELS,
                       relationship_type=ACQ),
        NumContentItem(dicom_codes.DCM.PixelDataColumns, int(ds.Columns), PIXELS,
                       relationship_type=ACQ)]
    if image.laterality in codes.LATERALITY:
        descriptors.append(CodeContentItem(dicom_codes.DCM.ImageLaterality,
                                           codes.LATERALITY[image.laterality], ACQ))
    view, _ = image_view(ds, image.view)
    if view is not None:
        descriptors.append(CodeContentItem(dicom_codes.DCM.ImageView, view, ACQ))
    if image.orientation is not None:
        descriptors += [
            TextContentItem(dicom_codes.DCM.PatientOrientationRow, image.orientation[0], ACQ),
            TextContentItem(dicom_codes.DCM.PatientOrientationColumn, image.orientation[1],
                            ACQ)]
    if image.spacing is not None:
        # Pixel spacing is (between rows, between columns) = (vertical, horizontal).
        descriptors += [
            NumContentItem(dicom_codes.DCM.HorizontalPixelSpacing, image.spacing.column,
                           MILLIMETRE, relationship_type=ACQ),
            NumContentItem(dicom_codes.DCM.VerticalPixelSpacing, image.spacing.row,
                           MILLIMETRE, relationship_type=ACQ)]
    item.ContentSequence = ContentSequence(descriptors)
    return item
