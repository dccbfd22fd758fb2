"""Loaders for the real datasets shipped in ``data/`` (provenance in ``data/README.md``).

- :func:`load_mosi` — CMU-MOSI utterance-level features of bc-LSTM (text-CNN 100-d, openSMILE 73-d,
  3D-CNN 100-d), binary labels, transcripts, speaker-independent split (62 / 31 videos).
- :func:`load_zh_reviews` — ChnSentiCorp hotel reviews (text only), a fixed stratified split.
- :func:`load_ravdess_au_mfcc` — RAVDESS clip-level 35 OpenFace AUs + 259 MFCC values, 8 emotions.
- :func:`ravdess_recordings` — the 1440 RAVDESS speech files with parsed labels.
- :func:`read_clip_manifest` — a manifest CSV of raw clips (path, optional label/transcript/language).

Each CSV loader also reads the ``.csv`` files of ``../shared/data`` (plain or ``.gz``).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from msa_lib.data.schema import DatasetMeta, FeatureFormatError, ModalitySpec, MultimodalDataset
from msa_lib.core.paths import DATA_DIR, input_path, project_path
from msa_lib.core.utils import normalize_transcript
from msa_lib.data.labels import BINARY_SCHEME, LabelScheme

RAVDESS_EMOTIONS = ("neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised")
RAVDESS_TEST_ACTORS = (21, 22, 23, 24)
ZH_SPLIT_SEED = 20240601
ZH_SPLIT_FRACTIONS = {"train": 0.7, "valid": 0.1, "test": 0.2}


def _csv(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.csv.gz", f"{stem}.csv"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"{folder}: neither {stem}.csv nor {stem}.csv.gz found")


def _read_matrix(folder: Path, stem: str) -> np.ndarray:
    path = _csv(folder, stem)
    frame = pd.read_csv(path, header=None)
    if not all(np.issubdtype(t, np.number) for t in frame.dtypes):
        raise FeatureFormatError(path, "<columns>", "numeric feature columns", "non-numeric values")
    return frame.to_numpy(dtype=np.float64)


def load_mosi(root: str | os.PathLike = DATA_DIR / "mosi") -> MultimodalDataset:
    """CMU-MOSI (bc-LSTM release): 1447 train / 752 test utterances; group = video id."""
    root = project_path(root)
    transcripts = pd.read_csv(_csv(root, "transcripts"), header=None,
                              names=["clip_id", "text", "video_count", "label"], keep_default_na=False)
    parts = []
    for split in ("train", "test"):
        text_idx = _read_matrix(root, f"text_{split}")
        mats = {m: _read_matrix(root, f"{m}_{split}0") for m in ("text", "audio", "video")}
        n = len(text_idx)
        for m, mat in mats.items():
            if len(mat) != n:
                raise FeatureFormatError(root / f"{m}_{split}0.csv", "rows", f"{n} rows (as text_{split}.csv)", str(len(mat)))
        labels = mats["text"][:, -1].astype(int)
        for m, mat in mats.items():
            if not np.array_equal(mat[:, -1].astype(int), labels):
                raise FeatureFormatError(root / f"{m}_{split}0.csv", "label column", "the same labels in every modality file", "a mismatch")
        rows = transcripts.iloc[text_idx[:, 0].astype(int)]
        if not np.array_equal(rows["label"].to_numpy(int), labels):
            raise FeatureFormatError(root / "transcripts.csv", "label", "labels matching the feature files", "a mismatch")
        if not np.allclose(text_idx[:, 1:], mats["text"][:, :-1], atol=1e-4):
            raise FeatureFormatError(root / f"text_{split}.csv", "features", "the same text features as text_{split}0.csv", "different values")
        parts.append(pd.DataFrame({
            "id": rows["clip_id"].to_numpy(), "text": [normalize_transcript(t) for t in rows["text"]], "label": labels,
            "split": split, "video": rows["clip_id"].str.rsplit("_", n=1).str[0].to_numpy(),
            "text_cnn": list(mats["text"][:, :-1]), "audio": list(mats["audio"][:, :-1]), "vision": list(mats["video"][:, :-1]),
        }))
    frame = pd.concat(parts, ignore_index=True)
    extractor = "bc-LSTM release (declare-lab/multimodal-deep-learning)"
    meta = DatasetMeta(
        "mosi",
        {
            "text_cnn": ModalitySpec(100, level="utterance", extractor={"name": "text-CNN (word2vec)", "source": extractor}),
            "audio": ModalitySpec(73, level="utterance", extractor={"name": "openSMILE", "source": extractor}),
            "vision": ModalitySpec(100, level="utterance", extractor={"name": "3D-CNN", "source": extractor}),
        },
        BINARY_SCHEME,
        source="CMU-MOSI (Zadeh et al., 2016) via declare-lab/multimodal-deep-learning@111b401d bc-LSTM/data",
        extra={"split": "speaker-independent: 62 train videos, 31 test videos (as shipped)"},
    )
    return MultimodalDataset.build(
        meta, frame["id"], {m: list(frame[m]) for m in ("text_cnn", "audio", "vision")},
        split=frame["split"], language="en", raw_text=frame["text"], group=frame["video"],
        labels=frame["label"], source=str(root),
    )


def load_zh_reviews(root: str | os.PathLike = DATA_DIR / "zh_reviews", seed: int = ZH_SPLIT_SEED) -> MultimodalDataset:
    """ChnSentiCorp hotel reviews: text only (features are added by a text encoder).

    The split is fixed: stratified by label, 70 / 10 / 20 % train / valid / test with ``seed``;
    identical review texts share a group so duplicates never straddle splits.
    """
    root = project_path(root)
    frame = pd.read_csv(_csv(root, "ChnSentiCorp_htl_all"), keep_default_na=False)
    if not {"label", "review"} <= set(frame.columns):
        raise FeatureFormatError(root, "columns", "label and review", str(list(frame.columns)))
    frame = frame[frame["review"].str.strip() != ""].reset_index(drop=True)
    bad = ~frame["label"].isin([0, 1])
    if bad.any():
        raise FeatureFormatError(root, "label", "0 (negative) or 1 (positive)", f"{frame.loc[bad, 'label'].iloc[0]!r}")
    frame["group"] = frame["review"].str.strip().factorize()[0].astype(str)
    frame["split"] = stratified_group_assignment(frame["label"].to_numpy(), frame["group"].to_numpy(), ZH_SPLIT_FRACTIONS, seed)
    meta = DatasetMeta("zh_reviews", {}, BINARY_SCHEME,
                       source="ChnSentiCorp_htl_all via SophonPlus/ChineseNlpCorpus@a0b781d7",
                       extra={"split": f"stratified 70/10/20 by label, seed {seed}, duplicates grouped"})
    return MultimodalDataset.build(meta, [f"zh_review_{i:05d}" for i in range(len(frame))], {},
                                   split=frame["split"], language="zh", raw_text=frame["review"],
                                   group=frame["group"], labels=frame["label"], source=str(root))


def stratified_group_assignment(labels, groups, fractions: dict[str, float], seed: int) -> np.ndarray:
    """Assign whole groups to splits so that each split gets ``fractions`` of every label's groups."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(labels), dtype=object)
    group_label = pd.Series(labels).groupby(pd.Series(groups)).agg(lambda s: s.mode().iloc[0])
    names = list(fractions)
    bounds = np.cumsum([fractions[n] for n in names])
    for lab in np.unique(group_label.to_numpy()):
        gs = group_label.index[group_label.to_numpy() == lab].to_numpy()
        gs = gs[rng.permutation(len(gs))]
        cut = np.round(bounds * len(gs)).astype(int)
        start = 0
        for name, stop in zip(names, cut):
            out[np.isin(groups, gs[start:stop])] = name
            start = stop
    return out


