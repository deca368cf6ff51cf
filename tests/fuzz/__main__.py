"""``make fuzz``: fuzz a node on SQLite and on PostgreSQL and print what it answered.

``python -m tests.fuzz [--db sqlite,postgresql] [--seed N] [--dicom N] [--pdu N]
[--hl7 N] [--only CLASS ...]``: the node runs the dicom and hl7 roles on loopback; the
PostgreSQL database is created next to ``MMBCD_TEST_PG_URL`` (default the local
server's ``test`` database) and dropped afterwards. Exit status 1 when any class got
a dishonest answer, a legitimate C-ECHO or order was not served, the node died, or
``audit verify`` failed afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path

import tomli_w

from mmbcd_node.db import migrate
from tests.fuzz.campaign import FUZZ_SETTINGS, render, run_campaign
from tests.support.databases import PG_URL_ENV, create_pg_database, drop_pg_database
from tests.support.node import RunningNode, deep_merge, loopback_settings

DEFAULT_PG = "postgresql+psycopg://root@127.0.0.1:5432/test"


def fuzz_one(kind: str, args: argparse.Namespace) -> bool:
    work = Path(tempfile.mkdtemp(prefix=f"mmbcd-fuzz-{kind}-"))
    url = f"sqlite:///{work / 'node.db'}" if kind == "sqlite" else create_pg_database()
    try:
        settings = deep_merge(loopback_settings(url, work / "storage"), FUZZ_SETTINGS)
        config = work / "node.toml"
        config.write_text(tomli_w.dumps(settings))
        migrate.upgrade(url)
        node = RunningNode(config_path=config, settings=settings, roles=["dicom", "hl7"],
                           log_path=work / "node.log").start()
        try:
            report = run_campaign(node, seed=args.seed, dicom_per_class=args.dicom,
                                  pdu_per_class=args.pdu, hl7_per_class=args.hl7,
                                  progress=lambda line: print(f"  {kind}: {line}", flush=True),
                                  only=set(args.only) if args.only else None)
            audit = node.cli("audit", "verify", check=False)
        finally:
            node.stop()
        print(render(report, f"{kind} (seed {args.seed})"))
        print(f"audit verify: exit {audit.returncode} {audit.stdout.strip()[-200:]}")
        if report.failures:
            print(f"node log: {node.log_path}")
        return not report.failures and audit.returncode == 0
    finally:
        if kind == "postgresql":
            drop_pg_database(url)


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz")
    parser.add_argument("--db", default="sqlite,postgresql")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dicom", type=int, default=15, help="cases per DICOM class")
    parser.add_argument("--pdu", type=int, default=2, help="attacks per PDU class")
    parser.add_argument("--hl7", type=int, default=50, help="messages per HL7 class")
    parser.add_argument("--only", nargs="*", help="run only these classes")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", module="pydicom")  # the mutations are invalid on purpose
    os.environ.setdefault(PG_URL_ENV, DEFAULT_PG)
    results = {kind: fuzz_one(kind, args) for kind in args.db.split(",")}
    print("fuzz: " + ", ".join(f"{k} {'clean' if ok else 'FAILED'}" for k, ok in results.items()))
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
