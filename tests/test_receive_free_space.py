"""Free space is checked before each object is kept, not only when an association starts."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.models import Instance
from mmbcd_node.db.session import make_engine, make_sessionmaker
from mmbcd_node.receive.catalogue import Peer
from mmbcd_node.receive.header import StorageFailure
from mmbcd_node.receive.store import InstanceStore
from tests.support.mammo import make_mammogram, write_mammogram

PEER = Peer(calling_ae="MODALITY", called_ae="MMBCD", address="127.0.0.1")


@pytest.fixture
def sessions(db_url: str):
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_object_arriving_below_the_free_space_floor_is_refused_and_not_kept(
        sessions: sessionmaker[Session], tmp_path: Path) -> None:
    # The disk fills during one long push: 3 GB free, then 0.5 GB, floor 1 GB.
    free = iter([3_000_000_000, 500_000_000])
    store = InstanceStore(tmp_path / "storage", NodeConfig().dicom.uid_root, sessions,
                          min_free_bytes=1_000_000_000, free_space=lambda root: next(free))
    outcomes = []
    for n, view in enumerate(("CC", "MLO")):
        ds = make_mammogram(rows=64, cols=48, view=view, seed=n)
        path = write_mammogram(tmp_path / "in" / f"{n}.dcm", ds)
        try:
            store.receive(path, sop_class_uid=ds.SOPClassUID,
                          sop_instance_uid=ds.SOPInstanceUID, peer=PEER)
            outcomes.append("stored")
        except StorageFailure as exc:
            assert exc.status == 0xA700 and "min_free_bytes" in str(exc)
            outcomes.append("refused")
    assert outcomes == ["stored", "refused"]
    with sessions() as session:
        assert len(session.execute(select(Instance)).scalars().all()) == 1
    stored = [p for p in (tmp_path / "storage").rglob("*.dcm")]
    assert len(stored) == 1