def ravdess_clip_key(stem: str) -> str:
    """``03-01-05-02-01-01-12`` -> ``05-02-01-01-12``: emotion, intensity, statement, repetition and actor,
    i.e. the same performance in every modality file (audio-only, video-only, audio-visual)."""
    fields = Path(str(stem)).stem.split("-")
    if len(fields) != 7:
        raise ValueError(f"{stem}: not a RAVDESS clip name (expected 7 dash-separated fields)")
    return "-".join(fields[2:])


def parse_ravdess_name(name: str) -> dict:
    """``MM-CC-EE-II-SS-RR-AA``: modality, channel, emotion (1..8), intensity, statement, repetition, actor."""
    stem = Path(name).stem
    fields = stem.split("-")
    if len(fields) != 7 or not all(f.isdigit() for f in fields):
        raise ValueError(f"{name}: not a RAVDESS file name (expected 7 dash-separated numbers)")
    modality, channel, emotion, intensity, statement, repetition, actor = map(int, fields)
    if not 1 <= emotion <= 8:
        raise ValueError(f"{name}: emotion code {emotion} outside 1..8")
    return dict(stem=stem, modality=modality, channel=channel, emotion=emotion - 1,
                emotion_name=RAVDESS_EMOTIONS[emotion - 1], intensity=intensity, statement=statement,
                repetition=repetition, actor=actor, split="test" if actor in RAVDESS_TEST_ACTORS else "train")


