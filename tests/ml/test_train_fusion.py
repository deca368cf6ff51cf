"""Training on a tiny synthetic data set: splits that never overlap the test set, the
fusion loss going down, the ablation heads, and a run exported to a bundle that
``load_bundle`` verifies and ``Pipeline`` scores as training saw it."""

from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from ml.bundle import CropParams, build_model, load_bundle
from ml.cli import app
from ml.encoders import (
    ImageEncoder,
    TextEncoder,
    load_tokenizer,
    text_model_from_pretrained,
    transformer_layers,
)
from ml.manifest import resolve_location, sha256_file
from ml.pipeline import Pipeline
from ml.synth.dataset import load_manifest
from ml.train.crop_pretraining import labelled_crops, pretrain_image_encoder
from ml.train.export import export_run
from ml.train.fusion_run import prepare_caches, run_fusion
from ml.train.fusion_training import (
    MINILM,
    FusionTraining,
    encode_texts,
    evaluate_cache,
    model_section,
    predict_cache,
    score_cache,
    seed_everything,
    train_fusion,
    weight_average,
)
from ml.train.recipes import RecipeError, recipe_settings
from ml.train.run_folder import RunFolder
from ml.train.splits import SplitError, check_disjoint, training_splits
from ml.types import StudyInput, ViewInput

TINY = FusionTraining(k=4, crop_size=32, dim=32, epochs=6, batch=8, lr=2e-3, patience=6,
                      keyword_count=20,
                      image_overrides={"embed_dim": 32, "depth": 1, "num_heads": 2,
                                       "patch_size": 8})


def test_validation_split_never_overlaps_the_test_split(data) -> None:
    studies = load_manifest(data["train"])
    splits = training_splits(studies, 0.25, seed=0)
    assert {s.study_uid for s in splits.train}.isdisjoint(s.study_uid for s in splits.val)
    tests = load_manifest(data["test"])
    check_disjoint({"train": splits.train, "val": splits.val, "test": tests})
    with pytest.raises(SplitError, match="val and test splits share"):
        check_disjoint({"val": splits.val, "test": splits.val[:1]})
    # the training set given again as test set is refused before any training
    with pytest.raises(SplitError, match="share"):
        prepare_caches(data["train"], data["detector"], TINY, 0.25, data["train"],
                       with_test=True)


def test_unmarked_data_set_is_split_stratified_by_seed(data) -> None:
    studies = [dataclasses.replace(s, split=None) for s in load_manifest(data["train"])]
    first = training_splits(studies, 0.25, seed=4)
    again = training_splits(studies, 0.25, seed=4)
    assert [s.study_uid for s in first.val] == [s.study_uid for s in again.val]
    assert {s.label for s in first.val} == {0, 1}
    assert len(first.train) + len(first.val) == len(studies)


def test_fusion_training_lowers_the_loss_and_keeps_the_best_validation_epoch(data) -> None:
    caches = prepare_caches(data["train"], data["detector"], TINY, 0.25, data["test"],
                            with_test=False)
    epochs: list[dict] = []
    result = train_fusion(TINY, caches.detector, caches.train, caches.val,
                          torch.device("cpu"), on_epoch=epochs.append)
    losses = [e["train_loss"] for e in epochs]
    assert min(losses[-2:]) < losses[0]
    best_auc = max(e["val_auc_view"] for e in epochs)
    tied = [e for e in epochs if e["val_auc_view"] == best_auc]  # ties: lower val loss
    assert result.best_epoch == min(tied, key=lambda e: e["val_loss"])["epoch"]
    # masking was on and dropped some words in some epoch
    assert any(e["masked_words"] > 0 for e in epochs)
    assert 0.0 <= result.threshold <= 1.0


