"""Every study state change goes through one table of allowed transitions, guarded in SQL."""

from __future__ import annotations

import itertools
import uuid

import pytest
from sqlalchemy import select

from mmbcd_node.db.models import Study, StudyState
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.db.study_state import ALLOWED_FROM, change_state

PAIRS = list(itertools.product(StudyState, StudyState))


@pytest.fixture
def sessions(db_url):  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def _study_in(sessions, state: StudyState) -> int:  # type: ignore[no-untyped-def]
    with transaction(sessions) as session:
        study = Study(study_uid=f"1.2.826.0.1.{uuid.uuid4().int % 10**12}", state=state,
                      correlation_id=uuid.uuid4().hex)
        session.add(study)
        session.flush()
        return study.id


def test_every_allowed_and_every_forbidden_transition(sessions) -> None:  # type: ignore[no-untyped-def]
    for source, target in PAIRS:
        study_id = _study_in(sessions, source)
        with transaction(sessions) as session:
            moved = change_state(session, study_id, target)
        with sessions() as session:
            now = session.execute(select(Study.state).where(Study.id == study_id)).scalar_one()
        allowed = source in ALLOWED_FROM[target]
        assert moved is allowed, f"{source} -> {target}"
        assert now == (target if allowed else source), f"{source} -> {target}"


def test_only_from_narrows_and_never_widens_the_table(sessions) -> None:  # type: ignore[no-untyped-def]
    held = _study_in(sessions, StudyState.HELD)
    receiving = _study_in(sessions, StudyState.RECEIVING)
    with transaction(sessions) as session:
        assert not change_state(session, held, StudyState.QUEUED,
                                only_from={StudyState.COMPLETE})
        # receiving -> done is not in the table, whatever the caller says
        assert not change_state(session, receiving, StudyState.DONE,
                                only_from={StudyState.RECEIVING})
        assert change_state(session, held, StudyState.QUEUED, only_from={StudyState.HELD})


def test_a_study_object_follows_its_row(sessions) -> None:  # type: ignore[no-untyped-def]
    study_id = _study_in(sessions, StudyState.DONE)
    with transaction(sessions) as session:
        study = session.get(Study, study_id)
        assert study is not None
        assert change_state(session, study, StudyState.RECEIVING, rerun_requested=True,
                            reopen_count=Study.reopen_count + 1)
        assert (study.state, study.rerun_requested, study.reopen_count) == (
            StudyState.RECEIVING, True, 1)


def test_every_state_is_in_the_table_and_none_moves_to_itself() -> None:
    assert set(ALLOWED_FROM) == set(StudyState)
    assert all(target not in sources for target, sources in ALLOWED_FROM.items())
    leaving = {source for sources in ALLOWED_FROM.values() for source in sources}
    assert leaving == set(StudyState)  # even cancelled studies may be reprocessed
