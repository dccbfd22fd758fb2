"""Read (and, for round trips, write) the seed system's feature pickles: a folder with
``{train,valid,test}_data.pkl`` each a dict with ``text, language, raw_text, audio, vision, labels, id,
class_labels`` (features as ``N x T x D`` arrays or lists of ``T x D`` arrays; ``N x D`` for pooled
vectors) and ``metadata.pkl`` (a dict; ``label_range`` / ``feature_dims`` / ``class_names`` when present).

Sequence lengths come from optional ``{modality}_lengths`` keys, else from the last non-zero row.
The label scale is read from ``metadata['label_range']`` when given, else ``[-1, 1]`` when every label
fits in it and ``[-3, 3]`` otherwise.

Files are read with the restricted unpickler of :func:`msa_lib.data.io.load_pickle` (numpy arrays and
plain containers only: a crafted file cannot run code); other internals give a :class:`FeatureFormatError`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from msa_lib.data.labels import CLASS_NAMES, MOSI_SCHEME, SIMS_SCHEME, LabelScheme
from msa_lib.core.paths import input_path, user_path
from msa_lib.data.io import atomic_pickle, format_guard, load_pickle, output_lock
from msa_lib.data.schema import SPLITS, DatasetMeta, FeatureFormatError, ModalitySpec, MultimodalDataset, concat

SEED_KEYS = ("text", "language", "raw_text", "audio", "vision", "labels", "id", "class_labels")
MODALITIES = ("text", "audio", "vision")


def read_seed(folder: str | os.PathLike, name: str | None = None, trust: bool = False) -> MultimodalDataset:
    """Read a seed-format folder (relative to the current folder). ``trust=True`` unpickles with the
    standard loader (it runs whatever the files say): only for files you made."""
    folder = input_path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder with {{split}}_data.pkl and metadata.pkl")
    with format_guard(folder, "the seed format ({split}_data.pkl dicts of columns + metadata.pkl; see msa_lib.data.seed_format)"):
        return _from_seed(folder, name, trust)


def _from_seed(folder: Path, name: str | None, trust: bool) -> MultimodalDataset:
    meta_path = folder / "metadata.pkl"
    metadata = load_pickle(meta_path, trust=trust) if meta_path.exists() else {}
    if not isinstance(metadata, dict):
        raise FeatureFormatError(meta_path, "<root>", "a dict", type(metadata).__name__)
    raw = {}
    for split in SPLITS:
        path = folder / f"{split}_data.pkl"
        if not path.exists():
            if split == "valid":  # some seed exports have no validation split; one is made later by group
                continue
            raise FileNotFoundError(f"{path}: missing (the seed format needs train_data.pkl and test_data.pkl)")
        part = load_pickle(path, trust=trust)
        if not isinstance(part, dict):
            raise FeatureFormatError(path, "<root>", "a dict of columns", type(part).__name__)
        for key in SEED_KEYS:
            if key not in part:
                raise FeatureFormatError(path, key, f"present (seed format keys: {', '.join(SEED_KEYS)})", "missing")
        raw[split] = (path, part)

    scheme = _scheme(metadata, [part["labels"] for _, part in raw.values()])
    dims, datasets = {}, []
    for split, (path, part) in raw.items():
        n = len(part["id"])
        feats = {m: _sequences(part, m, n, path) for m in MODALITIES}
        for m, seqs in feats.items():
            d = seqs[0].shape[1] if seqs else 0
            if dims.setdefault(m, d) != d:
                raise FeatureFormatError(path, m, f"feature dim {dims[m]} (as in the other splits)", str(d))
        expected = metadata.get("feature_dims", {})
        for m, d in expected.items():
            if m in dims and dims[m] != int(d):
                raise FeatureFormatError(path, m, f"dim {d} (metadata.pkl feature_dims)", str(dims[m]))
        labels = np.asarray(part["class_labels"]).astype(int).reshape(-1)
        scores = np.asarray(part["labels"], dtype=float).reshape(-1)
        datasets.append((split, path, part, feats, scores, labels))

    meta = DatasetMeta(
        name or metadata.get("name", folder.name),
        {m: ModalitySpec(dims[m], feature_names=metadata.get("feature_names", {}).get(m),
                         extractor={"name": "seed", **metadata.get("extractors", {}).get(m, {})}) for m in MODALITIES},
        scheme, source=str(folder), extra={"seed_metadata": {k: v for k, v in metadata.items() if _plain(v)}},
    )
    built = [
        MultimodalDataset.build(meta, part["id"], feats, split=split, language=part["language"],
                                raw_text=part["raw_text"], scores=scores, labels=labels,
                                group=part.get("group", part.get("video_id")), source=str(path))
        for split, path, part, feats, scores, labels in datasets
    ]
    out = concat(built, meta.name)
    out.meta.source, out.meta.extra = meta.source, meta.extra
    return out


def write_seed(ds: MultimodalDataset, folder: str | os.PathLike) -> Path:
    folder = user_path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        part = ds.get_split(split)
        if len(part) == 0:
            continue
        entry = {
            "id": list(part.ids), "language": list(part.language), "raw_text": list(part.raw_text),
            "labels": part.scores.astype(np.float32), "class_labels": part.labels.astype(int),
            "group": list(part.group),
        }
        for m in MODALITIES:
            entry[m] = [np.nan_to_num(a) for a in part.features[m]]
            entry[f"{m}_lengths"] = part.lengths(m)
        with output_lock(folder / f"{split}_data.pkl"):
            atomic_pickle(entry, folder / f"{split}_data.pkl")
    sr = ds.meta.labels.score_range
    with output_lock(folder / "metadata.pkl"):
        atomic_pickle({
            "name": ds.meta.name,
            "label_range": list(sr) if sr else None,
            "class_names": list(ds.meta.labels.class_names),
            "feature_dims": {m: ds.meta.modalities[m].dim for m in MODALITIES},
            "feature_names": {m: ds.meta.modalities[m].feature_names for m in MODALITIES},
        }, folder / "metadata.pkl")
    return folder


def _scheme(metadata: dict, label_columns) -> LabelScheme:
    names = tuple(metadata.get("class_names") or CLASS_NAMES[2])
    rng = metadata.get("label_range")
    if rng is None:
        values = np.concatenate([np.asarray(c, float).reshape(-1) for c in label_columns])
        rng = (-1, 1) if np.nanmax(np.abs(values)) <= 1 else (-3, 3)
    base = SIMS_SCHEME if tuple(rng) == (-1, 1) else MOSI_SCHEME
    return LabelScheme(base.kind, base.scale, names, base.description)


def _sequences(part, modality, n, path):
    value = part[modality]
    seqs = list(value) if not isinstance(value, np.ndarray) else [value[i] for i in range(len(value))]
    if len(seqs) != n:
        raise FeatureFormatError(path, modality, f"{n} samples (one per id)", f"{len(seqs)}")
    lengths = part.get(f"{modality}_lengths")
    if lengths is not None:
        lengths = np.asarray(lengths).reshape(-1)
        if len(lengths) != n or lengths.dtype.kind not in "iuf":
            raise FeatureFormatError(path, f"{modality}_lengths", f"{n} sequence lengths (one per id)",
                                     f"{len(lengths)} values of dtype {lengths.dtype}")
    out = []
    for i, a in enumerate(seqs):
        a = np.asarray(a, dtype=np.float32)
        if a.ndim == 1:
            a = a[None]
        if a.ndim != 2:
            raise FeatureFormatError(path, f"{modality}[{i}]", "a T x D array or a D vector", f"shape {a.shape}")
        if lengths is not None:
            a = a[: int(lengths[i])]
        elif a.shape[0] > 1:  # trim right padding
            nz = np.abs(a).sum(axis=1) > 0
            a = a[: (len(nz) - int(np.argmax(nz[::-1]))) if nz.any() else 1]
        out.append(a)
    return out


def _plain(v) -> bool:
    return isinstance(v, (str, int, float, bool, list, tuple, dict, type(None)))