def test_crop_pretraining_labels_lesion_crops_and_lowers_its_loss(data) -> None:
    caches = prepare_caches(data["train"], data["detector"], TINY, 0.25, None,
                            with_test=False)
    train = caches.train
    samples = labelled_crops(train)
    lesion_views = sum(1 for s in training_splits(load_manifest(data["train"]), 0.25, 0).train
                       for v in s.views if v.boxes)
    assert len(train.lesion_crops) >= lesion_views > 0
    # every ROI of a view without a cancer is a negative, nothing of a cancer view is
    negatives = int((train.mask & (train.labels == 0)[:, None]).sum())
    assert int((samples.labels == 0).sum()) == negatives
    assert not (train.roi_on_lesion & (train.labels == 0)[:, None]).any()
    torch.manual_seed(0)
    encoder = build_model(model_section(TINY, caches.detector)).image_encoder
    epochs: list[dict] = []
    pretrain_image_encoder(encoder, train, caches.val, CropParams(size=TINY.crop_size),
                           epochs=6, lr=2e-3, batch=32, seed=0, device=torch.device("cpu"),
                           on_epoch=epochs.append)
    losses = [e["train_loss"] for e in epochs]
    assert min(losses[-2:]) < losses[0]


@pytest.mark.parametrize("variant", ["text", "vision", "concat"])
def test_ablation_variants_train_and_score_every_view(data, variant) -> None:
    caches = prepare_caches(data["train"], data["detector"], TINY, 0.25, None,
                            with_test=False)
    settings = dataclasses.replace(TINY, variant=variant, epochs=1, keyword_p=0.0)
    result = train_fusion(settings, caches.detector, caches.train, caches.val,
                          torch.device("cpu"))
    assert result.val_metrics["view"]["count"] == len(caches.val)


@pytest.mark.parametrize("trainable_text_layers", [0, 1])
def test_export_load_bundle_and_pipeline_round_trip(data, tmp_path,
                                                    trainable_text_layers) -> None:
    run_dir = tmp_path / "fusion"
    settings = dataclasses.replace(TINY, epochs=2, pretrain_epochs=1, roi_scores=True,
                                   trainable_text_layers=trainable_text_layers,
                                   text_context="side" if trainable_text_layers else "none",
                                   history_dropout=0.3 if trainable_text_layers else 0.0)
    run_fusion(settings,
               data["train"],
               data["detector"], run_dir,
               test=data["test"], val_fraction=0.25)
    manifest = export_run(run_dir, tmp_path / "bundle", name="tiny-trained", version="0.1")
    result = json.loads((run_dir / "result.json").read_text())
    bundle = load_bundle(tmp_path / "bundle")  # verifies every digest and the weights
    # The study threshold is the manifest's threshold; each level has its own point,
    # chosen on the calibrated validation scores, and the bundle carries the maps.
    points = result["operating_points"]
    assert bundle.threshold == pytest.approx(points["study"]["threshold"])
    assert bundle.per_level and bundle.operating.calibrated
    assert {level: bundle.operating.__dict__[level].threshold for level in points} == \
        pytest.approx({level: p["threshold"] for level, p in points.items()})
    assert bundle.calibration.as_manifest() == result["calibration"]
    assert all(p["target"] == "specificity:0.90" and "validation cases" in p["reached"]
               for p in points.values())
    assert bundle.study_marks.view_threshold == pytest.approx(points["view"]["threshold"])
    assert manifest["model"]["text_encoder"]["external"]["location"].startswith("package:")
    assert "text_encoder.model.embeddings.word_embeddings.weight" not in \
        json.dumps(list(manifest["files"]))  # the frozen encoder is pinned, not copied
    assert manifest["training_data"]["encoders"]["text"].startswith(
        "sentence-transformers/all-MiniLM-L6-v2")
    assert "pre-trained for 1 epochs" in manifest["training_data"]["encoders"]["image"]
    assert manifest["training_data"]["encoders"]["text"].endswith(
        "last 1 transformer layer(s) trained with the fusion and kept in the bundle, the "
        "others frozen as installed" if trainable_text_layers else "; frozen")
    assert manifest["model"]["fusion"]["roi_scores"] is True and bundle.model.roi_scores
    # A trained text layer travels in the bundle; the frozen ones stay as installed.
    pristine = TextEncoder(text_model_from_pretrained(resolve_location(MINILM)), 0)
    layers = zip(transformer_layers(pristine.model),
                 transformer_layers(bundle.model.text_encoder.model), strict=True)
    changed = [not torch.equal(a.output.dense.weight, b.output.dense.weight)
               for a, b in layers]
    assert changed == [False] * (6 - trainable_text_layers) + [True] * trainable_text_layers

    # the pipeline scores a test study as the training cache saw it
    caches = prepare_caches(data["train"], data["detector"], TINY, 0.25, data["test"],
                            with_test=True)
    test = caches.test
    assert test is not None
    assert bundle.text_context == settings.text_context
    cached = score_cache(bundle.model, bundle.tokenizer, test, settings, torch.device("cpu"))
    study = load_manifest(data["test"])[0]
    prediction = Pipeline(bundle, device="cpu").predict([StudyInput(
        study_uid=study.study_uid, history=study.history,
        views=[ViewInput(v.path, v.sop_instance_uid) for v in study.views])])[0]
    scored = np.array([v.score for v in prediction.views])
    np.testing.assert_allclose(scored, cached[:4], atol=2e-2)
    # What the node reports is the calibrated probability of each level.
    np.testing.assert_allclose([v.probability for v in prediction.views],
                               bundle.calibration.view(scored))
    assert prediction.probability == pytest.approx(bundle.calibration.study.one(scored.max()))
    assert prediction.breasts["R"] == pytest.approx(bundle.calibration.breast.one(
        max(v.score or 0.0 for v in prediction.views if v.laterality == "R")))
    assert prediction.bundle_digest == manifest["digest"]


