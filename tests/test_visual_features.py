"""msa_lib.extract.visual: face tracking, geometry, head pose, AU proxies, HoG, expressions, mask."""
from __future__ import annotations

import math
import pickle

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")
pytest.importorskip("mediapipe")

from msa_lib.extract import visual as V  # noqa: E402
from msa_lib.extract.errors import MediaError, NoFaceError  # noqa: E402
from msa_lib.extract.media import extract_frames  # noqa: E402
from msa_lib.extract.visual import (  # noqa: E402
    AU_NAMES,
    KEY_LANDMARKS,
    FaceFeatureExtractor,
    VisualFeatureConfig,
    draw_landmarks,
    head_pose_from_landmarks,
    visual_feature_names,
)


@pytest.fixture(scope="module")
def extractor():
    with FaceFeatureExtractor(VisualFeatureConfig()) as ex:
        yield ex


@pytest.fixture(scope="module")
def astro_features(extractor, astronaut_image):
    return extractor.extract([astronaut_image])


def row(vf, t=0) -> dict:
    return dict(zip(vf.feature_names, vf.features[t]))


# ------------------------------------------------------------------------------------- layout

def test_names_and_groups_partition_the_columns():
    names, groups = visual_feature_names(VisualFeatureConfig())
    assert len(names) == len(set(names))
    assert set(groups) == {"landmarks", "head_pose", "action_units", "hog", "expression"}
    assert sorted(i for idx in groups.values() for i in idx) == list(range(len(names)))
    assert len(groups["landmarks"]) == 2 * len(KEY_LANDMARKS) and 20 <= len(KEY_LANDMARKS) <= 30
    assert len(groups["action_units"]) == len(AU_NAMES)
    assert 100 <= len(groups["hog"]) <= 150 and len(groups["expression"]) == 7
    names2, groups2 = visual_feature_names(VisualFeatureConfig(use_hog=False, use_expression=False))
    assert set(groups2) == {"landmarks", "head_pose", "action_units"}
    assert len(names2) == len(names) - len(groups["hog"]) - 7


# ------------------------------------------------------------------------------------- one real face

def test_astronaut_face(astro_features):
    vf = astro_features
    assert vf.mask.tolist() == [True] and vf.n_faces[0] == 1
    assert vf.features.shape == (1, len(vf.feature_names)) and vf.features.dtype == np.float32
    assert np.all(np.isfinite(vf.features))
    assert vf.landmarks[0].shape == (478, 3)
    x0, y0, x1, y1 = vf.boxes[0]
    assert 150 < x0 < x1 < 320 and 40 < y0 < y1 < 220  # the face is in the upper left of the photo
    probs = vf.group("expression")[0]
    assert np.all(probs >= 0) and probs.sum() == pytest.approx(1.0, abs=1e-5)
    d = row(vf)
    assert abs(d["pose_yaw"]) < 20 and abs(d["pose_pitch"]) < 25 and abs(d["pose_roll"]) < 15
    # landmark geometry is centred between the eyes and scaled by the inter-ocular distance
    assert d["lm_r_eye_outer_x"] < 0 < d["lm_l_eye_outer_x"]
    assert d["lm_chin_y"] > d["lm_nose_tip_y"] > 0 > d["lm_forehead_y"]
    assert 1.0 < d["lm_chin_y"] < 3.0
    for ear in ("au45_eye_aspect_l", "au45_eye_aspect_r"):
        assert 0.1 < d[ear] < 0.6  # open eyes
    assert d["au20_mouth_width"] > 0.5 and d["au1_inner_brow_height"] > 0
    assert vf.summarize()[0].shape == (5 * len(vf.feature_names),)


def test_mirror_flips_yaw_and_roll_and_keeps_expression_geometry(extractor, astronaut_image, astro_features):
    flipped = extractor.extract([np.ascontiguousarray(astronaut_image[:, ::-1])])
    a, b = row(astro_features), row(flipped)
    assert b["pose_yaw"] == pytest.approx(-a["pose_yaw"], abs=3.0)
    assert b["pose_roll"] == pytest.approx(-a["pose_roll"], abs=2.0)
    assert b["pose_pitch"] == pytest.approx(a["pose_pitch"], abs=3.0)
    for au in ("au20_mouth_width", "au25_lip_gap", "au26_jaw_drop", "au4_inner_brow_gap"):
        assert b[au] == pytest.approx(a[au], abs=0.05)
    # the subject's left eye in the mirror image is the right eye of the original
    assert b["au45_eye_aspect_l"] == pytest.approx(a["au45_eye_aspect_r"], abs=0.05)


