"""All the result objects of one result set, in the kinds the node is configured to send.

This is what the worker calls: one ``ResultSet`` in, the DICOM objects out, each tagged
with its kind (``sr``, ``cad_sr``, ``sc``, ``gsps``) so deliveries can be filtered per
destination.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pydicom import Dataset

from mmbcd_node.output_kinds import RESULT_KINDS, OutputKind, unknown_kinds
from mmbcd_node.results.cad_report import build_mammography_cad_report
from mmbcd_node.results.presentation_state import build_presentation_states
from mmbcd_node.results.result_set import ResultError, ResultSet
from mmbcd_node.results.secondary_capture import build_secondary_captures
from mmbcd_node.results.structured_report import build_structured_report


@dataclass(frozen=True)
class ResultObject:
    """One built DICOM object and its kind (``OutputKind.value``)."""

    kind: str
    dataset: Dataset

    @property
    def sop_instance_uid(self) -> str:
        return str(self.dataset.SOPInstanceUID)


def build_outputs(result: ResultSet, kinds: Sequence[str] = RESULT_KINDS,
                  sr_class: str = "comprehensive") -> list[ResultObject]:
    """The objects of ``result`` for ``kinds`` (``results.kinds``), SR first.

    ``sr_class`` is ``results.sr_class``. Raises ``ResultError`` for an unknown kind or
    SR class, or when the prediction has nothing to report.
    """
    unknown = unknown_kinds(kinds)
    if unknown:
        raise ResultError(f"results.kinds has unknown kind(s) {', '.join(unknown)} "
                          f"(known: {', '.join(RESULT_KINDS)})")
    objects: list[ResultObject] = []
    if "sr" in kinds:
        objects.append(ResultObject(OutputKind.SR.value,
                                    build_structured_report(result, sr_class)))
    if "cad_sr" in kinds:
        objects.append(ResultObject(OutputKind.CAD_SR.value,
                                    build_mammography_cad_report(result)))
    if "sc" in kinds:
        objects += [ResultObject(OutputKind.SC.value, ds)
                    for ds in build_secondary_captures(result)]
    if "gsps" in kinds:
        objects += [ResultObject(OutputKind.GSPS.value, ds)
                    for ds in build_presentation_states(result)]
    return objects
