"""Validation of DICOM objects with the reference tools: dicom3tools and dcmtk.

``dciodvfy`` checks an object against its IOD (module and attribute rules), ``dcentvfy``
a set of objects against each other (one patient, study or series must not say two
things), ``dcmpschk`` a presentation state, and ``dsrdump`` parses an SR document with
dcmtk's relationship-constraint checks; ``dcmp2pgm`` shows an image as a presentation
state says. All run on files, as a PACS would receive them.
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


def dcentvfy_errors(paths: list[Path]) -> list[str]:
    """The ``Error`` lines dicom3tools' ``dcentvfy`` reports for ``paths`` taken together:
    attributes of one entity (patient, study, series) that differ between instances."""
    run = subprocess.run(["dcentvfy", *map(str, paths)], capture_output=True, text=True,
                         timeout=120, check=False)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")]


def dcmpschk_errors(path: Path) -> list[str]:
    """dcmtk's ``dcmpschk`` output for the presentation state at ``path`` when it does not
    pass the file ("Test failed"), else nothing."""
    run = subprocess.run(["dcmpschk", str(path)], capture_output=True, text=True,
                         timeout=60, check=False)
    output = run.stdout + run.stderr
    passed = run.returncode == 0 and "Test passed" in output
    return [] if passed else [f"dcmpschk exit {run.returncode}:", *output.splitlines()]


def render_with_presentation_state(image: Path, state: Path, out: Path) -> Path:
    """``image`` as dcmtk's ``dcmp2pgm`` displays it under the presentation state
    ``state`` (VOI, presentation LUT; graphics not drawn), as an 8-bit PGM at ``out``."""
    run = subprocess.run(["dcmp2pgm", "-p", str(state), str(image), str(out)],
                         capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0 and out.exists(), f"dcmp2pgm failed:\n{run.stdout}{run.stderr}"
    return out


def assert_sr_template(ds: Dataset, images: list[Dataset] | None = None) -> None:
    """Check an SR document against its root template (TID 1500 or TID 4000, from its
    Content Template Sequence) with the PS3.16 tables in ``tests/sr_templates``;
    ``images`` are the source headers, which settle TID 4020's conditions."""
    from tests.sr_templates import assert_conforms

    root = int(ds.ContentTemplateSequence[0].TemplateIdentifier)
    assert_conforms(ds, root, images={str(image.SOPInstanceUID): image
                                      for image in images or []} or None)
