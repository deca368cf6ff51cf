"""One fuzzing campaign against a running node: every class of the DICOM data-set,
raw PDU and HL7 cases, with the node's memory sampled throughout and a legitimate
C-ECHO and order checked after each class.

``run_campaign`` returns a ``Report``: per class, how many cases ran, the answers they
got, the node's peak RSS, whether the legitimate peers were served, and the cases
whose answer was not an honest one. ``make fuzz`` prints it (``tests.fuzz.__main__``);
``tests/test_fuzz_sample.py`` runs a small fixed-seed sample in ``make test``.
"""

from __future__ import annotations

import random
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from tests.fuzz import dicom_cases, hl7_cases, pdu_cases
from tests.support.dicom_peers import echoscu, pynetdicom_store
from tests.support.hl7_client import MllpConnection, order_message
from tests.support.node import RunningNode

# A modality may be turned away while the connections filling the gate are younger
# than ConnectionGate.EVICT_AFTER (1 s), never longer.
MAX_REFUSED_SECONDS = 2.0
FUZZ_SETTINGS = {
    "dicom": {"acse_timeout": 2.0, "network_timeout": 3.0, "dimse_timeout": 10.0},
    "hl7": {"read_timeout_seconds": 5.0},
}


@dataclass
class ClassReport:
    family: str
    name: str
    cases: int = 0
    answers: Counter[str] = field(default_factory=Counter)
    dishonest: list[str] = field(default_factory=list)  # "<answer>: <case detail>"
    peak_rss: int = 0
    echo_served: bool = False
    order_served: bool = False
    echo_seconds: float = 0.0
    # C-ECHOs sent by a modality while the class ran: how many, how many failed, the
    # slowest, and the longest time the modality was refused (first failure to the
    # next success, or to the end of the class).
    probe_echoes: int = 0
    probe_failures: int = 0
    probe_max_seconds: float = 0.0
    probe_refused_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return (not self.dishonest and self.echo_served and self.order_served
                and self.probe_refused_seconds < MAX_REFUSED_SECONDS)


@dataclass
class Report:
    classes: list[ClassReport] = field(default_factory=list)
    baseline_rss: int = 0
    node_alive: bool = True

    @property
    def failures(self) -> list[str]:
        found = [f"{c.family}/{c.name}: {'; '.join(c.dishonest[:3]) or 'peers not served'}"
                 for c in self.classes if not c.ok]
        return found + ([] if self.node_alive else ["the node process died"])

    @property
    def peak_rss(self) -> int:
        return max([c.peak_rss for c in self.classes] or [0])


class RssSampler:
    """Samples the node's resident memory every 20 ms while active."""

    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            try:
                self.peak = max(self.peak, self.node.rss_bytes)
            except (OSError, AssertionError):
                return

    def __enter__(self) -> RssSampler:
        self.peak = self.node.rss_bytes
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


class EchoProbe:
    """A modality sending a C-ECHO (dcmtk ``echoscu``) every 0.2 s while a class runs."""

    def __init__(self, node: RunningNode) -> None:
        self.node = node
        self.echoes = self.failures = 0
        self.slowest = self.refused_for = 0.0
        self._refused_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            started = time.monotonic()
            ok = echoscu(self.node.dicom_port).returncode == 0
            now = time.monotonic()
            self.slowest = max(self.slowest, now - started)
            self.echoes += 1
            self.failures += not ok
            if not ok and self._refused_since is None:
                self._refused_since = started
            if self._refused_since is not None:
                self.refused_for = max(self.refused_for, now - self._refused_since)
                if ok:
                    self._refused_since = None

    def __enter__(self) -> EchoProbe:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _legitimate_peers(node: RunningNode, report: ClassReport, control_id: str) -> None:
    started = time.monotonic()
    report.echo_served = echoscu(node.dicom_port).returncode == 0
    report.echo_seconds = time.monotonic() - started
    try:
        with MllpConnection(node.hl7_port, timeout=30) as connection:
            ack = connection.send(order_message(control_id, placer=f"PL-{control_id}",
                                                accession=f"A-{control_id}"))
        report.order_served = ack.code == "AA"
    except OSError:
        report.order_served = False


def _ack_text(payload: bytes, node: RunningNode) -> str:
    try:
        with MllpConnection(node.hl7_port, timeout=30) as connection:
            ack = connection.send(payload)
    except (OSError, AssertionError):
        return "none"
    return f"{ack.code} {ack.error_code}".strip() if ack.code != "AA" else "AA"


