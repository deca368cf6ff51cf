"""``/healthz`` and ``/metrics``: what an operator's monitoring sees of a running node."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mmbcd_node.config import load_config
from mmbcd_node.db import migrate
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import Job, JobState, StudyState, utcnow
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.ops.health import check_health
from mmbcd_node.ops.heartbeat import beat
from mmbcd_node.ops.storage_identity import MARKER
from tests.support.databases import PG_URL_ENV, create_pg_database, drop_pg_database
from tests.support.mammo import make_mammogram, write_mammogram
from tests.support.node import free_port, wait_for_port
from tests.support.operations import seed_study


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """``/metrics`` parsed: sample name -> {sorted labels: value}."""
    status, body = get(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = (
                sample.value)
    return samples


def test_metrics_count_received_instances_associations_and_states(
        node_factory, tmp_path: Path) -> None:
    node = node_factory(roles=["dicom", "http"])
    files = []
    for index, (laterality, view) in enumerate([("R", "CC"), ("L", "CC")]):
        ds = make_mammogram(laterality=laterality, view=view, seed=index, study_uid="1.2.3.99")
        path = tmp_path / f"{index}.dcm"
        write_mammogram(path, ds)
        files.append(path)
    sent = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "MMBCD", "127.0.0.1",
                           str(node.dicom_port), *map(str, files)], capture_output=True,
                          text=True, timeout=60)
    assert sent.returncode == 0, sent.stderr
    refused = subprocess.run(["storescu", "-aet", "MODALITY", "-aec", "NOT_US", "127.0.0.1",
                              str(node.dicom_port), str(files[0])], capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode != 0
    sessions = make_sessionmaker(make_engine(node.db_url))
    with transaction(sessions) as session:
        done = seed_study(session, tmp_path / "other", state=StudyState.DONE,
                          received_at=utcnow() - timedelta(minutes=10))
        session.add(Job(study_id=done.id, state=JobState.QUEUED,
                        created_at=utcnow() - timedelta(minutes=3)))
    # The receiver audits a rejection after answering it: wait for the row, not the reply.
    deadline = time.monotonic() + 20
    while True:
        metrics = scrape(node.http_port)
        rejected = metrics["mmbcd_dicom_associations_total"][(("outcome", "rejected"),)]
        if rejected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert metrics["mmbcd_database_up"][()] == 1
    assert metrics["mmbcd_instances_received_total"][()] == 2 + 4
    stored = [p for p in node.storage_root.rglob("*") if p.is_file() and p.name != MARKER]
    assert len(stored) == 2
    assert metrics["mmbcd_received_bytes_total"][()] == sum(
        p.stat().st_size for p in stored) + 4 * 1000
    associations = metrics["mmbcd_dicom_associations_total"]
    assert associations[(("outcome", "accepted"),)] == 1 + 1  # storescu + the seeded study
    assert associations[(("outcome", "rejected"),)] == 1
    assert metrics["mmbcd_studies"][(("state", "receiving"),)] == 1
    assert metrics["mmbcd_studies"][(("state", "done"),)] == 1
    assert metrics["mmbcd_studies"][(("state", "failed"),)] == 0
    assert metrics["mmbcd_jobs"][(("state", "queued"),)] == 1
    assert metrics["mmbcd_jobs"][(("state", "done"),)] == 1
    # The seeded job ran 2 s; its study's last image came 10 min ago and it finished 12 s in.
    assert metrics["mmbcd_inference_seconds_count"][()] == 1
    assert metrics["mmbcd_inference_seconds_bucket"][(("le", "1.0"),)] == 0
    assert metrics["mmbcd_inference_seconds_bucket"][(("le", "5.0"),)] == 1
    assert metrics["mmbcd_inference_seconds_sum"][()] == pytest.approx(2.0, abs=0.01)
    assert metrics["mmbcd_time_to_result_seconds_count"][()] == 1
    assert 180 <= metrics["mmbcd_oldest_pending_job_age_seconds"][()] < 600
    assert metrics["mmbcd_storage_free_bytes"][()] > 0


def test_healthz_checks_the_listeners_of_the_roles_this_process_runs(node_factory) -> None:
    node = node_factory(roles=["dicom", "http"])
    status, body = get(f"http://127.0.0.1:{node.http_port}/healthz")
    report = json.loads(body)
    assert status == 200 and report["status"] == "ok", report
    assert report["checks"]["dicom"]["ok"] and report["checks"]["database"]["ok"]
    assert "hl7" not in report["checks"]
    assert report["checks"]["worker"]["required"] is False
    assert get(f"http://127.0.0.1:{node.http_port}/nothing")[0] == 404


def test_health_of_a_worker_process_follows_its_job_heartbeats_and_its_own_beats(
        db_url: str, tmp_path: Path) -> None:
    config = load_config(environ={"MMBCD_NODE__STORAGE__ROOT": str(tmp_path),
                                  "MMBCD_NODE__DICOM__MIN_FREE_BYTES": "0",
                                  "MMBCD_NODE__HL7__PORT": str(free_port())})
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    assert check_health(config, engine, ["worker"]).healthy  # idle worker role, no beats
    with transaction(sessions) as session:
        study = seed_study(session, tmp_path, state=StudyState.RUNNING, job_state=None)
        session.add(Job(study_id=study.id, state=JobState.RUNNING,
                        lease_owner=f"worker@{socket.gethostname()}:{os.getpid()}",
                        heartbeat_at=utcnow() - timedelta(minutes=5)))
    stuck = check_health(config, engine, ["worker"])
    assert not stuck.healthy and "not heartbeaten" in stuck.as_json()["checks"]["worker"]["detail"]
    assert check_health(config, engine, []).healthy  # another process's worker is not ours

    with transaction(sessions) as session:
        beat(session, "worker", "loading")
    report = check_health(config, engine, ["worker"])
    assert not report.healthy and report.as_json()["checks"]["worker"]["ok"]
    with transaction(sessions) as session:
        beat(session, "worker", "model_loaded digest=sha256:abc")
    assert check_health(config, engine, ["worker"]).healthy
    with transaction(sessions) as session:
        beat(session, "worker", now=utcnow() - timedelta(minutes=5))
    stale = check_health(config, engine, ["worker"])
    assert not stale.healthy and not stale.as_json()["checks"]["worker"]["ok"]
    assert not check_health(config, engine, ["hl7"]).healthy  # nothing listens on that port
    floor = load_config(environ={"MMBCD_NODE__STORAGE__ROOT": str(tmp_path),
                                 "MMBCD_NODE__DICOM__MIN_FREE_BYTES": str(2**62)})
    assert not check_health(floor, engine, []).as_json()["checks"]["disk"]["ok"]
    engine.dispose()


class TcpProxy:
    """Forwards a loopback port to PostgreSQL; closing it is the database going away."""

    def __init__(self, port: int, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", port), reuse_port=False)
        self.links: list[socket.socket] = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.links += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):
                    end.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self.listener.close()
        for link in self.links:
            with contextlib.suppress(OSError):
                link.shutdown(socket.SHUT_RDWR)
            link.close()


@pytest.mark.postgres
@pytest.mark.skipif(not os.environ.get(PG_URL_ENV), reason=f"{PG_URL_ENV} not set")
def test_healthz_turns_503_when_the_database_goes_away_and_200_when_it_returns(
        tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    from tests.support.node import RunningNode

    real = create_pg_database()
    try:
        migrate.upgrade(real)
        parsed = make_url(real)
        port = free_port()
        proxy = TcpProxy(port, (parsed.host or "127.0.0.1", parsed.port or 5432))
        via_proxy = parsed.set(host="127.0.0.1", port=port).render_as_string(False)
        http_port = free_port()
        config = tmp_path / "node.toml"
        config.write_text(f'[database]\nurl = "{via_proxy}"\n[storage]\nroot = "{tmp_path}"\n'
                          f'[dicom]\nmin_free_bytes = 0\n'
                          f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n')
        node = RunningNode(config_path=config, settings={"http": {"port": http_port}},
                           roles=["http"], log_path=tmp_path / "node.log").start()
        try:
            wait_for_port(http_port)
            assert get(f"http://127.0.0.1:{http_port}/healthz")[0] == 200
            proxy.close()
            status, body = get(f"http://127.0.0.1:{http_port}/healthz")
            assert status == 503, body
            assert json.loads(body)["checks"]["database"]["ok"] is False
            metrics = scrape(http_port)
            assert metrics["mmbcd_database_up"][()] == 0
            proxy = TcpProxy(port, (parsed.host or "127.0.0.1", parsed.port or 5432))
            assert get(f"http://127.0.0.1:{http_port}/healthz")[0] == 200
        finally:
            node.stop()
            proxy.close()
    finally:
        drop_pg_database(real)


def test_audit_event_counts_need_no_running_receiver(db_url: str) -> None:
    """Association counters come from the shared audit trail, so any process can serve them."""
    from mmbcd_node.ops.metrics import exposition

    sessions = make_sessionmaker(make_engine(db_url))
    with transaction(sessions) as session:
        for _ in range(3):
            record_event(session, "association_rejected", outcome="failure", calling_ae="X")
    families = {f.name: f for f in text_string_to_metric_families(
        exposition(make_engine(db_url)).decode())}
    samples = {s.labels["outcome"]: s.value
               for s in families["mmbcd_dicom_associations"].samples}
    assert samples == {"accepted": 0, "rejected": 3}
