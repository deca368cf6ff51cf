"""Sending results to PACS: C-STORE with retries, per-destination tracking, storage commitment."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, RLELossless
from pynetdicom import AE
from sqlalchemy import select

from mmbcd_node.config import (
    ClientTlsConfig,
    DestinationConfig,
    DicomConfig,
    NodeConfig,
    StorageConfig,
)
from mmbcd_node.db.models import AuditEvent, Study, StudyState
from mmbcd_node.db.result_models import (
    CommitmentState,
    Delivery,
    DeliveryState,
    OutputObject,
    Result,
)
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction
from mmbcd_node.results.rejection_note import RejectionReason
from mmbcd_node.send.commitment import bind_commitment_reports
from mmbcd_node.send.deliveries import claim_due_deliveries, extend_claims, mark_sent
from mmbcd_node.send.sender import Sender
from mmbcd_node.send.store_scu import DestinationUnavailable, echo
from mmbcd_node.work.withdrawal import withdraw_result
from tests.support.certificates import issue, make_ca
from tests.support.deliveries import stored_outputs
from tests.support.dicom_peers import pynetdicom_store
from tests.support.node import free_port
from tests.support.pacs import wait_until

NODE_AE = "MMBCD"


@pytest.fixture
def sessions(db_url: str):
    engine = make_engine(db_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def node_config(tmp_path: Path, *destinations: DestinationConfig) -> NodeConfig:
    return NodeConfig(storage=StorageConfig(root=tmp_path / "storage"),
                      dicom=DicomConfig(ae_title=NODE_AE, acse_timeout=5, dimse_timeout=10,
                                        network_timeout=10),
                      destinations=list(destinations))


def destination(name: str, port: int, ae_title: str = "PACS", **kw) -> DestinationConfig:
    return DestinationConfig(name=name, ae_title=ae_title, host="127.0.0.1", port=port,
                             backoff_seconds=0.0, **kw)


def deliveries(sessions) -> list[Delivery]:
    with sessions() as session:
        return list(session.execute(select(Delivery).order_by(Delivery.id)).scalars())


def study_state(sessions, study_id: int) -> str:
    with sessions() as session:
        return session.get(Study, study_id).state


def test_each_output_reaches_the_pacs_once_and_the_study_becomes_delivered(
        sessions, tmp_path, storescp_factory) -> None:
    pacs = storescp_factory()
    config = node_config(tmp_path, destination("pacs", pacs.port))
    study_id, uids = stored_outputs(sessions, config)
    sender = Sender(config, sessions)
    assert sender.send_due() == 3
    assert sorted(pacs.received_uids()) == sorted(uids)
    assert {d.state for d in deliveries(sessions)} == {DeliveryState.SENT}
    assert study_state(sessions, study_id) == StudyState.DELIVERED
    assert sender.send_due() == 0, "nothing is sent again"
    assert len(pacs.files()) == 3


def test_a_pacs_that_accepts_only_uncompressed_images_gets_the_rle_one_decompressed(
        sessions, tmp_path, storescp_factory) -> None:
    pacs = storescp_factory(accept_compressed=False)  # storescp's default contexts
    config = node_config(tmp_path, destination("pacs", pacs.port))
    study_id, uids = stored_outputs(sessions, config)
    assert Sender(config, sessions).send_due() == 3
    assert sorted(pacs.received_uids()) == sorted(uids)
    assert study_state(sessions, study_id) == StudyState.DELIVERED
    received = {str(ds.SOPInstanceUID): ds for ds in pacs.received()}
    with sessions() as session:
        rle = session.execute(select(OutputObject).where(OutputObject.kind == "sc")).scalar_one()
    original = dcmread(config.storage.root / rle.path)
    assert original.file_meta.TransferSyntaxUID == RLELossless
    sent = received[rle.sop_instance_uid]
    assert sent.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
    assert np.array_equal(sent.pixel_array, original.pixel_array)


def test_destination_kinds_choose_which_outputs_it_gets(sessions, tmp_path,
                                                         storescp_factory) -> None:
    pacs, workstation = storescp_factory(), storescp_factory("WS")
    config = node_config(tmp_path, destination("pacs", pacs.port),
                         destination("ws", workstation.port, ae_title="WS", kinds=["cad_sr"]))
    _, uids = stored_outputs(sessions, config)
    Sender(config, sessions).send_due()
    assert sorted(pacs.received_uids()) == sorted(uids)
    assert workstation.received_uids() == [uids[0]], "only the CAD SR goes to the workstation"


def test_pacs_down_then_up_gets_every_object_exactly_once(sessions, tmp_path,
                                                          storescp_factory) -> None:
    pacs = storescp_factory(start=False)
    config = node_config(tmp_path, destination("pacs", pacs.port))
    study_id, uids = stored_outputs(sessions, config)
    sender = Sender(config, sessions)
    assert sender.send_due() == 3
    down = deliveries(sessions)
    assert {d.state for d in down} == {DeliveryState.PENDING}
    assert all(d.attempts == 1 and "association" in (d.last_error or "") for d in down)
    assert study_state(sessions, study_id) == StudyState.DONE
    pacs.start()
    assert sender.send_due() == 3
    assert sender.send_due() == 0
    assert sorted(pacs.received_uids()) == sorted(uids), "each object arrives exactly once"
    assert {d.state for d in deliveries(sessions)} == {DeliveryState.SENT}
    assert study_state(sessions, study_id) == StudyState.DELIVERED


def test_delivery_fails_for_good_after_its_attempts_with_the_error_kept(
        sessions, tmp_path) -> None:
    config = node_config(tmp_path, destination("pacs", free_port(), max_attempts=2))
    stored_outputs(sessions, config, kinds=("cad_sr",))
    sender = Sender(config, sessions)
    sender.send_due()
    sender.send_due()
    (failed,) = deliveries(sessions)
    assert failed.state == DeliveryState.FAILED
    assert failed.attempts == 2
    assert "association with pacs" in failed.last_error
    assert sender.send_due() == 0


def test_missing_output_file_fails_its_delivery_without_blocking_the_others(
        sessions, tmp_path, storescp_factory) -> None:
    pacs = storescp_factory()
    config = node_config(tmp_path, destination("pacs", pacs.port))
    _, uids = stored_outputs(sessions, config)
    with sessions() as session:
        gone = session.execute(select(OutputObject).where(
            OutputObject.sop_instance_uid == uids[1])).scalar_one()
    (config.storage.root / gone.path).unlink()
    Sender(config, sessions).send_due()
    assert sorted(pacs.received_uids()) == sorted([uids[0], uids[2]])
    states = {d.output_id: (d.state, d.last_error) for d in deliveries(sessions)}
    assert states[gone.id] == (DeliveryState.FAILED, "output file missing from storage")


def test_echo_checks_a_destination(tmp_path, storescp_factory) -> None:
    pacs = storescp_factory()
    dicom = node_config(tmp_path).dicom
    assert echo(destination("pacs", pacs.port), dicom) == 0
    pacs.stop()
    with pytest.raises(DestinationUnavailable, match="pacs"):
        echo(destination("pacs", pacs.port), dicom)


def test_storage_commitment_with_orthanc_keeps_state_until_committed(
        sessions, tmp_path, orthanc_factory) -> None:
    # The node's DICOM listener, with the commitment-report handler the DICOM role binds.
    listener_port = free_port()
    ae = AE(ae_title=NODE_AE)
    handlers = bind_commitment_reports(ae, sessions)
    server = ae.start_server(("127.0.0.1", listener_port), block=False, evt_handlers=handlers)
    try:
        pacs = orthanc_factory(node_ae=NODE_AE, node_port=listener_port)
        config = node_config(tmp_path, destination("pacs", pacs.port, ae_title="ORTHANC",
                                                   storage_commitment=True))
        study_id, uids = stored_outputs(sessions, config)
        Sender(config, sessions).send_due()
        assert pacs.sop_instance_uids() == set(uids)
        wait_until(lambda: {d.state for d in deliveries(sessions)} == {DeliveryState.COMMITTED},
                   timeout=30, message="the commitment report")
    finally:
        server.shutdown()
    rows = deliveries(sessions)
    assert {d.commitment_state for d in rows} == {CommitmentState.COMMITTED}
    assert len({d.commitment_transaction_uid for d in rows}) == 1
    assert all(d.committed_at is not None for d in rows)
    assert study_state(sessions, study_id) == StudyState.DELIVERED


def test_without_a_commitment_report_the_study_waits_and_the_object_is_sent_again(
        sessions, tmp_path, orthanc_factory) -> None:
    # No listener: Orthanc's report cannot reach the node, so nothing is committed.
    pacs = orthanc_factory(node_ae=NODE_AE, node_port=free_port())
    config = node_config(tmp_path, destination("pacs", pacs.port, ae_title="ORTHANC",
                                               storage_commitment=True,
                                               commitment_timeout_seconds=1.0))
    study_id, _ = stored_outputs(sessions, config, kinds=("cad_sr",))
    sender = Sender(config, sessions)
    sender.send_due()
    (row,) = deliveries(sessions)
    assert (row.state, row.commitment_state) == (DeliveryState.SENT, CommitmentState.REQUESTED)
    assert study_state(sessions, study_id) == StudyState.DONE
    assert sender.send_due() == 0, "not before the commitment timeout"
    wait_until(lambda: sender.send_due() == 1, timeout=20, interval=0.05,
               message="the delivery sent again after its commitment timeout, with a new "
                       "commitment request")
    (again,) = deliveries(sessions)
    assert (again.state, again.attempts) == (DeliveryState.SENT, 2)
    assert again.commitment_state == CommitmentState.REQUESTED
    assert again.commitment_transaction_uid != row.commitment_transaction_uid


def test_withdrawal_names_objects_in_flight_and_never_sends_the_unsent_ones(
        sessions, tmp_path) -> None:
    config = node_config(tmp_path, destination("pacs", free_port()))
    study_id, uids = stored_outputs(sessions, config)
    with transaction(sessions) as session:
        (in_flight,) = claim_due_deliveries(session, "sender-1", 120.0, limit=1)
    with transaction(sessions) as session:
        result = session.execute(select(Result)).scalar_one()
        note = withdraw_result(session, config, result, session.get(Study, study_id),
                               RejectionReason.SUPERSEDED)
        assert note is not None
    rejected = [item.ReferencedSOPInstanceUID
                for series in dcmread(config.storage.root / note.path)
                .CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
                for item in series.ReferencedSOPSequence]
    assert rejected == [in_flight.sop_instance_uid] == [uids[0]]
    states = {d.output_id: (d.state, d.last_error) for d in deliveries(sessions)}
    assert sorted(states.values(), key=str) == sorted(
        [(DeliveryState.PENDING, None), (DeliveryState.PENDING, None),
         (DeliveryState.FAILED, "withdrawn before it was sent"),
         (DeliveryState.FAILED, "withdrawn before it was sent")], key=str)
    with transaction(sessions) as session:
        due = claim_due_deliveries(session, "sender-2", 120.0)
    assert [d.sop_instance_uid for d in due] == [note.sop_instance_uid], \
        "only the rejection note is due; the withdrawn objects never go out"


def test_a_claim_runs_out_after_the_lease_unless_renewed_and_a_lost_claim_records_nothing(
        sessions, tmp_path) -> None:
    config = node_config(tmp_path, destination("pacs", free_port()))
    stored_outputs(sessions, config, kinds=("cad_sr",))
    start = datetime.now(UTC)

    def claim(owner: str, seconds: float) -> list:
        with transaction(sessions) as session:
            return claim_due_deliveries(session, owner, 10.0,
                                        now=start + timedelta(seconds=seconds))

    (first,) = claim("sender-1", 0)
    assert not first.interrupted
    assert claim("sender-2", 9) == [], "held within the lease"
    with transaction(sessions) as session:
        assert extend_claims(session, "sender-1", [first.id], 10.0,
                             now=start + timedelta(seconds=8)) == 1
    assert claim("sender-2", 17) == [], "held within the renewed lease"
    (taken,) = claim("sender-2", 19)
    assert taken.id == first.id and taken.interrupted, "the dead claim's outcome is unknown"
    with transaction(sessions) as session:
        assert extend_claims(session, "sender-1", [first.id], 10.0) == 0
        assert not mark_sent(session, first.id, "sender-1"), "a lost claim records nothing"
        assert mark_sent(session, first.id, "sender-2")
    (row,) = deliveries(sessions)
    assert (row.state, row.attempts, row.lease_owner) == (DeliveryState.SENT, 1, None)


@pytest.mark.parametrize("query", [True, False], ids=["query", "no-query"])
def test_an_interrupted_delivery_is_looked_up_at_orthanc_before_it_is_sent_again(
        sessions, tmp_path, orthanc_factory, query: bool) -> None:
    pacs = orthanc_factory(node_ae=NODE_AE, node_port=free_port())
    config = node_config(tmp_path, destination("pacs", pacs.port, ae_title="ORTHANC",
                                               query_before_resend=query))
    study_id, uids = stored_outputs(sessions, config)
    # A sender claimed all three, stored the first, and died before recording anything;
    # its lease (0 s here) has run out.
    with transaction(sessions) as session:
        claimed = claim_due_deliveries(session, "dead-sender", 0.0)
        first = config.storage.root / session.execute(
            select(OutputObject.path).where(OutputObject.sop_instance_uid == uids[0])
        ).scalar_one()
    assert len(claimed) == 3
    assert pynetdicom_store(pacs.port, first, calling_ae=NODE_AE, called_ae="ORTHANC") == 0
    assert Sender(config, sessions).send_due() == 3
    assert pacs.sop_instance_uids() == set(uids)
    assert {d.state for d in deliveries(sessions)} == {DeliveryState.SENT}
    assert study_state(sessions, study_id) == StudyState.DELIVERED
    with sessions() as session:
        (event,) = session.execute(select(AuditEvent).where(
            AuditEvent.action == "results_sent")).scalars()
    detail = json.loads(event.detail)
    assert (detail["sent"], detail["already_there"]) == (3, 1 if query else 0)


@pytest.fixture(scope="module")
def hospital_pki(tmp_path_factory) -> dict[str, tuple[Path, Path]]:  # type: ignore[no-untyped-def]
    folder = tmp_path_factory.mktemp("pki")
    ca = make_ca(folder)
    other = make_ca(folder, "Another CA")
    return {"ca": ca, "pacs": issue(folder, "pacs", ca), "node": issue(folder, "node", ca),
            "stranger": issue(folder, "stranger", other)}


def test_results_reach_a_tls_pacs_that_verifies_the_node_and_is_verified(
        sessions, tmp_path, storescp_factory, hospital_pki) -> None:  # type: ignore[no-untyped-def]
    ca = hospital_pki["ca"][0]
    cert, key = hospital_pki["pacs"]
    pacs = storescp_factory(tls=(key, cert, ca))  # dcmtk storescp +tls, peer cert required
    node_cert, node_key = hospital_pki["node"]
    secure = destination("pacs", pacs.port, tls=ClientTlsConfig(
        enabled=True, ca=ca, cert=node_cert, key=node_key))
    config = node_config(tmp_path, secure)
    study_id, uids = stored_outputs(sessions, config)
    assert Sender(config, sessions).send_due() == 3
    assert sorted(pacs.received_uids()) == sorted(uids)
    assert study_state(sessions, study_id) == StudyState.DELIVERED


@pytest.mark.parametrize("who", ["without a certificate", "with another CA's certificate"])
def test_a_tls_pacs_refuses_a_node_it_cannot_verify_and_nothing_is_marked_sent(
        sessions, tmp_path, storescp_factory, hospital_pki, who) -> None:  # type: ignore[no-untyped-def]
    ca = hospital_pki["ca"][0]
    cert, key = hospital_pki["pacs"]
    pacs = storescp_factory(tls=(key, cert, ca))
    presented = {} if who == "without a certificate" else dict(
        zip(("cert", "key"), hospital_pki["stranger"], strict=True))
    config = node_config(tmp_path, destination("pacs", pacs.port, tls=ClientTlsConfig(
        enabled=True, ca=ca, **presented)))
    stored_outputs(sessions, config)
    Sender(config, sessions).send_due()
    assert pacs.received_uids() == []
    assert {d.state for d in deliveries(sessions)} == {DeliveryState.PENDING}
    assert all(d.last_error for d in deliveries(sessions))
