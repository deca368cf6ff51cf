"""The private parts of pynetdicom and highdicom the node builds on, named one by one.

The receiver reads PDUs itself (``receive/transport.py``), receives data sets into its
own files (``receive/incoming.py``) and negotiates contexts itself
(``receive/negotiation.py``); the CAD SR extends highdicom's generic SR document
(``results/cad_report.py``); the SR image libraries translate legacy SNOMED view codes
with pydicom's SNOMED RT to CT table (``results/view_codes.py``). Those libraries are
pinned in ``setup.cfg``; an upgrade that moves any of these parts fails here, in CI, and
not at a hospital.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import pytest

SETUP_CFG = Path(__file__).resolve().parents[1] / "setup.cfg"


@pytest.mark.parametrize("package", ["pynetdicom", "highdicom", "pydicom", "hl7"])
def test_libraries_whose_internals_are_used_are_pinned_to_the_installed_version(package):
    pins = dict(re.findall(r"^\s*([A-Za-z0-9_.-]+)==(\S+)\s*$", SETUP_CFG.read_text(), re.M))
    assert pins.get(package) == version(package)


def _assigns(cls: type, attribute: str) -> bool:
    return f"self.{attribute} =" in inspect.getsource(cls) or \
        f"self.{attribute}:" in inspect.getsource(cls)


def test_pynetdicom_parts_the_receiver_relies_on_are_where_it_expects_them():
    from pynetdicom import _config, acse, dimse_messages
    from pynetdicom.ae import ApplicationEntity
    from pynetdicom.dimse_messages import DIMSEMessage
    from pynetdicom.dul import DULServiceProvider
    from pynetdicom.transport import AssociationSocket, RequestHandler, ThreadedAssociationServer

    assert hasattr(_config, "STORE_RECV_CHUNKED_DATASET")
    assert hasattr(_config, "UNRESTRICTED_STORAGE_SERVICE")
    assert hasattr(dimse_messages, "NamedTemporaryFile")  # replaced by receive_into
    assert callable(acse.negotiate_unrestricted)  # replaced by accept_storage_contexts
    for method in ("_read_pdu_data", "_decode_pdu"):
        assert callable(getattr(DULServiceProvider, method))
    for attribute in ("_kill_thread", "_recv_pdu", "to_provider_queue", "event_queue",
                      "state_machine", "socket"):
        assert _assigns(DULServiceProvider, attribute), attribute
    assert isinstance(DULServiceProvider.assoc, property)
    assert _assigns(AssociationSocket, "_is_connected")
    assert _assigns(DIMSEMessage, "_data_set_file")
    assert callable(RequestHandler._create_association)
    assert callable(ThreadedAssociationServer.process_request_thread)
    assert _assigns(ApplicationEntity, "_servers")


def test_highdicom_generic_sr_document_is_where_the_cad_sr_expects_it():
    from highdicom.sr import ComprehensiveSR
    from highdicom.sr.sop import _SR

    assert issubclass(ComprehensiveSR, _SR)
    assert "sop_class_uid" in inspect.signature(_SR.__init__).parameters


def test_pydicom_snomed_rt_to_ct_table_is_where_the_view_codes_expect_it():
    from pydicom.sr._snomed_dict import mapping

    assert mapping["SRT"]["R-10242"] == "399162004"  # cranio-caudal
    assert mapping["SRT"]["R-10226"] == "399368009"  # medio-lateral oblique


def test_python_hl7_mllp_client_keeps_its_socket_and_encoding_where_the_ris_client_sets_them():
    from hl7.client import MLLPClient

    source = inspect.getsource(MLLPClient)
    assert "self.socket.send" in source and "self.encoding" in source
    assert {"send_message", "close", "__enter__", "__exit__"} <= set(vars(MLLPClient))