def test_cli_fusion_refuses_a_test_set_that_overlaps_training(data, tmp_path) -> None:
    result = CliRunner().invoke(app, [
        "fusion", "--data", str(data["train"]), "--detector", str(data["detector"]),
        "--out", str(tmp_path / "run"), "--test", str(data["train"]), "--epochs", "1"])
    assert result.exit_code == 2
    assert "share" in result.output


def test_cli_fusion_with_roi_scores_records_them_in_the_model_section(data, tmp_path) -> None:
    result = CliRunner().invoke(app, [
        "fusion", "--data", str(data["train"]), "--detector", str(data["detector"]),
        "--out", str(tmp_path / "run"), "--test", str(data["test"]), "--epochs", "1",
        "--pretrain-epochs", "0", "--k", "4", "--crop-size", "32", "--vit-dim", "32",
        "--vit-depth", "1", "--vit-patch", "8", "--roi-scores"])
    assert result.exit_code == 0, result.output
    section = json.loads((tmp_path / "run" / "model_section.json").read_text())
    assert section["fusion"]["roi_scores"] is True
    assert build_model(section).roi_dim == section["image_encoder"]["overrides"]["embed_dim"] + 1


def test_cli_ablate_trains_every_row_per_seed_with_spreads_and_intervals(data, tmp_path) -> None:
    out, kept = tmp_path / "ablation", tmp_path / "kept"
    RunFolder.create(kept / "fusion-1", "fusion", {}).close()
    used = CliRunner().invoke(app, [
        "ablate", "--data", str(data["train"]), "--detector", str(data["detector"]),
        "--test", str(data["test"]), "--out", str(out), "--recipe-runs", str(kept)])
    assert used.exit_code == 2 and "fusion-1 already holds a run" in used.output
    assert not out.exists()  # refused before anything was written
    result = CliRunner().invoke(app, [
        "ablate", "--data", str(data["train"]), "--detector", str(data["detector"]),
        "--test", str(data["test"]), "--out", str(out), "--epochs", "1",
        "--pretrain-epochs", "1", "--k", "4", "--crop-size", "32", "--batch", "16",
        "--trainable-text-layers", "1", "--seeds", "0,1,2", "--roi-scores",
        "--text-context", "side", "--history-dropout", "0.3",
        "--rows", "text,vision,masking,full,no-confidence", "--resamples", "200",
        "--workers", "2", "--recipe-runs", str(kept), "--force"])
    assert result.exit_code == 0, result.output
    assert "full − detector confidence" in result.output  # the table is printed
    config = json.loads((out / "config.json").read_text())["settings"]
    assert config["trainable_text_layers"] == 1 and config["seeds"] == [0, 1, 2]
    summary = json.loads((out / "ablation.json").read_text())
    rows = {row["key"]: row for row in summary["rows"]}
    assert list(rows) == ["text", "vision", "masking", "full", "no-confidence"]
    for row in rows.values():
        assert row["seeds"] == 3
        for column in ("test_view", "test_breast", "test_study", "test_without_history_study",
                       "val_view"):
            values = row[column]["values"]
            assert len(values) == 3 and row[column]["mean"] == pytest.approx(np.mean(values))
            assert row[column]["sd"] == pytest.approx(np.std(values, ddof=1))
    assert summary["side_by_side"] == 2  # in two worker processes
    runs = summary["runs"]
    assert all([r["seed"] for r in runs[key]] == [0, 1, 2] for key in rows)
    assert all(len(r["scores"]["study"]) == 4 and len(r["scores"]["view"]) == 16
               for r in runs["full"])  # 4 test studies x 4 views
    # Vision alone never reads a history: removing it changes nothing.
    assert runs["vision"][0]["test_without_history"] == runs["vision"][0]["test"]
    pairs = [(i["first"], i["second"]) for i in summary["intervals"]]
    assert pairs == [("full", "vision"), ("full", "text"), ("full", "masking"),
                     ("full", "no-confidence")]
    assert all(i["low"] <= i["difference"] <= i["high"] for i in summary["intervals"])
    assert summary["choice"]["chosen"] in ("full", "masking")
    # One crop pre-training per seed, shared by that seed's vision rows.
    assert sorted(p.name.split("-")[1] for p in (out / "pretrained").glob("*.pt")) == \
        ["0", "1", "2"]
    assert "± " in (out / "ablation.md").read_text()
    _check_kept_recipe_runs(data, runs["full"], kept, tmp_path)


