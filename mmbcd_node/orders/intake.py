"""Taking one HL7 message in: check, store durably, match, and answer with an ACK.

``OrderIntake.handle`` is what the MLLP listener calls for every framed message. The
``AA`` is built only after the raw message, the orders it carries, the matches and
the audit events are committed in one transaction; a database failure answers ``AR``
so the sender retries, and a content error answers ``AE`` with nothing stored.
Duplicates are keyed on MSH-3 + MSH-4 + MSH-10: the same bytes again get ``AA``
without a second order, different bytes under the same key get ``AE`` 205.
"""

from __future__ import annotations

import hashlib
import json

from sqlalchemy import or_, select, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from mmbcd_node.config import NodeConfig
from mmbcd_node.db.audit import record_event
from mmbcd_node.db.models import utcnow
from mmbcd_node.db.order_models import (
    CANCEL_CONTROLS,
    Hl7Message,
    Order,
    OrderControl,
    OrderMessage,
)
from mmbcd_node.db.session import transaction
from mmbcd_node.logs import get_logger
from mmbcd_node.match.matcher import match_order
from mmbcd_node.orders.ack import build_ack
from mmbcd_node.orders.cancellation import cancel_order_work
from mmbcd_node.orders.errors import (
    APPLICATION_INTERNAL_ERROR,
    DUPLICATE_KEY_IDENTIFIER,
    ErrorLocation,
    Hl7Rejection,
    content_error,
)
from mmbcd_node.orders.mapping import FieldMapping, ParsedOrder, read_orders
from mmbcd_node.orders.message import (
    MessageHeader,
    ParsedMessage,
    parse_order_message,
    peek_header,
)

log = get_logger(__name__)


class OrderIntake:
    """Turns raw HL7 messages into stored orders and acknowledgements."""

    def __init__(self, config: NodeConfig, sessions: sessionmaker[Session]) -> None:
        self.config = config
        self.sessions = sessions
        self.mapping = FieldMapping.from_config(config.hl7.mapping)

    def handle(self, raw: bytes, peer: str | None = None) -> bytes:
        """Process one message (framing removed) and return the ACK bytes to send.

        Never raises: every failure becomes an AE or AR acknowledgement.
        """
        header = peek_header(raw)
        if header is not None and header.fields[1] != "|":
            header = None  # its fields cannot be echoed safely in our ACK
        try:
            message = parse_order_message(raw, self.config.hl7.processing_ids)
            orders = read_orders(message, self.mapping)
            ack_code, note = self._store(raw, message, orders, peer)
            return build_ack(message.header, ack_code, text=note)
        except Hl7Rejection as rejection:
            self._record_rejection(header, rejection, peer)
            return build_ack(header, rejection.ack_code, rejection)
        except SQLAlchemyError as exc:
            log.error("hl7_temporary_failure", control_id=header.control_id if header else "",
                      error=str(exc).splitlines()[0])
            return build_ack(header, "AR", Hl7Rejection(
                "AR", APPLICATION_INTERNAL_ERROR,
                "temporary database failure; resend the message later"))
        except Exception:  # noqa: BLE001 - the sender must always get an answer
            log.exception("hl7_internal_error", control_id=header.control_id if header else "")
            return build_ack(header, "AR", Hl7Rejection(
                "AR", APPLICATION_INTERNAL_ERROR, "internal error; resend the message later"))

    def handle_oversized(self, head: bytes, size: int, peer: str | None = None) -> bytes:
        """The AE for a message longer than ``[hl7] max_message_bytes`` (``head``: its start)."""
        header = peek_header(head)
        if header is not None and header.fields[1] != "|":
            header = None
        limit = self.config.hl7.max_message_bytes
        rejection = content_error(APPLICATION_INTERNAL_ERROR, f"message of at least {size} "
                                  f"bytes exceeds the limit of {limit} bytes "
                                  "(hl7.max_message_bytes)")
        self._record_rejection(header, rejection, peer)
        return build_ack(header, "AE", rejection)

    def _store(self, raw: bytes, message: ParsedMessage, orders: list[ParsedOrder],
               peer: str | None) -> tuple[str, str]:
        try:
            return self._store_once(raw, message, orders, peer)
        except IntegrityError:
            # The same key was committed by a concurrent connection: decide again.
            return self._store_once(raw, message, orders, peer)

    def _store_once(self, raw: bytes, message: ParsedMessage, orders: list[ParsedOrder],
                    peer: str | None) -> tuple[str, str]:
        header = message.header
        digest = hashlib.sha256(raw).hexdigest()
        with transaction(self.sessions) as session:
            previous = session.execute(select(Hl7Message).where(
                Hl7Message.message_key == header.key)).scalar_one_or_none()
            if previous is not None:
                if previous.sha256 != digest:
                    raise content_error(
                        DUPLICATE_KEY_IDENTIFIER, f"message control id {header.control_id} "
                        f"from {header.sending_application}/{header.sending_facility} was "
                        f"already received (message {previous.id}) with different content",
                        ErrorLocation("MSH", 10))
                record_event(session, "hl7_ack_sent", peer_address=peer,
                             detail={"control_id": header.control_id, "ack": "AA",
                                     "duplicate_of": previous.id})
                log.info("hl7_duplicate", control_id=header.control_id, message_id=previous.id)
                return "AA", "duplicate; already accepted"
            stored = Hl7Message(
                message_key=header.key, control_id=header.control_id,
                sending_application=header.sending_application or None,
                sending_facility=header.sending_facility or None,
                message_type=f"{header.message_type}^{header.trigger}", version=header.version,
                charset=header.charset or "ASCII", raw=raw, sha256=digest, ack_code="AA",
                peer_address=peer)
            session.add(stored)
            session.flush()
            for parsed in orders:
                self._apply(session, stored, parsed)
            record_event(session, "hl7_ack_sent", peer_address=peer,
                         detail={"control_id": header.control_id, "ack": "AA",
                                 "message_id": stored.id})
        log.info("hl7_accepted", control_id=header.control_id, message_id=stored.id,
                 orders=len(orders))
        return "AA", ""

    def _apply(self, session: Session, stored: Hl7Message, parsed: ParsedOrder) -> Order:
        _lock_order_key(session, parsed)
        order = _find_order(session, parsed)
        is_new = order is None
        if order is None:
            order = Order(control=parsed.control)
            session.add(order)
        _update_order(order, parsed)
        session.flush()
        session.add(OrderMessage(order_id=order.id, message_id=stored.id, control=parsed.control))
        record_event(session, "order_received", patient_id=parsed.patient_id,
                     accession_number=parsed.accession, study_uid=parsed.study_uid,
                     peer_address=stored.peer_address,
                     detail={"control_id": stored.control_id, "control": parsed.control,
                             "order_id": order.id, "new_order": is_new,
                             "history_fields": [f for f, _ in parsed.history_sources]})
        log.info("order_received", order_id=order.id, control=parsed.control,
                 control_id=stored.control_id, accession=parsed.accession)
        if order.cancelled:
            cancel_order_work(session, order)
        elif parsed.control != OrderControl.STATUS or is_new:
            match_order(session, order, self.config)
        return order

    def _record_rejection(self, header: MessageHeader | None, rejection: Hl7Rejection,
                          peer: str | None) -> None:
        control_id = header.control_id if header else ""
        log.warning("hl7_rejected", control_id=control_id, ack=rejection.ack_code,
                    code=rejection.error_code, error=rejection.text)
        try:
            with transaction(self.sessions) as session:
                record_event(session, "hl7_ack_sent", outcome="failure", peer_address=peer,
                             detail={"control_id": control_id, "ack": rejection.ack_code,
                                     "error_code": rejection.error_code,
                                     "location": str(rejection.location or ""),
                                     "error": rejection.text})
        except SQLAlchemyError:
            log.exception("audit_failed", action="hl7_ack_sent", control_id=control_id)


