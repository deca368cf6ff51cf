"""The SQL job queue: leases, heartbeats, retries with backoff, priorities, exclusivity."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import WorkerConfig
from mmbcd_node.db.models import Job, JobState, Priority, Study, utcnow
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.job_queue import (
    cancel_pending_jobs,
    claim_jobs,
    complete_job,
    enqueue_job,
    fail_job,
    heartbeat,
    holds_lease,
)

POLICY = WorkerConfig(lease_seconds=60, max_attempts=3, backoff_seconds=10,
                     priority_aging_seconds=300)


@pytest.fixture
def sessions(db_url: str) -> sessionmaker[Session]:
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def add_study(session: Session) -> int:
    study = Study(study_uid=f"2.25.{uuid.uuid4().int}", correlation_id=uuid.uuid4().hex)
    session.add(study)
    session.flush()
    return study.id


def add_job(sessions: sessionmaker[Session], priority: Priority = Priority.NORMAL,
            age_seconds: float = 0) -> int:
    with transaction(sessions) as session:
        job = enqueue_job(session, add_study(session), priority=priority)
        job.not_before = utcnow() - timedelta(seconds=age_seconds)
        session.flush()
        return job.id


def claim(sessions: sessionmaker[Session], owner: str = "w1", limit: int = 1,
          policy: WorkerConfig = POLICY, now=None) -> list[int]:
    with transaction(sessions) as session:
        return [j.id for j in claim_jobs(session, owner, policy, limit=limit, now=now)]


def job(sessions: sessionmaker[Session], job_id: int) -> Job:
    with sessions() as session:
        return session.execute(select(Job).where(Job.id == job_id)).scalar_one()


def test_claim_marks_job_running_under_a_lease_for_its_owner(sessions) -> None:
    job_id = add_job(sessions)
    assert claim(sessions, "worker-a") == [job_id]
    claimed = job(sessions, job_id)
    assert claimed.state == JobState.RUNNING
    assert claimed.lease_owner == "worker-a"
    assert claimed.attempts == 1
    assert claimed.lease_expires_at is not None
    assert claim(sessions, "worker-b") == [], "a leased job is never claimed twice"


def test_urgent_runs_before_normal_before_background_when_queued_together(sessions) -> None:
    background = add_job(sessions, Priority.BACKGROUND)
    normal = add_job(sessions, Priority.NORMAL)
    urgent = add_job(sessions, Priority.URGENT)
    assert [claim(sessions)[0] for _ in range(3)] == [urgent, normal, background]


def test_background_job_that_waited_long_beats_fresh_urgent_jobs(sessions) -> None:
    fresh_urgent = add_job(sessions, Priority.URGENT)
    old_background = add_job(sessions, Priority.BACKGROUND, age_seconds=2 * 300 + 30)
    assert claim(sessions) == [old_background]
    assert claim(sessions) == [fresh_urgent]


def test_claim_takes_several_jobs_for_a_batch(sessions) -> None:
    ids = {add_job(sessions) for _ in range(3)}
    assert set(claim(sessions, limit=5)) == ids


def test_job_is_not_claimed_before_its_backoff_has_passed(sessions) -> None:
    job_id = add_job(sessions, age_seconds=-120)
    assert claim(sessions) == []
    assert claim(sessions, now=utcnow() + timedelta(seconds=121)) == [job_id]


def test_failed_attempts_back_off_exponentially_then_fail_with_the_error_kept(sessions) -> None:
    job_id = add_job(sessions)
    now = utcnow()
    delays = []
    for attempt in range(1, 4):
        assert claim(sessions, now=now) == [job_id]
        with transaction(sessions) as session:
            state = fail_job(session, job_id, "w1", f"model crashed #{attempt}", POLICY, now=now)
        row = job(sessions, job_id)
        if attempt < 3:
            assert state == JobState.QUEUED
            delays.append((row.not_before.replace(tzinfo=None) - now.replace(tzinfo=None))
                          .total_seconds())
            now = now + timedelta(seconds=delays[-1] + 1)
    assert delays == [10, 20]
    failed = job(sessions, job_id)
    assert failed.state == JobState.FAILED
    assert failed.error == "model crashed #3"
    assert failed.attempts == 3
    assert claim(sessions, now=now + timedelta(days=1)) == []


def test_permanent_error_fails_the_job_without_retry(sessions) -> None:
    job_id = add_job(sessions)
    claim(sessions)
    with transaction(sessions) as session:
        assert fail_job(session, job_id, "w1", "corrupt pixel data", POLICY,
                        retry=False) == JobState.FAILED
    assert job(sessions, job_id).error == "corrupt pixel data"


def test_expired_lease_hands_the_job_to_another_worker(sessions) -> None:
    job_id = add_job(sessions)
    assert claim(sessions, "dead-worker") == [job_id]
    later = utcnow() + timedelta(seconds=POLICY.lease_seconds + 1)
    quick = WorkerConfig(lease_seconds=60, max_attempts=3, backoff_seconds=0)
    assert claim(sessions, "live-worker", policy=quick, now=later) == [job_id]
    row = job(sessions, job_id)
    assert row.lease_owner == "live-worker"
    assert row.attempts == 2
    assert "dead-worker" in (row.error or "")
    with transaction(sessions) as session:
        assert not heartbeat(session, job_id, "dead-worker", POLICY), "the dead lease is gone"
        assert not holds_lease(session, job_id, "dead-worker")
        assert not complete_job(session, job_id, "dead-worker")
        assert complete_job(session, job_id, "live-worker")
    assert job(sessions, job_id).state == JobState.DONE


def test_heartbeat_keeps_the_lease_alive(sessions) -> None:
    job_id = add_job(sessions)
    claim(sessions, "w1")
    later = utcnow() + timedelta(seconds=50)
    with transaction(sessions) as session:
        assert heartbeat(session, job_id, "w1", POLICY, now=later)
    assert claim(sessions, "w2", now=later + timedelta(seconds=30)) == []
    assert job(sessions, job_id).lease_owner == "w1"


def test_cancel_stops_pending_jobs_and_the_running_worker_loses_its_lease(sessions) -> None:
    job_id = add_job(sessions)
    claim(sessions, "w1")
    with transaction(sessions) as session:
        study_id = session.get(Job, job_id).study_id
        assert list(cancel_pending_jobs(session, study_id, "order cancelled")) == [job_id]
    with transaction(sessions) as session:
        assert not holds_lease(session, job_id, "w1")
    assert job(sessions, job_id).state == JobState.CANCELLED


def test_enqueue_keeps_one_pending_job_per_study_and_raises_its_priority(sessions) -> None:
    with transaction(sessions) as session:
        study_id = add_study(session)
        first = enqueue_job(session, study_id, priority=Priority.BACKGROUND)
        again = enqueue_job(session, study_id, priority=Priority.URGENT)
        assert first.id == again.id
        assert again.priority == Priority.URGENT


CLAIMER = """
import sys
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.config import WorkerConfig
from mmbcd_node.job_queue import claim_jobs, complete_job
url, owner = sys.argv[1], sys.argv[2]
sessions = make_sessionmaker(make_engine(url))
policy = WorkerConfig(lease_seconds=300)
with transaction(sessions) as s:  # connected and warm before the start
    claim_jobs(s, owner, policy, limit=0)
