"""Nothing acknowledged is lost: kill -9 the node in the middle of a storescu push."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from mmbcd_node.db.models import Instance
from tests.support.dicom_peers import DCMTK_ENV, NODE_AE, db_rows, storescu
from tests.support.mammo import make_mammogram, write_mammogram

COUNT = 50
KILL_AFTER = 10


def push_until_killed(node, files: list[Path]) -> set[str]:  # type: ignore[no-untyped-def]
    """Push ``files`` with storescu, kill -9 the node after KILL_AFTER successes; return the
    paths storescu was told were stored."""
    process = subprocess.Popen(
        ["storescu", "-v", "-aet", "STORESCU", "-aec", NODE_AE, "127.0.0.1",
         str(node.dicom_port), *map(str, files)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=DCMTK_ENV)
    assert process.stderr is not None
    acknowledged: set[str] = set()
    current: str | None = None
    for line in process.stderr:
        if line.startswith("I: Sending file: "):
            current = line.removeprefix("I: Sending file: ").strip()
        elif "Received Store Response (Success)" in line and current is not None:
            acknowledged.add(current)
            if len(acknowledged) == KILL_AFTER:
                node.kill()
    process.wait(timeout=60)
    return acknowledged


def test_kill_9_mid_push_loses_no_acknowledged_instance(node_factory,
                                                        tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(roles=["dicom"])
    study_uid = generate_uid()
    sources: dict[str, pydicom.Dataset] = {}
    for index in range(COUNT):
        ds = make_mammogram(study_uid=study_uid, rows=512, cols=416, seed=index,
                            InstanceNumber=index + 1)
        path = write_mammogram(tmp_path / "push" / f"{index:02d}.dcm", ds)
        sources[str(path)] = ds

    acknowledged = push_until_killed(node, list(map(Path, sources)))
    assert KILL_AFTER <= len(acknowledged) < COUNT, "the node must die in mid-push"

    node.start()
    instances = {i.sop_instance_uid: i for i in db_rows(node.db_url, Instance)}
    for path in acknowledged:
        ds = sources[path]
        instance = instances[ds.SOPInstanceUID]
        stored = pydicom.dcmread(node.storage_root / instance.path)
        assert np.array_equal(stored.pixel_array,
                              np.frombuffer(ds.PixelData, np.uint16).reshape(512, 416))
    # No partial file anywhere: .incoming was cleared, and every file left is whole.
    assert [p for p in (node.storage_root / ".incoming").rglob("*") if p.is_file()] == []
    for file in (node.storage_root / study_uid).rglob("*"):
        if file.is_file():
            assert file.suffix == ".dcm"
            assert pydicom.dcmread(file).pixel_array.shape == (512, 416)
    # The sender simply sends again: everything is stored exactly once.
    again = storescu(node.dicom_port, list(map(Path, sources)))
    assert again.returncode == 0, again.stderr
    assert len(db_rows(node.db_url, Instance)) == COUNT
