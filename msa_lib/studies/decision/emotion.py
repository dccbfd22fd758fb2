"""RAVDESS emotion branches for decision-level fusion: data assembly, features, classifiers.

* :func:`load_ravdess_branches` — the 1440 speech recordings joined 1:1 to the clip-level OpenFace
  action units of ``au_mfcc.pkl`` (visual branch) by the clip fields
  emotion-intensity-statement-repetition-actor (the AU keys start with modality 01 = audio-visual,
  the speech files with 03 = audio-only; the remaining five fields name the same performance).
* :func:`stratified_clip_subset` — a small subset that still covers every actor and every emotion
  (smoke runs).
* :func:`extract_audio_features` — the project's own audio features: frame-level prosody from the
  extraction pipeline (summarised to utterance functionals) and Whisper-encoder states of every
  layer (:mod:`.whisper_layers`), with the extraction time of every clip.
* :func:`seed_splits` — actor-independent splits: test = actors 21-24, validation actors taken out
  of train by :func:`~msa_lib.data.splits.group_validation_split` (the seed picks them).
* :func:`fit_branch` — a scikit-learn classifier whose hyper-parameter is chosen on the validation
  actors, refitted on the train actors; class probabilities for every row.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd

from msa_lib.data.sources import (RAVDESS_EMOTIONS, RAVDESS_TEST_ACTORS, load_ravdess_au_mfcc, ravdess_clip_key,
                                  ravdess_recordings)
from msa_lib.data.splits import assert_disjoint_groups, group_validation_split
from msa_lib.data.schema import MultimodalDataset
from msa_lib.data.sampling import stratified_clip_subset  # noqa: F401  (re-exported for notebook 07)
from msa_lib.extract.prosody import PROSODY_FUNCTIONALS, extract_prosody_features
from msa_lib.core.utils import get_logger

log = get_logger("decision.emotion")

N_CLASSES = len(RAVDESS_EMOTIONS)
KEY_FIELDS = ("emotion", "intensity", "statement", "repetition", "actor")


class RavdessJoinError(ValueError):
    """The recordings and the AU table do not match one to one."""


@dataclass
class RavdessBranches:
    """Recordings (one row per speech file) aligned with the AU dataset (same row order)."""

    table: pd.DataFrame  # path, stem, key, emotion, actor, split, ...
    au: MultimodalDataset  # vision = 35 AUs, group = actor, split = train/test, row i = table row i
    join_report: dict

    @property
    def labels(self) -> np.ndarray:
        return self.table["emotion"].to_numpy(int)

    @property
    def actors(self) -> np.ndarray:
        return self.table["actor"].to_numpy(int)

    @property
    def au_matrix(self) -> np.ndarray:
        return np.stack([v[0] for v in self.au.features["vision"]]).astype(np.float64)

    def subset(self, rows: np.ndarray) -> "RavdessBranches":
        rows = np.asarray(rows, int)
        return RavdessBranches(self.table.iloc[rows].reset_index(drop=True), self.au.subset(rows),
                               {**self.join_report, "n_used": len(rows)})


def join_recordings_to_aus(recordings: pd.DataFrame, au: MultimodalDataset) -> tuple[np.ndarray, dict]:
    """Index into ``au`` for every recording, checking that the join is one to one.

    Raises :class:`RavdessJoinError` when a key is duplicated on either side, a recording has no AU row
    (or vice versa), or the emotion in the two names disagrees."""
    rec_keys = [ravdess_clip_key(s) for s in recordings["stem"]]
    au_keys = [ravdess_clip_key(i) for i in au.ids]
    for side, keys in (("recordings", rec_keys), ("au_mfcc.pkl", au_keys)):
        dup = pd.Series(keys)[pd.Series(keys).duplicated()]
        if len(dup):
            raise RavdessJoinError(f"{side}: clip key {dup.iloc[0]} appears more than once")
    position = {k: i for i, k in enumerate(au_keys)}
    missing = [k for k in rec_keys if k not in position]
    if missing:
        raise RavdessJoinError(f"{len(missing)} recordings have no AU row (first: {missing[0]})")
    index = np.array([position[k] for k in rec_keys])
    if not np.array_equal(au.labels[index], recordings["emotion"].to_numpy(int)):
        raise RavdessJoinError("emotion labels of recordings and AU rows disagree after the join")
    report = {
        "n_recordings": len(rec_keys), "n_au_rows": len(au_keys), "n_matched": len(index),
        "one_to_one": len(set(rec_keys)) == len(rec_keys) and len(set(index)) == len(index) and len(au_keys) == len(rec_keys),
        "au_modality_codes": sorted({i.split("-")[0] for i in au.ids}),
        "recording_modality_codes": sorted({s.split("-")[0] for s in recordings["stem"]}),
    }
    return index, report


def load_ravdess_branches() -> RavdessBranches:
    """All 1440 recordings with their AU rows; the join is verified 1:1 (see ``join_report``)."""
    recordings = ravdess_recordings().sort_values("stem").reset_index(drop=True)
    au = load_ravdess_au_mfcc()
    index, report = join_recordings_to_aus(recordings, au)
    table = recordings.assign(key=[ravdess_clip_key(s) for s in recordings["stem"]], au_id=au.ids[index])
    return RavdessBranches(table, au.subset(index), report)


# ------------------------------------------------------------------------------------ audio features
@dataclass
class AudioFeatures:
    prosody: np.ndarray  # N x (43 * len(functionals)) utterance functionals
    prosody_names: list[str]
    whisper_layers: list[np.ndarray]  # per clip (n_layers + 1) x T x 512 frames (10 Hz)
    timings: pd.DataFrame  # per clip: decode_s, prosody_s, whisper_s, duration_s, cached


def extract_audio_features(paths: Sequence[str], whisper_window_seconds: float = 30.0,
                           functionals: tuple[str, ...] = PROSODY_FUNCTIONALS, progress: bool = True,
                           workers: int = 1) -> AudioFeatures:
    """Prosody functionals (:func:`extract_prosody_features`) and all-layer Whisper-encoder frames
    (:func:`~msa_lib.extract.whisper_layers.extract_layerwise`); both cached per clip, so a rerun only
    reads the caches and still reports the original extraction times."""
    from msa_lib.extract.whisper_layers import LayerwiseWhisperConfig, extract_layerwise

    paths = [str(p) for p in paths]
    X, names, timings = extract_prosody_features(paths, functionals, progress, workers)
    frames, whisper_s = extract_layerwise(paths, LayerwiseWhisperConfig(window_seconds=whisper_window_seconds),
                                          progress=progress)
    timings["whisper_s"] = whisper_s  # includes its own ffmpeg decode
    return AudioFeatures(X, names, frames, timings)


def timing_summary(timings: pd.DataFrame) -> pd.DataFrame:
    """Total and per-clip seconds of each extraction stage (as measured when the clips were extracted)."""
    rows = []
    for stage, cols in (("decode (ffmpeg) + prosody", ["decode_s", "prosody_s"]),
                        ("Whisper encoder, all layers (incl. its decode)", ["whisper_s"])):
        per_clip = timings[cols].sum(axis=1)
        rows.append({"stage": stage, "clips": len(per_clip), "total_s": per_clip.sum(),
                     "per_clip_ms": 1000 * per_clip.mean(), "audio_s": timings["duration_s"].sum()})
    total = timings[["decode_s", "prosody_s", "whisper_s"]].sum(axis=1)
    rows.append({"stage": "all audio features", "clips": len(total), "total_s": total.sum(),
                 "per_clip_ms": 1000 * total.mean(), "audio_s": timings["duration_s"].sum()})
    out = pd.DataFrame(rows)
    out["real_time_factor"] = out["total_s"] / out["audio_s"]
    return out


def whisper_matrix(layer_frames: Sequence[np.ndarray], layer: int, pooling: str) -> np.ndarray:
    from msa_lib.extract.whisper_layers import layer_matrix

    return layer_matrix(layer_frames, layer, pooling).astype(np.float64)


# ------------------------------------------------------------------------------------------ splits
def seed_splits(au: MultimodalDataset, seed: int, valid_fraction: float = 0.2) -> np.ndarray:
    """Per-row split (train / valid / test) for one seed: test = actors 21-24 as shipped, validation =
    whole actors taken out of train (stratified by emotion; the seed chooses which). Checked disjoint."""
    ds = group_validation_split(au, valid_fraction=valid_fraction, seed=seed, replace_existing=True)
    assert_disjoint_groups(ds)
    test_actors = {int(g.split("_")[1]) for g in ds.group[ds.split == "test"]}
    if not test_actors <= set(RAVDESS_TEST_ACTORS):
        raise AssertionError(f"test split holds actors {sorted(test_actors)}, expected only {RAVDESS_TEST_ACTORS}")
    return ds.split.astype(str)


def split_actors(split: np.ndarray, actors: np.ndarray) -> dict[str, list[int]]:
    return {s: sorted({int(a) for a in actors[split == s]}) for s in ("train", "valid", "test")}


# ------------------------------------------------------------------------------------- classifiers
CLASSIFIERS = ("logreg", "svm", "mlp")


def make_classifier(kind: str, C: float, seed: int = 0, min_class_count: int = 5):
    """Standardise, then ``logreg`` (multinomial), ``svm`` (RBF; probabilities by sigmoid calibration on
    internal folds, as ``SVC(probability=True)`` did before scikit-learn deprecated it) or ``mlp`` (one
    hidden layer of 256, ``C`` = inverse L2 strength). ``min_class_count`` bounds the SVM's folds."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if kind == "logreg":
        clf = LogisticRegression(C=C, max_iter=3000, tol=1e-3, random_state=seed)  # 1e-3: 2-3x faster, same accuracy
    elif kind == "svm":
        folds = StratifiedKFold(n_splits=int(np.clip(min_class_count, 2, 5)), shuffle=True, random_state=seed)
        clf = CalibratedClassifierCV(SVC(C=C, kernel="rbf", gamma="scale"), method="sigmoid", cv=folds,
                                     ensemble=False)
    elif kind == "mlp":
        clf = MLPClassifier(hidden_layer_sizes=(256,), alpha=1.0 / C, max_iter=500, random_state=seed)
    else:
        raise ValueError(f"classifier kind must be one of {CLASSIFIERS}, got {kind!r}")
    return make_pipeline(StandardScaler(), clf)


