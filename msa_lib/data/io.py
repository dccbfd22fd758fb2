"""The project's feature file: one pickle holding a :class:`MultimodalDataset` as plain Python
containers (dicts, lists, numpy arrays) so it loads without ``msa_lib`` installed too.

Layout::

    {"format": "msa_lib.data", "version": 1,
     "meta": {...DatasetMeta as dict...},
     "samples": {"id", "split", "language", "raw_text", "group", "scores", "labels": arrays,
                 "features": {modality: [T_i x D float32 arrays]}},
     "failures": [{"clip", "stage", "error"}, ...]}
"""
from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path

import numpy as np

from msa_lib.core.paths import project_path
from msa_lib.data.schema import DatasetMeta, FeatureFormatError, MultimodalDataset

FORMAT_NAME = "msa_lib.data"
FORMAT_VERSION = 1
SAMPLE_KEYS = ("id", "split", "language", "raw_text", "group", "scores", "labels", "features")


def write_features(ds: MultimodalDataset, path: str | os.PathLike) -> Path:
    """Write atomically (temp file + rename) so an interrupted write never leaves a broken file."""
    ds.validate(str(path))
    path = project_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "meta": ds.meta.to_dict(),
        "samples": {
            "id": ds.ids.astype(str),
            "split": ds.split.astype(str),
            "language": ds.language.astype(str),
            "raw_text": ds.raw_text.astype(str),
            "group": ds.group.astype(str),
            "scores": ds.scores.astype(float),
            "labels": ds.labels.astype(int),
            "features": {m: [np.asarray(a, np.float32) for a in seqs] for m, seqs in ds.features.items()},
            "extra": [dict(e) for e in ds.extra],
        },
        "failures": list(ds.failures),
    }
    atomic_pickle(payload, path)
    return path


def read_features(path: str | os.PathLike) -> MultimodalDataset:
    path = project_path(path)
    payload = load_pickle(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT_NAME:
        raise FeatureFormatError(path, "format", f"'{FORMAT_NAME}' (an msa_lib feature file)",
                                 repr(payload.get("format")) if isinstance(payload, dict) else type(payload).__name__)
    if payload.get("version") != FORMAT_VERSION:
        raise FeatureFormatError(path, "version", str(FORMAT_VERSION), repr(payload.get("version")))
    for key in ("meta", "samples"):
        if key not in payload:
            raise FeatureFormatError(path, key, "present", "missing")
    samples = payload["samples"]
    for key in SAMPLE_KEYS:
        if key not in samples:
            raise FeatureFormatError(path, f"samples.{key}", "present", "missing")
    try:
        meta = DatasetMeta.from_dict(payload["meta"])
    except (KeyError, TypeError, ValueError) as exc:
        raise FeatureFormatError(path, "meta", "name, modalities and labels of a DatasetMeta", str(exc)) from exc
    return MultimodalDataset.build(
        meta, samples["id"], samples["features"], split=samples["split"], language=samples["language"],
        raw_text=samples["raw_text"], group=samples["group"], scores=samples["scores"], labels=samples["labels"],
        failures=payload.get("failures", []), extra=samples.get("extra"), source=str(path),
    )


def load_pickle(path: Path):
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such feature file")
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as exc:
        raise FeatureFormatError(path, "<file>", "a readable pickle", f"{type(exc).__name__}: {exc}") from exc


def atomic_pickle(obj, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