def _find_order(session: Session, parsed: ParsedOrder) -> Order | None:
    clauses = []
    if parsed.placer_number:
        clauses.append(Order.placer_number == parsed.placer_number)
    if parsed.filler_number:
        clauses.append(Order.filler_number == parsed.filler_number)
    rows = session.execute(select(Order).where(or_(*clauses)).order_by(Order.id)).scalars().all()
    # The placer number identifies the order; the filler number only when no placer matches.
    for row in rows:
        if parsed.placer_number and row.placer_number == parsed.placer_number:
            return row
    return rows[0] if rows else None


def _update_order(order: Order, parsed: ParsedOrder) -> None:
    """Apply a message to the order: identifiers kept unless re-sent, history replaced."""
    order.control = parsed.control
    for attr, value in (("placer_number", parsed.placer_number),
                        ("filler_number", parsed.filler_number),
                        ("accession_number", parsed.accession),
                        ("issuer_of_accession", parsed.accession_issuer),
                        ("study_uid", parsed.study_uid),
                        ("requested_procedure_id", parsed.requested_procedure_id),
                        ("patient_id", parsed.patient_id),
                        ("issuer_of_patient_id", parsed.patient_id_issuer),
                        ("procedure", parsed.procedure),
                        ("priority", parsed.priority),
                        ("order_date", parsed.order_date),
                        ("status", parsed.status),
                        ("patient_identification", parsed.patient_identification),
                        ("procedure_code", parsed.procedure_code)):
        if value is not None:
            setattr(order, attr, value)
    if parsed.control in CANCEL_CONTROLS:
        order.cancelled = True
        order.status = parsed.status or "CA"
    elif parsed.control == OrderControl.NEW:
        order.cancelled = False
    if parsed.control != OrderControl.STATUS and not order.cancelled:
        # NW and XO/XX carry the whole order: the history is replaced, not merged.
        order.reason = parsed.reason
        order.history_text = parsed.history_text
        order.history_sources = json.dumps(parsed.history_sources, ensure_ascii=False)
    order.updated_at = utcnow()


def _lock_order_key(session: Session, parsed: ParsedOrder) -> None:
    # Two connections carrying the same order must not both create it (PostgreSQL;
    # SQLite transactions are already serialised by BEGIN IMMEDIATE).
    if session.get_bind().dialect.name != "postgresql":
        return
    key = parsed.placer_number or parsed.filler_number or ""
    number = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)
    session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": number})
