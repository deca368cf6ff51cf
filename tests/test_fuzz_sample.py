"""A fixed-seed sample of ``make fuzz``: one case of every DICOM data-set class and
raw PDU attack and two messages of every HL7 class, against a node on each database.
Every answer must be an honest one, the node must stay up, a legitimate C-ECHO and
order must be served after each class, and the audit chain must verify."""

from __future__ import annotations

from tests.fuzz import dicom_cases, hl7_cases, pdu_cases
from tests.fuzz.campaign import FUZZ_SETTINGS, render, run_campaign

SEED = 20261205


def test_a_sample_of_every_fuzz_class_gets_honest_answers(node_factory) -> None:
    node = node_factory(roles=["dicom", "hl7"], settings=FUZZ_SETTINGS)
    report = run_campaign(node, seed=SEED, dicom_per_class=1, pdu_per_class=1,
                          hl7_per_class=2)
    assert not report.failures, render(report, "sample")
    assert len(report.classes) == (len(dicom_cases.CASES) + len(pdu_cases.CASES)
                                   + len(hl7_cases.CASES))
    assert report.peak_rss - report.baseline_rss < 256 << 20, render(report, "sample")
    assert node.cli("audit", "verify").returncode == 0
