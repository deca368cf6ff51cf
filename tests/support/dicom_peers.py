"""Real DICOM peers for tests: dcmtk ``storescu``/``echoscu`` and a pynetdicom SCU.

dcmtk runs with ``TCP_NODELAY=1`` (dcmtk 3.6.7 otherwise leaves Nagle's algorithm on).
``storescu`` needs the matching ``-x?`` option to send a compressed file as it is.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import tomli_w
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, _config
from sqlalchemy import select

from mmbcd_node.db import migrate
from mmbcd_node.db.session import make_engine, make_sessionmaker
from tests.support.databases import create_pg_database, drop_pg_database
from tests.support.node import NODE_AE, RunningNode, deep_merge, loopback_settings

DCMTK_ENV = {**os.environ, "TCP_NODELAY": "1"}

# storescu options proposing exactly the file's transfer syntax.
STORESCU_SYNTAX_OPTIONS = {
    ImplicitVRLittleEndian: ["-xi"],
    ExplicitVRLittleEndian: ["-xe"],
    ExplicitVRBigEndian: ["-xb"],  # proposes little endian too, and converts to it
    DeflatedExplicitVRLittleEndian: ["-xd"],
    RLELossless: ["-R", "-xr"],
    JPEGLSLossless: ["-R", "-xt"],
    JPEG2000Lossless: ["-R", "-xv"],
    JPEG2000: ["-R", "-xw"],
    JPEGLosslessSV1: ["-R", "-xs"],
}


def storescu(port: int, files: Sequence[Path], *, options: Sequence[str] = (),
             calling_ae: str = "STORESCU", called_ae: str = NODE_AE,
             host: str = "127.0.0.1", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Send ``files`` in one association; returns the finished process (not checked)."""
    return subprocess.run(
        ["storescu", "-v", "-aet", calling_ae, "-aec", called_ae, *options, host, str(port),
         *map(str, files)], capture_output=True, text=True, timeout=timeout, env=DCMTK_ENV)


def echoscu(port: int, *, calling_ae: str = "ECHOSCU", called_ae: str = NODE_AE,
            options: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """One C-ECHO; returncode 0 when the association was accepted and echo answered."""
    return subprocess.run(
        ["echoscu", "-v", "-aet", calling_ae, "-aec", called_ae, *options, "127.0.0.1",
         str(port)], capture_output=True, text=True, timeout=60, env=DCMTK_ENV)


def pynetdicom_store(port: int, path: Path, *, calling_ae: str = "PYSCU",
                     called_ae: str = NODE_AE) -> int:
    """Send the file at ``path`` byte for byte (no re-encoding) and return the C-STORE status.

    Proposes the file's SOP class and transfer syntax only (what storescu cannot do for
    HTJ2K or private classes). Raises ``ConnectionError`` when the association fails.
    """
    from pydicom.filereader import read_file_meta_info

    meta = read_file_meta_info(path)  # the data set is sent unparsed, whatever it holds
    ae = AE(ae_title=calling_ae)
    ae.add_requested_context(meta.MediaStorageSOPClassUID, meta.TransferSyntaxUID)
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=called_ae)
        if not assoc.is_established:
            raise ConnectionError("association was not established")
        try:
            status = assoc.send_c_store(path)
        finally:
            assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    if "Status" not in status:
        raise ConnectionError("no C-STORE response")
    return int(status.Status)


@contextmanager
def module_node(kind: str, folder: Path, roles: Sequence[str] = ("dicom",),
                settings: dict[str, Any] | None = None) -> Iterator[RunningNode]:
    """A node on a fresh database of ``kind`` (sqlite/postgresql) shared by a test module.

    Starting the node costs seconds, so tests that only add uniquely identified
    objects share one; each test then looks only at its own UIDs.
    """
    url = f"sqlite:///{folder / 'node.db'}" if kind == "sqlite" else create_pg_database()
    try:
        migrate.upgrade(url)
        merged = deep_merge(loopback_settings(url, folder / "storage"), settings or {})
        config_path = folder / "node.toml"
        config_path.write_text(tomli_w.dumps(merged))
        node = RunningNode(config_path=config_path, settings=merged, roles=list(roles),
                           log_path=folder / "node.log")
        node.start()
        try:
            yield node
        finally:
            node.stop()
    finally:
        if kind != "sqlite":
            drop_pg_database(url)


def db_rows(db_url: str, model: Any, *criteria: Any) -> list[Any]:
    """All rows of ``model`` matching ``criteria`` (SQLAlchemy expressions), by id."""
    engine = make_engine(db_url)
    try:
        with make_sessionmaker(engine)() as session:
            return list(session.execute(
                select(model).where(*criteria).order_by(model.id)).scalars().all())
    finally:
        engine.dispose()