def _check_kept_recipe_runs(data, measured: list[dict], kept: Path, tmp_path: Path) -> None:
    """Each seed's recipe row, kept as a fusion run, holds the weights the ablation
    measured, and the kept runs form an ensemble."""
    from ml.train.ablation import measure
    from ml.train.export import load_run_model

    caches = None
    for seed, result in enumerate(measured):
        run = RunFolder.open(kept / f"fusion-{seed}", "fusion")
        assert result["kept"] == str(kept / f"fusion-{seed}")
        settings = run.config["settings"]
        assert settings["seed"] == seed and settings["split_seed"] == 0  # the ablation's split
        assert len(run.epochs()) == 1  # --epochs 1, recorded as it trained
        values = FusionTraining(**{f.name: settings[f.name]
                                   for f in dataclasses.fields(FusionTraining)})
        caches = caches or prepare_caches(data["train"], data["detector"], values, 0.2,
                                          data["test"], with_test=True)  # as every seed's
        model, _ = load_run_model(run)
        again = measure(model, values, caches, torch.device("cpu"))
        assert again["scores"]["view"] == pytest.approx(result["scores"]["view"], abs=1e-5)
    output = CliRunner().invoke(app, [
        "ensemble", *[a for seed in (0, 1, 2) for a in ("--run", str(kept / f"fusion-{seed}"))],
        "--out", str(tmp_path / "ensemble")])
    assert output.exit_code == 0, output.output


def test_runs_sharing_a_pre_trained_encoder_pre_train_it_once(tmp_path) -> None:
    """The second run waits for the first's pre-training and loads its weights."""
    from ml.train.crop_pretraining import load_or_pretrain

    saved = tmp_path / "pretrained" / "0.pt"
    inside, release = threading.Event(), threading.Event()
    calls: list[str] = []

    def first_pretraining() -> float:
        calls.append("first")
        inside.set()
        assert release.wait(60)
        nn.init.constant_(first.weight, 0.25)
        return 0.75

    first, second = nn.Linear(2, 1), nn.Linear(2, 1)
    runner = threading.Thread(target=load_or_pretrain,
                              args=(first, saved, first_pretraining))
    runner.start()
    assert inside.wait(60)
    aucs: list[float] = []
    waiter = threading.Thread(target=lambda: aucs.append(load_or_pretrain(
        second, saved, lambda: calls.append("second") or 0.5)))
    waiter.start()
    waiter.join(timeout=1.0)
    assert waiter.is_alive() and not aucs  # held at the lock, not pre-training
    release.set()
    runner.join(60)
    waiter.join(60)
    assert calls == ["first"] and aucs == [0.75]
    assert torch.equal(second.weight, torch.full((1, 2), 0.25))
    assert not saved.with_name("0.pt.partial").exists()  # written whole, then renamed


