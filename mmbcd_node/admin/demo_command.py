"""``demo``: the whole loop on synthetic studies, as a modality and a RIS would drive it.

Makes N synthetic 4-view studies with their orders (``ml.synth``), pushes the images to
the running node over DICOM (C-STORE) and the orders over MLLP, waits for the results
and prints them beside the synthetic truth.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import typer
from hl7.client import MLLPClient
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, StoragePresentationContexts
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from sqlalchemy import select

from mmbcd_node.admin.context import cli_context
from mmbcd_node.admin.output import emit_records
from mmbcd_node.db.models import Study, StudyState
from mmbcd_node.db.result_models import Result, ResultState

DEMO_AE = "MMBCD-DEMO"
DEMO_COLUMNS = ("accession", "truth", "state", "study", "right", "left", "history", "study_uid")
FINAL = (StudyState.FAILED, StudyState.NOT_ANALYSABLE, StudyState.CANCELLED)


def _probability(value: float | None) -> str | None:
    """A probability as the table prints it: three decimals, trailing zeros kept."""
    return None if value is None else f"{value:.3f}"


def _loopback(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "", "::") else host


def _push_study(paths: list[Path], host: str, port: int, called_ae: str) -> None:
    ae = AE(ae_title=DEMO_AE)
    ae.requested_contexts = [ctx for ctx in StoragePresentationContexts]
    for ctx in ae.requested_contexts:
        ctx.transfer_syntax = [ExplicitVRLittleEndian, ImplicitVRLittleEndian]
    assoc = ae.associate(host, port, ae_title=called_ae)
    if not assoc.is_established:
        raise typer.BadParameter(f"the node's DICOM listener at {host}:{port} refused "
                                 "the association; is `mmbcd-node serve` running?")
    try:
        for path in paths:
            status = assoc.send_c_store(path)
            if int(getattr(status, "Status", -1)) != 0:
                raise RuntimeError(f"C-STORE of {path.name} failed: {status}")
    finally:
        assoc.release()


def _send_order(order: bytes, host: str, port: int) -> None:
    with MLLPClient(host, port) as client:
        ack = client.send_message(order)
    text = ack.decode("latin-1") if isinstance(ack, bytes) else str(ack)
    if "MSA|AA" not in text:
        raise RuntimeError(f"the order was not accepted: {text.strip()!r}")


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(ctx: typer.Context,
             studies: int = typer.Option(3, "--studies", min=1, help="How many studies."),
             seed: int | None = typer.Option(None, help="Same seed, same studies and UIDs "
                                                         "(default: a new seed each run)."),
             size: str = typer.Option("1024x832", help="Image size ROWSxCOLS."),
             timeout: float = typer.Option(600.0, help="Seconds to wait for all results."),
             orders_first: bool = typer.Option(False, "--orders-first",
                                                help="Send each order before its images.")
             ) -> None:
        """Send synthetic studies and orders to the running node; print its results."""
        from ml.synth.generate import generate_dataset
        from ml.synth.study import SynthConfig

        cli = cli_context(ctx)
        config = cli.config
        seed = int(time.time()) if seed is None else seed
        try:
            rows, cols = (int(v) for v in size.lower().split("x"))
        except ValueError:
            raise typer.BadParameter(f"{size!r}: expected ROWSxCOLS") from None
        dicom_host, hl7_host = _loopback(config.dicom.host), _loopback(config.hl7.host)
        with tempfile.TemporaryDirectory(prefix="mmbcd-demo-") as folder, Progress(
                "[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                TimeElapsedColumn()) as bar:
            made = bar.add_task("synthetic studies", total=studies)
            records = generate_dataset(Path(folder), studies, seed,
                                       SynthConfig(sizes=((rows, cols),)),
                                       progress=lambda done: bar.update(made, completed=done))
            sent = bar.add_task("sent to the node", total=studies)
            for record in records:
                assert record.order_path is not None  # synthetic studies have orders
                order = record.order_path.read_bytes()
                if orders_first:
                    _send_order(order, hl7_host, config.hl7.port)
                _push_study([v.path for v in record.views], dicom_host, config.dicom.port,
                            config.dicom.ae_title)
                if not orders_first:
                    _send_order(order, hl7_host, config.hl7.port)
                bar.advance(sent)
            waiting = bar.add_task("results", total=studies)
            uids = [r.study_uid for r in records]
            deadline = time.monotonic() + timeout
            finished: dict[str, tuple[Study | None, Result | None]] = {}
            while len(finished) < len(uids) and time.monotonic() < deadline:
                with cli.sessions() as session:
                    for found, active in session.execute(
                            select(Study, Result).outerjoin(
                                Result, (Result.study_id == Study.id)
                                & (Result.state == ResultState.ACTIVE))
                            .where(Study.study_uid.in_(uids))).all():
                        if active is not None or found.state in FINAL:
                            finished[found.study_uid] = (found, active)
                bar.update(waiting, completed=len(finished))
                time.sleep(0.5)
        table = []
        for record in records:
            study, result = finished.get(record.study_uid, (None, None))
            table.append({
                "accession": record.accession,
                "truth": "malignant" if record.label else "benign",
                "state": study.state if study else "waiting",
                "study": _probability(None if result is None else result.probability),
                "right": _probability(None if result is None else result.right_probability),
                "left": _probability(None if result is None else result.left_probability),
                "history": None if result is None else (
                    ", ".join(json.loads(result.history_sources)) if result.history_used
                    else "none available"),
                "study_uid": record.study_uid})
        emit_records(table, DEMO_COLUMNS, title="Demo results")
        if len(finished) < len(uids):
            typer.echo(f"{len(uids) - len(finished)} studies had no result after {timeout:.0f}s; "
                       "see `mmbcd-node jobs` and `mmbcd-node studies`", err=True)
            raise typer.Exit(1)