def test_in_plane_rotation_shows_up_as_roll_only(extractor, astronaut_image, astro_features):
    h, w = astronaut_image.shape[:2]
    rot = cv2.getRotationMatrix2D((225, 120), -20, 1.0)  # OpenCV: negative angle = clockwise
    rotated = cv2.warpAffine(astronaut_image, rot, (w, h), borderMode=cv2.BORDER_REFLECT)
    vf = extractor.extract([rotated])
    a, b = row(astro_features), row(vf)
    assert b["pose_roll"] - a["pose_roll"] == pytest.approx(20.0, abs=4.0)
    geo = vf.groups["landmarks"]
    # eye-levelled landmark geometry hardly moves
    assert np.abs(vf.features[0, geo] - astro_features.features[0, geo]).max() < 0.12


def test_scale_invariance(extractor, astronaut_image, astro_features):
    big = cv2.resize(astronaut_image, (768, 768), interpolation=cv2.INTER_LINEAR)
    vf = extractor.extract([big])
    cols = vf.groups["landmarks"] + vf.groups["action_units"]
    assert np.abs(vf.features[0, cols] - astro_features.features[0, cols]).max() < 0.1


def test_head_pose_recovers_known_rotations():
    def rx(a):
        a = math.radians(a)
        return np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])

    def ry(a):
        a = math.radians(a)
        return np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])

    def rz(a):
        a = math.radians(a)
        return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])

    w, h = 640, 480
    cam = np.array([[w, 0, w / 2], [0, w, h / 2], [0, 0, 1.0]])
    for yaw, pitch, roll in [(0, 0, 0), (25, 0, 0), (0, 15, 0), (0, 0, -12), (15, -10, 5)]:
        rot = rz(roll) @ ry(-yaw) @ rx(-pitch)
        pts3 = V._PNP_OBJ @ rot.T + np.array([0, 0, 60.0])
        uv = pts3 @ cam.T
        points = np.zeros((478, 3))
        points[V._PNP_IDX, :2] = uv[:, :2] / uv[:, 2:]
        est = head_pose_from_landmarks(points, (h, w))
        np.testing.assert_allclose(est, (yaw, pitch, roll), atol=0.5)
        if yaw:  # convention: yaw > 0 turns the nose toward the image right
            nose = points[1, 0] - points[[33, 263], 0].mean()
            assert np.sign(nose) == np.sign(yaw)


# ------------------------------------------------------------------------------------- masking

def test_blank_frames_raise_no_face(extractor):
    blank = np.zeros((240, 320, 3), np.uint8)
    with pytest.raises(NoFaceError) as info:
        extractor.extract([blank, blank], [0.0, 0.2], source="blank.mp4")
    assert "blank.mp4" in str(info.value) and info.value.stage == "visual"


def test_blank_frames_all_masked_when_allowed():
    with FaceFeatureExtractor(VisualFeatureConfig(allow_no_face=True, use_hog=False)) as ex:
        vf = ex.extract(np.zeros((3, 120, 160, 3), np.uint8))
    assert vf.mask.tolist() == [False] * 3 and np.all(np.isnan(vf.features))
    assert vf.face_ratio == 0.0 and np.all(vf.filled() == 0)


def test_mask_marks_frames_without_face(extractor, astronaut_image):
    blank = np.zeros_like(astronaut_image)
    vf = extractor.extract([astronaut_image, blank, astronaut_image], [0.0, 0.2, 0.4])
    assert vf.mask.tolist() == [True, False, True]
    assert np.all(np.isnan(vf.features[1])) and np.all(np.isfinite(vf.features[[0, 2]]))
    assert vf.landmarks[1] is None and np.all(np.isnan(vf.boxes[1])) and vf.scores[1] == 0
    assert vf.n_faces.tolist() == [1, 0, 1]
    np.testing.assert_array_equal(vf.timestamps, [0.0, 0.2, 0.4])
    filled = vf.filled(0.0)
    assert np.all(filled[1] == 0) and np.all(np.isfinite(filled))
    vec, names = vf.summarize()
    assert np.all(np.isfinite(vec))  # functionals use the face frames only


