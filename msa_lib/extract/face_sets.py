"""Face features of the labelled face sets (CK+ images, MEAD videos), every representation at once,
cached per file.

:func:`face_set_features` runs two extractors over each item of a :mod:`msa_lib.data.faces` table:

- the blendshape model (:mod:`msa_lib.extract.blendshapes`): ``blendshapes`` (52 named scores);
- the project's MediaPipe face features (:mod:`msa_lib.extract.visual`): ``landmarks`` (29 key points,
  58 values), ``head_pose``, ``action_units`` (13 geometric AU proxies), ``hog`` (128) and
  ``expression`` (fer's 7 probabilities).

An image is a one-frame sequence; a video is sampled at ``video_fps``. Rows of frames where an
extractor found no face are NaN (each extractor has its own mask: they use different face
detectors). Small images (CK+ is 48 x 48) are upscaled and padded first (:func:`~msa_lib.extract.blendshapes.prepare_small_image`)
so that both detectors find the face, and both extractors see the same prepared image; the legacy face
detector runs in its short-range mode (``detection_model=0``), made for faces close to the camera as in
these sets. Results are cached in ``cache_dir()/features/faces-<dataset>-<settings>.pkl``, one entry per
file content, so a subset (smoke run) reuses the full run's work and vice versa.
"""
from __future__ import annotations

import hashlib
import json
import pickle
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from msa_lib.core.paths import cache_dir
from msa_lib.core.utils import get_logger
from msa_lib.data.faces import read_grey_image
from msa_lib.data.io import atomic_pickle
from msa_lib.extract.blendshapes import BLENDSHAPE_NAMES, FACE_LANDMARKER_SHA256, BlendshapeConfig, \
    BlendshapeExtractor, prepare_small_image
from msa_lib.extract.pipeline import VIDEO_SUFFIXES
from msa_lib.extract.visual import VisualFeatureConfig, visual_feature_names

__all__ = ["FaceSetConfig", "FaceSetFeatures", "face_set_features", "REPRESENTATIONS", "VISUAL_GROUPS"]

log = get_logger("extract.face_sets")
CACHE_VERSION = 1
VISUAL_GROUPS = ("landmarks", "head_pose", "action_units", "hog", "expression")
REPRESENTATIONS = ("blendshapes",) + VISUAL_GROUPS


@dataclass
class FaceSetConfig:
    small_image_side: int = 192  # CK+'s 48 px faces are upscaled to this ...
    pad_fraction: float = 0.25  # ... and padded by this fraction of it on each edge
    video_fps: float = 10.0  # MEAD frames sampled per second
    video_max_side: int = 640
    visual: VisualFeatureConfig = field(default_factory=lambda: VisualFeatureConfig(detection_model=0,
                                                                                     allow_no_face=True))
    progress: bool = False

    def blendshape_config(self) -> BlendshapeConfig:
        return BlendshapeConfig(small_image_side=self.small_image_side, pad_fraction=self.pad_fraction)

    def cache_settings(self, videos: bool = True) -> dict:
        """What changes the features (of videos, or of images: then the video sampling is irrelevant)."""
        d = asdict(self)
        d.pop("progress")
        d["visual"].pop("num_threads", None)
        if not videos:
            d.pop("video_fps")
            d.pop("video_max_side")
        return {**d, "blendshapes": asdict(self.blendshape_config()), "blendshape_model": FACE_LANDMARKER_SHA256,
                "version": CACHE_VERSION}