def full_proba(model, X: np.ndarray, n_classes: int = N_CLASSES) -> np.ndarray:
    """``N x n_classes`` probabilities even when a class was absent from the training rows."""
    p = model.predict_proba(X)
    out = np.zeros((len(X), n_classes))
    out[:, model.classes_] = p
    return out


DEFAULT_C_GRIDS = {"logreg": (0.001, 0.01, 0.1, 1.0), "svm": (1.0, 3.0, 10.0), "mlp": (0.1, 1.0, 10.0)}


@dataclass
class BranchConfig:
    """Candidate classifiers of a branch: every ``kind`` with every ``C`` of its grid; the validation
    actors pick one (ties -> the earlier kind, then the smaller ``C``)."""

    kinds: tuple[str, ...] = ("logreg",)
    C_grids: dict[str, tuple[float, ...]] = field(default_factory=lambda: dict(DEFAULT_C_GRIDS))

    def candidates(self) -> list[tuple[str, float]]:
        kinds = (self.kinds,) if isinstance(self.kinds, str) else self.kinds
        bad = [k for k in kinds if k not in CLASSIFIERS]
        if bad:
            raise ValueError(f"classifier kinds must be among {CLASSIFIERS}, got {bad}")
        return [(k, C) for k in kinds for C in self.C_grids.get(k, DEFAULT_C_GRIDS[k])]


