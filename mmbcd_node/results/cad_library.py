"""The Mammography CAD SR's Image Library (TID 4020) and the references into it.

Each image the report mentions has one entry, with the descriptors TID 4020 asks for:
Image Laterality (CID 6022), Image View (CID 4014) with its modifiers (CID 4015),
Patient Orientation, Study and Content Date/Time and, when the image states one, its
pixel spacing. Findings and algorithm summaries then point at these entries by
reference (a Referenced Content Item Identifier), as PS3.17 Annex E draws the tree:
``refer_to_library`` rewrites every image item outside the library into such a
reference once the document is built and positions are known.
"""

from __future__ import annotations

from collections.abc import Sequence

from highdicom.sr import (
    CodeContentItem,
    CodedConcept,
    ContainerContentItem,
    ContentItem,
    ContentSequence,
    DateContentItem,
    ImageContentItem,
    NumContentItem,
    RelationshipTypeValues,
    TextContentItem,
    TimeContentItem,
)
from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence

from mmbcd_node.images.source_image import SourceImage
from mmbcd_node.results import cad_codes, codes
from mmbcd_node.results.result_set import ResultError
from mmbcd_node.results.view_codes import image_view

ACQ = RelationshipTypeValues.HAS_ACQ_CONTEXT
CONTENT_SEQUENCE = 0x0040A730


def library_image(ds: Dataset, relationship: RelationshipTypeValues) -> ImageContentItem:
    """An image item naming ``ds``; outside the library it becomes a reference."""
    return ImageContentItem(name=codes.SOURCE_IMAGE, referenced_sop_class_uid=str(ds.SOPClassUID),
                            referenced_sop_instance_uid=str(ds.SOPInstanceUID),
                            relationship_type=relationship)


def cad_image_library(images: Sequence[SourceImage], headers: Sequence[Dataset],
                      ) -> ContainerContentItem:
    """Image Library (111028) with one TID 4020 entry per image; ``headers`` are the
    images' headers in the same order."""
    entries = [_entry(image, ds) for image, ds in zip(images, headers, strict=True)]
    if not entries:
        raise ResultError("the image library needs at least one source view")
    library = ContainerContentItem(cad_codes.IMAGE_LIBRARY,
                                   relationship_type=RelationshipTypeValues.CONTAINS)
    library.ContentSequence = ContentSequence(entries)
    return library


def _entry(image: SourceImage, ds: Dataset) -> ImageContentItem:
    entry = library_image(ds, RelationshipTypeValues.CONTAINS)
    descriptors: list[ContentItem] = []
    if image.laterality in cad_codes.BREAST_SIDE:
        descriptors.append(CodeContentItem(cad_codes.IMAGE_LATERALITY,
                                           cad_codes.BREAST_SIDE[image.laterality], ACQ))
    view, modifiers = image_view(ds, image.view)
    if view is not None:
        view_item = CodeContentItem(cad_codes.IMAGE_VIEW, view, ACQ)
        if modifiers:
            view_item.ContentSequence = ContentSequence([
                CodeContentItem(cad_codes.IMAGE_VIEW_MODIFIER, modifier,
                                RelationshipTypeValues.HAS_CONCEPT_MOD)
                for modifier in modifiers])
        descriptors.append(view_item)
    if image.orientation is not None:
        row, column = image.orientation
        descriptors += [TextContentItem(cad_codes.ORIENTATION_ROW, row, ACQ),
                        TextContentItem(cad_codes.ORIENTATION_COLUMN, column, ACQ)]
    descriptors += _dates(ds)
    if image.spacing is not None:  # unknown spacing: none, coordinates are pixels
        descriptors += [
            NumContentItem(cad_codes.HORIZONTAL_SPACING, image.spacing.column,
                           cad_codes.MILLIMETRE, relationship_type=ACQ),
            NumContentItem(cad_codes.VERTICAL_SPACING, image.spacing.row,
                           cad_codes.MILLIMETRE, relationship_type=ACQ)]
    if descriptors:
        entry.ContentSequence = ContentSequence(descriptors)
    return entry


def _dates(ds: Dataset) -> list[ContentItem]:
    """Study and Content Date/Time; an image without a Content Date/Time gives its
    acquisition's, then its study's (TID 4020 requires both)."""
    study_date, study_time = ds.get("StudyDate"), ds.get("StudyTime")
    content_date = ds.get("ContentDate") or ds.get("AcquisitionDate") or study_date
    content_time = ds.get("ContentTime") or ds.get("AcquisitionTime") or study_time
    items: list[ContentItem] = []
    for concept, value, kind in ((cad_codes.STUDY_DATE, study_date, DateContentItem),
                                 (cad_codes.STUDY_TIME, study_time, TimeContentItem),
                                 (cad_codes.CONTENT_DATE, content_date, DateContentItem),
                                 (cad_codes.CONTENT_TIME, content_time, TimeContentItem)):
        if value:
            items.append(kind(concept, value, ACQ))
    return items


def refer_to_library(root: Dataset) -> None:
    """Turn every image item outside the Image Library into a by-reference item that
    points at the library's entry for the same SOP instance.

    ``root`` is the built document (its content is at position 1). Raises
    ``ResultError`` for an image the library does not list.
    """
    content = root.ContentSequence
    library_at = next(i for i, item in enumerate(content)
                      if item.get("ValueType") == "CONTAINER"
                      and _is(item, cad_codes.IMAGE_LIBRARY))
    positions = {str(entry.ReferencedSOPSequence[0].ReferencedSOPInstanceUID):
                 [1, library_at + 1, n]
                 for n, entry in enumerate(content[library_at].ContentSequence, start=1)}
    for index, item in enumerate(content):
        if index != library_at:
            _rewrite(item, positions)


def _rewrite(item: Dataset, positions: dict[str, list[int]]) -> None:
    children = list(item.get("ContentSequence", []))
    for index, child in enumerate(children):
        if child.get("ValueType") == "IMAGE":
            uid = str(child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)
            if uid not in positions:
                raise ResultError(f"image {uid} is referenced but not in the image library")
            reference = Dataset()
            reference.RelationshipType = child.RelationshipType
            reference.ReferencedContentItemIdentifier = positions[uid]
            children[index] = reference
        else:
            _rewrite(child, positions)
    if children:  # set by tag: highdicom's setter accepts content items only
        item.add_new(CONTENT_SEQUENCE, "SQ", DicomSequence(children))


def _is(item: Dataset, concept: CodedConcept) -> bool:
    name = item.ConceptNameCodeSequence[0]
    return (name.CodeValue, name.CodingSchemeDesignator) == (concept.value,
                                                             concept.scheme_designator)

