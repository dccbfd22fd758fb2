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
from dataclasses import asdict, dataclass, replace
from typing import Iterable, Sequence

import numpy as np

from msa_lib.core.paths import cache_dir
from msa_lib.core.utils import get_logger
from msa_lib.data.io import atomic_pickle
from msa_lib.data.schema import ModalitySpec, MultimodalDataset
from msa_lib.data.torch_data import videos_in_spoken_order

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
    for members in videos_in_spoken_order(ds.group, ds.ids):
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


# ---------------------------------------------------------------------------------------------- sentence vectors
def layer_pooled_vectors(ds: MultimodalDataset, layers: Sequence[int] = (10, 11, 12),
                         config: TextFeatureConfig | None = None) -> np.ndarray:
    """(N x D) sentence vectors of ``ds.raw_text``: the attention-masked mean of each hidden layer in
    ``layers`` (0 = embeddings, 12 = e5's last), averaged over the layers and L2-normalised. Every
    layer's pooled vectors are cached once per text set and model, so other layer choices are free."""
    cfg = config or MOSI_TEXT
    texts = [str(t) for t in ds.raw_text]
    settings = replace(cfg, hidden_layer=None, context=False)
    path = cache_dir() / "features" / f"{ds.meta.name}-layer-pooled-{_cache_key(ds, texts, settings)}.pkl"
    all_layers = _load(path)
    if all_layers is None:
        from msa_lib.extract.text import TextEncoder, TextEncoderConfig

        encoder = TextEncoder(TextEncoderConfig(model_id=cfg.model_id, max_length=cfg.max_length, hidden_layer=None,
                                                batch_size=cfg.batch_size, device=cfg.device, show_progress=False))
        log.info("pooling every layer of %s over %d texts of %s (cached afterwards)", cfg.model_id, len(texts),
                 ds.meta.name)
        all_layers = encoder.pooled_layers(texts)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_pickle(all_layers.astype(np.float32), path)
    n_layers = all_layers.shape[1]
    if not layers or any(not 0 <= layer < n_layers for layer in layers):
        raise ValueError(f"layers {tuple(layers)} not in 0..{n_layers - 1} of {cfg.model_id}")
    return l2_normalize(all_layers[:, list(layers)].mean(1))


def video_context_vectors(ds: MultimodalDataset, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Utterance context from the other utterances' vectors of the same video (``ds.group``), never their
    labels, both L2-normalised (N x D each):

    - ``video``: the mean of the *other* utterances of the video (zeros for a video of one utterance);
    - ``neighbours``: the previous plus the next utterance in spoken order (:func:`~msa_lib.data.torch_data.utterance_order`: the id's trailing
      number), the utterance itself standing in for a missing neighbour at either end.

    Order comes from the ids, not from the rows: the shipped bc-LSTM files list each video's utterances
    grouped by label, so neighbours in file order would carry the labels."""
    if len(vectors) != len(ds):
        raise ValueError(f"{len(vectors)} vectors for {len(ds)} utterances of {ds.meta.name}")
    vectors = np.asarray(vectors, np.float32)
    videos = videos_in_spoken_order(ds.group, ds.ids)
    video, neighbours = mean_of_other_utterances(vectors, videos), np.zeros_like(vectors)
    for members in videos:
        members = np.array(members)
        previous = np.concatenate([members[:1], members[:-1]])
        following = np.concatenate([members[1:], members[-1:]])
        neighbours[members] = vectors[previous] + vectors[following]
    return l2_normalize(video), l2_normalize(neighbours)


def mean_of_other_utterances(vectors: np.ndarray, videos: Iterable[Sequence[int]]) -> np.ndarray:
    """Per row, the mean of the rows of the *other* utterances of its video (zeros for a video of one
    utterance), in the dtype of ``vectors``. ``videos``: each video's row indices
    (:func:`~msa_lib.data.torch_data.videos_in_spoken_order`); a video must lie within one split for a
    test utterance's context to hold test utterances only."""
    vectors = np.asarray(vectors)
    out = np.zeros_like(vectors)
    for members in videos:
        members = np.array(members)
        out[members] = (vectors[members].sum(0) - vectors[members]) / max(len(members) - 1, 1)
    return out


def l2_normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)
    return (x / np.where(norm > 0, norm, 1.0)).astype(np.float32)

