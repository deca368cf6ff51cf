"""``make check-viewer``: the node's results for a synthetic study, as OHIF shows them.

    python -m tests.viewer --ohif var/viewer/ohif-3.13.2/package \\
        [--python-path var/viewer/python] [--out var/check-viewer] [--timeout 120]
        [--allow-untracked] [--keep]

Exit 1 on a console error, an SR ROI that OHIF does not show on its image, or (unless
``--allow-untracked``) a measurement panel that does not list every ROI.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.viewer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ohif", type=Path, required=True,
                        help="the unpacked npm package @ohif/app (holds dist/)")
    parser.add_argument("--python-path", type=Path, help="where playwright was installed")
    parser.add_argument("--out", type=Path, default=Path("var/check-viewer"))
    parser.add_argument("--timeout", type=float, default=120, help="seconds per wait")
    parser.add_argument("--allow-untracked", action="store_true",
                        help="pass even when OHIF cannot load the SR as measurements")
    parser.add_argument("--keep", action="store_true",
                        help="keep serving after the check, until Ctrl-C")
    args = parser.parse_args(argv)
    if args.python_path:
        sys.path.insert(0, str(args.python_path.resolve()))
    from tests.viewer import browser, servers
    from tests.viewer.study import build_study

    shutil.rmtree(args.out, ignore_errors=True)
    args.out.mkdir(parents=True)
    study = build_study(args.out / "dicom")
    expected = study.measurement_groups
    ohif_version = json.loads((args.ohif / "package.json").read_text())["version"]
    with tempfile.TemporaryDirectory(prefix="check-viewer-") as tmp:
        orthanc = servers.start_orthanc(Path(tmp))
        try:
            servers.upload(orthanc, study.files)
            orthanc_version = orthanc.rest("/system")["Version"]  # type: ignore[index]
            web = servers.serve_viewer(args.ohif / "dist", orthanc.url,
                                       servers.app_config("mmbcd-node check-viewer"))
            base_url = f"http://127.0.0.1:{web.server_address[1]}"
            outcome = browser.run(base_url, study, args.out, args.timeout)
            if args.keep:
                print(f"serving {base_url}/viewer?StudyInstanceUIDs={study.study_uid}"
                      " - Ctrl-C to stop", flush=True)
                with contextlib.suppress(KeyboardInterrupt):
                    threading.Event().wait()
            web.shutdown()
        finally:
            orthanc.stop()
    (args.out / "console.log").write_text("\n".join(outcome.console) + "\n")

    failures = []
    if outcome.errors:
        failures.append(f"{len(outcome.errors)} console error(s)")
    if len(outcome.placed) != len(expected):
        failures.append(f"{len(outcome.placed)}/{len(expected)} SR ROIs shown on their image")
    if outcome.tracked != len(expected) and not args.allow_untracked:
        failures.append(f"{outcome.tracked}/{len(expected)} ROIs in the measurement panel")
    lines = [
        f"OHIF {ohif_version}, Orthanc {orthanc_version}, Chromium {outcome.chromium}",
        f"study {study.study_uid}: {len(study.files)} objects uploaded",
        f"display sets ({len(outcome.display_sets)}):",
        *(f"  {d}" for d in outcome.display_sets),
        f"SR measurement groups: {len(expected)} ({', '.join(expected)})",
        f"ROIs OHIF read from the SR: {outcome.sr_loaded}",
        f"ROIs shown on their image ({outcome.placed_by or 'not reached'}): "
        f"{len(outcome.placed)}/{len(expected)}"
        + (f" (not shown: {', '.join(outcome.not_placed)})" if outcome.not_placed else ""),
        f"load as tracked measurements: {outcome.hydration}",
        f"measurements in OHIF's measurement panel: {outcome.tracked}/{len(expected)}",
        f"console errors ({len(outcome.errors)}):", *(f"  {e}" for e in outcome.errors),
        f"allow-listed errors ({len(outcome.allowed)}):", *(f"  {e}" for e in outcome.allowed),
        f"console log: {args.out / 'console.log'}",
        "screenshots:", *(f"  {p}" for p in outcome.screenshots),
        "check-viewer: " + ("FAIL: " + "; ".join(failures) if failures else "OK"),
    ]
    print("\n".join(lines))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
