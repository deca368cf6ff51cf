"""Image encoder (timm ViT, CLS token) and text encoder (Hugging Face, first token).

Both are built from configuration only (random weights) or from local files; nothing is
downloaded here: ``pretrained=False`` for timm and ``local_files_only=True`` for
Hugging Face. Weights come from the bundle or a pinned local folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import timm
import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    RobertaTokenizerFast,
)
from transformers.masking_utils import create_bidirectional_mask

PROBE_TEXT = "left breast lump, family history of breast cancer"


class TokenizerError(ValueError):
    """A tokenizer that cannot encode text (e.g. built from ignored file keywords)."""


class ImageEncoder(nn.Module):
    """A timm ViT; crops (N, 3, S, S) -> CLS embeddings (N, d_image).

    ``arch`` is a timm model name (the authors' ``vit_small_patch8_224.dino``);
    ``overrides`` change its shape (embed_dim, depth, num_heads, patch_size, img_size) for
    small configurations. Every weight trains until ``freeze`` is called, which training
    does only for pretrained weights (``ml.pretrained``): a random stem must learn.
    """

    def __init__(self, arch: str = "vit_small_patch8_224.dino", **overrides: Any) -> None:
        super().__init__()
        vit: Any = timm.create_model(arch, pretrained=False, num_classes=0,
                                     global_pool="token", **overrides)
        self.vit = vit
        self.dim = int(vit.num_features)

    def freeze(self, frozen_blocks: int) -> None:
        """Freeze the stem (patch and position embeddings, class token) and the first
        ``frozen_blocks`` blocks; the rest trains."""
        stem = [self.vit.patch_embed, *self.vit.blocks[:frozen_blocks]]
        for module in stem:
            module.requires_grad_(False)
        for name in ("cls_token", "pos_embed", "reg_token"):
            param = getattr(self.vit, name, None)
            if isinstance(param, nn.Parameter):
                param.requires_grad_(False)

    def forward(self, crops: Tensor) -> Tensor:
        return self.vit(crops)  # (N, d_image): CLS token after the final norm


class TextEncoder(nn.Module):
    """A Hugging Face encoder; token ids (N, L) -> first-token embedding (N, d_text).

    Only the last ``trainable_layers`` transformer layers train (the authors: 2).
    """

    def __init__(self, model: nn.Module, trainable_layers: int = 2) -> None:
        super().__init__()
        self.model = model  # a transformers PreTrainedModel
        config: Any = getattr(model, "config")  # noqa: B009 - typed as Any on purpose
        self.dim = int(config.hidden_size)
        self.model.requires_grad_(False)
        layers = transformer_layers(model)
        self.trainable_layers = min(trainable_layers, len(layers))
        if trainable_layers > 0:
            for layer in layers[-trainable_layers:]:
                layer.requires_grad_(True)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        out = self.model(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state[:, 0]  # (N, d_text): <s> / [CLS] of the last layer

    def frozen_states(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """The hidden states (N, L, d_text) entering the first trainable layer, without
        gradients or dropout: the embeddings and the frozen layers only. In training they
        are computed once per text and reused, and only ``trainable_states`` runs per
        batch."""
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                embeddings: Any = getattr(self.model, "embeddings")  # noqa: B009
                hidden = embeddings(input_ids=input_ids)
                layers = transformer_layers(self.model)
                return self._through(hidden, attention_mask,
                                     layers[:len(layers) - self.trainable_layers])
        finally:
            self.model.train(was_training)

    def _through(self, hidden: Tensor, attention_mask: Tensor, layers: Any) -> Tensor:
        mask = create_bidirectional_mask(config=getattr(self.model, "config"),  # noqa: B009
                                         inputs_embeds=hidden, attention_mask=attention_mask)
        for layer in layers:
            out = layer(hidden, mask)
            hidden = out[0] if isinstance(out, tuple) else out
        return hidden

    def trainable_states(self, hidden: Tensor, attention_mask: Tensor) -> Tensor:
        """The first-token embedding (N, d_text) from ``frozen_states``: the trainable
        layers only. Equals ``forward`` on the same tokens (up to dropout)."""
        layers = transformer_layers(self.model)
        return self._through(hidden, attention_mask,
                             layers[len(layers) - self.trainable_layers:])[:, 0]


def transformer_layers(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers of a BERT-like encoder (``encoder.layer``)."""
    encoder = getattr(model, "encoder", None)
    layers = getattr(encoder, "layer", None) or getattr(encoder, "layers", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"{type(model).__name__} has no encoder.layer stack to unfreeze")
    return layers


def text_model_from_config(config: dict[str, Any]) -> nn.Module:
    """A randomly initialised encoder from a config dict (``model_type`` names the family)."""
    settings = dict(config)
    model_type = settings.pop("model_type")
    hf_config = AutoConfig.for_model(model_type, **settings)
    return AutoModel.from_config(hf_config, add_pooling_layer=False)


def text_model_from_pretrained(source: str | Path) -> nn.Module:
    """An encoder from a local folder, or a hub id already in the local cache."""
    return AutoModel.from_pretrained(str(source), local_files_only=True,
                                     add_pooling_layer=False)


def roberta_tokenizer(vocab_json: Path, merges_txt: Path) -> RobertaTokenizerFast:
    """A byte-level BPE tokenizer from ``vocab.json`` and ``merges.txt``.

    transformers 5 silently ignores ``vocab_file=``/``merges_file=`` in this constructor
    and returns a tokenizer that encodes every text as two tokens; the vocabulary and
    merges have to be passed as data (``vocab=``, ``merges=``).
    """
    vocab = json.loads(vocab_json.read_text(encoding="utf-8"))
    merges = [tuple(line.split(" ", 1)) for line in
              merges_txt.read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#version")]  # pairs, as tokenizers' BPE wants
    tokenizer = RobertaTokenizerFast(vocab=vocab, merges=merges)  # type: ignore[arg-type]
    check_tokenizer(tokenizer)
    return tokenizer


def load_tokenizer(folder: Path) -> PreTrainedTokenizerBase:
    """The tokenizer in ``folder``: ``vocab.json`` + ``merges.txt`` (RoBERTa BPE), else
    whatever ``AutoTokenizer`` finds there. Raises ``TokenizerError`` if it cannot encode."""
    if (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
        return roberta_tokenizer(folder / "vocab.json", folder / "merges.txt")
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    check_tokenizer(tokenizer)
    return tokenizer


def check_tokenizer(tokenizer: PreTrainedTokenizerBase) -> None:
    """Raise ``TokenizerError`` if a clinical sentence encodes to special tokens only."""
    ids = tokenizer(PROBE_TEXT)["input_ids"]
    special = set(tokenizer.all_special_ids)
    if sum(1 for i in ids if i not in special) < 3:
        raise TokenizerError(f"{type(tokenizer).__name__} encodes {PROBE_TEXT!r} as {ids}: "
                             "its vocabulary is empty or was not loaded")


def tokenize(tokenizer: PreTrainedTokenizerBase, texts: list[str], max_length: int,
             device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
    """Token ids and attention mask (N, L) for ``texts``, padded to the longest, truncated."""
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length,
                      return_tensors="pt")
    return batch["input_ids"].to(device), batch["attention_mask"].to(device)
