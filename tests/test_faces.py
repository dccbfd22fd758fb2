"""Face blendshapes (MediaPipe FaceLandmarker), the shipped face sets, the face evaluation's protocol and
the default model's trained face valence branch, on real faces (MEAD video, CK+ 48 x 48 images,
scikit-image's astronaut) and, for the protocol bookkeeping only, small synthetic arrays."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from msa_lib.core.pretrained import ModelNotAvailable, sha256_file
from msa_lib.data.faces import CKPLUS_EMOTIONS, MEAD_EMOTIONS, load_ckplus, load_mead, read_grey_image
from msa_lib.data.schema import FeatureFormatError
from msa_lib.extract.blendshapes import (BLENDSHAPE_AUS, BLENDSHAPE_GROUPS, BLENDSHAPE_NAMES, FACE_LANDMARKER_SHA256,
                                         BlendshapeConfig, BlendshapeExtractor, pooled_names, prepare_small_image,
                                         resolve_face_landmarker)
from msa_lib.extract.media import extract_frames
from msa_lib.extract.pipeline import ExtractConfig, extract, extract_clip, modality_specs, resolve_inputs

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MEAD_CLIP = PROJECT_ROOT / "data" / "faces" / "mead" / "W009_front_happy_level3_001.mp4"
CK_IMAGE = PROJECT_ROOT / "data" / "faces" / "ckplus48" / "happy" / "S010_006_00000013.png"
DEFAULT_FACE_MODEL = PROJECT_ROOT / "models" / "default" / "face.npz"


@pytest.fixture(scope="module")
def extractor():
    with BlendshapeExtractor() as ex:
        yield ex


# ------------------------------------------------------------------------------------------- model file
def test_bundled_model_is_resolved_and_checked(tmp_path):
    path = resolve_face_landmarker()
    assert path.name == "face_landmarker.task" and sha256_file(path) == FACE_LANDMARKER_SHA256
    local = tmp_path / "my_landmarker.task"
    shutil.copy(path, local)
    assert resolve_face_landmarker(local) == local  # any local .task file is taken as given
    with pytest.raises(ModelNotAvailable, match="not found"):
        resolve_face_landmarker(tmp_path / "missing.task")
    junk = tmp_path / "junk.task"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelNotAvailable, match="junk.task"):
        BlendshapeExtractor(BlendshapeConfig(model_path=str(junk))).load()


def test_names_groups_and_au_table_cover_every_blendshape():
    assert len(BLENDSHAPE_NAMES) == 52 == len(set(BLENDSHAPE_NAMES))
    assert sorted(i for cols in BLENDSHAPE_GROUPS.values() for i in cols) == list(range(52))
    assert set(BLENDSHAPE_AUS) == set(BLENDSHAPE_NAMES)
    assert BLENDSHAPE_AUS["browInnerUp"].startswith("AU1 ") and BLENDSHAPE_AUS["mouthSmileLeft"].startswith("AU12 ")
    assert BLENDSHAPE_AUS["mouthSmileRight"] == BLENDSHAPE_AUS["mouthSmileLeft"]
    assert pooled_names(("mean", "std"))[:2] == ["_neutral__mean", "browDownLeft__mean"]
    assert len(pooled_names(("mean", "std"))) == 104


# ------------------------------------------------------------------------------------------- extraction
def test_real_mead_clip_gives_52_named_scores_and_masks_a_frame_without_face(extractor):
    frames, times = extract_frames(MEAD_CLIP, fps=5.0)
    blank = np.zeros_like(frames[:1])
    out = extractor.extract(np.concatenate([frames, blank]), np.append(times, times[-1] + 0.2), keep_landmarks=True)
    assert out.features.shape == (len(frames) + 1, 52) and out.feature_names == list(BLENDSHAPE_NAMES)
    assert out.mask[:-1].all() and not out.mask[-1]
    assert np.isnan(out.features[-1]).all() and out.landmarks[-1] is None
    faces = out.features[out.mask]
    assert np.isfinite(faces).all() and faces.min() >= 0.0 and faces.max() <= 1.0
    assert out.landmarks[0].shape == (478, 3)
    smile = faces[:, [BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight")]].mean()
    assert smile > faces[:, BLENDSHAPE_NAMES.index("mouthFrownLeft")].mean()  # a happy clip smiles
    vec, names = out.summarize(("mean", "p90"))
    assert names == pooled_names(("mean", "p90")) and np.allclose(vec[:52], faces.mean(axis=0), atol=1e-5)
    assert len(out.top_movers(5)) == 5 and set(out.top_movers(5)) <= set(BLENDSHAPE_NAMES)


def test_a_frame_without_a_face(extractor):
    scores, points, n = extractor.frame(np.zeros((240, 320, 3), np.uint8))
    assert scores is None and points is None and n == 0
    out = extractor.extract(np.full((240, 320, 3), 128, np.uint8))  # one image is one frame
    assert out.features.shape == (1, 52) and not out.mask.any() and out.face_ratio == 0.0
    assert out.top_movers() == []


def test_a_48_pixel_ck_image_is_upscaled_padded_and_found(extractor):
    img = read_grey_image(CK_IMAGE)
    assert img.shape == (48, 48)
    prepared = prepare_small_image(img, 192, 0.25)
    assert prepared.shape == (192 + 2 * 48, 192 + 2 * 48, 3) and prepared.dtype == np.uint8
    assert prepare_small_image(np.zeros((256, 300, 3), np.uint8)).shape == (256, 300, 3)  # big enough: unchanged
    scores, points, n = extractor.frame(img)
    assert n == 1 and scores.shape == (52,) and 0 <= scores.min() and scores.max() <= 1
    # landmarks are mapped back into the 48-pixel image
    assert -4 < points[:, 0].min() and points[:, 0].max() < 52 and -4 < points[:, 1].min() and points[:, 1].max() < 52


def test_small_faces_in_wide_frames_are_found_by_the_full_range_detector(extractor):
    """CH-SIMS shots: the speaker's face is about 55 px tall in a 640 x 268 frame, too small for the
    landmarker's own short-range detector."""
    frames, _ = extract_frames(PROJECT_ROOT / "data" / "clips" / "chsims_video_0001_0008.mp4", fps=1.0)
    with BlendshapeExtractor(BlendshapeConfig(detect_small_faces=False)) as plain:
        without = plain.extract(frames)
    found = extractor.extract(frames, keep_landmarks=True)
    assert found.mask.sum() > without.mask.sum()
    for points in (p for p in found.landmarks if p is not None):  # landmarks in the full frame's pixels
        assert 0 <= points[:, 0].min() and points[:, 0].max() <= frames.shape[2]


