"""Prometheus metrics read from SQL at scrape time.

Every figure is computed from the tables when ``/metrics`` is scraped, so it is right
however many receivers, workers and senders share the database, and survives restarts.
States come from the models' enums, so a renamed state cannot silently drop out of a
metric. Exposition is ``prometheus_client``'s.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, Connection, Engine, and_, case, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mmbcd_node.db.models import (
    AuditEvent,
    Instance,
    Job,
    JobState,
    Study,
    StudyState,
    utcnow,
)
from mmbcd_node.db.ops_models import NodeHeartbeat
from mmbcd_node.db.order_models import Hl7Message
from mmbcd_node.db.result_models import Delivery, DeliveryState, Result
from mmbcd_node.logs import get_logger
from mmbcd_node.ops.cluster import HL7_RESULTS, backlogs, role_processes

log = get_logger(__name__)

# Audit actions the receiver writes for each association request.
ASSOCIATION_ACTIONS = {"association_accepted": "accepted", "association_rejected": "rejected"}
INFERENCE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)
TIME_TO_RESULT_BUCKETS = (10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 21600, 86400)


def seconds_between(connection: Connection, start: Any, end: Any) -> Any:
    """``end - start`` in seconds as an SQL expression of the connection's dialect."""
    if connection.dialect.name == "postgresql":
        return func.extract("epoch", end - start)
    return (func.julianday(end) - func.julianday(start)) * 86400.0


class NodeCollector(Collector):
    """Collects the node's metrics from the database (and the storage root's free space)."""

    def __init__(self, engine: Engine, storage_root: Path | None = None,
                 heartbeat_seconds: float = 10.0) -> None:
        self.engine = engine
        self.storage_root = storage_root
        self.heartbeat_seconds = heartbeat_seconds

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("mmbcd_database_up", "1 when the database answered this scrape.")
        try:
            with self.engine.connect() as connection:
                metrics = list(self._from_sql(connection))
        except SQLAlchemyError as exc:
            log.warning("metrics_database_error", error=type(exc).__name__)
            up.add_metric([], 0)
            metrics = []
        else:
            up.add_metric([], 1)
        yield up
        yield from metrics
        if self.storage_root is not None:
            free = GaugeMetricFamily("mmbcd_storage_free_bytes",
                                     "Free bytes on the file system of the storage root.")
            root = self.storage_root if self.storage_root.exists() else Path(".")
            free.add_metric([], shutil.disk_usage(root).free)
            yield free

    def _from_sql(self, connection: Connection) -> Iterator[Metric]:
        count, size = connection.execute(
            select(func.count(Instance.id), func.coalesce(func.sum(Instance.size_bytes), 0))).one()
        yield CounterMetricFamily("mmbcd_instances_received", "SOP instances stored.",
                                  value=count)
        yield CounterMetricFamily("mmbcd_received_bytes", "Bytes of SOP instances stored.",
                                  value=size)
        yield self._associations(connection)
        yield from self._hl7_messages(connection)
        yield _by_state(connection, "mmbcd_studies", "Studies by state.", Study.state,
                        list(StudyState))
        yield _by_state(connection, "mmbcd_jobs", "Jobs by state.", Job.state, list(JobState))
        yield from self._deliveries(connection)
        yield _histogram(connection, "mmbcd_inference_seconds",
                         "Time from a job's start to its end, for jobs done.",
                         seconds_between(connection, Job.started_at, Job.finished_at),
                         and_(Job.state == JobState.DONE, Job.started_at.is_not(None),
                              Job.finished_at.is_not(None)), INFERENCE_BUCKETS)
        yield self._time_to_result(connection)
        yield self._oldest_pending(connection)
        yield self._heartbeats(connection)
        yield from self._cluster(connection)

    def _cluster(self, connection: Connection) -> Iterator[Metric]:
        """Role processes up or dead, the leases each holds, and the backlog per queue and
        destination: what ``status`` shows (``ops.cluster``)."""
        with Session(bind=connection) as session:
            processes = role_processes(session, self.heartbeat_seconds)
            waiting = backlogs(session, [])
            queued = session.execute(select(func.count()).where(
                Job.state == JobState.QUEUED)).scalar_one()
        up = GaugeMetricFamily("mmbcd_role_up", "1 while a role process beats, 0 once it died.",
                               labels=["role", "host", "pid", "version"])
        leases = GaugeMetricFamily("mmbcd_leases", "Unexpired leases held, by holder and kind.",
                                   labels=["role", "host", "pid", "kind"])
        for process in processes:
            beat = process.beat
            labels = [beat.role, beat.host, str(beat.pid)]
            up.add_metric([*labels, beat.version or ""], 1 if process.up else 0)
            for kind, count in sorted(process.leases.items()):
                leases.add_metric([*labels, kind], count)
        backlog = GaugeMetricFamily("mmbcd_backlog", "Items waiting, by queue (jobs, "
                                    "deliveries, hl7 results) and destination.",
                                    labels=["queue", "destination"])
        oldest = GaugeMetricFamily("mmbcd_backlog_oldest_age_seconds",
                                   "Age of the oldest waiting item by queue and destination "
                                   "(0 when none waits).", labels=["queue", "destination"])
        backlog.add_metric(["jobs", ""], queued)
        now = utcnow()
        for item in waiting:
            queue = "hl7 results" if item.destination == HL7_RESULTS else "deliveries"
            name = "" if item.destination == HL7_RESULTS else item.destination
            backlog.add_metric([queue, name], item.pending)
            age = 0.0 if item.oldest_pending_at is None else max(
                0.0, (now - item.oldest_pending_at).total_seconds())
            oldest.add_metric([queue, name], age)
        yield from (up, leases, backlog, oldest)

    def _associations(self, connection: Connection) -> Metric:
        metric = CounterMetricFamily("mmbcd_dicom_associations",
                                     "DICOM association requests by outcome.", labels=["outcome"])
        counts = dict(connection.execute(
            select(AuditEvent.action, func.count(AuditEvent.id))
            .where(AuditEvent.action.in_(ASSOCIATION_ACTIONS)).group_by(AuditEvent.action)).all())
        for action, outcome in ASSOCIATION_ACTIONS.items():
            metric.add_metric([outcome], counts.get(action, 0))
        return metric

    def _hl7_messages(self, connection: Connection) -> Iterator[Metric]:
        metric = CounterMetricFamily("mmbcd_hl7_messages", "HL7 messages by the ACK code sent.",
                                     labels=["ack_code"])
        for code, n in connection.execute(
                select(Hl7Message.ack_code, func.count()).group_by(Hl7Message.ack_code)).all():
            metric.add_metric([code or ""], n)
        yield metric

    def _deliveries(self, connection: Connection) -> Iterator[Metric]:
        metric = GaugeMetricFamily("mmbcd_deliveries", "Deliveries by destination and state.",
                                   labels=["destination", "state"])
        counts = {(destination, DeliveryState(state)): n for destination, state, n in
                  connection.execute(select(Delivery.destination, Delivery.state, func.count())
                                     .group_by(Delivery.destination, Delivery.state)).all()}
        for destination in sorted({destination for destination, _ in counts}):
            for state in DeliveryState:  # every state, 0 when it has no rows
                metric.add_metric([destination, state.value],
                                  counts.get((destination, state), 0))
        yield metric

    def _time_to_result(self, connection: Connection) -> Metric:
        joined = Result.__table__.join(Study.__table__, Result.study_id == Study.id)
        return _histogram(connection, "mmbcd_time_to_result_seconds",
                          "Time from a study's last received image to its result "
                          "(model output stored).",
                          seconds_between(connection, Study.last_received_at, Result.created_at),
                          None, TIME_TO_RESULT_BUCKETS, source=joined)

    def _oldest_pending(self, connection: Connection) -> Metric:
        oldest = connection.execute(
            select(func.min(Job.created_at)).where(Job.state == JobState.QUEUED)).scalar()
        metric = GaugeMetricFamily("mmbcd_oldest_pending_job_age_seconds",
                                   "Age of the oldest queued job (0 when none is queued).")
        if oldest is None:
            metric.add_metric([], 0)
        else:
            metric.add_metric([], max(0.0, (utcnow() - oldest).total_seconds()))
        return metric

    def _heartbeats(self, connection: Connection) -> Metric:
        metric = GaugeMetricFamily("mmbcd_role_heartbeat_age_seconds",
                                   "Seconds since each role process last beat.",
                                   labels=["role", "host", "pid"])
        for role, host, pid, beat_at in connection.execute(
                select(NodeHeartbeat.role, NodeHeartbeat.host, NodeHeartbeat.pid,
                       NodeHeartbeat.beat_at)).all():
            metric.add_metric([role, host, str(pid)], (utcnow() - beat_at).total_seconds())
        return metric


