"""One result series per breast, for objects that state laterality only per series.

Laterality is a series attribute (General Series module, PS3.3 C.7.3.1): a series that
held both breasts' views would state one side for all of them. A presentation state
has no Image Laterality of its own and must state the series Laterality (breast is a
paired body part), so its kind puts the right-breast views in one series and the
left-breast views in another. Both series carry the kind's series number
(``series_numbers + offset``: the number names the kind in every study, as for the
other kinds) and tell the side in their description, ``... - ROI annotations (R)``.
Series UIDs are made from the kind and the side, so rebuilding a result set gives the
same series. (A Secondary Capture states Image Laterality per instance instead.)
"""

from __future__ import annotations

from dataclasses import dataclass

from ml.types import ViewPrediction
from mmbcd_node.output_kinds import OutputKind
from mmbcd_node.results.result_set import ResultSet


@dataclass(frozen=True)
class BreastSeries:
    """The series of one kind holding one breast's views, in view order."""

    laterality: str  # "R" | "L", or "" when no header names the side
    uid: str
    number: int
    description: str
    views: tuple[ViewPrediction, ...]

    def instance_number(self, view: ViewPrediction) -> int:
        """The view's Instance Number within the series, from 1."""
        return self.views.index(view) + 1


def laterality_of_view(result: ResultSet, view: ViewPrediction) -> str:
    """The breast of a view: the prediction's, else the source's Image Laterality;
    "" when neither says R or L."""
    side = view.laterality or str(result.header_of(view).get("ImageLaterality", "")).strip()
    return side if side in ("R", "L") else ""


def breast_series(result: ResultSet, kind: OutputKind) -> dict[str, BreastSeries]:
    """The series of ``kind`` for the scored views of ``result``, by laterality."""
    by_side: dict[str, list[ViewPrediction]] = {}
    for view in result.scored_views:
        by_side.setdefault(laterality_of_view(result, view), []).append(view)
    return {side: BreastSeries(
        laterality=side,
        uid=result.new_uid(kind.value, "series", side),
        number=result.series_number(kind),
        description=f"{result.series_description(kind)} ({side or '?'})"[:64],
        views=tuple(views)) for side, views in by_side.items()}


def series_of(series: dict[str, BreastSeries], result: ResultSet,
              view: ViewPrediction) -> BreastSeries:
    """The series a scored view goes into."""
    return series[laterality_of_view(result, view)]
