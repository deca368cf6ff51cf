"""Every header variant a real site sends ends in a result or a precise reason.

The corpus (``tests/support/header_variants.py``) goes through the whole node: each
study is sent with dcmtk ``storescu``, the node runs without orders (history: none),
and its results go to a ``storescp`` PACS. A variant expected to give a result must
arrive as an SR, CAD SR, Secondary Captures and presentation states that ``dciodvfy``
accepts, saying which images were not analysed and which views are missing; the others
must end in their state after exactly one attempt, with a reason naming the attribute.
Runs on SQLite and, when ``MMBCD_TEST_PG_URL`` is set, on PostgreSQL.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from mmbcd_node.db import migrate
from mmbcd_node.db.models import Job, Study
from mmbcd_node.images.image_selection import select_images
from mmbcd_node.images.source_image import ImageRejected, source_image
from tests.support.databases import PG_URL_ENV, create_pg_database, drop_pg_database
from tests.support.dicom_peers import (
    STORESCU_SYNTAX_OPTIONS,
    db_rows,
    pynetdicom_store,
    storescu,
)
from tests.support.dicom_validation import assert_sr_template, dciodvfy_errors
from tests.support.header_variants import Variant, corpus, write_corpus
from tests.support.pacs import wait_until

COMPREHENSIVE_SR = "1.2.840.10008.5.1.4.1.1.88.33"
CAD_SR = "1.2.840.10008.5.1.4.1.1.88.50"
FINAL = {"result": "delivered", "not_analysable": "not_analysable", "failed": "failed"}


def sr_texts(ds: pydicom.Dataset) -> list[str]:
    """Every TEXT value of an SR tree, and every algorithm parameter."""
    found = []
    for item in ds.get("ContentSequence", []):
        if item.get("ValueType") == "TEXT":
            found.append(str(item.TextValue))
        found += sr_texts(item)
    return found


def test_each_variant_passes_the_input_contract_or_is_rejected_naming_the_attribute(
        tmp_path: Path) -> None:
    variants = corpus()
    write_corpus(tmp_path, variants)
    for variant in variants:
        try:
            images = [source_image(pydicom.dcmread(path)) for path in variant.files]
        except ImageRejected as exc:
            assert variant.outcome == "failed" and variant.reason in str(exc), variant.name
            continue
        selection = select_images(images, allow_for_processing=False)
        assert len(selection.not_analysed) == variant.not_analysed, \
            (variant.name, selection.not_analysed)
        assert tuple(selection.missing) == (variant.missing if selection.analysed else
                                            ("R CC", "R MLO", "L CC", "L MLO")), variant.name
        assert bool(selection.analysed) == (variant.outcome != "not_analysable"), variant.name
        for image in selection.analysed:
            assert image.laterality and image.view in ("CC", "MLO"), variant.name
            assert (image.spacing is None) == variant.spacing_unknown, variant.name


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'node.db'}"
        migrate.upgrade(url)
        yield url
        return
    if not os.environ.get(PG_URL_ENV):
        pytest.skip(f"{PG_URL_ENV} is not set")
    url = create_pg_database()
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop_pg_database(url)


@pytest.mark.slow
def test_every_header_variant_ends_in_a_result_at_the_pacs_or_its_reason_after_one_attempt(
        node_factory, storescp_factory, tmp_path: Path, db_url: str) -> None:
    pacs = storescp_factory()
    node = node_factory(roles=["dicom", "scheduler", "worker", "sender"], settings={
        "completion": {"quiet_seconds": 3.0},
        "orders": {"wait_seconds": 0.5, "no_order_policy": "run_without_history",
                   "check_interval_seconds": 0.2},
        "worker": {"poll_seconds": 0.2, "heartbeat_seconds": 1.0, "backoff_seconds": 0.5,
                   "batch_size": 2},
        "model": {"device": "cpu"},
        "results": {"kinds": ["sr", "cad_sr", "sc", "gsps"]},
        "destinations": [{"name": "pacs", "ae_title": "PACS", "host": "127.0.0.1",
                          "port": pacs.port, "backoff_seconds": 0.5}],
    })
    variants = corpus()
    write_corpus(tmp_path / "in", variants)
    for variant in variants:
        send_variant(node.dicom_port, variant)

    def states() -> dict[str, Study]:
        return {s.study_uid: s for s in db_rows(db_url, Study)}

    def finished() -> bool:
        now = states()
        return all(now.get(v.study_uid) is not None and
                   now[v.study_uid].state == FINAL[v.outcome] for v in variants)

    wait_until(finished, timeout=900, interval=1.0,
               message=f"every variant in its final state; node log:\n{node.log_text()[-3000:]}")
    received: dict[str, list[tuple[Path, pydicom.Dataset]]] = defaultdict(list)
    for path in pacs.files():
        ds = pydicom.dcmread(path)
        received[str(ds.StudyInstanceUID)].append((path, ds))
    studies = states()
    validate = request_validation(db_url)
    for variant in variants:
        study = studies[variant.study_uid]
        jobs = db_rows(db_url, Job, Job.study_id == study.id)
        objects = received.get(variant.study_uid, [])
        if variant.outcome != "result":
            assert [job.attempts for job in jobs] == [1], (variant.name, "one attempt only")
            assert variant.reason in (study.state_reason or ""), (variant.name,
                                                                  study.state_reason)
            if variant.outcome == "failed":
                assert objects == [], variant.name
                continue
            # Not analysable: the reading workstation learns it from a CAD SR saying so.
            ((path, cad),) = objects
            assert str(cad.SOPClassUID) == CAD_SR, variant.name
            statuses = {item.ConceptCodeSequence[0].CodeValue for item in cad.ContentSequence
                        if item.ConceptNameCodeSequence[0].CodeValue in ("111064", "111065")}
            assert statuses == {"111225"}, (variant.name, "Not Attempted")
            if validate:
                assert dciodvfy_errors(path) == [], (variant.name, path.name)
                assert_sr_template(cad, headers_of(variant))
            continue
        by_class = defaultdict(list)
        for path, ds in objects:
            by_class[str(ds.SOPClassUID)].append((path, ds))
        (sr,) = (ds for _, ds in by_class[COMPREHENSIVE_SR])
        (cad,) = (ds for _, ds in by_class[CAD_SR])
        texts = sr_texts(sr)
        assert sum("not analysed:" in t for t in texts) == variant.not_analysed, variant.name
        assert [t for t in texts if t.startswith("missing view:")] == \
            [f"missing view: {label}" for label in variant.missing], variant.name
        assert any("pixel spacing unknown" in t for t in texts) == variant.spacing_unknown
        # The CAD SR repeats its algorithm identification in every finding: count lines once.
        assert len({t for t in sr_texts(cad) if t.startswith("input=not analysed:")}) == \
            variant.not_analysed, variant.name
        if validate:
            for path, _ in objects:
                assert dciodvfy_errors(path) == [], (variant.name, path.name)
            for document in (sr, cad):
                assert_sr_template(document, headers_of(variant))


def headers_of(variant: Variant) -> list[pydicom.Dataset]:
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in variant.files]


def send_variant(port: int, variant: Variant) -> None:
    """Send the study as a modality would: dcmtk ``storescu``, one association per transfer
    syntax; pynetdicom byte for byte where storescu cannot propose the syntax (HTJ2K)."""
    by_syntax: dict[str, list[Path]] = defaultdict(list)
    for image, path in zip(variant.images, variant.files, strict=True):
        by_syntax[str(image.syntax)].append(path)
    for syntax, paths in by_syntax.items():
        if syntax in STORESCU_SYNTAX_OPTIONS:
            # -R: propose the files' own SOP classes (tomosynthesis is not in storescu's list).
            options = ["-R", *(o for o in STORESCU_SYNTAX_OPTIONS[syntax] if o != "-R")]
            run = storescu(port, paths, options=options, calling_ae="MODALITY")
            assert run.returncode == 0 and run.stderr.count("(Success)") == len(paths), \
                (variant.name, run.stderr[-2000:])
        else:
            for path in paths:
                assert pynetdicom_store(port, path) == 0, (variant.name, path.name)


def request_validation(db_url: str) -> bool:
    """The objects do not depend on the database: validate them on the SQLite run only."""
    return db_url.startswith("sqlite")