def load_ravdess_au_mfcc(path: str | os.PathLike = DATA_DIR / "ravdess" / "au_mfcc.pkl") -> MultimodalDataset:
    """Clip-level vectors: vision = 35 OpenFace AUs (17 ``AU*_r`` + 18 ``AU*_c``), audio = 259 MFCC values.
    Actors 21-24 are the test split; group = actor (take validation actors out of train by group)."""
    from msa_lib.data.io import load_pickle

    path = project_path(path)
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise FeatureFormatError(path, "<root>", "a dict clip name -> 294-d vector", type(data).__name__)
    rows = []
    for key, vec in sorted(data.items()):
        vec = np.asarray(vec, dtype=np.float32).reshape(-1)
        if vec.shape != (294,):
            raise FeatureFormatError(path, key, "a 294-d vector (35 AUs + 259 MFCC values)", f"shape {vec.shape}")
        rows.append((parse_ravdess_name(key), vec))
    scheme = LabelScheme("multiclass", None, RAVDESS_EMOTIONS, "RAVDESS emotion (8 classes)")
    au_names = [f"AU_r{i:02d}" for i in range(17)] + [f"AU_c{i:02d}" for i in range(18)]
    meta = DatasetMeta(
        "ravdess_au_mfcc",
        {"vision": ModalitySpec(35, au_names, {"AU_intensity": list(range(17)), "AU_presence": list(range(17, 35))},
                                "utterance", extractor={"name": "OpenFace 2 AUs, clip mean"}),
         "audio": ModalitySpec(259, [f"mfcc_{i:03d}" for i in range(259)], {"mfcc": list(range(259))}, "utterance",
                               extractor={"name": "MFCC-derived (shipped)"})},
        scheme,
        source="RAVDESS (Livingstone & Russo, 2018) via KangHyunWook/Pytorch-implementation-of-Multimodal-emotion-recognition-on-RAVDESS-dataset@dd366fbc",
        extra={"test_actors": list(RAVDESS_TEST_ACTORS)},
    )
    return MultimodalDataset.build(
        meta, [r["stem"] for r, _ in rows],
        {"vision": [v[:35] for _, v in rows], "audio": [v[35:] for _, v in rows]},
        split=[r["split"] for r, _ in rows], language="en", raw_text=["" for _ in rows],
        group=[f"actor_{r['actor']:02d}" for r, _ in rows], labels=[r["emotion"] for r, _ in rows], source=str(path),
    )


def ravdess_recordings(root: str | os.PathLike = DATA_DIR / "ravdess" / "speech") -> pd.DataFrame:
    """One row per speech recording: path, parsed fields, split (actors 21-24 = test)."""
    root = project_path(root)
    files = sorted(root.glob("Actor_*/*.opus")) + sorted(root.glob("Actor_*/*.wav"))
    if not files:
        raise FileNotFoundError(f"{root}: no RAVDESS recordings (Actor_NN/*.opus or *.wav)")
    return pd.DataFrame([{"path": str(f), **parse_ravdess_name(f.name)} for f in files])


MANIFEST_PATH_COLUMNS = ("path", "file", "video", "clip")
MANIFEST_TEXT_COLUMNS = ("transcript", "text")
MANIFEST_LANG_COLUMNS = ("language", "lang")
_NUMBER = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)")
_WORD_SCORES = {"negative": -1.0, "neg": -1.0, "neutral": 0.0, "positive": 1.0, "pos": 1.0}


