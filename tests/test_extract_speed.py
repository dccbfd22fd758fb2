"""The extraction speed-ups change nothing but time: faster-whisper detects the language from the
encoder pass that decoding reuses (one pass per clip, same transcript as faster-whisper's own
decoding), and frames decoded in the background give the same features as decoded in sequence."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from msa_lib.extract.asr import ASRConfig, Transcriber
from msa_lib.extract.media import extract_audio
from msa_lib.extract.pipeline import ExtractConfig, extract, extract_clip, load_models, resolve_inputs

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fw() -> Transcriber:
    return Transcriber(ASRConfig(backend="faster-whisper", num_threads=1, device="cpu"))


@pytest.fixture(scope="module")
def audio(clips_dir) -> dict[str, np.ndarray]:
    return {"zh": extract_audio(clips_dir / "chsims_video_0001_0001.mp4"),
            "en": extract_audio(clips_dir / "mosi_0h-zjBukYpk_1.mp4")}


def test_one_encoder_pass_per_clip_and_fresh_detection(fw, audio):
    model = fw.model
    results = {}
    for lang in ("zh", "en"):  # a reused model: each clip gets its own detection
        before = model.encoder_passes
        r = results[lang] = fw.transcribe(audio[lang])
        assert model.encoder_passes - before == 1
        assert r.language == lang and r.language_detected and r.top_languages[0] == (lang, r.language_probability)
    before = model.encoder_passes
    forced = fw.transcribe(audio["en"], language="en")
    assert model.encoder_passes - before == 1 and forced.language_probability is None
    # detect_language alone: one pass, the same numbers as inside transcribe
    before = model.encoder_passes
    lang, prob, top = fw.detect_language(audio["en"])
    assert model.encoder_passes - before == 1
    assert (lang, prob, top) == (results["en"].language, results["en"].language_probability, results["en"].top_languages)


def test_the_reused_pass_lives_for_one_transcription_only(fw, audio):
    model = fw.model
    for _ in range(2):  # the same clip again is encoded again
        before = model.encoder_passes
        fw.transcribe(audio["zh"])
        assert model.encoder_passes - before == 1
    # outside Transcriber, the model is plain faster-whisper: its own detection + decoding = 2 passes
    before = model.encoder_passes
    segments, info = model.transcribe(audio["zh"])
    list(segments)
    assert model.encoder_passes - before == 2 and info.language == "zh"


def test_reusing_the_pass_does_not_change_the_transcript(fw, audio):
    from msa_lib.extract.asr import to_simplified

    ours = fw.transcribe(audio["zh"])
    # faster-whisper decoding on its own (its own encoder pass) with the language we detected
    segments, _ = fw.model.transcribe(audio["zh"], language=ours.language, beam_size=5, best_of=5)
    assert ours.text == to_simplified("".join(s.text for s in segments).strip())


def test_background_frame_decoding_gives_the_same_features(clips_dir, tmp_path):
    clip = resolve_inputs([clips_dir / "mosi_0h-zjBukYpk_1.mp4"])[0]
    cfg = ExtractConfig(modalities=("audio", "vision"), use_cache=False)
    background = extract_clip((clip, cfg, None))
    sequential = extract_clip((clip, replace(cfg, overlap_decode=False), None))
    assert background["status"] == sequential["status"] == "ok"
    for m in ("audio", "vision"):
        np.testing.assert_array_equal(background["features"][m], sequential["features"][m])
    for record in (background, sequential):
        assert record["wall_s"] >= 0.9 * sum(record["timings"].values())
    # the setting changes time only: it is not part of the cache key
    assert "overlap_decode" not in cfg.settings_for_cache()


def test_models_load_before_the_clips(clips_dir):
    from msa_lib.core import cache

    cfg = ExtractConfig(modalities=("audio", "vision"), use_cache=False)
    loads = load_models(cfg)
    # librosa's set-up is paid once per process
    assert "face models" in loads and cache.contains(("extract.warm-up", "prosody"))
    assert set(load_models(cfg)) == {"face models"}
    ds = extract([clips_dir / "mosi_0h-zjBukYpk_1.mp4"], cfg, progress=False)
    assert "face models" in ds.meta.extra["model_load_s"] and ds.extra[0]["wall_s"] > 0
