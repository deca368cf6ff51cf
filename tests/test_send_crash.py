"""kill -9 a sender in the middle of a batch: its claims fall due after the lease, not
minutes later, and what the destination already holds is not sent again when the
destination answers C-FIND."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from pydicom import Dataset
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, evt
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    StudyRootQueryRetrieveInformationModelFind,
)
from sqlalchemy import select

from mmbcd_node.config import DestinationConfig, DicomConfig, NodeConfig, StorageConfig
from mmbcd_node.db.models import Study, StudyState
from mmbcd_node.db.result_models import Delivery, DeliveryState
from mmbcd_node.db.session import make_engine, make_sessionmaker
from tests.support.deliveries import stored_outputs
from tests.support.dicom_peers import NODE_AE
from tests.support.node import free_port
from tests.support.pacs import wait_until

LEASE = {"lease_seconds": 2.0, "heartbeat_seconds": 0.5, "poll_seconds": 0.2}


@dataclass
class StallingPacs:
    """A Storage and Query SCP that keeps what it is sent and, once it has stored
    ``stall_after`` objects, holds every further C-STORE unanswered until ``release``:
    the sender is caught between an accepted C-STORE and its record of it."""

    port: int
    stall_after: int
    stored: Counter[str] = field(default_factory=Counter)
    stalled: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    held: dict[str, Dataset] = field(default_factory=dict)

    def on_store(self, event: evt.Event) -> int:
        if sum(self.stored.values()) >= self.stall_after and not self.release.is_set():
            self.stalled.set()
            self.release.wait()
            return 0xA700
        ds = event.dataset
        self.stored[ds.SOPInstanceUID] += 1
        self.held[ds.SOPInstanceUID] = ds
        return 0x0000

    def on_find(self, event: evt.Event) -> Iterator[tuple[int, Dataset | None]]:
        wanted = event.identifier.SOPInstanceUID
        if wanted in self.held:
            match = Dataset()
            match.QueryRetrieveLevel = "IMAGE"
            match.SOPInstanceUID = wanted
            yield 0xFF00, match
        yield 0x0000, None


@pytest.fixture
def stalling_pacs() -> Iterator[StallingPacs]:
    pacs = StallingPacs(port=free_port(), stall_after=1)
    ae = AE(ae_title="PACS")
    for context in AllStoragePresentationContexts:
        ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
    ae.add_supported_context(StudyRootQueryRetrieveInformationModelFind)
    server = ae.start_server(("127.0.0.1", pacs.port), block=False, evt_handlers=[
        (evt.EVT_C_STORE, pacs.on_store), (evt.EVT_C_FIND, pacs.on_find)])
    yield pacs
    pacs.release.set()
    server.shutdown()


@pytest.mark.parametrize("query", [True, False], ids=["query", "no-query"])
def test_a_killed_senders_batch_is_taken_over_after_the_lease(
        node_factory, db_url, tmp_path, stalling_pacs, query: bool) -> None:
    pacs_settings = {"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1",
                     "port": stalling_pacs.port, "backoff_seconds": 0.0,
                     "query_before_resend": query}
    settings = {"worker": LEASE, "destinations": [pacs_settings]}
    config = NodeConfig(storage=StorageConfig(root=tmp_path / "storage"),
                        dicom=DicomConfig(ae_title=NODE_AE),
                        destinations=[DestinationConfig(**pacs_settings)])
    first = node_factory(roles=["sender"], settings=settings, start=False)
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    try:
        study_id, uids = stored_outputs(sessions, config)
        first.start()
        assert stalling_pacs.stalled.wait(60), first.log_text()
        first.kill()  # one object accepted, its outcome never recorded
        with sessions() as session:
            rows = session.execute(select(Delivery)).scalars().all()
            assert {(d.state, d.lease_owner is not None) for d in rows} == {
                (DeliveryState.PENDING, True)}
        stalling_pacs.release.set()

        second = node_factory(roles=["sender"], settings=settings)

        def delivered() -> bool:
            with sessions() as session:
                return session.get(Study, study_id).state == StudyState.DELIVERED

        # Well within the 300 s a hard-coded claim would hold the study back.
        wait_until(delivered, timeout=60, message=f"the study delivered\n{second.log_text()}")
    finally:
        engine.dispose()
    with sessions() as session:
        outcome = [(d.state, d.last_error) for d in session.execute(select(Delivery)).scalars()]
    assert set(stalling_pacs.stored) == set(uids), outcome
    resent = {uid for uid, count in stalling_pacs.stored.items() if count > 1}
    assert resent == (set() if query else {uids[0]}), \
        "with C-FIND only the missing objects go again; without it, at least once"