def test_ablation_runs_each_seed_pre_training_row_before_its_text_rows() -> None:
    from ml.train.ablation import ROWS, ablation_jobs

    rows = [r for r in ROWS if r.key in ("text", "vision", "masking", "full")]
    jobs = ablation_jobs(rows, [4, 5, 6], {5: Path("fusion-5"), 6: Path("fusion-6")},
                         keep=Path("kept"))
    assert [(j.row.key, j.seed) for j in jobs] == [
        ("vision", 4), ("text", 4), ("masking", 4), ("full", 4),
        ("vision", 5), ("text", 5), ("masking", 5), ("full", 5),
        ("vision", 6), ("text", 6), ("masking", 6), ("full", 6)]
    assert [(j.row.key, j.seed, j.reuse) for j in jobs if j.reuse] == [
        ("full", 5, Path("fusion-5")), ("full", 6, Path("fusion-6"))]
    # The recipe row trained (seed 4) is kept; a reused one is not written again.
    assert [(j.row.key, j.seed, j.keep) for j in jobs if j.keep] == [
        ("full", 4, Path("kept/fusion-4"))]


def test_ablation_side_by_side_is_one_run_per_core_capped_and_one_on_a_gpu(monkeypatch) -> None:
    from ml.train import ablation

    monkeypatch.setattr(ablation.os, "cpu_count", lambda: 64)
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert ablation.side_by_side(cpu, jobs=15) == ablation.MAX_WORKERS < 64
    assert ablation.side_by_side(cpu, jobs=3) == 3
    assert ablation.side_by_side(gpu, jobs=15) == 1
    assert ablation.side_by_side(cpu, jobs=15, workers=12) == 12  # asked for


def test_ablation_rows_follow_the_recipe() -> None:
    from ml.train.ablation import rows_for

    plain = [r.key for r in rows_for(TINY)]
    assert plain == ["text", "vision", "concat", "attention", "masking"]
    full = dataclasses.replace(TINY, roi_scores=True, text_context="side")
    assert [r.key for r in rows_for(full)][-2:] == ["full", "no-confidence"]


def test_validation_with_a_trained_text_layer_encodes_the_histories_as_trained(data) -> None:
    caches = prepare_caches(data["train"], data["detector"], TINY, 0.25, None,
                            with_test=False)
    settings = dataclasses.replace(TINY, epochs=2, trainable_text_layers=1, lr=1e-2)
    result = train_fusion(settings, caches.detector, caches.train, caches.val,
                          torch.device("cpu"))
    tokenizer = load_tokenizer(resolve_location(MINILM))
    text = encode_texts(result.model, tokenizer, caches.val.histories, settings.max_length,
                        torch.device("cpu"))
    probabilities, _ = predict_cache(result.model, caches.val,
                                     CropParams(size=settings.crop_size), text,
                                     torch.device("cpu"))
    fresh = evaluate_cache(caches.val, probabilities, result.threshold)
    assert result.val_metrics == fresh


