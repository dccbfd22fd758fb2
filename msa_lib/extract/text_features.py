"""Text features for datasets that come with transcripts (MOSI, the Chinese reviews, ...).

:func:`add_text_features` runs a text encoder once over ``ds.raw_text`` and adds:

- ``text``: token sequences (T x D) at ``hidden_layer`` — the last layer by default; with
  ``hidden_layer = 8`` the states that a ``pretrained_top`` encoder (the top 4 of e5's 12 layers,
  fine-tuned inside a model) takes as input. Token strings go to ``ds.extra[i]["tokens"]``.
- ``text_pooled``: the last layer's mean-pooled, L2-normalised sentence vector (T = 1).
- ``text_context`` (optional): the pooled vectors of the previous and the next utterance of the same
  group (video), a 2 x D sequence with NaN rows (masked) where there is no neighbour — utterance
  context as in bc-LSTM, using the neighbours' text only (never their labels).

Results are cached under ``cache_dir()/features`` keyed by the texts and the settings.
"""
from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict, dataclass

import numpy as np

from msa_lib.core.paths import cache_dir
from msa_lib.core.utils import get_logger
from msa_lib.data.io import atomic_pickle
from msa_lib.data.schema import ModalitySpec, MultimodalDataset
from msa_lib.data.torch_data import utterance_order

log = get_logger("features")
CACHE_VERSION = 1


@dataclass
class TextFeatureConfig:
    model_id: str = "intfloat/multilingual-e5-small"
    hidden_layer: int | None = 8  # None: last layer, content tokens only
    max_length: int = 64
    context: bool = True
    batch_size: int = 32
    device: str = "auto"
    show_progress: bool = True


# The text features of the shipped datasets: MOSI utterances with their neighbours' context, and the
# Chinese reviews (longer texts, no context).
MOSI_TEXT = TextFeatureConfig(hidden_layer=8, max_length=64, context=True, show_progress=False)
ZH_TEXT = TextFeatureConfig(hidden_layer=8, max_length=128, context=False, show_progress=False)


def add_text_features(ds: MultimodalDataset, config: TextFeatureConfig | None = None) -> MultimodalDataset:
    cfg = config or TextFeatureConfig()
    texts = [str(t) for t in ds.raw_text]
    key = _cache_key(ds, texts, cfg)
    path = cache_dir() / "features" / f"{ds.meta.name}-text-{key}.pkl"
    cached = _load(path)
    if cached is None:
        from msa_lib.extract.text import TextEncoder, TextEncoderConfig

        enc_cfg = TextEncoderConfig(model_id=cfg.model_id, max_length=cfg.max_length, hidden_layer=cfg.hidden_layer,
                                    content_tokens_only=cfg.hidden_layer is None, batch_size=cfg.batch_size,
                                    device=cfg.device, show_progress=cfg.show_progress)
        encoder = TextEncoder(enc_cfg)
        log.info("encoding %d texts of %s with %s (cached afterwards)", len(texts), ds.meta.name, cfg.model_id)
        seqs, pooled = encoder.encode_with_pooled(texts)
        cached = {"text": seqs.embeddings, "tokens": seqs.tokens, "pooled": pooled, "settings": encoder.settings()}
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_pickle(cached, path)
    dim = cached["pooled"].shape[1]
    settings = {"name": "text encoder", **cached["settings"]}
    names = [f"text_{i:03d}" for i in range(dim)]
    out = ds.with_features("text", cached["text"], ModalitySpec(dim, names, {"embedding": list(range(dim))}, "sequence",
                                                                None, settings))
    out = out.with_features("text_pooled", [v[None] for v in cached["pooled"]],
                            ModalitySpec(dim, names, {"embedding": list(range(dim))}, "utterance", None, settings))
    if cfg.context:
        out = out.with_features("text_context", context_sequences(out, cached["pooled"]),
                                ModalitySpec(dim, names, {"previous": [], "next": []}, "sequence", None,
                                             {**settings, "context": "pooled previous and next utterance of the group"}))
    out.extra = np.array([{**e, "tokens": t} for e, t in zip(out.extra, cached["tokens"])], dtype=object)
    return out


def context_sequences(ds: MultimodalDataset, pooled: np.ndarray) -> list[np.ndarray]:
    """Per sample a 2 x D array: previous and next utterance of its group (NaN row = none)."""
    dim = pooled.shape[1]
    out = [np.full((2, dim), np.nan, np.float32) for _ in range(len(ds))]
    order = utterance_order(ds.ids)
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(ds.group):
        by_group.setdefault(g, []).append(i)
    for members in by_group.values():
        members.sort(key=lambda i: order[i])
        for k, i in enumerate(members):
            if k > 0:
                out[i][0] = pooled[members[k - 1]]
            if k + 1 < len(members):
                out[i][1] = pooled[members[k + 1]]
    return out


def _cache_key(ds, texts, cfg) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({**asdict(cfg), "show_progress": None, "device": None, "batch_size": None,
                         "version": CACHE_VERSION}, sort_keys=True).encode())
    for t in texts:
        h.update(t.encode("utf-8", "replace") + b"\0")
    return h.hexdigest()[:16]


def _load(path):
    if not path.exists():
        return None
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (OSError, pickle.UnpicklingError, EOFError):
        return None
