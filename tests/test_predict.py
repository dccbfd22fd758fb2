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
    fine = metrics["text"]["test_fine_grained"]["en"]
    assert np.asarray(fine["confusion_5class"]).sum() == fine["n"] == metrics["text"]["test"]["en"]["n"]
    assert 0 < fine["mae"] < 1.5 and fine["corr"] > 0.3  # sanity of a trained regression, not a quality bar
    assert f"MAE {fine['mae']:.3f}" in card and f"Pearson r {fine['corr']:.3f}" in card
    # the Chinese branch: e5 + character n-grams, weight and both C chosen on validation, all in the card
    with np.load(model_dir / "text.npz", allow_pickle=False) as npz:
        assert {"zh_coef", "zh_char_terms", "zh_char_idf", "zh_char_coef", "zh_e5_weight"} <= set(npz.files)
        assert "en_char_coef" not in npz.files
    t = metrics["text"]
    assert t["e5_weight"] in (0.0, 0.25, 0.5, 0.75, 1.0) and str(t["e5_weight"]) in t["valid_balanced_acc_by_e5_weight"]
    assert f"C = {t['char_C']}" in card and set(t["test_components_zh"]) == {"e5 alone", "characters alone"}


def test_chinese_text_mixes_e5_and_characters(predictor):
    """The Chinese score is 2 (w P_e5 + (1 - w) P_characters) - 1; without the text, the e5 half alone."""
    from msa_lib.predict.char_ngrams import char_proba
    from msa_lib.predict.train_default import linear_proba

    branch = predictor.text_branches["zh"]
    w = float(branch["e5_weight"][0])
    pooled = np.random.default_rng(0).normal(size=len(branch["mean"]))
    p_e5, p_char = linear_proba(branch, pooled[None])[0], char_proba(branch, [ZH_POSITIVE])[0]
    assert predictor.text_score(pooled, "zh", ZH_POSITIVE) == pytest.approx(2 * (w * p_e5 + (1 - w) * p_char) - 1)
    assert predictor.text_score(pooled, "zh") == pytest.approx(2 * p_e5 - 1)
    assert predictor.text_score(pooled, "zh", "   ") == pytest.approx(2 * p_e5 - 1)


def test_fine_grained_text_path_on_real_transcripts(predictor):
    """The English branch regresses the MOSI score: the printed label is the Acc-5 class of 3 x score,
    and score_texts gives what the branch's ridge arrays give on the same e5 vectors."""
    import pandas as pd

    from msa_lib.evaluate.metrics import five_class
    from msa_lib.extract.text_numpy import text_encoder_for_extraction
    from msa_lib.predict.train_default import linear_value

    frame = pd.read_csv(PROJECT_ROOT / "data" / "mosi" / "transcripts.csv.gz", header=None,
                        names=["id", "text", "video_len", "label"])
    texts = frame["text"].head(4).tolist()
    out = predictor.score_texts(texts, language="en")
    vectors = text_encoder_for_extraction(predictor.extract_config.text).encode_with_pooled(texts)[1]
    expected = np.clip(linear_value(predictor.text_branches["en"], vectors) / 3, -1, 1)
    assert [r["score"] for r in out] == pytest.approx(expected, abs=1e-3)
    assert [r["label"] for r in out] == [LABELS[c] for c in five_class(3 * np.array([r["score"] for r in out]))]


def test_default_model_is_a_run_folder(model_dir, predictor, tmp_path):
    import shutil

    from msa_lib.data.run_folder import RunError, read_run_header
    from msa_lib.predict.predictor import DefaultModelPredictor

    header = read_run_header(model_dir)
    assert header["format"] == "msa-run" and header["kind"] == "branch_fusion"
    assert isinstance(predictor, DefaultModelPredictor) and isinstance(predictor, Predictor)
    broken = tmp_path / "broken"
    shutil.copytree(model_dir, broken)
    (broken / "face.npz").write_bytes(b"garbage")
    with pytest.raises(RunError, match="face.npz"):
        Predictor.load(broken)
    (broken / "face.npz").unlink()
    with pytest.raises(RunError, match="missing face.npz"):
        Predictor.load(broken)
    shutil.copy(model_dir / "face.npz", broken / "face.npz")
    cfg = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**cfg, "format_version": 99}))
    with pytest.raises(RunError, match="newer"):
        Predictor.load(broken)
    (broken / "config.json").write_text(json.dumps({**cfg, "kind": "hologram"}))
    with pytest.raises(RunError, match="unknown run kind"):
        Predictor.load(broken)
    legacy = {k: v for k, v in cfg.items() if k not in ("format", "format_version", "kind")}
    (broken / "config.json").write_text(json.dumps(legacy))
    with pytest.raises(RunError, match="not an msa run folder"):
        Predictor.load(broken)


