"""The synthetic data set as training sees it: the ``mmbcd-train synth`` command, the
manifest and its loader, labels, splits, determinism and valid DICOM headers."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from typer.testing import CliRunner

from ml.cli import app
from ml.synth.dataset import ManifestError, load_manifest
from ml.views import laterality_of, view_of

SIZE = "256x208"


def _synth(out: Path, *args: str) -> None:
    result = CliRunner().invoke(app, ["synth", "--out", str(out), "--size", SIZE, *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    _synth(out, "--studies", "12", "--seed", "11", "--malignant-fraction", "0.25",
           "--monochrome1-fraction", "0.5", "--bits", "12,16",
           "--split", "train=0.5,val=0.25,test=0.25")
    return out


def test_label_balance_is_exactly_as_asked(dataset: Path) -> None:
    studies = load_manifest(dataset)
    assert len(studies) == 12
    assert sum(s.label for s in studies) == 3


def test_labels_agree_across_view_breast_and_study(dataset: Path) -> None:
    for study in load_manifest(dataset):
        assert len(study.views) == 4
        assert {(v.laterality, v.view) for v in study.views} == {
            ("R", "CC"), ("R", "MLO"), ("L", "CC"), ("L", "MLO")}
        for view in study.views:
            assert view.label == study.breast_labels[view.laterality]
            if view.label == 0:
                assert view.boxes == []
        assert study.label == max(study.breast_labels.values())


def test_every_malignant_breast_has_a_cancer_finding(dataset: Path) -> None:
    for study in load_manifest(dataset):
        for view in study.views:
            has_cancer = any(f.malignant for f in view.findings)
            assert has_cancer == bool(view.label)


def test_splits_keep_studies_whole_and_labels_balanced(dataset: Path) -> None:
    studies = load_manifest(dataset)
    by_split: dict[str | None, list] = {}
    for s in studies:
        by_split.setdefault(s.split, []).append(s)
    assert sorted(n for n in by_split if n) == ["test", "train", "val"]
    assert [len(by_split[n]) for n in ("train", "val", "test")] == [6, 3, 3]
    patients = {n: {s.patient_id for s in group} for n, group in by_split.items()}
    assert not patients["train"] & patients["test"]
    assert not patients["val"] & patients["test"]
    # 3 malignant of 12, stratified: the smallest splits get one or none, never all.
    assert sum(s.label for s in by_split["train"]) in (1, 2)


def test_manifest_csv_has_one_row_per_view_matching_the_json(dataset: Path) -> None:
    studies = load_manifest(dataset)
    with (dataset / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 * len(studies)
    views = {v.sop_instance_uid: (s, v) for s in studies for v in s.views}
    for row in rows:
        study, view = views[row["sop_instance_uid"]]
        assert row["accession"] == study.accession
        assert int(row["view_label"]) == view.label
        assert int(row["study_label"]) == study.label
        assert row["history"] == study.history
        boxes = [tuple(float(c) for c in b.split()) for b in row["boxes"].split(";") if b]
        assert boxes == [tuple(round(c, 1) for c in b) for b in view.boxes]
        assert (dataset / row["path"]).resolve() == view.path


def test_dicom_headers_agree_with_the_manifest(dataset: Path) -> None:
    for study in load_manifest(dataset):
        for view in study.views:
            ds = pydicom.dcmread(view.path)
            assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2"
            assert ds.SOPInstanceUID == view.sop_instance_uid
            assert ds.StudyInstanceUID == study.study_uid
            assert ds.AccessionNumber == study.accession
            assert ds.PatientID == study.patient_id
            assert laterality_of(ds) == view.laterality
            assert view_of(ds) == view.view
            assert ds.PhotometricInterpretation == view.photometric
            assert ds.BitsStored == view.bits_stored and ds.HighBit == view.bits_stored - 1
            assert (ds.Rows, ds.Columns) == (view.rows, view.columns) == (256, 208)
            assert int(ds.pixel_array.max()) < 2 ** ds.BitsStored
            expected_shape = "INVERSE" if view.photometric == "MONOCHROME1" else "IDENTITY"
            assert ds.PresentationLUTShape == expected_shape


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools not installed")
def test_dciodvfy_reports_no_errors(dataset: Path) -> None:
    studies = load_manifest(dataset)
    kinds = {(v.photometric, v.bits_stored) for s in studies for v in s.views}
    assert {"MONOCHROME1", "MONOCHROME2"} <= {k[0] for k in kinds}
    checked = set()
    for study in studies:
        for view in study.views:
            key = (view.photometric, view.bits_stored, view.laterality, view.view)
            if key in checked:
                continue
            checked.add(key)
            run = subprocess.run(["dciodvfy", str(view.path)], capture_output=True, text=True,
                                 check=False)
            report = run.stdout + run.stderr
            assert "MammographyImageForPresentation" in report
            errors = [line for line in report.splitlines() if line.startswith("Error")]
            assert errors == [], f"{view.path}: {errors}"


def test_same_seed_gives_identical_files_and_another_seed_differs(tmp_path: Path) -> None:
    for name, seed in (("a", "5"), ("b", "5"), ("c", "6")):
        _synth(tmp_path / name, "--studies", "2", "--seed", seed)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file())
    assert len(files) == 2 + 2 * 4 + 2  # manifests, views, orders
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    a, c = load_manifest(tmp_path / "a"), load_manifest(tmp_path / "c")
    assert [s.study_uid for s in a] != [s.study_uid for s in c]
    pixels_a = pydicom.dcmread(a[0].views[0].path).pixel_array
    pixels_c = pydicom.dcmread(c[0].views[0].path).pixel_array
    assert pixels_a.shape != pixels_c.shape or (pixels_a != pixels_c).any()


def test_study_does_not_depend_on_the_size_of_the_data_set(tmp_path: Path) -> None:
    _synth(tmp_path / "small", "--studies", "2", "--seed", "9", "--malignant-fraction", "0")
    _synth(tmp_path / "large", "--studies", "3", "--seed", "9", "--malignant-fraction", "0")
    small, large = load_manifest(tmp_path / "small"), load_manifest(tmp_path / "large")
    assert [s.study_uid for s in small] == [s.study_uid for s in large[:2]]
    assert small[1].views[2].path.read_bytes() == large[1].views[2].path.read_bytes()


def test_manifest_records_the_generator_settings(dataset: Path) -> None:
    meta = json.loads((dataset / "manifest.json").read_text())
    assert meta["seed"] == 11 and meta["study_count"] == 12 and len(meta["studies"]) == 12
    assert meta["config"]["sizes"] == [[256, 208]]
    assert meta["config"]["malignant_fraction"] == 0.25


def test_existing_data_set_is_not_overwritten_without_force(dataset: Path) -> None:
    result = CliRunner().invoke(app, ["synth", "--out", str(dataset), "--studies", "1"])
    assert result.exit_code == 2
    assert "--force" in result.output


def test_bad_options_name_the_problem(tmp_path: Path) -> None:
    runner = CliRunner(env={"COLUMNS": "240"})  # keep rich from wrapping the message
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--studies", "1",
                                 "--size", "5000x3328"])
    assert result.exit_code == 2 and "5000x3328" in result.output
    result = runner.invoke(app, ["synth", "--out", str(tmp_path / "x"), "--studies", "1",
                                 "--split", "train=0.5,test=0.2"])
    assert result.exit_code == 2 and "add up to 1" in result.output


def test_loading_a_folder_without_manifest_says_so(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_manifest(tmp_path)


def test_worker_processes_write_the_same_data_set(tmp_path: Path) -> None:
    _synth(tmp_path / "one", "--studies", "3", "--seed", "4", "--size", "128x104")
    _synth(tmp_path / "two", "--studies", "3", "--seed", "4", "--size", "128x104", "--jobs", "2")
    for name in ("manifest.json", "manifest.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "two" / name).read_text()


def test_a_size_list_mixes_image_sizes_across_studies(tmp_path: Path) -> None:
    _synth(tmp_path / "mixed", "--studies", "6", "--seed", "3", "--size", "128x104,160x128")
    sizes = {(v.rows, v.columns) for s in load_manifest(tmp_path / "mixed") for v in s.views}
    assert sizes == {(128, 104), (160, 128)}
    for study in load_manifest(tmp_path / "mixed"):
        assert len({(v.rows, v.columns) for v in study.views}) == 1  # one device per study