print("ready", flush=True)


def claim_one():
    with transaction(sessions) as s:
        jobs = claim_jobs(s, owner, policy, limit=1)
    if jobs:
        with transaction(sessions) as s:
            assert complete_job(s, jobs[0].id, owner)
        print(jobs[0].id, flush=True)
    return bool(jobs)


sys.stdin.readline()  # the start barrier: both processes claim from the same moment
while not claim_one():  # one job each before either goes on: SQLite's lock is not fair,
    pass                # and a process that never waits for it may claim every job
sys.stdin.readline()  # the second barrier: then both claim as fast as they can
misses = 0
while misses < 3:
    misses = 0 if claim_one() else misses + 1
"""


def test_two_worker_processes_never_claim_the_same_job(sessions, db_url: str) -> None:
    ids = {add_job(sessions) for _ in range(120)}
    workers = [subprocess.Popen([sys.executable, "-c", CLAIMER, db_url, f"proc-{n}"],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
               for n in range(2)]
    for worker in workers:
        assert worker.stdout is not None and worker.stdout.readline() == "ready\n"
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    firsts = [w.stdout.readline() for w in workers if w.stdout is not None]
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.close()
    outputs = [first + w.stdout.read()
               for first, w in zip(firsts, workers, strict=True) if w.stdout is not None]
    assert [w.wait(timeout=120) for w in workers] == [0, 0]
    claimed = [[int(x) for x in out.split()] for out in outputs]
    assert all(claimed), f"both processes claim jobs ({[len(c) for c in claimed]})"
    assert not set(claimed[0]) & set(claimed[1]), "a job was claimed by both processes"
    assert sorted(claimed[0] + claimed[1]) == sorted(ids), "every job processed exactly once"
