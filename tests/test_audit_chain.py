"""``mmbcd-node audit verify`` finds a row edited or deleted directly in SQL."""

from __future__ import annotations

from sqlalchemy import text

from mmbcd_node.db.audit import record_event
from mmbcd_node.db.session import make_engine, make_sessionmaker, transaction


def write_events(db_url: str, count: int) -> None:
    engine = make_engine(db_url)
    sessions = make_sessionmaker(engine)
    for index in range(count):
        with transaction(sessions) as session:
            record_event(session, "instance_stored", calling_ae="MODALITY",
                         study_uid=f"1.2.3.{index}", detail={"n": index})
    engine.dispose()


def test_audit_verify_names_the_row_edited_in_sql(node_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(start=False)
    write_events(db_url, 5)
    intact = node.cli("audit", "verify", check=False)
    assert intact.returncode == 0 and "5 rows verified" in intact.stdout

    engine = make_engine(db_url)
    with engine.begin() as conn:
        third = conn.execute(text("SELECT id FROM audit_events ORDER BY id LIMIT 1 OFFSET 2"))
        row_id = third.scalar_one()
        conn.execute(text("UPDATE audit_events SET calling_ae = 'INTRUDER' WHERE id = :id"),
                     {"id": row_id})
    engine.dispose()
    broken = node.cli("audit", "verify", check=False)
    assert broken.returncode == 1
    assert f"row {row_id}" in broken.stderr and "2 rows before it verified" in broken.stderr


def test_audit_verify_notices_a_deleted_row(node_factory, db_url: str) -> None:  # type: ignore[no-untyped-def]
    node = node_factory(start=False)
    write_events(db_url, 4)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(text("SELECT id FROM audit_events ORDER BY id"))]
        conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": ids[1]})
    engine.dispose()
    broken = node.cli("audit", "verify", check=False)
    assert broken.returncode == 1 and f"row {ids[2]}" in broken.stderr