def _by_state(connection: Connection, name: str, doc: str, column: Any,
              known: Sequence[str]) -> Metric:
    """Row counts by state; every known state is reported, with 0 when it has no rows."""
    counts = {state: 0 for state in known}
    counts.update(connection.execute(select(column, func.count()).group_by(column)).all())
    metric = GaugeMetricFamily(name, doc, labels=["state"])
    for state, n in counts.items():
        metric.add_metric([str(state)], n)
    return metric


def _histogram(connection: Connection, name: str, doc: str, duration: Any,
               where: ColumnElement[bool] | None, buckets: Sequence[float],
               source: Any = None) -> Metric:
    """A histogram of ``duration`` over the rows matching ``where``, bucketed in SQL."""
    columns: list[Any] = [func.count(duration), func.coalesce(func.sum(duration), 0.0)]
    columns += [func.coalesce(func.sum(case((duration <= bound, 1), else_=0)), 0)
                for bound in buckets]
    query = select(*columns)
    if source is not None:
        query = query.select_from(source)
    if where is not None:
        query = query.where(where)
    total, seconds, *cumulative = connection.execute(query).one()
    pairs = [(repr(float(b)), int(c)) for b, c in zip(buckets, cumulative, strict=True)]
    pairs.append(("+Inf", int(total)))
    return HistogramMetricFamily(name, doc, buckets=pairs, sum_value=float(seconds))


def exposition(engine: Engine, storage_root: Path | None = None,
               collector: NodeCollector | None = None) -> bytes:
    """The metrics page in the Prometheus text format (pass ``collector`` to reuse one)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector or NodeCollector(engine, storage_root))
    return generate_latest(registry)
