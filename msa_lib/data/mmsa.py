"""Read and write thuiar/MMSA feature pickles (``aligned_50.pkl`` / ``unaligned_50.pkl`` and files
made by MMSA-FET), matching ``MMSA/data_loader.py``:

``{"train"|"valid"|"test": {"raw_text", "text", "text_bert"?, "audio", "vision", "audio_lengths"?,
"vision_lengths"?, "regression_labels", "classification_labels"?, "id"}}`` with ``text`` ``N x T x D``,
``text_bert`` ``N x 3 x T`` (token ids, attention mask, segment ids), ``audio``/``vision`` ``N x T x D``
right-padded, and ``*_lengths`` present only in unaligned files.

Lengths: text from the ``text_bert`` attention mask when present (else up to the last non-zero row);
audio/vision from ``*_lengths`` when present, else (aligned files: word-aligned to text) the text length.
As MMSA does, ``-inf`` in audio becomes 0. Ids ``video$_$clip`` give the group (video).

Files are read with the restricted unpickler of :func:`msa_lib.data.io.load_pickle` (numpy arrays and
plain containers only: a crafted file cannot run code); a file with other internals gives a
:class:`FeatureFormatError` naming the key.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from msa_lib.data.labels import MOSI_SCHEME, SIMS_SCHEME, scores_to_classes
from msa_lib.core.paths import input_path, user_path
from msa_lib.data.io import atomic_pickle, format_guard, load_pickle, output_lock
from msa_lib.data.schema import SPLITS, DatasetMeta, FeatureFormatError, ModalitySpec, MultimodalDataset, concat

REQUIRED_KEYS = ("raw_text", "text", "audio", "vision", "regression_labels", "id")
MMSA_ID_SEP = "$_$"


def read_mmsa(path: str | os.PathLike, scale: str = "mosi", name: str | None = None,
              language: str | None = None, trust: bool = False) -> MultimodalDataset:
    """Read an MMSA pkl. ``scale`` is ``mosi`` ([-3, 3], MOSI/MOSEI) or ``sims`` ([-1, 1]).
    ``path`` is relative to the current folder. ``trust=True`` unpickles with the standard loader (it runs
    whatever the file says): only for a file you made that holds more than arrays and containers."""
    if scale not in ("mosi", "sims"):
        raise ValueError(f"scale must be 'mosi' ([-3, 3]) or 'sims' ([-1, 1]), got {scale!r}")
    path = input_path(path)
    data = load_pickle(path, trust=trust)
    with format_guard(path, "the MMSA layout (train/valid/test dicts of arrays; see msa_lib.data.mmsa)"):
        return _from_mmsa(data, path, scale, name, language)


def _from_mmsa(data, path: Path, scale: str, name: str | None, language: str | None) -> MultimodalDataset:
    if not isinstance(data, dict):
        raise FeatureFormatError(path, "<root>", "a dict with train/valid/test", type(data).__name__)
    scheme = MOSI_SCHEME if scale == "mosi" else SIMS_SCHEME
    language = language or ("zh" if scale == "sims" else "en")
    parts, dims = [], None
    for split in SPLITS:
        if split not in data:
            raise FeatureFormatError(path, split, "a split dict (train, valid and test)", "missing")
        part = data[split]
        if not isinstance(part, dict):
            raise FeatureFormatError(path, split, "a dict of arrays (MMSA split)", type(part).__name__)
        for key in REQUIRED_KEYS:
            if key not in part:
                raise FeatureFormatError(path, f"{split}.{key}", "present (MMSA feature pickle)", "missing")
        text, audio, vision = (np.asarray(part[k], dtype=np.float32) for k in ("text", "audio", "vision"))
        n = len(part["id"])
        for key, arr in (("text", text), ("audio", audio), ("vision", vision)):
            if arr.ndim != 3 or arr.shape[0] != n:
                raise FeatureFormatError(path, f"{split}.{key}", f"an array N x T x D with N = {n}", f"shape {arr.shape}")
        split_dims = {"text": text.shape[2], "audio": audio.shape[2], "vision": vision.shape[2]}
        if dims is None:
            dims = split_dims
        elif dims != split_dims:
            raise FeatureFormatError(path, f"{split}.<dims>", f"the same feature dims as train {dims}", f"{split_dims}")
        audio = np.where(np.isneginf(audio), 0.0, audio)
        text_len = _text_lengths(part, text, path, split)
        audio_len = _lengths(part, "audio_lengths", text_len, audio.shape[1], path, split)
        vision_len = _lengths(part, "vision_lengths", text_len, vision.shape[1], path, split)
        ids = [str(i) for i in part["id"]]
        scores = np.asarray(part["regression_labels"], dtype=float).reshape(-1)
        if len(scores) != n:
            raise FeatureFormatError(path, f"{split}.regression_labels", f"{n} labels", f"{len(scores)}")
        parts.append(dict(
            ids=ids, split=split, scores=scores, raw_text=[str(t) for t in part["raw_text"]],
            group=[i.split(MMSA_ID_SEP)[0] for i in ids],
            features={
                "text": [text[i, : text_len[i]] for i in range(n)],
                "audio": [audio[i, : audio_len[i]] for i in range(n)],
                "vision": [vision[i, : vision_len[i]] for i in range(n)],
            },
        ))
    meta = DatasetMeta(
        name or path.stem,
        {m: ModalitySpec(d, extractor={"name": "mmsa", "file": path.name}) for m, d in dims.items()},
        scheme,
        source=str(path),
        extra={"mmsa_aligned": not any("audio_lengths" in data[s] for s in SPLITS)},
    )
    datasets = [
        MultimodalDataset.build(
            meta, p["ids"], p["features"], split=p["split"], language=language, raw_text=p["raw_text"],
            group=p["group"], scores=p["scores"], labels=scores_to_classes(p["scores"], 2, scheme.scale),
            source=f"{path} [{p['split']}]")
        for p in parts
    ]
    out = concat(datasets, meta.name)
    out.meta.extra.update(meta.extra)
    out.meta.source = str(path)
    return out


def write_mmsa(ds: MultimodalDataset, path: str | os.PathLike, text_bert_fn=None) -> Path:
    """Write the MMSA unaligned layout (``*_lengths`` included), padded to the longest sequence per
    modality. ``text_bert_fn(raw_texts, max_len) -> N x 3 x L`` adds the ``text_bert`` key when given
    (MMSA's BERT models read token ids from it).
    """
    if ds.meta.labels.kind != "regression":
        raise ValueError(f"MMSA files hold regression scores; {ds.meta.name} has {ds.meta.labels.kind} labels")
    for m in ("text", "audio", "vision"):
        if m not in ds.features:
            raise ValueError(f"MMSA files need text, audio and vision; {ds.meta.name} lacks {m}")
    path = user_path(path)
    out = {}
    for split in SPLITS:
        part = ds.get_split(split)
        entry = {
            "id": np.array([_mmsa_id(i, g) for i, g in zip(part.ids, part.group)], dtype=object),
            "raw_text": np.array(part.raw_text, dtype=object),
            "regression_labels": part.scores.astype(np.float32),
            # MMSA's 3-way classes: 0 negative, 1 neutral (score 0), 2 positive
            "classification_labels": (np.sign(part.scores) + 1).astype(np.float32),
        }
        for m in ("text", "audio", "vision"):
            padded, lengths = _pad(part.features[m], ds.meta.modalities[m].dim)
            entry[m] = padded
            if m != "text":
                entry[f"{m}_lengths"] = lengths
        if text_bert_fn is not None:
            entry["text_bert"] = np.asarray(text_bert_fn(list(part.raw_text), entry["text"].shape[1]), dtype=np.float32)
        out[split] = entry
    with output_lock(path):
        atomic_pickle(out, path)
    return path


def _mmsa_id(sample_id: str, group: str) -> str:
    if MMSA_ID_SEP in sample_id:
        return sample_id
    prefix = f"{group}_"
    clip = sample_id[len(prefix):] if sample_id.startswith(prefix) else sample_id
    return f"{group}{MMSA_ID_SEP}{clip}"


def _pad(seqs, dim):
    lengths = [int(a.shape[0]) for a in seqs]
    out = np.zeros((len(seqs), max(lengths + [1]), dim), dtype=np.float32)
    for i, a in enumerate(seqs):
        out[i, : len(a)] = np.nan_to_num(a)
    return out, lengths


def _text_lengths(part, text, path, split) -> np.ndarray:
    if "text_bert" in part:
        tb = np.asarray(part["text_bert"])
        if tb.ndim != 3 or tb.shape[0] != len(text) or tb.shape[1] != 3:
            raise FeatureFormatError(path, f"{split}.text_bert", f"an array N x 3 x T with N = {len(text)} "
                                     "(token ids, attention mask, segment ids)", f"shape {tb.shape}")
        return np.clip(tb[:, 1, :].sum(axis=1).astype(int), 1, text.shape[1])
    nonzero = np.abs(text).sum(axis=2) > 0
    last = np.where(nonzero.any(axis=1), text.shape[1] - np.argmax(nonzero[:, ::-1], axis=1), 1)
    return last.astype(int)


def _lengths(part, key, fallback, max_len, path, split) -> np.ndarray:
    if key not in part:
        return np.minimum(fallback, max_len)
    lengths = np.asarray(part[key]).astype(int).reshape(-1)
    if len(lengths) != len(fallback) or (lengths < 0).any() or (lengths > max_len).any():
        raise FeatureFormatError(path, f"{split}.{key}", f"{len(fallback)} lengths within 0..{max_len}",
                                 f"{len(lengths)} values, range {lengths.min()}..{lengths.max()}")
    return lengths
