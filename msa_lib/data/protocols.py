"""The two named CMU-MOSI protocols and the leakage guard between them.

- ``mosi_bclstm``: the speaker-independent split of the shipped bc-LSTM feature files (62 train /
  31 test videos, 1447 / 752 utterances), binary labels (:func:`msa_lib.data.sources.load_mosi`).
- ``mosi_standard``: the CMU standard split of ``data/mosi/label_fine.csv`` (52 train / 10 dev / 31
  test videos), continuous sentiment scores in [-3, 3]; ``valid`` = the dev videos. Clips without a
  fine label are dropped (the count is logged and kept in ``meta.extra``).

The two partitions differ: 24 of the 31 standard test videos are bc-LSTM *train* videos. A shipped
vector produced by a network trained on bc-LSTM train labels therefore carries test labels into a
``mosi_standard`` run. :data:`SHIPPED_FEATURES` records, per shipped modality, whether it was learned
with labels (evidence in ``data/README.md``); :func:`load_mosi_standard` and
:func:`check_features_allowed` refuse those on ``mosi_standard`` with one :class:`LabelTrainedFeatureError`
unless ``allow_label_trained_features=True``; then ``meta.extra["label_trained_features"]`` names them
and :func:`label_trained_marker` gives the value for a results column. Features the project computes
itself (e5 text states, prosody, Whisper) are not shipped vectors and are always allowed.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from msa_lib.core.paths import DATA_DIR, project_path
from msa_lib.core.utils import get_logger
from msa_lib.data.labels import MOSI_SCHEME
from msa_lib.data.schema import DatasetMeta, FeatureFormatError, MultimodalDataset
from msa_lib.data.sources import load_mosi

log = get_logger("protocols")

PROTOCOLS = ("mosi_bclstm", "mosi_standard")
FINE_LABEL_STEM = "label_fine"
FINE_LABEL_COLUMNS = ("id", "text", "label", "mode")
# label_fine.csv's ``mode`` -> this project's split names (the standard dev videos validate)
STANDARD_MODES = {"train": "train", "dev": "valid", "test": "test"}


@dataclass(frozen=True)
class ShippedFeature:
    """Provenance of one shipped MOSI vector: what made it and whether labels shaped it."""

    extractor: str
    label_trained: bool
    evidence: str


# See data/README.md ("Leakage guard") for the sources and the measurement behind each entry.
SHIPPED_FEATURES: dict[str, ShippedFeature] = {
    "text_cnn": ShippedFeature(
        "text-CNN over word2vec (bc-LSTM release)", True,
        "a sentiment-classifier CNN trained on MOSI utterance labels (authors: declare-lab/conv-emotion#12); "
        "98 % grouped-CV accuracy inside bc-LSTM train vs 75 % on bc-LSTM test"),
    "vision": ShippedFeature(
        "3D-CNN (bc-LSTM release)", True,
        "a 3D-CNN whose activations separate bc-LSTM train videos (91 % grouped-CV accuracy) but not "
        "unseen videos (52 % on bc-LSTM test): trained with the train labels"),
    "audio": ShippedFeature(
        "openSMILE (bc-LSTM release)", False,
        "a fixed openSMILE configuration (IS13-ComParE per the authors), no training; 51 % grouped-CV "
        "accuracy inside bc-LSTM train vs 55 % on bc-LSTM test: no trace of the labels"),
}
SHIPPED_ALLOWED = tuple(m for m, f in SHIPPED_FEATURES.items() if not f.label_trained)
SHIPPED_LABEL_TRAINED = tuple(m for m, f in SHIPPED_FEATURES.items() if f.label_trained)


class LabelTrainedFeatureError(ValueError):
    """A shipped vector learned with bc-LSTM train labels was asked for on ``mosi_standard``."""


def _fine_label_path(root: Path) -> Path:
    for name in (f"{FINE_LABEL_STEM}.csv.gz", f"{FINE_LABEL_STEM}.csv"):
        if (root / name).exists():
            return root / name
    raise FileNotFoundError(f"{root}: neither {FINE_LABEL_STEM}.csv nor {FINE_LABEL_STEM}.csv.gz found "
                            "(the fine-grained MOSI labels, see data/README.md)")


def read_fine_labels(root: str | os.PathLike = DATA_DIR / "mosi") -> pd.DataFrame:
    """``label_fine.csv``: one row per clip id with its continuous score and CMU standard split,
    checked (columns, unique ids, scores in [-3, 3], modes train/dev/test, one split per video)."""
    path = _fine_label_path(project_path(root))
    frame = pd.read_csv(path, keep_default_na=False, dtype={"id": str, "text": str, "mode": str})
    missing = [c for c in FINE_LABEL_COLUMNS if c not in frame.columns]
    if missing:
        raise FeatureFormatError(path, "columns", f"{list(FINE_LABEL_COLUMNS)}", str(list(frame.columns)))
    dup = frame["id"][frame["id"].duplicated()]
    if len(dup):
        raise FeatureFormatError(path, f"id (row {dup.index[0] + 2})", "unique clip ids", f"{dup.iloc[0]!r} twice")
    scores = pd.to_numeric(frame["label"], errors="coerce")
    bad = scores.isna() | (scores.abs() > 3 + 1e-9)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise FeatureFormatError(path, f"label (row {i + 2})", "a number in [-3, 3]", repr(frame["label"].iloc[i]))
    bad_mode = ~frame["mode"].isin(list(STANDARD_MODES))
    if bad_mode.any():
        i = int(np.flatnonzero(bad_mode.to_numpy())[0])
        raise FeatureFormatError(path, f"mode (row {i + 2})", f"one of {list(STANDARD_MODES)}", repr(frame["mode"].iloc[i]))
    frame = frame.assign(label=scores.astype(float), video=frame["id"].str.rsplit("_", n=1).str[0])
    modes = frame.groupby("video")["mode"].nunique()
    if (modes > 1).any():
        raise FeatureFormatError(path, "mode", "every video in one split", f"video {modes.index[modes > 1][0]!r} in several")
    return frame


def load_mosi_bclstm(root: str | os.PathLike = DATA_DIR / "mosi") -> MultimodalDataset:
    """``mosi_bclstm``: :func:`~msa_lib.data.sources.load_mosi` as shipped (binary labels, train/test)."""
    ds = load_mosi(root)
    ds.meta.extra.update(protocol="mosi_bclstm", label_trained_features=[])
    return ds


def load_mosi_standard(root: str | os.PathLike = DATA_DIR / "mosi", shipped: Iterable[str] | None = None,
                       allow_label_trained_features: bool = False) -> MultimodalDataset:
    """``mosi_standard``: the shipped transcripts (and shipped vectors named in ``shipped``; default:
    every one the guard allows) with the continuous labels and CMU standard split of ``label_fine.csv``.

    Scores are the fine labels in [-3, 3]; ``labels`` are their Has0 signs (1 = score >= 0), for
    stratification and 2-class views only. ``split``: train / valid (= dev videos) / test. Clips of
    the shipped release without a fine label are dropped and counted in ``meta.extra``.
    Asking for a label-trained shipped vector (:data:`SHIPPED_LABEL_TRAINED`) raises
    :class:`LabelTrainedFeatureError` unless ``allow_label_trained_features``.
    """
    shipped = list(SHIPPED_ALLOWED if shipped is None else shipped)
    unknown = [m for m in shipped if m not in SHIPPED_FEATURES]
    if unknown:
        raise KeyError(f"no shipped MOSI feature {unknown}; shipped: {list(SHIPPED_FEATURES)}")
    leaking = [m for m in shipped if SHIPPED_FEATURES[m].label_trained]
    _refuse(leaking, allow_label_trained_features)
    root = project_path(root)
    fine = read_fine_labels(root).set_index("id")
    base = load_mosi(root)
    has_fine = np.isin(base.ids, fine.index.to_numpy())
    dropped = sorted(base.ids[~has_fine].tolist())
    unmatched = sorted(set(fine.index) - set(base.ids))
    if dropped:
        log.info("mosi_standard: %d of %d shipped clips have no fine label and are dropped: %s",
                 len(dropped), len(base), ", ".join(dropped))
    if unmatched:
        log.info("mosi_standard: %d fine labels name no shipped clip and are ignored", len(unmatched))
    ds = base.subset(has_fine).with_modalities(shipped)
    rows = fine.loc[ds.ids]
    scores = rows["label"].to_numpy(float)
    meta = DatasetMeta("mosi_standard", ds.meta.modalities, MOSI_SCHEME,
                       ds.meta.source + "; fine labels and CMU standard split: jiangbing22/MMCPanda@3e568e4d data/mosi/label.csv",
                       {"protocol": "mosi_standard", "split": "CMU standard: train / dev (= valid) / test videos",
                        "dropped_no_fine_label": dropped, "fine_labels_unmatched": unmatched,
                        "label_trained_features": leaking})
    out = MultimodalDataset(meta, ds.ids, rows["mode"].map(STANDARD_MODES).to_numpy(object), ds.language,
                            ds.raw_text, ds.group, ds.features, scores, (scores >= 0).astype(int), ds.failures,
                            ds.extra)
    return out.validate(str(root))


def _refuse(leaking: list[str], allowed: bool) -> None:
    if leaking and not allowed:
        detail = "; ".join(f"{m}: {SHIPPED_FEATURES[m].extractor} — {SHIPPED_FEATURES[m].evidence}" for m in leaking)
        raise LabelTrainedFeatureError(
            f"mosi_standard refuses the shipped {', '.join(leaking)} vector(s): they were learned with the bc-LSTM "
            f"train labels, and 24 of the 31 standard test videos are bc-LSTM train videos ({detail}). Use features "
            "the project computes itself (e5 text, shipped audio), or pass allow_label_trained_features=True for "
            "an experiment whose rows are then marked")


def check_features_allowed(ds: MultimodalDataset, modalities: Iterable[str],
                           allow_label_trained_features: bool = False) -> list[str]:
    """Guard at model-input time: on ``mosi_standard`` data, refuse label-trained shipped vectors among
    ``modalities`` unless allowed; returns the label-trained ones used (for :func:`label_trained_marker`)."""
    if ds.meta.extra.get("protocol") != "mosi_standard":
        return []
    leaking = [m for m in modalities if m in SHIPPED_LABEL_TRAINED]
    _refuse(leaking, allow_label_trained_features)
    return leaking


def label_trained_marker(used: Iterable[str]) -> str:
    """The value of the ``label_trained_features`` results column: ``""`` for a clean row, else the
    label-trained shipped vectors the row was built with (``"vision"``, ``"text_cnn+vision"``)."""
    return "+".join(sorted(set(used)))


def load_protocol(name: str, **kwargs) -> MultimodalDataset:
    """A MOSI protocol by name: ``mosi_bclstm`` or ``mosi_standard`` (``kwargs`` go to its loader)."""
    loaders = {"mosi_bclstm": load_mosi_bclstm, "mosi_standard": load_mosi_standard}
    if name not in loaders:
        raise KeyError(f"unknown protocol {name!r}; choose from {PROTOCOLS}")
    return loaders[name](**kwargs)