def test_weight_average_is_an_exponential_moving_average_of_every_step() -> None:
    assert weight_average(torch.nn.Linear(2, 1), 0.0) is None
    with pytest.raises(ValueError, match="ema_decay"):
        weight_average(torch.nn.Linear(2, 1), 1.0)
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.BatchNorm1d(1))
    average = weight_average(model, 0.75)
    first = model[0].weight.detach().clone()
    expected = first
    for step in range(3):
        with torch.no_grad():
            model[0].weight.add_(1.0 + step)
            model[1].running_mean.fill_(4.0 * (step + 1))
        average.update_parameters(model)
        # the first update copies; each later one moves a quarter of the way
        expected = (model[0].weight.detach().clone() if step == 0
                    else 0.75 * expected + 0.25 * model[0].weight.detach())
    assert torch.allclose(average.module[0].weight, expected)
    assert not torch.allclose(average.module[0].weight, model[0].weight)
    assert float(average.module[1].running_mean) == pytest.approx(
        0.75 * (0.75 * 4.0 + 0.25 * 8.0) + 0.25 * 12.0)


def test_weight_average_leaves_frozen_parameters_as_first_copied() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(2, 1), torch.nn.Linear(1, 1))
    model[1].requires_grad_(False)
    average = weight_average(model, 0.5)
    frozen = model[1].weight.detach().clone()
    for _ in range(2):
        with torch.no_grad():
            model[0].weight.add_(1.0)
            model[1].weight.add_(1.0)  # only to see whether the average follows
        average.update_parameters(model)
    assert torch.equal(average.module[1].weight, frozen + 1.0)  # the first update's copy
    assert torch.allclose(average.module[0].weight, model[0].weight - 0.5)


def test_with_a_weight_average_the_kept_model_is_the_average_validation_judged(data) -> None:
    caches = prepare_caches(data["train"], data["detector"], TINY, 0.25, None,
                            with_test=False)
    epochs: list[dict] = []
    settings = dataclasses.replace(TINY, epochs=4, patience=4, ema_decay=0.9)
    result = train_fusion(settings, caches.detector, caches.train, caches.val,
                          torch.device("cpu"), on_epoch=epochs.append)
    tokenizer = load_tokenizer(resolve_location(MINILM))
    kept = score_cache(result.model, tokenizer, caches.val, settings, torch.device("cpu"))
    judged = epochs[result.best_epoch]
    assert evaluate_cache(caches.val, kept, 0.5)["view"]["auc"] == pytest.approx(
        judged["val_auc_view"])
    plain = train_fusion(dataclasses.replace(settings, ema_decay=0.0), caches.detector,
                         caches.train, caches.val, torch.device("cpu"))
    trained = plain.model.state_dict()
    assert any(not torch.equal(value, trained[name])
               for name, value in result.model.state_dict().items()
               if value.is_floating_point())


def test_random_image_weights_train_their_stem(data) -> None:
    caches = prepare_caches(data["train"], data["detector"], TINY, 0.25, None,
                            with_test=False)
    settings = dataclasses.replace(TINY, epochs=1, frozen_blocks=1)  # ignored: random weights
    seed_everything(settings.seed)
    initial = build_model(model_section(settings, caches.detector)).image_encoder.vit
    result = train_fusion(settings, caches.detector, caches.train, caches.val,
                          torch.device("cpu"))
    vit = result.model.image_encoder.vit
    assert not torch.equal(vit.patch_embed.proj.weight, initial.patch_embed.proj.weight)
    assert not torch.equal(vit.pos_embed, initial.pos_embed)
    assert not torch.equal(vit.blocks[0].attn.qkv.weight, initial.blocks[0].attn.qkv.weight)
    assert result.model_section["image_encoder"]["pretrained"] is None
    assert result.model_section["image_encoder"]["frozen_blocks"] == 0


def test_pretrained_image_weights_are_pinned_and_only_then_frozen(data, tmp_path) -> None:
    caches = prepare_caches(data["train"], data["detector"], TINY, 0.25, None,
                            with_test=False)
    torch.manual_seed(9)
    source = ImageEncoder("vit_small_patch8_224.dino",
                          **{**TINY.image_overrides, "img_size": TINY.crop_size}).vit
    weights = tmp_path / "dino_deitsmall8_pretrain.pth"
    torch.save(source.state_dict(), weights)
    settings = dataclasses.replace(TINY, epochs=1, image_weights=str(weights), frozen_blocks=1)
    result = train_fusion(settings, caches.detector, caches.train, caches.val,
                          torch.device("cpu"))
    vit = result.model.image_encoder.vit
    torch.testing.assert_close(vit.patch_embed.proj.weight, source.patch_embed.proj.weight)
    torch.testing.assert_close(vit.blocks[0].mlp.fc1.weight, source.blocks[0].mlp.fc1.weight)
    assert not torch.equal(vit.norm.weight, source.norm.weight)  # after the frozen blocks
    image = result.model_section["image_encoder"]
    assert image["frozen_blocks"] == 1
    assert image["pretrained"] == {"source": weights.name, "layout": "dino",
                                   "files": {weights.name: sha256_file(weights)}}


