"""Encoders: freezing only on request, first-token text embedding, the RoBERTa tokenizer
pitfall."""

from __future__ import annotations

import pytest
import torch
from transformers import RobertaTokenizerFast

from ml.encoders import (
    PROBE_TEXT,
    ImageEncoder,
    TextEncoder,
    TokenizerError,
    check_tokenizer,
    load_tokenizer,
    roberta_tokenizer,
    text_model_from_config,
)
from ml.random_bundle import train_tokenizer

TINY_VIT = {"embed_dim": 32, "depth": 4, "num_heads": 2, "patch_size": 32}
TINY_ROBERTA = {"model_type": "roberta", "vocab_size": 600, "hidden_size": 32,
                "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 64,
                "max_position_embeddings": 64}


@pytest.fixture(scope="module")
def bpe_files(tmp_path_factory):
    folder = train_tokenizer(tmp_path_factory.mktemp("tok"))
    return folder / "vocab.json", folder / "merges.txt"


def test_roberta_tokenizer_from_vocab_and_merges_encodes_real_tokens(bpe_files):
    tokenizer = roberta_tokenizer(*bpe_files)
    ids = tokenizer(PROBE_TEXT)["input_ids"]
    assert len(ids) > 5 and ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == PROBE_TEXT
    assert load_tokenizer(bpe_files[0].parent)(PROBE_TEXT)["input_ids"] == ids


def test_tokenizer_built_with_ignored_file_keywords_is_caught(bpe_files):
    broken = RobertaTokenizerFast(vocab_file=str(bpe_files[0]), merges_file=str(bpe_files[1]))
    if len(broken(PROBE_TEXT)["input_ids"]) > 2:
        pytest.skip("this transformers version honours vocab_file=/merges_file=")
    with pytest.raises(TokenizerError, match="vocabulary is empty or was not loaded"):
        check_tokenizer(broken)


def test_image_encoder_trains_whole_until_frozen():
    encoder = ImageEncoder("vit_small_patch8_224.dino", **TINY_VIT)
    assert all(p.requires_grad for p in encoder.parameters())


def test_image_encoder_freezes_stem_and_first_blocks_and_returns_cls():
    encoder = ImageEncoder("vit_small_patch8_224.dino", **TINY_VIT)
    encoder.freeze(3)
    trainable = {name.split(".")[0] for name, p in encoder.vit.blocks.named_parameters()
                 if p.requires_grad}
    assert trainable == {"3"}
    assert not encoder.vit.patch_embed.proj.weight.requires_grad
    assert not encoder.vit.pos_embed.requires_grad and not encoder.vit.cls_token.requires_grad
    assert encoder.vit.norm.weight.requires_grad
    assert encoder(torch.rand(2, 3, 224, 224)).shape == (2, 32)


def test_text_encoder_uses_the_first_token_and_trains_only_the_last_layers():
    torch.manual_seed(0)
    encoder = TextEncoder(text_model_from_config(TINY_ROBERTA), trainable_layers=2).eval()
    trainable = {name.split(".")[3] for name, p in encoder.named_parameters()
                 if p.requires_grad}
    assert trainable == {"2", "3"}  # model.encoder.layer.N
    ids = torch.tensor([[0, 10, 11, 12, 2]])
    mask = torch.ones_like(ids)
    with torch.no_grad():
        first = encoder(ids, mask)
        hidden = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert first.shape == (1, 32)
    assert torch.equal(first, hidden[:, 0])


@pytest.mark.parametrize("trainable_layers", [0, 1, 3])
def test_text_encoder_split_at_its_trainable_layers_gives_the_same_embedding(trainable_layers):
    # Training runs the frozen layers once per history and epoch, then only the
    # trainable ones per batch; padded histories must come out as in one pass.
    torch.manual_seed(0)
    encoder = TextEncoder(text_model_from_config(TINY_ROBERTA), trainable_layers).eval()
    ids = torch.tensor([[0, 10, 11, 12, 13, 2], [0, 20, 21, 2, 1, 1]])
    mask = (ids != 1).long()
    with torch.no_grad():
        whole = encoder(ids, mask)
    split = encoder.trainable_states(encoder.frozen_states(ids, mask), mask)
    assert torch.allclose(split, whole, atol=1e-5)
    if trainable_layers == 0:
        assert not split.requires_grad
        return
    split.sum().backward()
    with_grad = {name.split(".")[3] for name, p in encoder.named_parameters()
                 if p.grad is not None}
    assert with_grad == {str(i) for i in range(4 - trainable_layers, 4)}
