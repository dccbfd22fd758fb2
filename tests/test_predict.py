"""``msa predict``: the default model on real clips of both languages, fusion renormalisation, bad input.

Uses ``models/default`` when it exists; otherwise trains a size-limited default model into a temporary
folder (the project caches make that take well under a minute).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from msa_lib.predict.predictor import LABELS, Predictor, format_table, fuse, score_to_label
from msa_lib.predict.train_default import fusion_weights, train_default

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = PROJECT_ROOT / "models" / "default"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    if (DEFAULT_MODEL / "config.json").is_file():
        return DEFAULT_MODEL
    out = tmp_path_factory.mktemp("default_model")
    train_default(out, max_text_per_language=300, max_audio_clips=240)
    return out


@pytest.fixture(scope="module")
def predictor(model_dir) -> Predictor:
    import torch

    torch.set_num_threads(1)
    return Predictor.load(model_dir)


@pytest.fixture(scope="module")
def results(predictor, clips_dir, garbage_file, tmp_path_factory):
    text_file = tmp_path_factory.mktemp("bad") / "notes.txt"
    text_file.write_text("not a video\n")
    paths = [clips_dir / "chsims_video_0001_0001.mp4", clips_dir / "mosi_0h-zjBukYpk_1.mp4",
             text_file, garbage_file, PROJECT_ROOT / "no_such_clip.mp4"]
    return predictor.predict([str(p) for p in paths])


def test_model_folder_is_complete(model_dir):
    for name in ("config.json", "metrics.json", "MODEL_CARD.md", "text.npz", "audio.npz", "face.npz"):
        assert (model_dir / name).is_file(), name
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert set(metrics["text"]["test"]) == {"en", "zh"}
    assert 0.5 < metrics["text"]["test"]["en"]["acc2"] <= 1 and 0.5 < metrics["text"]["test"]["zh"]["acc2"] <= 1
    assert metrics["audio"]["test_actors"] == [21, 22, 23, 24]
    assert abs(sum(metrics["fusion_weights"].values()) - 1) < 1e-3
    card = (model_dir / "MODEL_CARD.md").read_text()
    assert f"{100 * metrics['text']['test']['zh']['acc2']:.1f} %" in card


@pytest.mark.parametrize("index, language", [(0, "zh"), (1, "en")])
def test_predicts_real_clip(results, index, language):
    r = results[index]
    assert r["status"] == "ok", r
    assert r["language"] == language
    assert r["transcript"]
    assert r["label"] in LABELS and -1 <= r["score"] <= 1
    assert r["label"] == score_to_label(r["score"])
    mods = r["modalities"]
    assert all(mods[m]["score"] is not None for m in ("text", "audio", "face")), mods
    assert r["missing"] == {}
    assert sum(m["weight"] for m in mods.values()) == pytest.approx(1, abs=1e-3)
    assert sum(m["contribution"] for m in mods.values()) == pytest.approx(r["score"], abs=1e-3)


def test_bad_inputs_get_a_clear_error(results):
    text_file, garbage, missing = results[2], results[3], results[4]
    for r in (text_file, garbage, missing):
        assert r["status"] == "error"
        assert "Traceback" not in r["error"] and "\n" not in r["error"]
    assert "not found" in missing["error"]
    assert "notes.txt" in text_file["error"]
    assert "garbage.mp4" in garbage["error"]
    table = format_table(results)
    assert table.count("ERROR") == 3


def test_missing_face_and_no_speech(predictor, blank_video, face_video):
    """A black, silent video has nothing to predict from; a face without sound is predicted from the face."""
    blank, face_only = predictor.predict([str(blank_video), str(face_video)])
    assert blank["status"] == "error" and "no usable modality" in blank["error"]
    assert face_only["status"] == "ok", face_only
    assert set(face_only["missing"]) == {"text", "audio"}
    assert face_only["modalities"]["face"]["weight"] == pytest.approx(1)
    assert face_only["score"] == pytest.approx(face_only["modalities"]["face"]["score"], abs=1e-4)


def test_fusion_renormalises_over_present_modalities():
    weights = {"text": 0.5, "audio": 0.3, "face": 0.2}
    full = fuse({"text": 0.8, "audio": -0.2, "face": 0.5}, weights)
    assert full["score"] == pytest.approx(0.5 * 0.8 - 0.3 * 0.2 + 0.2 * 0.5)
    no_audio = fuse({"text": 0.8, "audio": None, "face": 0.5}, weights)
    assert no_audio["missing"] == ["audio"]
    assert no_audio["weights"] == pytest.approx({"text": 0.5 / 0.7, "face": 0.2 / 0.7})
    assert no_audio["score"] == pytest.approx((0.5 * 0.8 + 0.2 * 0.5) / 0.7)
    assert sum(no_audio["contributions"].values()) == pytest.approx(no_audio["score"])
    only_face = fuse({"text": None, "audio": float("nan"), "face": -0.4}, weights)
    assert only_face["score"] == pytest.approx(-0.4) and only_face["weights"] == {"face": 1.0}
    assert fuse({"text": None, "audio": None, "face": None}, weights)["score"] is None


def test_weights_and_labels():
    w = fusion_weights(0.8, 0.7, 0.55)
    assert w["text"] > w["audio"] > w["face"] and sum(w.values()) == pytest.approx(1, abs=1e-3)
    assert fusion_weights(0.8, 0.4)["audio"] > 0  # below chance: floored, not negative
    assert [score_to_label(s) for s in (-1, -0.7, -0.5, -0.1, 0.0, 0.1, 0.5, 0.7, 1.0)] == \
        ["SNEG", "SNEG", "WNEG", "WNEG", "NEUT", "NEUT", "WPOS", "WPOS", "SPOS"]


def test_face_score_skips_masked_frames(predictor):
    from msa_lib.extract.blendshapes import BLENDSHAPE_NAMES
    from msa_lib.predict.train_default import linear_proba

    smile, frown = np.zeros(52), np.zeros(52)
    smile[[BLENDSHAPE_NAMES.index("mouthSmileLeft"), BLENDSHAPE_NAMES.index("mouthSmileRight")]] = 0.9
    frown[[BLENDSHAPE_NAMES.index("browDownLeft"), BLENDSHAPE_NAMES.index("browDownRight")]] = 0.8
    frames = np.stack([smile, np.full(52, np.nan), frown])
    score, n = predictor.face_score(frames)
    expected = np.mean(2 * linear_proba(predictor.face, np.stack([smile, frown])) - 1)
    assert score == pytest.approx(expected) and n == 2
    assert predictor.face_score(frames[:1])[0] > predictor.face_score(frames[2:])[0]  # a smile scores higher
    assert predictor.face_score(np.full((3, 52), np.nan)) == (None, 0)


def test_cli_json(model_dir, clips_dir, capsys, tmp_path):
    from msa_lib.app.cli import main

    rc = main(["predict", "--json", "--model-dir", str(model_dir), str(clips_dir / "chsims_video_0001_0001.mp4"),
               str(tmp_path / "missing.mp4")])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert [r["status"] for r in out] == ["ok", "error"]
    rc = main(["predict", "--json", "--model-dir", str(model_dir), str(tmp_path / "missing.mp4")])
    captured = capsys.readouterr()
    assert rc != 0 and json.loads(captured.out)[0]["status"] == "error"
    assert "no clip could be predicted" in captured.err
    rc = main(["predict", "--model-dir", str(tmp_path / "nowhere"), str(clips_dir / "chsims_video_0001_0001.mp4")])
    assert rc != 0 and "train-default" in capsys.readouterr().err