def test_the_registered_extractor_on_a_real_clip_and_on_a_blank_video(blank_video):
    cfg = ExtractConfig(modalities=("vision",), face_features=("blendshapes",), use_cache=False)
    record = extract_clip((resolve_inputs([MEAD_CLIP])[0], cfg, None))
    assert record["status"] == "ok" and set(record["features"]) == {"vision_blendshapes", "vision_blendshapes_pooled"}
    seq, pooled = record["features"]["vision_blendshapes"], record["features"]["vision_blendshapes_pooled"]
    assert seq.shape[1] == 52 and pooled.shape == (1, 52 * 5) and record["blendshape_face_ratio"] == 1.0
    specs = modality_specs(cfg, [record])
    assert specs["vision_blendshapes"].feature_names == list(BLENDSHAPE_NAMES)
    assert specs["vision_blendshapes"].level == "sequence" and specs["vision_blendshapes_pooled"].level == "utterance"
    assert specs["vision_blendshapes_pooled"].feature_names == pooled_names(BlendshapeConfig().functionals)
    assert "cheeks_nose" in specs["vision_blendshapes"].groups
    ds = extract([str(blank_video)], cfg, progress=False)  # no face: the clip fails with the reason named
    assert len(ds) == 0 and "blendshapes" in ds.failures[0]["error"]


# ---------------------------------------------------------------------------------------------- data
def test_face_sets_load_with_subject_groups():
    ck, mead = load_ckplus(), load_mead()
    assert len(ck) == 981 and ck["subject"].nunique() == 118 and (ck["group"] == ck["subject"]).all()
    assert set(ck["emotion"]) == set(CKPLUS_EMOTIONS) and (ck["valence"][ck["emotion"] == "happy"] == 1).all()
    assert (ck["valence"][ck["emotion"] == "surprise"] == -1).all()
    assert len(mead) == 24 and set(mead["group"]) == {"M030", "W009", "W011"}
    assert mead.groupby("speaker")["emotion"].nunique().eq(len(MEAD_EMOTIONS)).all()
    assert (mead["label"] == [MEAD_EMOTIONS.index(e) for e in mead["emotion"]]).all()


def test_bad_face_file_names_get_a_clear_error(tmp_path):
    for emotion in CKPLUS_EMOTIONS:
        (tmp_path / emotion).mkdir()
    (tmp_path / "happy" / "face1.png").write_bytes(b"")
    with pytest.raises(FeatureFormatError, match="face1.png"):
        load_ckplus(tmp_path)
    (tmp_path / "W001_front_bored_level1_001.mp4").write_bytes(b"")
    with pytest.raises(FeatureFormatError, match="bored"):
        load_mead(tmp_path)


