"""The one place a study changes state: the allowed transitions and the guarded update.

Every change is ``UPDATE studies SET state = <to> ... WHERE id = <study> AND state IN
(<allowed sources>)``, so two processes racing on one study cannot both move it, and a
study is never moved from a state the table does not allow. Callers narrow the sources
further with ``only_from`` (the matcher queues only complete or held studies, say) and
set the columns that go with the change (``values``).

The lifecycle::

    receiving -> complete -> queued -> running -> done -> delivered
                    |  ^        ^         |
                    v  |        |         +-> queued (retry), failed, not_analysable
                    held -------+         +-> cancelled (order cancelled meanwhile)

A late image reopens any state but receiving and cancelled (back to receiving); an
administrator may queue any settled study again (``reprocess``) and cancel any study.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.orm import Session

from mmbcd_node.db.models import Study, StudyState
from mmbcd_node.db.utc import utcnow
from mmbcd_node.logs import get_logger

log = get_logger(__name__)

S = StudyState
SETTLED = frozenset({S.DONE, S.DELIVERED, S.FAILED, S.NOT_ANALYSABLE})

# to -> the states a study may come from.
ALLOWED_FROM: dict[StudyState, frozenset[StudyState]] = {
    # A late image reopens the study: its result is superseded once it completes again.
    S.RECEIVING: frozenset({S.COMPLETE, S.HELD, S.QUEUED, S.RUNNING}) | SETTLED,
    S.COMPLETE: frozenset({S.RECEIVING}),
    S.HELD: frozenset({S.COMPLETE}),
    # Matched or released; a failed attempt to retry; an administrator's reprocess.
    S.QUEUED: frozenset({S.COMPLETE, S.HELD, S.RUNNING, S.CANCELLED}) | SETTLED,
    S.RUNNING: frozenset({S.QUEUED}),
    S.DONE: frozenset({S.RUNNING}),
    S.DELIVERED: frozenset({S.DONE}),
    S.FAILED: frozenset({S.RUNNING}),
    S.NOT_ANALYSABLE: frozenset({S.RUNNING}),
    # Orders cancelled by the RIS, or an administrator's cancel.
    S.CANCELLED: frozenset(StudyState) - {S.CANCELLED},
}


def change_state(session: Session, study: Study | int, to: StudyState, *,
                 only_from: frozenset[StudyState] | set[StudyState] | None = None,
                 where: ColumnElement[bool] | None = None, **values: Any) -> bool:
    """Move ``study`` (a row or its id) to ``to`` if its state allows it; True if it moved.

    ``only_from`` narrows the allowed sources; ``where`` adds a condition (no image
    received since a moment, say); ``values`` are other columns set with the change.
    ``state_changed_at`` is set to now. A study object given is updated in memory too.
    """
    sources = ALLOWED_FROM[to] if only_from is None else ALLOWED_FROM[to] & set(only_from)
    if not sources:
        return False
    study_id = study if isinstance(study, int) else study.id
    statement = (update(Study)
                 .where(Study.id == study_id, Study.state.in_(sorted(sources)))
                 .values(state=to, state_changed_at=utcnow(), **values)
                 .execution_options(synchronize_session=False))
    if where is not None:
        statement = statement.where(where)
    moved = session.execute(statement).rowcount == 1  # type: ignore[attr-defined]
    if moved:
        log.debug("study_state", study_id=study_id, to=to)
        if isinstance(study, Study):
            session.refresh(study)
    return moved
