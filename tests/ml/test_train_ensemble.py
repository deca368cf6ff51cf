"""An ensemble of fusion runs: one bundle whose pipeline averages its members' view
scores, calibrated on the validation split the members share; the members' crop
pre-training shared through one folder; what cannot form an ensemble is refused."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from ml.bundle import BundleError, load_bundle
from ml.cli import app
from ml.manifest import MANIFEST, manifest_digest, sha256_file
from ml.pipeline import Pipeline
from ml.synth.dataset import load_manifest
from ml.train.export import export_run
from ml.train.fusion_run import run_fusion
from ml.train.fusion_training import FusionTraining
from ml.train.run_folder import RunFolder
from ml.train.splits import training_splits
from ml.types import StudyInput, ViewInput

TINY = FusionTraining(k=4, crop_size=32, dim=32, epochs=2, batch=8, lr=2e-3, patience=2,
                      keyword_count=20, pretrain_epochs=1, roi_scores=True,
                      image_overrides={"embed_dim": 32, "depth": 1, "num_heads": 2,
                                       "patch_size": 8})


@pytest.fixture(scope="module")
def members(data) -> dict[str, Path]:
    """Two fusion runs of one recipe (seeds 0 and 1) sharing a pre-training folder."""
    root = data["root"] / "members"
    runs = {}
    for seed in (0, 1):
        runs[f"seed-{seed}"] = root / f"seed-{seed}"
        run_fusion(dataclasses.replace(TINY, seed=seed), data["train"], data["detector"],
                   runs[f"seed-{seed}"], test=data["test"], pretrained=root / "pretrained")
    return {**runs, "pretrained": root / "pretrained"}


def _cli(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _predict(bundle_path: Path, data: dict[str, Path]) -> list:
    studies = load_manifest(data["test"])
    return Pipeline(load_bundle(bundle_path), device="cpu").predict([StudyInput(
        study_uid=s.study_uid, history=s.history,
        views=[ViewInput(v.path, v.sop_instance_uid) for v in s.views]) for s in studies])


def test_ensemble_bundle_averages_its_members_and_is_calibrated_on_their_validation_split(
        data, members, tmp_path) -> None:
    out = _cli("ensemble", "--run", str(members["seed-0"]), "--run", str(members["seed-1"]),
               "--out", str(tmp_path / "ensemble"), "--device", "cpu")
    assert "study: validation AUC" in out
    _cli("export", "--run", str(tmp_path / "ensemble"), "--out", str(tmp_path / "bundle"))
    result = json.loads((tmp_path / "ensemble" / "result.json").read_text())
    bundle = load_bundle(tmp_path / "bundle")
    assert len(bundle.members) == 2 and bundle.manifest["model"]["members"] == 2
    assert [m["seed"] for m in bundle.manifest["training_data"]["members"]] == [0, 1]
    assert bundle.calibration.as_manifest() == result["calibration"]
    val_studies = sum(s.split == "val" for s in load_manifest(data["train"]))
    assert bundle.calibration.fitted_on == f"validation split ({val_studies} studies)"
    assert bundle.threshold == pytest.approx(result["operating_points"]["study"]["threshold"])

    # Each member alone, as its own bundle, scores the same views: the ensemble's raw
    # view score is their mean, and what it reports is its own calibration of that mean.
    singles = []
    for name in ("seed-0", "seed-1"):
        export_run(members[name], tmp_path / name, name=name, version="0")
        singles.append(_predict(tmp_path / name, data))
    together = _predict(tmp_path / "bundle", data)
    raw = np.array([[v.score for s in single for v in s.views] for single in singles])
    assert not np.allclose(raw[0], raw[1])  # the seeds trained different models
    scores = np.array([v.score for s in together for v in s.views])
    np.testing.assert_allclose(scores, raw.mean(axis=0), atol=1e-5)
    np.testing.assert_allclose([v.probability for s in together for v in s.views],
                               bundle.calibration.view(scores), atol=1e-6)
    attention = [[r.attention for s in single for v in s.views for r in v.rois]
                 for single in singles]
    np.testing.assert_allclose([r.attention for s in together for v in s.views for r in v.rois],
                               np.mean(attention, axis=0), atol=1e-5)
    assert all(s.probability == pytest.approx(bundle.calibration.study.one(
        max(v.score or 0.0 for v in s.views))) for s in together)


def test_fusion_runs_share_crop_pre_training_by_seed_and_settings(data, members,
                                                                   tmp_path) -> None:
    files = sorted(p.name for p in members["pretrained"].glob("*.pt"))
    assert [name.split("-")[1] for name in files] == ["0", "1"]
    for name in ("seed-0", "seed-1"):
        config = json.loads((members[name] / "config.json").read_text())["settings"]
        assert config["pretrained"] == str(members["pretrained"].resolve())
    # Another pre-training recipe with the same seed gets a file of its own.
    run_fusion(dataclasses.replace(TINY, seed=0, epochs=1, pretrain_lr=5e-4), data["train"],
               data["detector"], tmp_path / "other", pretrained=members["pretrained"])
    assert len(list(members["pretrained"].glob("seed-0-*.pt"))) == 2


def test_ensemble_refuses_a_single_run_and_members_of_other_architectures(
        data, members, tmp_path) -> None:
    one = CliRunner().invoke(app, ["ensemble", "--run", str(members["seed-0"]),
                                   "--out", str(tmp_path / "one")])
    assert one.exit_code == 2 and "at least two fusion runs" in one.output
    wider = tmp_path / "wider"
    run_fusion(dataclasses.replace(TINY, seed=2, epochs=1, dim=48), data["train"],
               data["detector"], wider)
    mixed = CliRunner().invoke(app, ["ensemble", "--run", str(members["seed-0"]),
                                     "--run", str(wider), "--out", str(tmp_path / "mixed")])
    assert mixed.exit_code == 2 and "share one architecture" in mixed.output


def test_ablation_reuses_one_fusion_run_per_seed(members) -> None:
    from ml.train.ablation import reused_runs

    runs = [members["seed-0"], members["seed-1"]]
    assert reused_runs(runs, [0, 1, 2]) == {0: runs[0], 1: runs[1]}
    with pytest.raises(ValueError, match="already the run of seed 0"):
        reused_runs([runs[0], runs[0]], [0, 1])
    with pytest.raises(ValueError, match="not among the seeds"):
        reused_runs(runs, [1, 2])


def test_ensemble_bundle_refuses_weights_of_no_member(members, tmp_path) -> None:
    export_run(members["seed-0"], tmp_path / "one", name="one", version="0")
    bundle = tmp_path / "one"
    manifest = json.loads((bundle / MANIFEST).read_text())
    state = load_file(str(bundle / "model.safetensors"))
    doubled = {f"members.{i}.{k}": v.clone() for i in (0, 1) for k, v in state.items()}
    doubled["members.2.fusion.extra"] = next(iter(state.values())).clone()
    save_file(doubled, str(bundle / "model.safetensors"))
    manifest["model"]["members"] = 2
    manifest["files"]["model.safetensors"] = sha256_file(bundle / "model.safetensors")
    manifest["digest"] = manifest_digest(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="belongs to none of the 2 members"):
        load_bundle(bundle)
    del doubled["members.2.fusion.extra"]
    save_file(doubled, str(bundle / "model.safetensors"))
    manifest["files"]["model.safetensors"] = sha256_file(bundle / "model.safetensors")
    manifest["digest"] = manifest_digest(manifest)
    (bundle / MANIFEST).write_text(json.dumps(manifest))
    assert len(load_bundle(bundle).members) == 2


def test_evaluation_report_names_an_ensembles_seeds() -> None:
    from ml.evaluate.report import ensemble_lines

    assert ensemble_lines({"name": "one", "members": []}) == []
    assert ensemble_lines({"name": "demo", "members": [1, 2, 3]}) == [
        "Model: an ensemble of 3 runs of one recipe (seeds 1, 2, 3), their view scores "
        "averaged and then calibrated."]


def test_members_of_an_unmarked_data_set_share_the_split_their_split_seed_drew(
        data, tmp_path, monkeypatch) -> None:
    """Runs kept by ``ablate --recipe-runs`` trained on the split of the ablation's first
    seed, which their config records as ``split_seed``; a run without one drew its own."""
    from ml.train import ensemble

    studies = [dataclasses.replace(s, split=None) for s in load_manifest(data["train"])]
    monkeypatch.setattr(ensemble, "load_manifest", lambda _: studies)

    def member(name: str, seed: int, **more: int) -> RunFolder:
        RunFolder.create(tmp_path / name, "fusion", {
            "data": str(data["train"]), "detector_run": "detector", "val_fraction": 0.25,
            "seed": seed, **more}).close()
        return RunFolder.open(tmp_path / name, "fusion")

    drawn = [training_splits(studies, 0.25, seed).val for seed in (0, 1)]
    assert drawn[0] != drawn[1]
    assert ensemble.shared_validation([member("a", 0), member("b", 1, split_seed=0)]) == \
        drawn[0]
    with pytest.raises(ensemble.EnsembleError, match="validation split differs"):
        ensemble.shared_validation([member("c", 0), member("d", 1)])
