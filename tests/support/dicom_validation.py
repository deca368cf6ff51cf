"""Validation of DICOM objects with the reference tools: dicom3tools and dcmtk.

``dciodvfy`` checks an object against its IOD (module and attribute rules); ``dsrdump``
parses an SR document with dcmtk's relationship-constraint checks. Both run on a file,
as a PACS would receive it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pydicom import Dataset


def write(ds: Dataset, directory: Path, name: str) -> Path:
    """``ds`` written as a DICOM Part 10 file ``directory/name``."""
    path = directory / name
    ds.save_as(path, enforce_file_format=True)
    return path


def dciodvfy_errors(path: Path) -> list[str]:
    """The ``Error`` lines dciodvfy reports for ``path`` (warnings are not errors)."""
    run = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True,
                         timeout=60, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def dsrdump(path: Path) -> str:
    """dcmtk's rendering of the SR at ``path``; AssertionError with its output on failure.

    dsrdump exits non-zero, or reports "Error:" lines, when the document breaks the
    relationship constraints of its SOP class.
    """
    run = subprocess.run(["dsrdump", str(path)], capture_output=True,
                         text=True, timeout=60, check=False)
    output = run.stdout + run.stderr
    assert run.returncode == 0, f"dsrdump exit {run.returncode}:\n{output}"
    errors = [line for line in output.splitlines() if line.startswith(("E:", "F:"))]
    assert not errors, "dsrdump reported errors:\n" + "\n".join(errors)
    return output
