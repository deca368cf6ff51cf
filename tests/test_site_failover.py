"""A two-host site (tests/support/site.py) survives the loss of a machine.

One site serves every test of this module; each test starts from both hosts up. Each
fault ends with ``check_site``: nothing acknowledged lost, one SR per study at the
PACS, no SOP Instance UID twice, one ORU per result, an audit trail that verifies.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mmbcd_node.db.models import AuditEvent, Job, JobState
from mmbcd_node.db.result_models import Result
from tests.support.dicom_peers import db_rows
from tests.support.failover import (
    Traffic,
    check_site,
    kill_host_mid_stream,
    running_on,
    settled,
    studies,
    study_uid,
)
from tests.support.pacs import wait_until
from tests.support.site import (
    DICOM_PORT,
    MODALITY_AE,
    NODE_AE,
    Site,
    healthz,
    site_unavailable,
)

UNAVAILABLE = site_unavailable()
pytestmark = [pytest.mark.slow, pytest.mark.postgres,
              pytest.mark.skipif(UNAVAILABLE is not None, reason=str(UNAVAILABLE))]

LEASE_SECONDS = 8.0
SETTINGS = {
    "worker": {"lease_seconds": LEASE_SECONDS, "heartbeat_seconds": 1.0, "poll_seconds": 0.2,
               "backoff_seconds": 0.5},
    "results": {"kinds": ["sr"]},
    "completion": {"expected_views_quiet_seconds": 0.5, "check_interval_seconds": 0.2},
    "orders": {"check_interval_seconds": 0.2},
}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    built = Site(tmp_path_factory.mktemp("site"), SETTINGS)
    built.start()
    try:
        yield built
    finally:
        built.stop()


@pytest.fixture
def both_up(site: Site) -> Site:
    site.all_hosts_up()
    return site


def test_host_a_killed_mid_stream_then_back_nothing_lost_nothing_twice(
        both_up: Site, tmp_path: Path) -> None:
    site, host_a = both_up, both_up.hosts["host-a"]
    batch = studies(tmp_path / "in", 1, 8)
    outcome = kill_host_mid_stream(site, batch)
    assert site.balanced() == {"host-b"}, "the balancer's health check took host-a out"
    check_site(site, outcome.traffic)
    jobs = {j.id: j for j in db_rows(site.db_url, Job)}
    assert {jobs[i].state for i in outcome.held} == {JobState.DONE}
    assert any(jobs[i].attempts == 2 for i in outcome.held), "host-b took host-a's job over"
    assert all(j.attempts == 1 for i, j in jobs.items() if i not in outcome.held), \
        "no other job ran twice"

    # host-a comes back and rejoins; nothing it held is done again.
    site.link(host_a, up=True)
    host_a.start()
    site.wait_healthy(host_a, timeout=240)
    wait_until(lambda: site.balanced() == {"host-a", "host-b"}, timeout=30,
               message="the balancer to use host-a again")
    more = studies(tmp_path / "in", 101, 4)
    second = Traffic(site, more).start()
    second.join(timeout=300)
    wait_until(lambda: settled(site, len(batch) + len(more)), timeout=240,
               message="both hosts to finish")
    everything = Traffic(site, batch + more)
    everything.acknowledged = outcome.traffic.acknowledged | second.acknowledged
    check_site(site, everything)
    after = {j.id: j for j in db_rows(site.db_url, Job)}
    assert {i: (j.state, j.attempts) for i, j in after.items() if i in jobs} == \
        {i: (j.state, j.attempts) for i, j in jobs.items()}, "nothing was done again"
    assert all(j.attempts == 1 for i, j in after.items() if i not in jobs)


def test_a_read_only_storage_root_on_host_a_takes_it_out_of_the_balancer(
        both_up: Site, tmp_path: Path) -> None:
    site, host_a = both_up, both_up.hosts["host-a"]
    before = len(db_rows(site.db_url, Job))
    host_a.storage_mount(site.storage_root, read_only=True)
    try:
        wait_until(lambda: site.balanced() == {"host-b"}, timeout=15,
                   message="the health check to take host-a out")
        report = healthz(host_a)
        assert report["status"] == "unhealthy"
        assert "is not writable" in report["checks"]["disk"]["detail"]
        probe = studies(tmp_path / "probe", 900, 1)[0]
        refused = subprocess.run(
            ["ip", "netns", "exec", site.namespace("lb"), "storescu", "-v", "-aet",
             MODALITY_AE, "-aec", NODE_AE, host_a.address, str(DICOM_PORT),
             str(probe.files[0])], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0
        assert "Rejected Transient" in refused.stdout + refused.stderr, refused.stderr
        batch = studies(tmp_path / "in", 201, 4)
        traffic = Traffic(site, batch).start()
        traffic.join(timeout=300)
        assert traffic.retries == 0, "no image went to host-a"
        wait_until(lambda: settled(site, before + len(batch)), timeout=240,
                   message="host-b to finish")
        check_site(site, traffic)
    finally:
        host_a.storage_mount(site.storage_root, read_only=False)
    wait_until(lambda: site.balanced() == {"host-a", "host-b"}, timeout=15,
               message="host-a back in the balancer once its storage is writable")


def test_postgresql_restarts_mid_flight_and_every_role_reconnects(
        both_up: Site, tmp_path: Path) -> None:
    site = both_up
    before = {j.id for j in db_rows(site.db_url, Job)}
    started = len({j.study_id for j in db_rows(site.db_url, Job)})
    batch = studies(tmp_path / "in", 301, 6)
    traffic = Traffic(site, batch).start()
    wait_until(lambda: {j.id for j in db_rows(site.db_url, Job)} - before, timeout=120,
               message="the first job of the batch")
    site.stop_database("fast")
    wait_until(lambda: not site.balanced(), timeout=15,
               message="the health checks to take both hosts out")
    site.start_database()
    traffic.join(timeout=300)
    wait_until(lambda: settled(site, started + len(batch)), timeout=240,
               message="the site to finish after the restart")
    check_site(site, traffic)
    assert traffic.retries > 0, "the outage was seen by the modality or the RIS"
    wait_until(lambda: site.balanced() == {"host-a", "host-b"}, timeout=30,
               message="both hosts healthy again")


def test_host_a_cut_from_the_database_past_its_lease_commits_nothing_it_lost(
        both_up: Site, tmp_path: Path) -> None:
    site, host_a = both_up, both_up.hosts["host-a"]
    started = len({j.study_id for j in db_rows(site.db_url, Job)})
    batch = studies(tmp_path / "in", 401, 6)
    traffic = Traffic(site, batch).start()
    held = wait_until(lambda: running_on(site, "host-a"), timeout=180,
                      message="host-a to hold a job")
    site.cut(host_a)
    try:
        wait_until(lambda: all(j.state == JobState.DONE and j.attempts >= 2 for j in
                               db_rows(site.db_url, Job, Job.id.in_(held))),
                   timeout=120, message="host-b to take over host-a's job and finish it")
    finally:
        site.cut(host_a, restore=True)
    traffic.join(timeout=300)
    wait_until(lambda: settled(site, started + len(batch)), timeout=240,
               message="the site to finish")
    site.wait_healthy(host_a, timeout=60)
    check_site(site, traffic)
    results = db_rows(site.db_url, Result, Result.job_id.in_(held))
    assert sorted(r.job_id for r in results) == sorted(held), "one result per job"
    # Fencing: host-a either found its lease gone when it reached the database again
    # (result_dropped) or could not commit at all; every result is host-b's.
    held_studies = {study_uid(site, j.study_id) for j in db_rows(site.db_url, Job,
                                                                  Job.id.in_(held))}
    created = db_rows(site.db_url, AuditEvent, AuditEvent.action == "results_created",
                      AuditEvent.study_uid.in_(held_studies))
    assert len(created) == len(held_studies)
    assert all(e.actor.startswith("worker@host-b:") for e in created), [e.actor for e in created]