def parse_label(value) -> float | None:
    """A manifest label as a score: a number (``-1.0 (Negative)`` -> -1.0) or a polarity word
    (Negative / Neutral / Positive -> -1 / 0 / 1). When both appear, the word decides the sign, so
    binary codes such as ``0 (neg; binary)`` read as negative (-1) rather than neutral."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    text = str(value).strip()
    if not text:
        return None
    words = [w for w in re.split(r"[^a-z]+", text.lower()) if w in _WORD_SCORES]
    m = _NUMBER.match(text)
    if words:
        polarity = _WORD_SCORES[words[0]]
        number = float(m.group(1)) if m else 0.0
        if polarity == 0 or (number != 0 and np.sign(number) == polarity and "binary" not in text.lower()):
            return number if polarity != 0 else 0.0
        return polarity
    if m:
        return float(m.group(1))
    raise ValueError(f"label {value!r}: expected a number or Negative/Neutral/Positive")


MANIFEST_SPLITS = {"train": "train", "dev": "valid", "valid": "valid", "val": "valid", "validation": "valid",
                   "test": "test"}


def manifest_labels_are_classes(raw_labels) -> bool:
    """A manifest's labels are class names (e.g. emotions) when any non-empty one is neither a number
    nor a polarity word; then every label is taken as a name (so "neutral" is a class, not a score)."""
    for raw in raw_labels:
        if str(raw).strip():
            try:
                parse_label(raw)
            except ValueError:
                return True
    return False


def read_clip_manifest(path: str | os.PathLike) -> pd.DataFrame:
    """Normalise a clip manifest to columns ``path, clip_id, language, transcript, label, label_raw,
    label_class, split, group``.

    ``path`` is relative to the current folder (a relative path found only inside the project, such
    as ``data/clips/manifest.csv``, is the shipped manifest). Required: a path column
    (``path``/``file``/...), each resolved relative to the manifest's folder. Optional:
    ``transcript`` (overrides ASR), ``language`` (``zh``/``en``/``auto``), ``label`` (a score, a
    polarity word, or a class name -- see :func:`manifest_labels_are_classes`), ``split`` (train /
    dev / test; dev is the validation split) and ``group`` (speaker or source video, for group-aware
    splits). Checking the rows before long work: :func:`msa_lib.data.manifest_checks.check_clip_manifest`.
    """
    path = input_path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: manifest not found")
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    col = next((c for c in MANIFEST_PATH_COLUMNS if c in frame.columns), None)
    if col is None:
        raise FeatureFormatError(path, "columns", f"one of {MANIFEST_PATH_COLUMNS} naming each clip", str(list(frame.columns)))
    text_col = next((c for c in MANIFEST_TEXT_COLUMNS if c in frame.columns), None)
    lang_col = next((c for c in MANIFEST_LANG_COLUMNS if c in frame.columns), None)
    out = pd.DataFrame({"path": [str((path.parent / p).resolve()) if not os.path.isabs(p) else p for p in frame[col]]})
    out["clip_id"] = frame["clip_id"] if "clip_id" in frame.columns else [Path(p).stem for p in out["path"]]
    out["language"] = frame[lang_col].replace("", "auto") if lang_col else "auto"
    out["transcript"] = frame[text_col] if text_col else ""
    out["label_raw"] = frame["label"] if "label" in frame.columns else ""
    classes = manifest_labels_are_classes(out["label_raw"])
    labels = []
    for i, raw in enumerate(out["label_raw"]):
        try:
            labels.append(None if classes else parse_label(raw))
        except ValueError as exc:
            raise FeatureFormatError(path, f"label (row {i + 2})", "a number or Negative/Neutral/Positive", repr(raw)) from exc
    out["label"] = [np.nan if v is None else v for v in labels]
    out["label_class"] = [str(r).strip() if classes else "" for r in out["label_raw"]]
    splits = []
    for i, raw in enumerate(frame["split"] if "split" in frame.columns else [""] * len(frame)):
        key = str(raw).strip().lower()
        if key and key not in MANIFEST_SPLITS:
            raise FeatureFormatError(path, f"split (row {i + 2})", "train, dev (or valid) or test", repr(raw))
        splits.append(MANIFEST_SPLITS.get(key, ""))
    out["split"] = splits
    out["group"] = frame["group"].astype(str).str.strip() if "group" in frame.columns else ""
    return out
