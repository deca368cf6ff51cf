"""``make bench-e2e``: how long a study takes from complete to its SR stored at the PACS.

Starts the whole node (SQLite, all roles, the packaged bundle unless ``--bundle``) and
dcmtk ``storescp`` as the PACS on free loopback ports. For each of N synthetic 4-view
studies it sends the order over MLLP, pushes the images with ``storescu`` and waits for
the study's SR at the PACS before the next study (so the figures are latencies, not
queueing). Two times per study:

* completion -> SR: from the node marking the study complete (``studies.completed_at``)
  to the SR file written by storescp (its mtime): worker, result objects, sending;
* last instance -> SR: from the last image received to the same point, which adds the
  completion quiet period (``--quiet`` seconds).

Prints p50/p95 of both, studies/hour, what the worker's input contract and image
selection cost per view beside reading the file (the peer), and last
``p95 completion-to-SR s: X.XX``.

    python -m tests.bench.e2e [-n 10] [--size 1024x832] [--syntax explicit] [--device auto]
        [--bundle DIR] [--quiet 1.0]

``--syntax jpeg2000`` sends JPEG 2000 lossless files, as archives of full-field units
store them (``make bench-gpu`` uses 4096x3328 with the paper-shaped bundle).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pydicom
import pydicom.errors
import tomli_w
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLSLossless, RLELossless

from mmbcd_node.db import migrate
from mmbcd_node.db.models import Instance, Study
from mmbcd_node.images.image_selection import select_images
from mmbcd_node.images.source_image import source_image
from tests.support.dicom_peers import db_rows
from tests.support.e2e import make_study, push_study, send_order
from tests.support.node import RunningNode, free_port
from tests.support.pacs import StoreScp, wait_until

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
SYNTAXES = {"explicit": ExplicitVRLittleEndian, "jpeg2000": JPEG2000Lossless,
            "jpegls": JPEGLSLossless, "rle": RLELossless}


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sr_arrivals(pacs: StoreScp) -> dict[str, datetime]:
    """Study UID -> when storescp finished writing that study's SR."""
    arrivals = {}
    for path in pacs.files():
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, EOFError, OSError):
            continue  # storescp is still writing it
        if ds.SOPClassUID == COMPREHENSIVE_SR:
            arrivals[str(ds.StudyInstanceUID)] = datetime.fromtimestamp(path.stat().st_mtime, UTC)
    return arrivals


def _contract_cost(paths: list[Path], repeats: int = 3) -> tuple[list[float], list[float]]:
    """Milliseconds per view of the worker's input contract and image selection
    (``source_image`` and ``select_images`` on a read dataset), and of reading the file
    alone, side by side on the same files."""
    contract, reading = [], []
    for path in paths:
        for _ in range(repeats):
            started = time.perf_counter()
            ds = pydicom.dcmread(path)
            _ = ds.PixelData
            read = time.perf_counter()
            select_images([source_image(ds)], allow_for_processing=False)
            done = time.perf_counter()
            reading.append(1000 * (read - started))
            contract.append(1000 * (done - read))
    return contract, reading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--studies", type=int, default=10)
    parser.add_argument("--size", default="1024x832", help="image ROWSxCOLS")
    parser.add_argument("--syntax", choices=sorted(SYNTAXES), default="explicit",
                        help="transfer syntax of the pushed images")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda")
    parser.add_argument("--bundle", default=None, help="model bundle (default: packaged)")
    parser.add_argument("--quiet", type=float, default=1.0,
                        help="completion quiet period once the four views are in (s)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)
    rows, cols = (int(v) for v in args.size.lower().split("x"))
    folder = Path(tempfile.mkdtemp(prefix="mmbcd-bench-e2e-"))
    url = f"sqlite:///{folder / 'node.db'}"
    migrate.upgrade(url)
    pacs = StoreScp(ae_title="PACS", port=free_port(), directory=folder / "pacs",
                    log_path=folder / "pacs.log").start()
    settings = {
        "database": {"url": url}, "storage": {"root": str(folder / "storage")},
        "dicom": {"ae_title": "MMBCD", "host": "127.0.0.1", "port": free_port(),
                  "min_free_bytes": 0},
        "hl7": {"host": "127.0.0.1", "port": free_port()},
        "http": {"host": "127.0.0.1", "port": free_port()},
        "completion": {"expected_views_quiet_seconds": args.quiet,
                       "check_interval_seconds": 0.1},
        "worker": {"poll_seconds": 0.05},
        "model": {"device": args.device, **({"bundle": args.bundle} if args.bundle else {})},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1",
                          "port": pacs.port}],
    }
    config_path = folder / "node.toml"
    config_path.write_text(tomli_w.dumps(settings))
    node = RunningNode(config_path=config_path, settings=settings,
                       roles=["dicom", "hl7", "scheduler", "worker", "sender"],
                       log_path=folder / "node.log")
    node.start()
    try:
        wait_until(lambda: "role_started role=worker" in node.log_text(), timeout=300,
                   message="the worker to load the model")
        studies = [make_study(folder / "in", n, rows=rows, cols=cols,
                              transfer_syntax=SYNTAXES[args.syntax])
                   for n in range(args.studies)]
        started = time.monotonic()
        for n, study in enumerate(studies, start=1):
            send_order(node.hl7_port, study)
            push_study(node.dicom_port, study.files)
            wait_until(lambda s=study: s.study_uid in _sr_arrivals(pacs), timeout=600,
                       interval=0.05, message=f"the SR of study {n}")
            print(f"study {n}/{len(studies)} done", file=sys.stderr)
        elapsed = time.monotonic() - started
        arrivals = _sr_arrivals(pacs)
        to_completion, to_last = [], []
        for study in studies:
            (row,) = db_rows(url, Study, Study.study_uid == study.study_uid)
            last = max(_utc(i.received_at) for i in db_rows(url, Instance,
                                                            Instance.study_id == row.id))
            sr_at = arrivals[study.study_uid]
            to_completion.append((sr_at - _utc(row.completed_at)).total_seconds())
            to_last.append((sr_at - last).total_seconds())
    finally:
        node.stop()
        pacs.stop()
    contract, reading = _contract_cost([path for study in studies for path in study.files])
    p = np.percentile
    print(f"studies: {len(studies)} x 4 views {rows}x{cols} {args.syntax}, "
          f"device {args.device}, "
          f"kinds sr+cad_sr+sc+gsps, quiet period {args.quiet:.1f} s")
    print(f"completion-to-SR s: p50 {p(to_completion, 50):.2f}  p95 {p(to_completion, 95):.2f}")
    print(f"last-instance-to-SR s: p50 {p(to_last, 50):.2f}  p95 {p(to_last, 95):.2f}")
    print(f"studies/hour (one at a time): {3600 * len(studies) / elapsed:.0f}")
    print(f"input contract per view ms: p50 {p(contract, 50):.2f} (reading the file, the "
          f"peer: p50 {p(reading, 50):.2f})")
    if args.keep:
        print(f"work folder: {folder}")
    else:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"p95 completion-to-SR s: {p(to_completion, 95):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
