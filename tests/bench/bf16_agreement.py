"""bf16 autocast against float32 on 64 synthetic views per bundle, on one device.

The check of ``tests/ml/test_pipeline.py`` for any bundles, e.g. the paper-shaped one on
a GPU (``make bench-gpu``). Prints one line per bundle; exit 1 when a view differs by
more than the tolerance or its ROI set changes.

    python -m tests.bench.bf16_agreement --device cuda BUNDLE [BUNDLE ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tests.support.bf16_agreement import TOLERANCE, agreement, summary, synthetic_views


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundles", nargs="+", type=Path)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--views", type=int, default=64)
    args = parser.parse_args(argv)
    studies = synthetic_views(args.views, seed=5000)
    failed = False
    for bundle in args.bundles:
        views = agreement(bundle, args.device, studies)
        print(summary(f"{bundle.name} on {args.device}", views), flush=True)
        failed |= any(not v.same_rois or v.difference > TOLERANCE for v in views)
    print(f"bf16 agreement: {'FAILED' if failed else 'ok'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