@dataclass
class FaceSetFeatures:
    """Per item (row of ``table``): a T x D array per representation (NaN rows = no face) and timestamps."""

    dataset: str
    table: pd.DataFrame
    sequences: dict[str, list[np.ndarray]]
    names: dict[str, list[str]]
    timestamps: list[np.ndarray]
    seconds: float = 0.0  # extraction wall time of the items not in the cache

    def __len__(self) -> int:
        return len(self.table)

    def mask(self, representation: str) -> list[np.ndarray]:
        """Per item: the frames where that representation's extractor found a face."""
        return [np.isfinite(s).all(axis=1) for s in self.sequences[representation]]

    def missed(self, representation: str) -> np.ndarray:
        """Per item: True when the representation found no face in any frame."""
        return np.array([not m.any() for m in self.mask(representation)])

    def subset(self, rows) -> "FaceSetFeatures":
        rows = np.asarray(rows)
        return FaceSetFeatures(self.dataset, self.table.iloc[rows].reset_index(drop=True),
                               {k: [v[i] for i in rows] for k, v in self.sequences.items()}, self.names,
                               [self.timestamps[i] for i in rows], self.seconds)

    def clip_vectors(self, representations, functional: str = "mean") -> np.ndarray:
        """N x D: per item the mean (or ``"median"``) over its face frames of the representations'
        columns side by side; NaN where a representation found no face."""
        reduce = {"mean": np.mean, "median": np.median}[functional]
        parts = []
        for rep in representations:
            seqs = self.sequences[rep]
            dim = len(self.names[rep])
            parts.append(np.stack([reduce(s[np.isfinite(s).all(axis=1)], axis=0) if np.isfinite(s).all(axis=1).any()
                                   else np.full(dim, np.nan) for s in seqs]))
        return np.concatenate(parts, axis=1)

    def frame_rows(self, representations) -> tuple[np.ndarray, np.ndarray]:
        """(F x D frames where every listed representation has a face, item index of each frame)."""
        xs, items = [], []
        for i in range(len(self)):
            x = np.concatenate([self.sequences[r][i] for r in representations], axis=1)
            keep = np.isfinite(x).all(axis=1)
            xs.append(x[keep])
            items.append(np.full(int(keep.sum()), i))
        return np.concatenate(xs), np.concatenate(items)

    def columns(self, representations) -> list[str]:
        return [n for r in representations for n in self.names[r]]


def _digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:32]


def _names(cfg: FaceSetConfig) -> dict[str, list[str]]:
    names, groups = visual_feature_names(cfg.visual)
    out = {"blendshapes": list(BLENDSHAPE_NAMES)}
    out.update({g: [names[i] for i in groups[g]] for g in VISUAL_GROUPS if g in groups})
    return out


def _extract_item(path: str, is_video: bool, cfg: FaceSetConfig, blend: BlendshapeExtractor, face) -> dict:
    if is_video:
        from msa_lib.extract.media import extract_frames

        frames, times = extract_frames(path, fps=cfg.video_fps, max_side=cfg.video_max_side)
    else:
        frames = [read_grey_image(path)]
        times = np.zeros(1)
    frames = [prepare_small_image(f, cfg.small_image_side, cfg.pad_fraction) for f in frames]
    b = blend.extract(frames, times, source=path)
    v = face.extract(frames, times, source=path)
    out = {"blendshapes": b.features, "timestamps": np.asarray(times, np.float64)}
    for g in VISUAL_GROUPS:
        if g in v.groups:
            out[g] = v.group(g).astype(np.float32)
    return out


def face_set_features(dataset: str, table: pd.DataFrame, config: FaceSetConfig | None = None) -> FaceSetFeatures:
    """Every representation of every item of ``table`` (a :mod:`msa_lib.data.faces` loader's rows:
    image files are one frame, video files are sampled at ``video_fps``); ``dataset`` names the cache."""
    from msa_lib.extract.visual import FaceFeatureExtractor

    cfg = config or FaceSetConfig()
    is_video = [Path(p).suffix.lower() in VIDEO_SUFFIXES for p in table["path"]]
    settings = cfg.cache_settings(videos=any(is_video))
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / "features" / f"faces-{dataset}-{key}.pkl"
    cache: dict = {}
    if path.is_file():
        try:
            with open(path, "rb") as fh:
                cache = pickle.load(fh)
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
            cache = {}  # a damaged cache is rebuilt
    digests = [_digest(p) for p in table["path"]]
    todo = [i for i, d in enumerate(digests) if d not in cache]
    started = time.perf_counter()
    if todo:
        from tqdm.auto import tqdm

        log.info("%s: extracting face features of %d of %d items (cached afterwards)", dataset, len(todo), len(table))
        with BlendshapeExtractor(cfg.blendshape_config()) as blend, \
                FaceFeatureExtractor(cfg.visual) as face:
            for i in tqdm(todo, desc=f"faces {dataset}", disable=not cfg.progress):
                cache[digests[i]] = _extract_item(table["path"].iloc[i], is_video[i], cfg, blend, face)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_pickle(cache, path)
    seconds = time.perf_counter() - started
    names = _names(cfg)
    sequences = {rep: [cache[d][rep] for d in digests] for rep in names}
    return FaceSetFeatures(dataset, table.reset_index(drop=True), sequences, names,
                           [cache[d]["timestamps"] for d in digests], seconds)