@contextmanager
def _scratch() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="mmbcd-fuzz-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _run_class(node: RunningNode, report: Report, family: str, name: str, count: int,
               one: Callable[[int], tuple[str, bool, str]], progress: Callable[[str], None]
               ) -> None:
    """Run ``one(index)`` -> (answer, honest, detail) ``count`` times as one class."""
    result = ClassReport(family, name)
    with RssSampler(node) as sampler, EchoProbe(node) as probe:
        for index in range(count):
            answer, honest, detail = one(index)
            result.cases += 1
            result.answers[answer] += 1
            if not honest:
                result.dishonest.append(f"{answer}: {detail}")
            if node.process is not None and node.process.poll() is not None:
                report.node_alive = False
                break
        result.peak_rss = sampler.peak
    result.probe_echoes, result.probe_failures = probe.echoes, probe.failures
    result.probe_max_seconds = probe.slowest
    result.probe_refused_seconds = probe.refused_for
    if report.node_alive:
        _legitimate_peers(node, result, f"LEGIT-{family}-{name}"[:40])
    report.classes.append(result)
    progress(f"{family}/{name}: {result.cases} cases, {dict(result.answers)}")


def run_campaign(node: RunningNode, *, seed: int, dicom_per_class: int, pdu_per_class: int,
                 hl7_per_class: int, progress: Callable[[str], None] = lambda _: None,
                 only: set[str] | None = None) -> Report:
    """Fuzz ``node`` (roles dicom and hl7, started with ``FUZZ_SETTINGS``)."""
    report = Report(baseline_rss=node.rss_bytes)
    rng = random.Random(seed)
    with _scratch() as folder:
        for dicom_case in dicom_cases.CASES:
            if only is not None and dicom_case.name not in only:
                continue

            def send(index: int, case: dicom_cases.DicomCase = dicom_case) -> tuple[str, bool, str]:
                path = case.make(random.Random(rng.random()), folder)
                try:
                    status = pynetdicom_store(node.dicom_port, path, calling_ae="FUZZ")
                except ConnectionError as exc:
                    return "no answer", False, f"{path.name}: {exc}"
                finally:
                    path.unlink(missing_ok=True)
                return f"0x{status:04X}", status in case.allowed, path.name
            _run_class(node, report, "dicom", dicom_case.name, dicom_per_class, send, progress)
        target = pdu_cases.Target(node.dicom_port, "MMBCD",
                                  FUZZ_SETTINGS["dicom"]["acse_timeout"],
                                  FUZZ_SETTINGS["dicom"]["network_timeout"])
        for number, pdu_case in enumerate(pdu_cases.CASES):
            if only is not None and pdu_case.name not in only:
                continue

            def attack(index: int, case: pdu_cases.PduCase = pdu_case,
                       source: str = f"127.0.99.{10 + number}") -> tuple[str, bool, str]:
                answer = case.attack(random.Random(rng.random()), target, source)
                parts = set(answer.split("|"))
                return answer, parts <= case.allowed, case.name
            _run_class(node, report, "pdu", pdu_case.name, pdu_per_class, attack, progress)
        for hl7_case in hl7_cases.CASES:
            if only is not None and hl7_case.name not in only:
                continue

            def message(index: int, case: hl7_cases.Hl7Case = hl7_case) -> tuple[str, bool, str]:
                control_id = f"F{seed}-{case.name[:12]}-{index}-{rng.randrange(10**6)}"
                payload = case.make(random.Random(rng.random()), control_id)
                answer = _ack_text(payload, node)
                return answer, answer in case.allowed, repr(payload[:80])
            _run_class(node, report, "hl7", hl7_case.name, hl7_per_class, message, progress)
    return report


def render(report: Report, title: str) -> str:
    """The report as a fixed-width table."""
    mib = 1 << 20
    lines = [f"== {title}: baseline RSS {report.baseline_rss // mib} MiB, peak "
             f"{report.peak_rss // mib} MiB, node {'alive' if report.node_alive else 'DEAD'}",
             f"{'class':44} {'n':>4} {'peak MiB':>8} {'during: echo ok':>15} {'max s':>5} "
             f"{'after: echo':>11} {'ORM':>4}  answers"]
    for c in report.classes:
        answers = ", ".join(f"{k} x{v}" for k, v in sorted(c.answers.items()))
        during = f"{c.probe_echoes - c.probe_failures}/{c.probe_echoes}"
        lines.append(f"{c.family + '/' + c.name:44} {c.cases:>4} {c.peak_rss // mib:>8} "
                     f"{during:>15} {c.probe_max_seconds:>5.2f} "
                     f"{'ok' if c.echo_served else 'NO':>11} "
                     f"{'ok' if c.order_served else 'NO':>4}  {answers}")
        lines += [f"    DISHONEST {d}" for d in c.dishonest[:5]]
        if c.probe_failures:
            lines.append(f"    modality refused {c.probe_failures} of {c.probe_echoes} C-ECHOs, "
                         f"for {c.probe_refused_seconds:.1f} s at most")
    totals = Counter[str]()
    for c in report.classes:
        totals[c.family] += c.cases
    lines.append("totals: " + ", ".join(f"{k} {v}" for k, v in totals.items())
                 + f"; classes {len(report.classes)}; failures {len(report.failures)}")
    return "\n".join(lines)