@pytest.mark.parametrize("index, language", [(0, "zh"), (1, "en")])
def test_predicts_real_clip(results, predictor, index, language):
    r = results[index]
    assert r["status"] == "ok", r
    assert r["language"] == language
    assert r["transcript"]
    assert r["label"] in LABELS and -1 <= r["score"] <= 1
    assert r["label"] == score_to_label(r["score"], predictor.cuts)
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


ZH_POSITIVE = "商务大床房，房间很大，床有2M宽，整体感觉经济实惠不错!"  # ChnSentiCorp row 1, label 1
ZH_NEGATIVE = ("说实在的我很失望，之前看了其他人的点评后觉得还可以才去的，结果让我们大跌眼镜。"
               "我想这家酒店以后无论如何我都不会再去了。")  # ChnSentiCorp last row, label 0
EN_POSITIVE = "BUT IT WAS REALLY REALLY AWESOME"  # MOSI 03bSnISJMiM_12, positive
FRENCH = "Ce film est vraiment magnifique, je le recommande à tout le monde."


def test_score_texts_real_sentences(predictor, results):
    out = predictor.score_texts([ZH_POSITIVE, ZH_NEGATIVE, EN_POSITIVE, FRENCH, "12345 !!!"])
    assert [r["language"] for r in out[:3]] == ["zh", "zh", "en"]
    assert [r["status"] for r in out] == ["ok", "ok", "ok", "error", "error"]
    assert "detected fr" in out[3]["error"] and "no letters" in out[4]["error"]
    for r in out[:3]:
        assert -1 <= r["score"] <= 1 and r["label"] == score_to_label(r["score"], predictor.cuts)
    assert out[0]["score"] > out[1]["score"]  # a clear-cut positive review above a clear-cut negative one
    forced = predictor.score_texts(ZH_POSITIVE, language="zh")[0]
    assert forced["score"] == out[0]["score"] and forced["language_source"] == "given"
    # the same text branch as a clip's: its transcript scores as the clip's text modality did
    clip = results[0]
    again = predictor.score_texts(clip["transcript"], language=clip["language"])[0]
    assert again["score"] == pytest.approx(clip["modalities"]["text"]["score"], abs=1e-3)


@pytest.mark.parametrize("bad", ["", "   ", None, 5, [], ["ok", b"bytes"]])
def test_score_texts_bad_input_is_one_error(predictor, bad):
    with pytest.raises(ValueError):
        predictor.score_texts(bad)


def test_score_texts_language_option(predictor):
    with pytest.raises(ValueError, match="scores zh, en"):
        predictor.score_texts(EN_POSITIVE, language="fr")
    assert predictor.score_texts(EN_POSITIVE, language="English")[0]["language"] == "en"


def test_cli_text(model_dir, capsys):
    from msa_lib.app.cli import main

    rc = main(["predict", "--json", "--model-dir", str(model_dir), "--text", ZH_POSITIVE, "--text", FRENCH])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and [r["status"] for r in out] == ["ok", "error"] and out[0]["language"] == "zh"
    rc = main(["predict", "--model-dir", str(model_dir), "--text", FRENCH])
    assert rc == 1 and "no sentence could be scored" in capsys.readouterr().err
    rc = main(["predict", "--model-dir", str(model_dir)])
    assert rc != 0 and "give clips or --text" in capsys.readouterr().err
    # `--text "a" "b"` makes "b" a clip path: the error names it and says to repeat the flag
    rc = main(["predict", "--model-dir", str(model_dir), "--text", ZH_POSITIVE, EN_POSITIVE])
    err = capsys.readouterr().err
    assert rc != 0 and "not both" in err and "repeat the flag" in err and EN_POSITIVE in err


def test_train_default_writes_a_usable_model_into_a_new_folder(tmp_path):
    """``msa train-default --out NEW`` on small real subsets: the fine-grained English numbers are measured
    through the written folder, so the folder must load before its final metrics exist (it once failed
    on a folder without metrics.json and passed only where an old model already lay)."""
    import torch

    from msa_lib.predict.train_default import main as train_default_main

    torch.set_num_threads(1)
    out = tmp_path / "fresh" / "model"
    assert train_default_main(["--out", str(out), "--max-text-per-language", "40", "--max-audio-clips", "48",
                               "--max-face-subjects", "6"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["trained_with_limits"] is True
    assert metrics["text"]["test_fine_grained"]["en"]["n"] > 0
    assert (out / "MODEL_CARD.md").is_file()
    scored = Predictor.load(out).score_texts(["what a wonderful film", ZH_POSITIVE])
    assert [r["language"] for r in scored] == ["en", "zh"] and all(-1.0 <= r["score"] <= 1.0 for r in scored)
