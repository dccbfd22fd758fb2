"""The labelled face sets shipped in ``data/faces/`` (provenance and licences in ``data/README.md``).

- :func:`load_ckplus` — CK+ (Lucey et al., 2010) peak-expression frames, 48 x 48 grey PNGs, 981 images
  of 118 subjects, 7 expressions (``{emotion}/S{subject}_{sequence}_{frame}.png``). Several frames of
  one sequence are near-duplicates: split by ``group`` (the subject), never by image.
- :func:`load_mead` — 24 silent frontal MEAD (Wang et al., 2020) videos, 3 speakers x 8 emotions
  (``{speaker}_front_{emotion}_level{intensity}_001.mp4``); ``group`` = the speaker.

Both return one row per image / video with ``path``, ``emotion`` (the folder / file name's word),
``label`` (index into :data:`CKPLUS_EMOTIONS` / :data:`MEAD_EMOTIONS`), ``group`` and ``valence``
(1 positive, 0 negative, -1 neither: see :data:`VALENCE`). These are posed expressions of mostly
Western adults, no spontaneous or Chinese faces.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from msa_lib.core.paths import DATA_DIR, project_path
from msa_lib.data.schema import FeatureFormatError

__all__ = ["CKPLUS_EMOTIONS", "MEAD_EMOTIONS", "VALENCE", "FACE_DATASETS", "load_ckplus", "load_mead",
           "load_face_dataset", "emotions_of", "read_grey_image", "valence_of"]

FACES_DIR = DATA_DIR / "faces"
CKPLUS_EMOTIONS = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
MEAD_EMOTIONS = ("angry", "contempt", "disgusted", "fear", "happy", "neutral", "sad", "surprised")
# Expression -> valence target: the one pleasant expression is positive, the unpleasant ones negative;
# neutral has no valence and surprise can be either (as in the audio branch's RAVDESS mapping), so
# both are left out of every valence target and metric.
VALENCE: dict[str, int] = {
    "happy": 1,
    "anger": 0, "angry": 0, "contempt": 0, "disgust": 0, "disgusted": 0, "fear": 0, "sadness": 0, "sad": 0,
    "surprise": -1, "surprised": -1, "neutral": -1,
}
FACE_DATASETS = ("ckplus", "mead")

_CKPLUS_NAME = re.compile(r"^S(\d{3})_(\d{3})_(\d{8})$")
_MEAD_NAME = re.compile(r"^([MW]\d{3})_front_([a-z]+)_level(\d)_(\d{3})$")


def valence_of(emotion: str) -> int:
    """1 positive, 0 negative, -1 neither (neutral, surprise)."""
    if emotion not in VALENCE:
        raise KeyError(f"no valence defined for expression {emotion!r} (known: {sorted(VALENCE)})")
    return VALENCE[emotion]


def load_ckplus(root: str | os.PathLike = FACES_DIR / "ckplus48") -> pd.DataFrame:
    """One row per CK+ image: path, id, emotion, label, subject, sequence, frame, group (= subject), valence."""
    root = project_path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: the CK+ folder is missing (expected {{emotion}}/S###_###_########.png "
                                "folders, see data/README.md)")
    rows = []
    for label, emotion in enumerate(CKPLUS_EMOTIONS):
        folder = root / emotion
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: missing; CK+ needs one folder per expression {CKPLUS_EMOTIONS}")
        for path in sorted(folder.glob("*.png")):
            m = _CKPLUS_NAME.match(path.stem)
            if not m:
                raise FeatureFormatError(path, "file name", "S{subject}_{sequence}_{frame}.png (e.g. S010_006_00000013.png)",
                                         path.name)
            subject, sequence, frame = m.groups()
            rows.append({"path": str(path), "id": f"{emotion}/{path.stem}", "emotion": emotion, "label": label,
                         "subject": f"S{subject}", "sequence": f"S{subject}_{sequence}", "frame": int(frame),
                         "group": f"S{subject}", "valence": valence_of(emotion)})
    if not rows:
        raise FileNotFoundError(f"{root}: no CK+ images found")
    return pd.DataFrame(rows)


def load_mead(root: str | os.PathLike = FACES_DIR / "mead") -> pd.DataFrame:
    """One row per MEAD video: path, id, emotion, label, speaker, intensity, group (= speaker), valence."""
    root = project_path(root)
    files = sorted(root.glob("*.mp4")) if root.is_dir() else []
    if not files:
        raise FileNotFoundError(f"{root}: no MEAD videos ({{speaker}}_front_{{emotion}}_level{{n}}_001.mp4) found")
    rows = []
    for path in files:
        m = _MEAD_NAME.match(path.stem)
        if not m or m.group(2) not in MEAD_EMOTIONS:
            raise FeatureFormatError(path, "file name", "{speaker}_front_{emotion}_level{n}_{take}.mp4 with an emotion "
                                     f"among {MEAD_EMOTIONS}", path.name)
        speaker, emotion, intensity, _ = m.groups()
        rows.append({"path": str(path), "id": path.stem, "emotion": emotion, "label": MEAD_EMOTIONS.index(emotion),
                     "speaker": speaker, "intensity": int(intensity), "group": speaker, "valence": valence_of(emotion)})
    return pd.DataFrame(rows)


def load_face_dataset(name: str) -> pd.DataFrame:
    """``"ckplus"`` or ``"mead"``."""
    if name == "ckplus":
        return load_ckplus()
    if name == "mead":
        return load_mead()
    raise ValueError(f"unknown face dataset {name!r}; choose from {FACE_DATASETS}")


def emotions_of(name: str) -> tuple[str, ...]:
    return {"ckplus": CKPLUS_EMOTIONS, "mead": MEAD_EMOTIONS}[name]


def read_grey_image(path: str | os.PathLike) -> np.ndarray:
    """A greyscale image as an H x W uint8 array (a clear error for an unreadable file)."""
    import cv2

    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise FeatureFormatError(Path(path), "image", "a readable PNG/JPEG image", "unreadable data")
    return img