# ------------------------------------------------------------------------------- evaluation protocol
def _synthetic_set(dataset: str, n_groups: int, per_group: int, frames: int, seed: int = 0):
    """Two expressions separated in feature space (unit-test data only)."""
    from msa_lib.extract.face_sets import FaceSetFeatures

    rng = np.random.default_rng(seed)
    rows, seqs = [], []
    for g in range(n_groups):
        for k in range(per_group):
            label = k % 2  # 0 = anger/angry (negative), 4 = happy (positive)
            lab = 4 if label else 0
            emotion = ("happy" if label else ("anger" if dataset == "ckplus" else "angry"))
            rows.append({"id": f"g{g}_{k}", "group": f"g{g}", "label": lab, "emotion": emotion, "valence": label})
            x = rng.normal(0, 0.1, (frames, 52)) + (0.8 if label else 0.2)
            seqs.append(np.clip(x, 0, 1).astype(np.float32))
    seqs[0][0] = np.nan  # a frame without a face
    table = pd.DataFrame(rows)
    return FaceSetFeatures(dataset, table, {"blendshapes": seqs}, {"blendshapes": list(BLENDSHAPE_NAMES)},
                           [np.arange(frames, dtype=float)] * len(seqs))


def test_folds_never_share_a_subject_and_scores_are_consistent():
    from msa_lib.studies import faces as F

    cfg = F.FaceEvalConfig(representations=("blendshapes",), classifiers=("logreg",), ckplus_folds=3, inner_folds=2)
    ck = _synthetic_set("ckplus", 6, 4, 1)
    for tr, te in F.folds_for(ck, cfg):
        assert not set(ck.table["group"][tr]) & set(ck.table["group"][te])
    mead = _synthetic_set("mead", 3, 4, 5)
    assert [set(mead.table["group"][te]) for _, te in F.folds_for(mead, cfg)] == [{"g0"}, {"g1"}, {"g2"}]
    rows, preds = F.evaluate_set(mead, cfg)
    assert len(rows) == 3 and (rows["n_missed"] == 0).all()
    for _, row in rows.iterrows():  # each fold's accuracy is the share of its items predicted right
        part = preds[preds["fold"] == row["fold"]]
        assert row["acc_expression"] == pytest.approx((part["true"] == part["pred"]).mean())
        decided = (part["valence_score"] > 0).astype(int)
        recalls = [(decided[part["valence"] == c] == c).mean() for c in (0, 1)]
        assert row["bacc_valence"] == pytest.approx(np.mean(recalls))
    assert (preds["true"] == preds["pred"]).all()  # two far-apart synthetic expressions: every item right
    matrices = F.confusions(preds, "mead")
    assert sum(m.sum() for m in matrices.values()) == len(mead)
    summary = F.summarize_face_eval(rows)
    assert summary.loc[0, "acc_expression_mean"] == pytest.approx(rows["acc_expression"].mean())
    assert summary.loc[0, "n_folds"] == 3


# ------------------------------------------------------------------------------------ default model
@pytest.fixture(scope="module")
def face_model(tmp_path_factory) -> dict:
    """The default model's face branch (``models/default/face.npz``), or a size-limited one trained
    here the same way when the default model has not been trained."""
    path = DEFAULT_FACE_MODEL
    if not path.is_file():
        from msa_lib.predict.train_default import face_data, train_face

        arrays, metrics = train_face(face_data(max_ckplus_subjects=12))
        assert set(metrics["test"]) == {"ckplus", "mead"} and 0.5 < metrics["heldout_balanced_acc"] <= 1
        path = tmp_path_factory.mktemp("face_model") / "face.npz"
        np.savez(path, **arrays)
    with np.load(path) as npz:
        return {k: npz[k] for k in npz.files}


def test_trained_face_valence_model_loads_and_scores_a_real_clip(face_model, extractor, astronaut_image):
    from msa_lib.predict.train_default import linear_proba

    assert face_model["coef"].shape == (52,) and face_model["mean"].shape == (52,)
    cfg = ExtractConfig(modalities=("vision",), face_features=("blendshapes",), use_cache=False)
    ds = extract([str(PROJECT_ROOT / "data" / "clips" / "mosi_0h-zjBukYpk_1.mp4")], cfg, progress=False)
    frames = ds.features["vision_blendshapes"][0]
    keep = np.isfinite(frames).all(axis=1)
    assert keep.any()
    scores = 2 * linear_proba(face_model, frames[keep]) - 1
    assert np.isfinite(scores).all() and (np.abs(scores) <= 1).all()
    smile, _, _ = extractor.frame(astronaut_image)  # a smiling face the model never saw
    assert 2 * linear_proba(face_model, smile[None])[0] - 1 > 0