def test_main_face_is_followed(astronaut_image):
    face = astronaut_image[20:260, 100:340]
    small = cv2.resize(face, (150, 150))

    def canvas(big_x, with_big=True):
        c = np.full((360, 640, 3), 128, np.uint8)
        if with_big:
            c[60:300, big_x:big_x + 240] = face
        c[100:250, 450:600] = small
        return c

    frames = [canvas(20), canvas(40), canvas(60), canvas(60, with_big=False), canvas(80)]
    with FaceFeatureExtractor(VisualFeatureConfig(use_hog=False, max_track_gap=3)) as ex:
        vf = ex.extract(frames)
        assert vf.n_faces.tolist() == [2, 2, 2, 1, 2]
        # the big face is chosen first and followed as it moves; the other face never takes over
        assert vf.mask.tolist() == [True, True, True, False, True]
        centres = (vf.boxes[vf.mask, 0] + vf.boxes[vf.mask, 2]) / 2
        assert np.all(centres < 320) and np.all(np.diff(centres) > 0)
    with FaceFeatureExtractor(VisualFeatureConfig(use_hog=False, max_track_gap=0)) as ex:
        vf = ex.extract(frames)
        # with no patience, the track moves to the remaining face and then stays with it
        assert vf.mask.all() and np.all((vf.boxes[3:, 0] + vf.boxes[3:, 2]) / 2 > 450)


# ------------------------------------------------------------------------------------- helpers

def test_draw_landmarks(astro_features, astronaut_image):
    original = astronaut_image.copy()
    img = draw_landmarks(astronaut_image, astro_features.landmarks[0], astro_features.boxes[0])
    assert img.shape == astronaut_image.shape and img.dtype == np.uint8
    assert np.any(img != astronaut_image)
    np.testing.assert_array_equal(astronaut_image, original)  # input untouched
    np.testing.assert_array_equal(draw_landmarks(astronaut_image, None), astronaut_image)


def test_extractor_pickles_and_rebuilds(extractor, astronaut_image):
    clone = pickle.loads(pickle.dumps(extractor))
    assert clone._detector is None
    vf = clone.extract([astronaut_image])
    assert vf.mask.all()
    clone.close()


def test_extract_video_files(extractor, face_video, blank_video, audio_wav):
    vf = extractor.extract_video(face_video, fps=5.0)
    assert len(vf.mask) == 5 and vf.mask.all()
    with pytest.raises(NoFaceError) as info:
        extractor.extract_video(blank_video)
    assert str(blank_video) in str(info.value)
    with pytest.raises(MediaError, match="no video stream"):
        extractor.extract_video(audio_wav)


# ------------------------------------------------------------------------------------- real clips

def test_real_clips(extractor, clip_paths):
    timings = []
    for path in clip_paths:
        frames, times = extract_frames(path, fps=5.0, max_side=640)
        vf = extractor.extract(frames, times, source=path)
        assert vf.mask.mean() >= 0.8, (path, vf.mask)
        face = vf.features[vf.mask]
        assert np.all(np.isfinite(face))
        probs = vf.group("expression")[vf.mask]
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-4)
        assert np.all(np.isnan(vf.features[~vf.mask]))
        assert all((lm is not None) == m for lm, m in zip(vf.landmarks, vf.mask))
        timings.append((path.name, len(frames), vf.timings_ms["total"]))
    print("\nface features ms/frame:", ", ".join(f"{n} ({k} fr) {ms:.1f}" for n, k, ms in timings))


def test_aligned_face_crop(extractor, astronaut_image, astro_features):
    face = extractor.aligned_face(astronaut_image, astro_features.landmarks[0])
    assert face.shape == (64, 64) and face.dtype == np.uint8 and face.std() > 10
    # rotating the photo leaves the eye-levelled crop nearly unchanged
    rot = cv2.getRotationMatrix2D((225, 120), 15, 1.0)
    rotated = cv2.warpAffine(astronaut_image, rot, astronaut_image.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    vf = extractor.extract([rotated])
    face_r = extractor.aligned_face(rotated, vf.landmarks[0])
    assert np.corrcoef(face.ravel().astype(float), face_r.ravel().astype(float))[0, 1] > 0.9
