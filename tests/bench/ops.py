"""``make bench-ops``: how long the operator's queries take on a full database.

Seeds N delivered four-view studies (rows, small files, audit events, a job, a result,
an SR and its delivery each; 7 audit events per study) into a fresh SQLite database
(or the PostgreSQL server named with ``--pg-url``), then times, median of ``--runs``:

* one ``/metrics`` scrape (``exposition``),
* ``audit --patient-id`` (``find_events``) for one patient,
* ``audit study`` (``study_story``) for one study,
* ``purge --dry-run`` (``find_candidates``) over every study.

    python -m tests.bench.ops [-n 2000] [--runs 5] [--pg-url postgresql+psycopg://...]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

from rich.console import Console
from rich.progress import track

from mmbcd_node.config import RetentionConfig
from mmbcd_node.db import migrate
from mmbcd_node.db.models import StudyState, utcnow
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.ops.audit_queries import AuditFilter, find_events, study_story
from mmbcd_node.ops.metrics import NodeCollector, exposition
from mmbcd_node.ops.retention import find_candidates
from tests.support.operations import seed_study


def _median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=2000, help="studies to seed")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--pg-url", help="use a new database on this PostgreSQL server")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        if args.pg_url:
            import os

            os.environ["MMBCD_TEST_PG_URL"] = args.pg_url
            from tests.support.databases import create_pg_database, drop_pg_database

            url = create_pg_database()
        else:
            url = f"sqlite:///{root / 'bench.db'}"
        try:
            migrate.upgrade(url)
            engine = make_engine(url)
            sessions = make_sessionmaker(engine)
            uids = []
            now = utcnow()
            for index in track(range(args.n), description="seeding studies"):
                with transaction(sessions) as session:
                    study = seed_study(session, root / "storage", patient_id=f"P{index}",
                                       accession=f"A{index}", state=StudyState.DELIVERED,
                                       delivery_state="committed", size=100,
                                       received_at=now - timedelta(days=index % 60))
                    uids.append(study.study_uid)
            middle = args.n // 2
            policy = RetentionConfig(delivered_days=30, undelivered_days=180)

            def story() -> object:
                with sessions() as session:
                    return study_story(session, uids[middle])

            def patient() -> object:
                with sessions() as session:
                    return find_events(session, AuditFilter(patient_id=f"P{middle}"))

            def candidates() -> object:
                with sessions() as session:
                    return find_candidates(session, policy)

            console = Console()
            console.print(f"{engine.dialect.name}, {args.n} studies, "
                          f"{args.n * 4} instances, median of {args.runs} runs:")
            collector = NodeCollector(engine, root)  # as the http role keeps one
            for name, fn in (("/metrics scrape", lambda: exposition(engine, collector=collector)),
                             ("audit --patient-id", patient), ("audit study", story),
                             ("purge --dry-run", candidates)):
                console.print(f"  {name:20s} {_median_ms(fn, args.runs):8.1f} ms")
            engine.dispose()
        finally:
            if args.pg_url:
                drop_pg_database(url)


if __name__ == "__main__":
    main()
