"""What the result builders are given: one study's prediction and everything around it.

A ``ResultSet`` is checked once, when it is made, so every builder can rely on it: each
scored view has its source dataset, every box lies inside its image, the UID root and
the series-number block are usable. A wrong input raises ``ResultError`` with a message
that names the view, ROI or setting at fault.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import pydicom
from pydicom.uid import generate_uid

import mmbcd_node
from ml.types import RoiPrediction, StudyPrediction, ViewPrediction
from mmbcd_node.config import NodeConfig
from mmbcd_node.config.values import uid_root_problem
from mmbcd_node.images.image_selection import NotAnalysed
from mmbcd_node.images.source_image import SourceImage
from mmbcd_node.output_kinds import OutputKind
from mmbcd_node.results import codes
from mmbcd_node.results.errors import ResultError
from mmbcd_node.results.references import TYPE2_PATIENT_STUDY, ObjectReference, reference_dataset

# The one sentence every output carries in its Series Description (LO, max 64 chars).
NOT_FOR_DIAGNOSIS = "AI result - not for primary diagnosis"
_MAX_SERIES_NUMBER = 2**31 - 1


@dataclass(frozen=True)
class OrderContext:
    """The order that requested the study, as the RIS sent it (all optional but one)."""

    accession_number: str
    placer_order_number: str = ""
    filler_order_number: str = ""
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    reason_for_requested_procedure: str = ""
    accession_issuer: str = ""  # Local Namespace Entity ID of the accession's issuer
    # (code value, coding scheme designator, code meaning) of OBR-4, when it is coded
    requested_procedure_code: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class HistoryProvenance:
    """Which clinical history went into the model, and from which order fields.

    ``text`` is empty and ``source_fields`` empty when no history was available; the
    outputs then say so instead of naming fields.
    """

    text: str = ""
    source_fields: tuple[str, ...] = ()

    @property
    def available(self) -> bool:
        return bool(self.text.strip())

    def statement(self) -> str:
        """One line for the outputs: the source fields, or that none was available."""
        if not self.available:
            return "no history available"
        fields = ", ".join(self.source_fields) or "unspecified fields"
        return f"clinical history from {fields}"


@dataclass(frozen=True)
class BundleIdentity:
    """The model bundle that produced the prediction (its manifest's name, version, digest)."""

    name: str
    version: str
    digest: str
    parameters: Mapping[str, str | int | float | bool] = field(default_factory=dict)

    def parameter_lines(self) -> list[str]:
        """Parameters as ``key=value`` strings, sorted, for Algorithm Parameters."""
        return [f"{key}={value}" for key, value in sorted(self.parameters.items())]


@dataclass(frozen=True)
class ResultSet:
    """One study's prediction with its source views, order, history, model and numbering.

    ``views`` are the analysed source images as the input contract normalised them
    (``work.source_image``: header, pixel data for the Secondary Captures, spacing and
    orientation); builders read them, never the raw files. ``not_analysed`` and
    ``missing_views`` are what the image selection set aside. ``uid_entropy``, when
    given (the study and job, say), makes every generated UID a function of it and of
    ``installation`` (``db.installation``), so rebuilding the same result set yields the
    same objects and a PACS never receives two copies of one result, while another node
    never issues the same UIDs.
    """

    prediction: StudyPrediction
    views: Sequence[SourceImage]
    bundle: BundleIdentity
    uid_root: str
    series_numbers: int
    history: HistoryProvenance = field(default_factory=HistoryProvenance)
    order: OrderContext | None = None
    # The objects of the result set this one replaces (any kinds); each SR names the
    # earlier document of its own kind in Predecessor Documents Sequence.
    predecessors: tuple[ObjectReference, ...] = ()
    device_serial_number: str = "MMBCD"
    uid_entropy: str | None = None
    installation: str = ""
    not_analysed: tuple[NotAnalysed, ...] = ()
    missing_views: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (problem := uid_root_problem(self.uid_root)) is not None:
            raise ResultError(f"dicom.uid_root {problem}")
        last = self.series_numbers + max(kind.offset for kind in OutputKind)
        if self.series_numbers < 1 or last > _MAX_SERIES_NUMBER:
            raise ResultError(
                f"results.series_numbers {self.series_numbers} leaves no room for the "
                f"{len(OutputKind)} result series (1 .. {_MAX_SERIES_NUMBER})")
        if not self.views:
            raise ResultError("a result set needs at least one source view")
        by_uid = {image.sop_instance_uid: image.dataset for image in self.views}
        for ds in self.datasets:
            if str(ds.StudyInstanceUID) != self.prediction.study_uid:
                raise ResultError(
                    f"source view {ds.SOPInstanceUID} belongs to study {ds.StudyInstanceUID}, "
                    f"not to the predicted study {self.prediction.study_uid}")
        for view in self.prediction.views:
            source = by_uid.get(view.sop_instance_uid)
            if source is None:
                raise ResultError(
                    f"prediction for SOP instance {view.sop_instance_uid} has no source view")
            for number, roi in enumerate(view.rois, start=1):
                _check_box(view, number, roi, source)

    # -- lookups the builders share ------------------------------------------------

    @property
    def datasets(self) -> list[pydicom.Dataset]:
        """The analysed images' normalised datasets, pixel data included."""
        return [image.dataset for image in self.views]

    @cached_property
    def evidence(self) -> list[pydicom.Dataset]:
        """The source views' headers (no pixel data), Type 2 patient/study attributes present.

        Our objects copy patient and study attributes from these; a modality may leave a
        Type 2 attribute out where it should send it empty, and the copy then carries it
        empty instead of failing.
        """
        headers = []
        for ds in self.datasets:
            header = pydicom.Dataset()
            for element in ds:
                if element.keyword != "PixelData":
                    header.add(element)
            for keyword in TYPE2_PATIENT_STUDY:
                if keyword not in header:
                    setattr(header, keyword, "")
            headers.append(header)
        return headers

    @property
    def study(self) -> pydicom.Dataset:
        """A source header to copy patient and study attributes from."""
        return self.evidence[0]

    def header_of(self, view: ViewPrediction) -> pydicom.Dataset:
        """The header (no pixel data) of a predicted view's source."""
        return self.evidence[self._index_of(view)]

    def source_of(self, view: ViewPrediction) -> pydicom.Dataset:
        """The source dataset, pixels included, of a predicted view."""
        return self.views[self._index_of(view)].dataset

    def image_of(self, view: ViewPrediction) -> SourceImage:
        """The normalised source image of a predicted view."""
        return self.views[self._index_of(view)]

    @property
    def spacing_unknown(self) -> list[SourceImage]:
        """Analysed images without a usable pixel spacing: their coordinates are pixels."""
        return [image for image in self.views if image.spacing is None]

    def _index_of(self, view: ViewPrediction) -> int:
        for index, image in enumerate(self.views):
            if image.sop_instance_uid == view.sop_instance_uid:
                return index
        raise ResultError(f"no source view {view.sop_instance_uid}")  # checked at construction

    @property
    def scored_views(self) -> list[ViewPrediction]:
        """Views the model scored (no error)."""
        return [v for v in self.prediction.views if v.error is None and v.probability is not None]

    @property
    def failed_views(self) -> list[ViewPrediction]:
        return [v for v in self.prediction.views if v.error is not None or v.probability is None]

    @property
    def all_views_used(self) -> bool:
        """Every analysed image was scored, none was set aside and no view is missing."""
        return (not self.failed_views and len(self.prediction.views) == len(self.views)
                and not self.not_analysed and not self.missing_views)

    def views_statement(self) -> str:
        """One line for the outputs: how many of the study's views went in, what is
        missing and how many images were not analysed."""
        used, total = len(self.scored_views), len(self.views)
        line = f"all {total} views used" if used == total and not self.failed_views \
            else f"{used} of {total} views used"
        if self.missing_views:
            line += "; missing " + ", ".join(self.missing_views)
        if self.not_analysed:
            line += f"; {len(self.not_analysed)} image(s) not analysed"
        return line

    def input_statements(self) -> list[str]:
        """Lines (at most 1024 characters) on what the model did not see: missing views,
        images set aside with their reason, analysed images of unknown pixel spacing."""
        lines = [f"missing view: {label}" for label in self.missing_views]
        lines += [f"not analysed: {n.label} {n.sop_instance_uid}: {n.reason}"
                  for n in self.not_analysed]
        lines += [f"pixel spacing unknown: {image.label} {image.sop_instance_uid}: "
                  "ROI coordinates are in pixels, no mm measurements"
                  for image in self.spacing_unknown]
        return [line[:1024] for line in lines]

    def predecessor_datasets(self, sop_classes: frozenset[str]) -> list[pydicom.Dataset] | None:
        """Earlier documents of the given SOP classes, as highdicom takes them; None if none."""
        found = [reference_dataset(p) for p in self.predecessors if p.sop_class_uid in sop_classes]
        return found or None

    # -- identity and numbering ----------------------------------------------------

    def series_number(self, kind: OutputKind) -> int:
        return self.series_numbers + kind.offset

    def series_description(self, kind: OutputKind) -> str:
        return f"{NOT_FOR_DIAGNOSIS} - {kind.label}"[:64]

    def new_uid(self, *purpose: str) -> str:
        """A UID under the configured root; stable for the same installation, entropy
        and purpose."""
        return new_uid(self.uid_root, self.uid_entropy, *purpose,
                       installation=self.installation)

    @property
    def device_uid(self) -> str:
        """The node as an SR observer device: stable for the same installation."""
        return device_uid(self.uid_root, self.device_serial_number, self.installation)

    @property
    def software_versions(self) -> list[str]:
        """Software Versions values: the node's version and the bundle's version and digest."""
        values = [f"mmbcd-node {mmbcd_node.__version__}",
                  f"{self.bundle.name} {self.bundle.version}", self.bundle.digest]
        return [value[:64] for value in values]

    def stamp_identity(self, ds: pydicom.Dataset, private_codes: bool = False) -> None:
        """Set our device identity on ``ds``; declare the ``99MMBCD`` scheme if it uses it."""
        for keyword, value in self.device_identity().items():
            setattr(ds, keyword, value)
        if private_codes:
            ds.CodingSchemeIdentificationSequence = [codes.coding_scheme_identification()]

    def device_identity(self) -> dict[str, object]:
        """Manufacturer / Model Name / Software Versions / Device Serial Number keywords."""
        return {
            "Manufacturer": mmbcd_node.MANUFACTURER,
            "ManufacturerModelName": mmbcd_node.MODEL_NAME,
            "SoftwareVersions": self.software_versions,
            "DeviceSerialNumber": self.device_serial_number,
        }


def new_uid(uid_root: str, entropy: str | None, *purpose: str, installation: str = "") -> str:
    """A UID under ``uid_root``: random, or a function of the ``installation``'s identity
    (``db.installation``), ``entropy`` and ``purpose``.

    The UID root is not unique to one node (sites keep the default), so the installation
    is what keeps two nodes' UIDs apart; the hash (pydicom's SHA-512 ``entropy_srcs``)
    leaves a collision negligible.
    """
    prefix = uid_root if uid_root.endswith(".") else uid_root + "."
    if entropy is None:
        return generate_uid(prefix=prefix)
    return generate_uid(prefix=prefix, entropy_srcs=[installation, entropy, *purpose])


def device_uid(uid_root: str, device_serial_number: str, installation: str = "") -> str:
    """The node's Device Observer UID: the same for one installation and serial number."""
    return new_uid(uid_root, "device", device_serial_number, installation=installation)


def _check_box(view: ViewPrediction, number: int, roi: RoiPrediction,
               ds: pydicom.Dataset) -> None:
    x0, y0, x1, y1 = roi.box
    rows, columns = int(ds.Rows), int(ds.Columns)
    if not (0 <= x0 < x1 <= columns and 0 <= y0 < y1 <= rows):
        raise ResultError(
            f"ROI {number} of view {view.sop_instance_uid} has box {roi.box}, which is not "
            f"inside the {columns}x{rows} image (x0 < x1 <= columns, y0 < y1 <= rows)")


def result_set_for_node(config: NodeConfig, *, installation: str,
                        **fields: object) -> ResultSet:
    """A ``ResultSet`` numbered and identified from the node's configuration and its
    ``installation`` identity (``db.installation.installation_uuid``).

    ``fields`` are the remaining ``ResultSet`` fields (prediction, views, bundle, ...);
    the UID root, series block and device serial number (the node's AE title) come from
    ``config``. Raises ``ResultError`` like the constructor.
    """
    return ResultSet(uid_root=config.dicom.uid_root,
                     series_numbers=config.results.series_numbers,
                     device_serial_number=config.dicom.ae_title, installation=installation,
                     **fields)  # type: ignore[arg-type]
