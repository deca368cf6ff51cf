"""Pretrained image weights from local files in each published layout (DINO's state dict
and training checkpoint, timm's safetensors, a Hugging Face ViTModel folder), their
position embedding fitted to the crop size, refusals that name the file, and the shapes
of the full ViT-S/8 and roberta-base built from configuration alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoConfig, AutoModel, ViTConfig, ViTModel

from ml.encoders import ImageEncoder
from ml.pretrained import PretrainedWeightsError, load_image_weights, read_image_weights

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2, "patch_size": 8, "img_size": 32}


def _encoder(seed: int, **changes: int) -> ImageEncoder:
    torch.manual_seed(seed)
    return ImageEncoder("vit_small_patch8_224.dino", **{**TINY, **changes}).eval()


def _same_output(a: ImageEncoder, b: ImageEncoder) -> None:
    crops = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(a(crops), b(crops), rtol=1e-5, atol=1e-5)


def test_dino_state_dict_loads_and_is_pinned_by_sha256(tmp_path: Path) -> None:
    source = _encoder(1)
    file = tmp_path / "dino_deitsmall8_pretrain.pth"
    torch.save(source.vit.state_dict(), file)
    target = _encoder(2)
    provenance = load_image_weights(target.vit, file)
    _same_output(source, target)
    assert provenance.layout == "dino"
    assert provenance.files == {file.name: hashlib.sha256(file.read_bytes()).hexdigest()}


def test_dino_training_checkpoint_takes_the_teacher_backbone(tmp_path: Path) -> None:
    teacher, student = _encoder(1), _encoder(3)
    file = tmp_path / "checkpoint.pth"
    torch.save({"teacher": {**{f"backbone.{k}": v for k, v in teacher.vit.state_dict().items()},
                            "head.mlp.0.weight": torch.zeros(4, 32)},
                "student": {f"module.backbone.{k}": v
                            for k, v in student.vit.state_dict().items()},
                "epoch": 100}, file)
    target = _encoder(2)
    load_image_weights(target.vit, file)
    _same_output(teacher, target)


def test_timm_safetensors_and_timm_hub_folder_load(tmp_path: Path) -> None:
    source = _encoder(1)
    folder = tmp_path / "vit_small_patch8_224.dino"
    folder.mkdir()
    save_file(source.vit.state_dict(), str(folder / "model.safetensors"))
    (folder / "config.json").write_text('{"architecture": "vit_small_patch8_224"}')
    for path in (folder / "model.safetensors", folder):
        target = _encoder(2)
        provenance = load_image_weights(target.vit, path)
        _same_output(source, target)
        assert provenance.layout == "timm"
    assert set(provenance.files) == {"config.json", "model.safetensors"}


def test_hugging_face_vit_folder_gives_the_same_cls_embedding(tmp_path: Path) -> None:
    torch.manual_seed(4)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=128, image_size=32, patch_size=8,
                       layer_norm_eps=1e-6, qkv_bias=True)
    hf = ViTModel(config, add_pooling_layer=False).eval()
    hf.save_pretrained(tmp_path / "dino-vits8")
    target = _encoder(2)
    provenance = load_image_weights(target.vit, tmp_path / "dino-vits8")
    assert provenance.layout == "transformers"
    crops = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = hf(pixel_values=crops).last_hidden_state[:, 0]
        torch.testing.assert_close(target(crops), expected, rtol=1e-4, atol=1e-4)


def test_position_embedding_is_interpolated_to_another_crop_size(tmp_path: Path) -> None:
    source = _encoder(1)  # 32-px crops: a 4x4 grid
    file = tmp_path / "weights.pth"
    torch.save(source.vit.state_dict(), file)
    target = _encoder(2, img_size=48)  # 6x6 grid
    load_image_weights(target.vit, file)
    assert target.vit.pos_embed.shape == (1, 37, 32)
    torch.testing.assert_close(target.vit.cls_token, source.vit.cls_token)
    torch.testing.assert_close(target.vit.blocks[1].attn.qkv.weight,
                               source.vit.blocks[1].attn.qkv.weight)
    assert target(torch.rand(1, 3, 48, 48)).shape == (1, 32)


def test_files_that_are_not_fitting_vit_weights_are_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(PretrainedWeightsError, match="absent.pth: no such file"):
        load_image_weights(_encoder(1).vit, tmp_path / "absent.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedWeightsError, match="junk.pth: not a PyTorch state dict"):
        load_image_weights(_encoder(1).vit, junk)
    other = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(8, 3, 7, 7)}, other)
    with pytest.raises(PretrainedWeightsError, match="resnet.pth: no cls_token"):
        load_image_weights(_encoder(1).vit, other)
    wider = tmp_path / "wider.pth"
    torch.save(_encoder(1, embed_dim=48).vit.state_dict(), wider)
    with pytest.raises(PretrainedWeightsError, match="wider.pth: the weights do not fit"):
        load_image_weights(_encoder(1).vit, wider)
    empty = tmp_path / "folder"
    empty.mkdir()
    with pytest.raises(PretrainedWeightsError, match="no model.safetensors"):
        read_image_weights(empty)


# The published DINO ViT-S/8 (dino_deitsmall8_pretrain.pth): shapes of its state dict.
VIT_S8 = {"cls_token": (1, 1, 384), "pos_embed": (1, 785, 384),
          "patch_embed.proj.weight": (384, 3, 8, 8), "blocks.11.attn.qkv.weight": (1152, 384),
          "blocks.11.mlp.fc1.weight": (1536, 384), "norm.weight": (384,)}


def test_full_vit_s8_has_the_published_dino_layout() -> None:
    with torch.device("meta"):
        vit = ImageEncoder("vit_small_patch8_224.dino", img_size=224).vit
    shapes = {k: tuple(v.shape) for k, v in vit.state_dict().items()}
    assert {k: shapes[k] for k in VIT_S8} == VIT_S8
    assert len(vit.blocks) == 12 and vit.num_features == 384
    assert sum(v.numel() for v in vit.state_dict().values()) == 21_670_272


def test_full_roberta_base_has_the_published_layout() -> None:
    config = AutoConfig.for_model("roberta", vocab_size=50265, hidden_size=768,
                                  num_hidden_layers=12, num_attention_heads=12,
                                  intermediate_size=3072, max_position_embeddings=514,
                                  type_vocab_size=1, pad_token_id=1)
    with torch.device("meta"):
        model = AutoModel.from_config(config, add_pooling_layer=False)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["embeddings.word_embeddings.weight"] == (50265, 768)
    assert shapes["embeddings.position_embeddings.weight"] == (514, 768)
    assert shapes["encoder.layer.11.attention.self.query.weight"] == (768, 768)
    assert shapes["encoder.layer.11.intermediate.dense.weight"] == (3072, 768)
    assert sum(v.numel() for v in model.parameters()) == 124_055_040
