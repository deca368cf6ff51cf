"""``mmbcd-train import``: a generic CSV, a CBIS-DDSM-shaped and a VinDr-Mammo-shaped
folder (their published CSV layouts, written here with pydicom images) into the
training format, split by patient, with errors that name the row and the column."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from ml.cli import app
from ml.site_data.importer import import_dataset
from ml.site_data.records import ImportRowError
from ml.synth.dataset import load_manifest
from ml.train.splits import SplitError
from tests.support.mammo import make_mammogram, write_mammogram

SPLIT = {"train": 0.6, "val": 0.2, "test": 0.2}


def image(path: Path, laterality: str, view: str, rows: int = 96, cols: int = 80,
          **overrides: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_mammogram(path, make_mammogram(laterality=laterality, view=view, rows=rows,
                                                cols=cols, **overrides))


def write_csv(path: Path, header: list[str], rows: list[list[object]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_rows(path: Path) -> list[list[str]]:
    with path.open() as handle:
        return list(csv.reader(handle))


def import_generic(source: Path, out: Path, **options: object) -> list:
    return import_dataset("generic", source, out, fractions=SPLIT, val_fraction=0.0, seed=0,
                          **options)  # type: ignore[arg-type]


GENERIC_HEADER = ["path", "patient_id", "study_id", "laterality", "view", "label", "boxes",
                  "history", "split"]


def generic_site(root: Path, patients: int = 10) -> Path:
    """``patients`` women, the first with two examinations; cancers in every third."""
    rows = []
    for p in range(patients):
        for exam in range(2 if p == 0 else 1):
            study = f"ACC{p:02d}{exam}"
            cancer_side = "L" if p % 3 == 0 else None
            for side in ("R", "L"):
                for view in ("CC", "MLO"):
                    path = image(root / "pacs" / study / f"{side}{view}.dcm", side, view)
                    label = int(side == cancer_side)
                    rows.append([path.relative_to(root).as_posix(), f"PAT{p}", study,
                                 "" if view == "MLO" else side, view, label,
                                 "10 12 40 50" if label else "",
                                 "lump left breast" if cancer_side else "screening", ""])
    return write_csv(root / "site.csv", GENERIC_HEADER, rows)


def test_generic_import_references_files_and_splits_by_patient(tmp_path) -> None:
    source = generic_site(tmp_path / "site")
    out = tmp_path / "data"
    studies = import_dataset("generic", source, out, fractions=SPLIT, val_fraction=0.0,
                             seed=3)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.csv", "manifest.json"]
    loaded = load_manifest(out)
    assert [s.study_uid for s in loaded] == [s.study_uid for s in studies]
    assert len(loaded) == 11 and sum(len(s.views) for s in loaded) == 44
    for study in loaded:
        for view in study.views:  # referenced where they are, read from the header
            assert view.path.is_relative_to(tmp_path / "site" / "pacs") and view.path.is_file()
            assert view.rows == 96 and view.columns == 80 and view.bits_stored == 12
    by_patient: dict[str, set[str | None]] = {}
    for study in loaded:
        by_patient.setdefault(study.patient_id, set()).add(study.split)
    assert all(len(splits) == 1 for splits in by_patient.values())
    assert {s.split for s in loaded} == {"train", "val", "test"}
    first = next(s for s in loaded if s.study_uid == "ACC000")
    assert first.breast_labels == {"L": 1, "R": 0} and first.label == 1
    assert first.history == "lump left breast"
    left_cc = next(v for v in first.views if v.laterality == "L" and v.view == "CC")
    assert left_cc.boxes == [(10.0, 12.0, 40.0, 50.0)] and left_cc.label == 1
    # Sides left empty in the CSV came from the header (Image Laterality).
    assert {v.laterality for v in first.views if v.view == "MLO"} == {"R", "L"}


@pytest.mark.parametrize(("column", "value", "message"), [
    ("label", "2", "row 2 column 'label': label '2' must be 0 or 1"),
    ("boxes", "10 12 400 50", "row 2 column 'boxes': box (10.0, 12.0, 400.0, 50.0) lies "
                              "outside the 80x96 image"),
    ("boxes", "10 12 4", "row 2 column 'boxes': box '10 12 4' is not four numbers"),
    ("laterality", "L", "row 2 column 'laterality': 'L' but the header of RCC.dcm says 'R'"),
    ("path", "pacs/nothing.dcm", "row 2 column 'path': no file at"),
    ("split", "holdout", "row 2 column 'split': split 'holdout' must be one of"),
])
def test_generic_errors_name_the_row_and_column(tmp_path, column, value, message) -> None:
    source = generic_site(tmp_path / "site", patients=3)
    rows = read_rows(source)
    rows[1][GENERIC_HEADER.index(column)] = value
    write_csv(source, rows[0], rows[1:])
    with pytest.raises(ImportRowError) as error:
        import_generic(source, tmp_path / "data")
    assert str(error.value).startswith("site.csv ") and message in str(error.value)
    assert not (tmp_path / "data").exists()  # nothing half-written


def test_generic_contradictions_name_both_rows(tmp_path) -> None:
    source = generic_site(tmp_path / "site", patients=3)
    rows = read_rows(source)
    rows[2][GENERIC_HEADER.index("label")] = "1"  # R MLO of a breast labelled 0 on R CC
    write_csv(source, rows[0], rows[1:])
    with pytest.raises(ImportRowError, match=r"row 3 column 'label': the label of breast "
                                             r"ACC000 R: 1 here but 0 in row 2"):
        import_generic(source, tmp_path / "data")
    rows[2][GENERIC_HEADER.index("label")] = "0"
    rows[3][GENERIC_HEADER.index("patient_id")] = "SOMEONE-ELSE"
    write_csv(source, rows[0], rows[1:])
    with pytest.raises(ImportRowError, match="row 4 column 'patient_id': the patient of "
                                             "study ACC000"):
        import_generic(source, tmp_path / "data")


def test_a_patient_the_source_puts_in_two_splits_is_refused_unless_redrawn(tmp_path) -> None:
    source = generic_site(tmp_path / "site", patients=6)
    rows = read_rows(source)
    split = GENERIC_HEADER.index("split")
    for row in rows[1:]:
        row[split] = "test" if row[2] == "ACC001" else "train"  # PAT0's second exam
    write_csv(source, rows[0], rows[1:])
    with pytest.raises(SplitError, match="patient PAT0 has studies in the splits "
                                         r"\['test', 'train'\]"):
        import_generic(source, tmp_path / "data")
    studies = import_generic(source, tmp_path / "data", resplit=True)
    assert len({s.split for s in studies if s.patient_id == "PAT0"}) == 1


def cbis_folder(root: Path) -> Path:
    """CBIS-DDSM as TCIA's downloader writes it: the CSV paths' first folder holds the
    files under other names; a mask folder holds the mask (full size) and the crop."""
    header = ["patient_id", "breast_density", "left or right breast", "image view",
              "abnormality id", "abnormality type", "mass shape", "mass margins",
              "assessment", "pathology", "subtlety", "image file path",
              "cropped image file path", "ROI mask file path"]
    cases = [("P_00001", "LEFT", "MALIGNANT", "train"), ("P_00004", "RIGHT", "BENIGN", "train"),
             ("P_00009", "RIGHT", "MALIGNANT", "train"), ("P_00015", "LEFT", "BENIGN", "train"),
             ("P_00016", "LEFT", "MALIGNANT", "test"), ("P_00017", "RIGHT", "BENIGN", "test"),
             ("P_00018", "LEFT", "BENIGN_WITHOUT_CALLBACK", "train"),
             ("P_00020", "RIGHT", "MALIGNANT", "train")]
    tables: dict[str, list[list[object]]] = {"train": [], "test": []}
    for patient, side, pathology, split in cases:
        kind = "Training" if split == "train" else "Test"
        for view in ("CC", "MLO"):
            name = f"Mass-{kind}_{patient}_{side}_{view}"
            full = image(root / name / "07-20-2016-DDSM-74994" / "1.000000-full mammogram "
                         "images-24515" / "1-1.dcm", side[0], view, rows=120, cols=100)
            mask = np.zeros((120, 100), dtype=np.uint8)
            mask[30:60, 20:45] = 255
            folder = root / f"{name}_1" / "08-07-2016-DDSM-23157"
            masks = make_mammogram(laterality=side[0], view=view, rows=120, cols=100,
                                   bits_stored=8, BitsAllocated=8, HighBit=7,
                                   PixelData=mask.tobytes())
            write_mammogram(folder / "1.000000-ROI mask images-94682" / "1-2.dcm", masks)
            image(folder / "1.000000-cropped images-94682" / "1-1.dcm", side[0], view,
                  rows=30, cols=25)
            listed = f"{name}/1.3.6.1.4.1.9590.100.1.2.4221/1.3.6.1.4.1.9590.100.1.2.3/000000.dcm"
            tables[split].append([patient, 3, side, view, 1, "mass", "OVAL", "CIRCUMSCRIBED",
                                  4, pathology, 4, listed, f"{name}_1/x/y/000000.dcm",
                                  f"{name}_1/x/y/000001.dcm\n"])
            assert full.is_file()
    write_csv(root / "mass_case_description_train_set.csv", header, tables["train"])
    write_csv(root / "mass_case_description_test_set.csv", header, tables["test"])
    return root


def test_cbis_ddsm_folder_imports_with_boxes_from_masks(tmp_path) -> None:
    source = cbis_folder(tmp_path / "CBIS-DDSM")
    studies = import_dataset("cbis-ddsm", source, tmp_path / "data", fractions=SPLIT,
                             val_fraction=0.3, seed=1)
    assert len(studies) == 8 and all(len(s.views) == 2 for s in studies)
    by_id = {s.patient_id: s for s in studies}
    assert by_id["P_00001"].breast_labels == {"L": 1} and by_id["P_00004"].label == 0
    assert by_id["P_00018"].label == 0  # benign without callback is benign
    assert {by_id[p].split for p in ("P_00016", "P_00017")} == {"test"}
    assert {s.split for s in studies} == {"train", "val", "test"}  # val drawn from train
    cancer = by_id["P_00001"].views[0]
    assert cancer.boxes == [(20.0, 30.0, 45.0, 60.0)]  # the mask's extent, not the crop's
    assert "full mammogram images" in str(cancer.path)
    assert by_id["P_00004"].views[0].boxes == []  # benign: no cancer box
    assert by_id["P_00001"].history == ""


def test_cbis_ddsm_ambiguous_image_folder_names_the_row(tmp_path) -> None:
    source = cbis_folder(tmp_path / "CBIS-DDSM")
    image(source / "Mass-Training_P_00004_RIGHT_MLO" / "extra" / "1-1.dcm", "R", "MLO")
    with pytest.raises(ImportRowError, match=r"mass_case_description_train_set.csv row 5 "
                                             r"column 'image file path': .* found 2"):
        import_dataset("cbis-ddsm", source, tmp_path / "data", fractions=SPLIT,
                       val_fraction=0.3, seed=1)


def vindr_folder(root: Path) -> Path:
    breast_header = ["study_id", "series_id", "image_id", "laterality", "view_position",
                     "height", "width", "breast_birads", "breast_density", "split"]
    finding_header = ["study_id", "series_id", "image_id", "laterality", "view_position",
                      "height", "width", "breast_birads", "breast_density",
                      "finding_categories", "finding_birads", "xmin", "ymin", "xmax", "ymax",
                      "split"]
    breast_rows, finding_rows = [], []
    birads = {"R": "BI-RADS 1", "L": "BI-RADS 1"}
    for s in range(8):
        study = f"{s:032x}"
        sides = dict(birads)
        if s % 2 == 0:
            sides["L"] = "BI-RADS 4" if s % 4 == 0 else "BI-RADS 3"
        split = "test" if s >= 6 else "training"
        for side in ("R", "L"):
            for view in ("CC", "MLO"):
                image_id = f"{s:02d}{side}{view}".ljust(32, "0")
                image(root / "images" / study / f"{image_id}.dicom", side, view)
                breast_rows.append([study, "series", image_id, side, view, 96, 80,
                                    sides[side], "DENSITY C", split])
                if sides[side] != "BI-RADS 1":
                    finding_rows.append([study, "series", image_id, side, view, 96, 80,
                                         sides[side], "DENSITY C", "['Mass']",
                                         sides[side].replace("BI-RADS", "BI-RADS"),
                                         5.5, 6.0, 30.25, 41.0, split])
                else:
                    finding_rows.append([study, "series", image_id, side, view, 96, 80,
                                         sides[side], "DENSITY C", "['No Finding']", "", "",
                                         "", "", "", split])
    write_csv(root / "breast-level_annotations.csv", breast_header, breast_rows)
    write_csv(root / "finding_annotations.csv", finding_header, finding_rows)
    return root


def test_vindr_folder_imports_birads_labels_and_finding_boxes(tmp_path) -> None:
    source = vindr_folder(tmp_path / "vindr")
    studies = import_dataset("vindr-mammo", source, tmp_path / "data", fractions=SPLIT,
                             val_fraction=0.25, seed=0)
    assert len(studies) == 8 and all(len(s.views) == 4 for s in studies)
    positives = {s.study_uid[-2:]: s.breast_labels for s in studies if s.label}
    assert positives == {"00": {"R": 0, "L": 1}, "04": {"R": 0, "L": 1}}  # BI-RADS 3 is not
    boxed = [v for s in studies for v in s.views if v.boxes]
    assert len(boxed) == 4 and boxed[0].boxes == [(5.5, 6.0, 30.25, 41.0)]
    assert {s.split for s in studies if int(s.study_uid, 16) >= 6} == {"test"}
    assert {s.split for s in studies} == {"train", "val", "test"}
    at_three = import_dataset("vindr-mammo", source, tmp_path / "data3", fractions=SPLIT,
                              val_fraction=0.25, seed=0, positive_birads=3)
    assert sum(s.label for s in at_three) == 4


def test_vindr_bad_birads_names_row_and_column(tmp_path) -> None:
    source = vindr_folder(tmp_path / "vindr")
    table = source / "breast-level_annotations.csv"
    text = table.read_text().splitlines()
    text[2] = text[2].replace("BI-RADS 1", "BI-RADS X")  # study 0, R MLO
    table.write_text("\n".join(text) + "\n")
    with pytest.raises(ImportRowError, match="breast-level_annotations.csv row 3 column "
                                             "'breast_birads': 'BI-RADS X' is not a BI-RADS"):
        import_dataset("vindr-mammo", source, tmp_path / "data", fractions=SPLIT,
                       val_fraction=0.25, seed=0)


def test_import_command_prints_splits_and_fails_with_the_row(tmp_path) -> None:
    source = generic_site(tmp_path / "site", patients=5)
    runner = CliRunner()
    done = runner.invoke(app, ["import", str(source), "--out", str(tmp_path / "data"),
                               "--split", "train=0.6,val=0.2,test=0.2", "--seed", "2"])
    assert done.exit_code == 0, done.output
    assert "patients" in done.output and "cancer studies" in done.output
    again = runner.invoke(app, ["import", str(source), "--out", str(tmp_path / "data")])
    assert again.exit_code == 2 and "already holds a data set" in again.output
    (tmp_path / "bad.csv").write_text("path,patient_id,study_id\nx.dcm,P,S\n")
    bad = runner.invoke(app, ["import", str(tmp_path / "bad.csv"), "--out",
                              str(tmp_path / "bad")])
    assert bad.exit_code == 2 and "bad.csv row 1 column 'label': missing column" in bad.output