def test_paper_recipe_has_the_papers_shape_and_learning_rates() -> None:
    random_init = recipe_settings("paper", text_location=MINILM)
    assert (random_init.crop_size, random_init.k, random_init.head_hidden) == (224, 8, 256)
    assert random_init.image_overrides == {} and random_init.trainable_text_layers == 2
    assert random_init.lr == 3e-4
    assert recipe_settings("paper", text_location=MINILM, image_weights="w.pth").lr == 1e-6
    assert recipe_settings("paper", text_location=MINILM, image_weights="w.pth",
                           lr=1e-5).lr == 1e-5
    with pytest.raises(RecipeError, match="needs roberta-base"):
        recipe_settings("paper")
    assert recipe_settings("demo", epochs=3).roi_scores and \
        recipe_settings("demo", epochs=3).epochs == 3


def test_cli_paper_recipe_without_a_text_encoder_says_what_it_needs(data, tmp_path) -> None:
    result = CliRunner().invoke(app, [
        "fusion", "--data", str(data["train"]), "--detector", str(data["detector"]),
        "--out", str(tmp_path / "run"), "--recipe", "paper"])
    assert result.exit_code == 2
    assert "--text-encoder" in result.output and not (tmp_path / "run").exists()


def test_random_full_size_bundle_has_the_paper_recipes_shape() -> None:
    from ml.random_bundle import model_section as random_section

    paper = recipe_settings("paper", text_location=MINILM)
    section = random_section("full", vocab_size=50265)
    image = section["image_encoder"]
    assert (image["arch"], image["overrides"]) == (paper.image_arch, paper.image_overrides)
    assert (section["k"], section["crop"]["size"]) == (paper.k, paper.crop_size)
    assert section["fusion"]["head_hidden"] == paper.head_hidden
    assert section["detector"]["nms_iou"] == 0.1
    assert section["text_encoder"]["trainable_layers"] == paper.trainable_text_layers


def test_manifest_history_names_the_pretrained_files_and_their_digests() -> None:
    from ml.train.export import detector_history, image_encoder_history

    section = {"image_encoder": {"arch": "vit_small_patch8_224.dino", "overrides": {},
                                 "frozen_blocks": 9,
                                 "pretrained": {"source": "dino.pth", "layout": "dino",
                                                "files": {"dino.pth": "ab" * 32}}}}
    history = image_encoder_history(section, {}, {})
    assert f"dino weights dino.pth (dino.pth sha256:{'ab' * 32})" in history
    assert "first 9 blocks frozen" in history
    section["image_encoder"]["pretrained"] = None
    assert "random initialisation" in image_encoder_history(section, {}, {})
    init = {"init": {"path": "/w/yolo11s.pt", "sha256": "cd" * 32}}
    assert f"from /w/yolo11s.pt (sha256:{'cd' * 32}) at 1024 px" in \
        detector_history(init, {"width_multiple": 0.5}, 1024)
    assert "from scratch at 384 px" in detector_history({}, {"width_multiple": 0.06}, 384)


@pytest.fixture(scope="module")
def bundle(data) -> Path:
    run_dir = data["root"] / "evaluated-run"
    run_fusion(dataclasses.replace(TINY, epochs=2, text_context="side",
                                   history_dropout=0.2), data["train"], data["detector"],
               run_dir, test=data["test"], val_fraction=0.25)
    export_run(run_dir, data["root"] / "evaluated-bundle", name="tiny", version="0.1")
    return data["root"] / "evaluated-bundle"


