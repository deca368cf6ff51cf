"""Scale-out on PostgreSQL: two worker processes share the queue; each study runs once."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmbcd_node.db import migrate
from mmbcd_node.db.models import Job, JobState, Study, StudyState
from mmbcd_node.db.result_models import Result
from tests.support.databases import PG_URL_ENV, create_pg_database, drop_pg_database
from tests.support.dicom_peers import db_rows
from tests.support.e2e import make_study, push_study, send_order, settled
from tests.support.pacs import wait_until

pytestmark = [pytest.mark.slow, pytest.mark.postgres,
              pytest.mark.skipif(not os.environ.get(PG_URL_ENV),
                                 reason=f"{PG_URL_ENV} is not set")]

STUDIES = 20


@pytest.fixture
def db_url() -> Iterator[str]:
    url = create_pg_database()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_pg_database(url)


def test_two_workers_on_postgresql_process_twenty_studies_exactly_once(
        node_factory, storescp_factory, tmp_path: Path, db_url: str) -> None:
    pacs = storescp_factory()
    config = {
        "worker": {"lease_seconds": 60.0, "heartbeat_seconds": 2.0, "poll_seconds": 0.2,
                   "batch_size": 2},
        "model": {"device": "cpu"},
        "results": {"kinds": ["sr"]},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1",
                          "port": pacs.port, "backoff_seconds": 0.5}],
    }
    node = node_factory(roles=["dicom", "hl7", "scheduler", "sender"], settings=config)
    workers = [node_factory(roles=["worker"], settings=config) for _ in range(2)]
    for worker in workers:
        wait_until(lambda w=worker: "role_started role=worker" in w.log_text(), timeout=180,
                   message="both workers to load the model")
    studies = [make_study(tmp_path / "in", 100 + n, rows=256, cols=208) for n in range(STUDIES)]
    for study in studies:
        push_study(node.dicom_port, study.files)
        send_order(node.hl7_port, study)
    wait_until(lambda: len(pacs.files()) >= STUDIES, timeout=400,
               message=f"{STUDIES} SRs at the PACS")
    wait_until(lambda: settled(db_url), timeout=120, message="every job and delivery settled")
    per_study = Counter(str(ds.StudyInstanceUID) for ds in pacs.received())
    assert per_study == {s.study_uid: 1 for s in studies}, "exactly one SR per study"
    jobs = db_rows(db_url, Job)
    assert len(jobs) == STUDIES
    assert {(j.state, j.attempts) for j in jobs} == {(JobState.DONE, 1)}, "no job ran twice"
    results = db_rows(db_url, Result)
    assert sorted(r.job_id for r in results) == sorted(j.id for j in jobs)
    wait_until(lambda: {s.state for s in db_rows(db_url, Study)} == {StudyState.DELIVERED},
               timeout=30, message="every study delivered")