@dataclass
class BranchResult:
    name: str
    model: object
    kind: str
    C: float
    valid_scores: dict[tuple[str, float], float]  # validation accuracy per candidate
    proba: np.ndarray  # N x K probabilities for every row (train rows are in-sample)
    seconds: float = 0.0

    def accuracy(self, y: np.ndarray, rows: np.ndarray) -> float:
        return float(np.mean(self.proba[rows].argmax(axis=1) == y[rows]))

    @property
    def best_valid(self) -> float:
        return max(self.valid_scores.values())


def fit_branch(name: str, X: np.ndarray, y: np.ndarray, split: np.ndarray, config: BranchConfig,
               seed: int = 0) -> BranchResult:
    """Pick the classifier and ``C`` by validation accuracy (train rows -> valid rows), refit on the
    train rows with it, return probabilities for all rows. Test rows are only ever predicted."""
    start = time.perf_counter()
    tr, va = split == "train", split == "valid"
    if not tr.any() or not va.any():
        raise ValueError(f"{name}: a branch needs train and valid rows, got {int(tr.sum())} and {int(va.sum())}")
    scores = {}
    candidates = config.candidates()
    for kind, C in candidates:
        m = train_classifier(kind, C, X[tr], y[tr], seed)
        scores[(kind, C)] = float(np.mean(full_proba(m, X[va]).argmax(axis=1) == y[va]))
    kind, C = max(candidates, key=lambda kc: (scores[kc], -candidates.index(kc)))
    model = train_classifier(kind, C, X[tr], y[tr], seed)
    return BranchResult(name, model, kind, C, scores, full_proba(model, X), time.perf_counter() - start)


def train_classifier(kind: str, C: float, X: np.ndarray, y: np.ndarray, seed: int = 0):
    """:func:`make_classifier` fitted on ``X, y`` (the SVM's calibration folds sized to the rarest class)."""
    counts = np.bincount(y)
    return make_classifier(kind, C, seed, int(counts[counts > 0].min())).fit(X, y)


def out_of_fold_models(result: BranchResult, X: np.ndarray, y: np.ndarray, split: np.ndarray, groups: np.ndarray,
                       n_folds: int = 4, seed: int = 0) -> list[tuple[np.ndarray, object]]:
    """``(held-out train rows, model)`` per fold: the branch's chosen classifier refitted with whole
    train actors held out (``GroupKFold``), so every train row gets a prediction from a model that
    never saw its actor — rows a stacker can be fitted on."""
    from sklearn.model_selection import GroupKFold

    tr = np.flatnonzero(split == "train")
    n = min(n_folds, len(np.unique(groups[tr])))
    out = []
    for fit_pos, held_pos in GroupKFold(n_splits=n).split(tr, groups=groups[tr]):
        out.append((tr[held_pos], train_classifier(result.kind, result.C, X[tr[fit_pos]], y[tr[fit_pos]], seed)))
    return out


def feature_noise(X: np.ndarray, sigma: float, reference: np.ndarray, seed: int) -> np.ndarray:
    """``X`` plus Gaussian noise of ``sigma`` times each column's standard deviation on ``reference``
    (the train rows): a degraded sensor, in units the classifier's scaler sees as ``sigma``."""
    if sigma <= 0:
        return X
    std = reference.std(axis=0)
    return X + np.random.default_rng(seed).normal(size=X.shape) * sigma * std
