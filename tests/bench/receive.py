"""``make bench-receive``: receive throughput of the node against dcmtk storescp and Orthanc.

N mammograms of 4096 x 3328 16-bit (27 MB each, each its own study) go out with dcmtk
``storescu`` in one association to each receiver on free loopback ports:

* the node (its defaults: fsync, SQL row and audit event per instance, SQLite),
* dcmtk ``storescp`` with its default PDU size and with ``--max-pdu 131072``,
* ``storescp --max-pdu 131072`` made to fsync each file before it answers (``sync FILE``
  run by ``--exec-on-reception`` with ``--exec-sync``), the peer that gives the node's
  guarantee,
* Orthanc (Debian package).

Every dcmtk process and Orthanc run with ``TCP_NODELAY=1`` (dcmtk 3.6.7 otherwise leaves
Nagle's algorithm on and the sender becomes the bottleneck). Each receiver gets three
runs, alternating between receivers; every run sends fresh UIDs, so the node never sees
a duplicate.

Prints the median MB/s of each, ``ratio node/orthanc``, ``ratio node/storescp fsyncing``
and, last, ``ratio node/storescp`` against the faster storescp that answers from the
page cache.

    python -m tests.bench.receive [-n N] [--runs 3] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import tomli_w
from pydicom.uid import ExplicitVRLittleEndian

from tests.support.dicom_peers import DCMTK_ENV
from tests.support.mammo import make_mammogram, mammo_pixels, write_mammogram
from tests.support.node import RunningNode, free_port, wait_for_port

ROWS, COLS = 4096, 3328
UID_BASE = "2.25.31415926535897932384626"  # fixed width: runs rewrite UIDs in place
HEADER_BYTES = 4096


@dataclass
class Receiver:
    name: str
    ae_title: str
    port: int
    store_dir: Path


def uid(run: int, index: int, kind: int) -> str:
    return f"{UID_BASE}{run:03d}{index:04d}{kind}"


def make_files(folder: Path, count: int) -> list[Path]:
    """``count`` files sharing one pixel array; UIDs are those of run 0."""
    pixels = mammo_pixels(ROWS, COLS, 16, seed=1).tobytes()
    files = []
    for index in range(count):
        # Small pixels first, then the shared full-size array: generating it once is enough.
        ds = make_mammogram(study_uid=uid(0, index, 1), rows=8, cols=8, bits_stored=16,
                            Rows=ROWS, Columns=COLS, SeriesInstanceUID=uid(0, index, 2),
                            SOPInstanceUID=uid(0, index, 3), PatientID=f"BENCH{index}",
                            AccessionNumber=f"BA{index}", PixelData=pixels)
        files.append(write_mammogram(folder / f"{index:03d}.dcm", ds, ExplicitVRLittleEndian))
    return files


def renumber(files: list[Path], old_run: int, new_run: int) -> None:
    """Give every file the UIDs of ``new_run`` by rewriting its header in place."""
    for index, path in enumerate(files):
        with path.open("r+b") as fp:
            head = fp.read(HEADER_BYTES)
            for kind in (1, 2, 3):
                old = uid(old_run, index, kind).encode()
                head = head.replace(old, uid(new_run, index, kind).encode())
            fp.seek(0)
            fp.write(head)


def send(receiver: Receiver, files: list[Path]) -> float:
    """storescu all files in one association; return seconds taken."""
    start = time.perf_counter()
    result = subprocess.run(
        ["storescu", "-aet", "BENCHSCU", "-aec", receiver.ae_title, "127.0.0.1",
         str(receiver.port), *map(str, files)],
        capture_output=True, text=True, env=DCMTK_ENV)
    elapsed = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"storescu to {receiver.name} failed:\n{result.stderr}")
    return elapsed


def empty(folder: Path) -> None:
    for child in folder.iterdir():
        if child.name == ".incoming":
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


@contextmanager
def the_node(work: Path) -> Iterator[Receiver]:
    work.mkdir(parents=True)
    port = free_port()
    settings = {
        "database": {"url": f"sqlite:///{work / 'node.db'}"},
        "storage": {"root": str(work / "storage")},
        "dicom": {"host": "127.0.0.1", "port": port},
        "hl7": {"host": "127.0.0.1", "port": free_port()},
        "http": {"host": "127.0.0.1", "port": free_port()},
    }
    config = work / "node.toml"
    config.write_text(tomli_w.dumps(settings))
    subprocess.run([sys.executable, "-m", "mmbcd_node", "--config", str(config), "db",
                    "upgrade"], check=True, capture_output=True)
    node = RunningNode(config_path=config, settings=settings, roles=["dicom"],
                       log_path=work / "node.log")
    node.start()
    try:
        (work / "storage").mkdir(exist_ok=True)
        yield Receiver("node", "MMBCD", port, work / "storage")
    finally:
        node.stop()


@contextmanager
def process(args: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=DCMTK_ENV)
    try:
        wait_for_port(port, timeout=60)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextmanager
def storescp(work: Path, max_pdu: int | None, *, fsync: bool = False) -> Iterator[Receiver]:
    port = free_port()
    name = "storescp" if max_pdu is None else f"storescp --max-pdu {max_pdu}"
    out = work / "out"
    out.mkdir(parents=True)
    args = ["storescp", "-aet", "STORESCP", "-od", str(out)]
    if max_pdu is not None:
        args += ["--max-pdu", str(max_pdu)]
    if fsync:
        # coreutils' ``sync FILE`` fsyncs the file; --exec-sync waits for it before
        # storescp answers.
        name += ", fsync per file"
        args += ["--exec-on-reception", "sync #p/#f", "--exec-sync"]
    with process([*args, str(port)], port, work / "storescp.log"):
        yield Receiver(name, "STORESCP", port, out)


@contextmanager
def orthanc(work: Path) -> Iterator[Receiver]:
    port = free_port()
    storage = work / "storage"
    storage.mkdir(parents=True)
    (work / "index").mkdir()
    config = {
        "Name": "bench", "StorageDirectory": str(storage), "IndexDirectory": str(work / "index"),
        "DicomAet": "ORTHANC", "DicomPort": port, "HttpPort": free_port(),
        "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False, "DicomAlwaysAllowStore": True, "Plugins": [],
        "StorageCompression": False,
    }
    (work / "orthanc.json").write_text(json.dumps(config))
    with process(["Orthanc", str(work / "orthanc.json")], port, work / "orthanc.log"):
        yield Receiver("orthanc", "ORTHANC", port, storage)


def report(speeds: dict[str, list[float]], *, count: int, size: float) -> None:
    """Print the medians and the ratios; ``ratio node/storescp`` comes last."""
    median = {name: statistics.median(values) for name, values in speeds.items()}
    runs = len(next(iter(speeds.values())))
    print(f"{count} x {size / 1e6:.1f} MB, one association, median of {runs}:")
    for name, value in median.items():
        print(f"{name}: {value:.0f} MB/s")
    fsyncing = max(v for k, v in median.items() if k.startswith("storescp") and "fsync" in k)
    cached = max(v for k, v in median.items() if k.startswith("storescp") and "fsync" not in k)
    print(f"ratio node/orthanc: {median['node'] / median['orthanc']:.2f}")
    print(f"ratio node/storescp fsyncing: {median['node'] / fsyncing:.2f}")
    print(f"ratio node/storescp: {median['node'] / cached:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=20, help="instances per run")
    parser.add_argument("--runs", type=int, default=3, help="runs per receiver (median)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="mmbcd-bench-receive-"))
    try:
        print(f"writing {args.count} instances of {ROWS}x{COLS} 16-bit ...", flush=True)
        files = make_files(work / "send", args.count)
        total = sum(f.stat().st_size for f in files)
        with ExitStack() as stack:
            receivers = [
                stack.enter_context(the_node(work / "node")),
                stack.enter_context(storescp(work / "storescp-default", None)),
                stack.enter_context(storescp(work / "storescp-128k", 131072)),
                stack.enter_context(storescp(work / "storescp-fsync", 131072, fsync=True)),
                stack.enter_context(orthanc(work / "orthanc")),
            ]
            speeds: dict[str, list[float]] = {r.name: [] for r in receivers}
            run = 0
            for _ in range(args.runs):
                for receiver in receivers:
                    renumber(files, run, run + 1)
                    run += 1
                    # No receiver pays for another's writeback: storescp and Orthanc
                    # leave hundreds of MB in the page cache that the kernel would
                    # otherwise write out during the next (fsyncing) run.
                    os.sync()
                    seconds = send(receiver, files)
                    speeds[receiver.name].append(total / seconds / 1e6)
                    print(f"  {receiver.name}: {speeds[receiver.name][-1]:.0f} MB/s", flush=True)
                    empty(receiver.store_dir)
        report(speeds, count=args.count, size=total / args.count)
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
