"""The text encoders' settings, results and errors, without importing torch (shared by
:mod:`msa_lib.extract.text` and its torch-free twin :mod:`msa_lib.extract.text_numpy`, and imported by
the extraction pipeline, which must not pull in torch just to build its config)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from msa_lib.extract.text_loading import DEFAULT_MULTILINGUAL_ID


@dataclass
class TextEncoderConfig:
    """Settings of :class:`TextEncoder`.

    ``prefix=None`` means "query: " for e5 models (symmetric tasks such as sentiment use the query
    prefix, per the e5 model card) and no prefix otherwise. ``content_tokens_only`` drops the special
    tokens (<s>, </s>, [CLS], [SEP]) and the prefix tokens from :meth:`TextEncoder.encode_tokens`
    (the model still sees them; only transcript tokens are returned, which is what attribution and
    plots want). Pooling always averages every non-padding token, as e5 and sentence-transformers do.
    """

    model_id: str = DEFAULT_MULTILINGUAL_ID
    max_length: int = 128
    prefix: str | None = None
    pooling: str = "mean"  # "mean" (masked mean) | "cls"
    normalize: bool = True  # L2-normalise pooled vectors
    content_tokens_only: bool = True
    hidden_layer: int | None = None  # None: last layer; k: output of layer k (0 = embeddings), e.g. as the
    # input of a model that fine-tunes only the layers above k (see models.encoders.PretrainedTopEncoder)
    batch_size: int = 32
    device: str = "auto"
    show_progress: bool = True
    # extraction only (msa_lib.extract.text_numpy): "auto" runs a BERT folder such as the default e5 in
    # numpy (no torch / transformers import), "torch" always uses transformers; same outputs either way
    runtime: str = "auto"


class TextInputError(ValueError):
    """The texts passed to an encoder are not a list of strings."""


class TokenSequences(NamedTuple):
    """Per text: a (T_i x D) float32 array and the T_i token strings (unpacks as a pair)."""

    embeddings: list[np.ndarray]
    tokens: list[list[str]]


__all__ = ["TextEncoderConfig", "TextInputError", "TokenSequences"]