def test_evaluate_reports_each_level_at_its_operating_point_with_interval_and_ece(
        data, bundle, tmp_path) -> None:
    out = tmp_path / "evaluation"
    result = CliRunner().invoke(app, ["evaluate", "--bundle", str(bundle), "--data",
                                      str(data["test"]), "--out", str(out),
                                      "--attention-pictures", "2"])
    assert result.exit_code == 0, result.output
    assert "| level | n | positives | ROC AUC [95% CI] | ECE | ECE if calibrated |" in result.output
    assert "with every history removed:" in result.output
    report = json.loads((out / "evaluation.json").read_text())
    loaded = load_bundle(bundle)
    for level in ("view", "breast", "study"):
        metrics = report["metrics"][level]
        assert metrics["threshold"] == pytest.approx(
            getattr(loaded.operating, level).threshold)
        low, high = metrics["auc_95ci"]
        assert low <= metrics["auc"] <= high and 0.0 <= metrics["ece"] <= 1.0
        assert 0.0 <= metrics["ece_if_calibrated"] <= 1.0
        assert report["without_history"][level]["count"] == metrics["count"]
    assert report["metrics"]["view"]["count"] == 16 and report["metrics"]["study"]["count"] == 4
    assert report["calibration"].startswith("platt, validation split")
    assert {"roc.png", "reliability.png"} <= set(report["figures"])
    assert (out / "reliability.png").stat().st_size > 0
    text = (out / "evaluation.md").read_text()
    assert "Probabilities calibrated: platt" in text and "specificity:0.90" in text


def test_calibrate_refits_a_bundle_on_validation_studies_only(data, bundle, tmp_path) -> None:
    out = tmp_path / "recalibrated"
    result = CliRunner().invoke(app, ["calibrate", "--bundle", str(bundle), "--data",
                                      str(data["train"]), "--out", str(out),
                                      "--operating-point", "study=sensitivity:0.5",
                                      "--version", "0.2"])
    assert result.exit_code == 0, result.output
    before, after = load_bundle(bundle), load_bundle(out)  # digests verified
    assert after.version == "0.2" and after.per_level
    assert after.operating.study.target == "sensitivity:0.50"
    assert after.calibration.fitted_on.startswith("val split of train (")
    assert after.manifest["training_data"]["calibration_data"]["split"] == "val"
    assert sha256_file(out / "model.safetensors") == sha256_file(bundle / "model.safetensors")
    assert after.digest != before.digest
    refused = CliRunner().invoke(app, ["calibrate", "--bundle", str(bundle), "--data",
                                       str(data["train"]), "--out", str(tmp_path / "x"),
                                       "--split", "test"])
    assert refused.exit_code == 2 and "would spend it" in refused.output


def test_an_imported_data_set_trains_like_a_synthetic_one(data, tmp_path) -> None:
    import csv

    from ml.site_data.importer import import_dataset

    studies = load_manifest(data["train"])
    site = tmp_path / "site.csv"
    with site.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "patient_id", "study_id", "label", "boxes", "history",
                         "split"])
        for study in studies:
            for view in study.views:
                writer.writerow([view.path, study.patient_id, study.accession, view.label,
                                 ";".join(" ".join(f"{c:g}" for c in b) for b in view.boxes),
                                 study.history, study.split])
    out = tmp_path / "imported"
    import_dataset("generic", site, out, fractions={}, val_fraction=0.0, seed=0)
    imported = load_manifest(out)
    assert [len(s.views) for s in imported] == [len(s.views) for s in studies]
    caches = prepare_caches(out, data["detector"], TINY, 0.25, data["test"], with_test=False)
    original = prepare_caches(data["train"], data["detector"], TINY, 0.25, data["test"],
                              with_test=False)
    assert torch.equal(caches.train.crops, original.train.crops)  # the same files, unmoved
    assert caches.train.labels.tolist() == original.train.labels.tolist()
    result = train_fusion(dataclasses.replace(TINY, epochs=1), caches.detector, caches.train,
                          caches.val, torch.device("cpu"))
    assert result.val_metrics["view"]["count"] == len(caches.val)
