"""The scheduler role: runs the node's periodic checks (study completion, and what later
stages add) on an apscheduler ``BackgroundScheduler``.

The scheduler only triggers checks; every check reads its due work from SQL and makes
its transitions with conditional updates. Nothing is armed in memory, so a restarted
node, or several scheduler processes against one database, behave the same.

A stage adds its check by appending a ``PeriodicCheck`` in ``periodic_checks``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.logs import get_logger

log = get_logger(__name__)

CheckFunction = Callable[[NodeConfig, sessionmaker[Session]], object]


@dataclass(frozen=True)
class PeriodicCheck:
    """A check run every ``interval_seconds``: ``fn(config, sessions)``."""

    name: str
    interval_seconds: float
    fn: CheckFunction


def periodic_checks(config: NodeConfig) -> list[PeriodicCheck]:
    """Every periodic check of the node, in the order they are registered."""
    from mmbcd_node.match.completion import complete_due_studies
    from mmbcd_node.match.matcher import check_complete_studies
    from mmbcd_node.ops.retention import scheduled_purge

    return [
        PeriodicCheck("study_completion", config.completion.check_interval_seconds,
                      complete_due_studies),
        PeriodicCheck("order_matching", config.orders.check_interval_seconds,
                      check_complete_studies),
        # Every minute: purge when the [retention] cron schedule has fired since the last run.
        PeriodicCheck("retention", 60.0, scheduled_purge),
    ]


class SchedulerRole:
    """Role ``scheduler``: one background thread pool running ``periodic_checks``."""

    name = "scheduler"

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session],
                 checks: list[PeriodicCheck] | None = None) -> None:
        self.config = config
        self.sessions = sessions
        self.checks = checks if checks is not None else periodic_checks(config)
        self.scheduler: BackgroundScheduler | None = None

    def start(self) -> None:
        """Start the scheduler; every check runs once right away, then on its interval."""
        scheduler = BackgroundScheduler(timezone="UTC")
        for check in self.checks:
            # One run of a check at a time; runs missed while one was slow are merged.
            scheduler.add_job(self._run, "interval", args=[check], id=check.name,
                              name=check.name, seconds=check.interval_seconds,
                              next_run_time=datetime.now().astimezone(), max_instances=1,
                              coalesce=True, misfire_grace_time=None)
        scheduler.start()
        self.scheduler = scheduler
        log.info("scheduler_started", checks=",".join(check.name for check in self.checks))

    def stop(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=True)
            self.scheduler = None

    def _run(self, check: PeriodicCheck) -> None:
        try:
            check.fn(self.config, self.sessions)
        except Exception:
            # A failed run (database briefly away) is retried on the next interval.
            log.exception("periodic_check_failed", check=check.name)
