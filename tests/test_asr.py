"""ASR (faster-whisper / openai-whisper) and Whisper-encoder features on the shipped clips.

Accuracy thresholds are deliberately loose. The bundled model is Whisper *base*, the smallest
multilingual Whisper: it mishears the proper names in the CH-SIMS lines (李茶, 王安迪) and the MOSI
references use their own spellings (``IM``, ``GONNA``) and are cut short (``...``). So the checks are
built to catch real failures — wrong language, empty or hallucinated text, traditional characters,
a broken conversion — not to pin one decoding, which moves with int8 vs float32, beam settings and
library versions:

* Mandarin: character error rate pooled over the two clips <= 0.6, and every clip < 1.0 (an empty
  or unrelated transcript scores >= 1.0);
* English: recall of the reference words (bag of words, case and punctuation ignored) >= 0.6 per
  clip — recall, not WER, because the second reference is truncated.
"""
from __future__ import annotations

import csv
import re
import shutil
import subprocess
import wave
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from msa_lib.core.paths import DATA_DIR
from msa_lib.extract import asr, whisper_models
from msa_lib.extract.asr import ASRConfig, Transcriber
from msa_lib.extract.errors import ASRConfigError, AudioInputError
from msa_lib.extract.whisper_features import WhisperEncoderConfig, WhisperEncoderFeatures
from msa_lib.extract.whisper_convert import (
    WhisperConversionError,
    convert_ctranslate2_whisper,
    ct2_to_openai_whisper,
    read_ctranslate2_model,
)
from msa_lib.core.pretrained import ModelNotAvailable

pytestmark = pytest.mark.slow

CLIPS_DIR = DATA_DIR / "clips"
THREADS = 1  # robust on a shared 2-core machine: 2 threads thrash when another process is busy


# ----------------------------------------------------------------------------------- helpers
def _extract_wav(video: Path, out: Path) -> Path:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(video), "-ac", "1", "-ar", "16000", str(out)],
                   check=True)
    return out


def _write_wav(path: Path, samples: np.ndarray) -> Path:
    pcm = (np.clip(samples, -1, 1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(pcm.tobytes())
    return path


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def _han(text: str) -> str:
    return "".join(re.findall(r"[\u4e00-\u9fff]", text))


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower().replace("'", "").replace("’", ""))


def _word_recall(hyp: str, ref: str) -> float:
    ref_counts, hyp_counts = Counter(_words(ref)), Counter(_words(hyp))
    return sum(min(n, hyp_counts[w]) for w, n in ref_counts.items()) / max(1, sum(ref_counts.values()))


# ---------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> list[dict]:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is needed to pull the audio out of the shipped mp4 clips")
    out = tmp_path_factory.mktemp("asr_wavs")
    with open(CLIPS_DIR / "manifest.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for row in rows:
        row["wav"] = _extract_wav(CLIPS_DIR / row["file"], out / (Path(row["file"]).stem + ".wav"))
    return rows


@pytest.fixture(scope="session")
def fw() -> Transcriber:
    return Transcriber(ASRConfig(backend="faster-whisper", num_threads=THREADS, device="cpu"))


@pytest.fixture(scope="session")
def ow() -> Transcriber:
    # greedy decoding keeps the float32 PyTorch backend quick enough for a unit test
    return Transcriber(ASRConfig(backend="openai-whisper", num_threads=THREADS, device="cpu", beam_size=1, best_of=1))


@pytest.fixture(scope="session")
def fw_results(fw, clips) -> dict[str, asr.ASRResult]:
    # English first, Mandarin after, on one loaded model: the Mandarin results then also show that the
    # language is detected per clip and not carried over
    ordered = sorted(clips, key=lambda row: row["lang"] != "en")
    return {row["file"]: fw.transcribe(row["wav"]) for row in ordered}


def _shortest(clips, lang):
    return min((row for row in clips if row["lang"] == lang), key=lambda r: Path(r["wav"]).stat().st_size)


@pytest.fixture(scope="session")
def ow_results(ow, clips) -> dict[str, asr.ASRResult]:
    """openai-whisper on the shortest English clip, then the shortest Mandarin one (same model)."""
    return {row["file"]: ow.transcribe(row["wav"]) for row in (_shortest(clips, "en"), _shortest(clips, "zh"))}


@pytest.fixture(scope="session")
def enc_clips(clips) -> list[dict]:
    """One Mandarin and one English clip (the first clip first): enough for shape checks, and quick."""
    return [clips[0], _shortest(clips, "en" if clips[0]["lang"] != "en" else "zh")]


@pytest.fixture(scope="session")
def enc_frames(encoder, enc_clips) -> list[np.ndarray]:
    return encoder.extract_batch([row["wav"] for row in enc_clips], progress=False)


@pytest.fixture(scope="session")
def encoder() -> WhisperEncoderFeatures:
    return WhisperEncoderFeatures(WhisperEncoderConfig(num_threads=THREADS, device="cpu"))


# ------------------------------------------------------------------------- model resolution
def test_bundled_base_is_joined_once_and_reused():
    folder = whisper_models.resolve_faster_whisper_model("base")
    model_bin = folder / "model.bin"
    assert model_bin.stat().st_size == whisper_models.BUNDLED_BASE_MODEL_BYTES
    assert (folder / "model.bin.sha256").read_text().strip() == whisper_models.BUNDLED_BASE_MODEL_SHA256
    assert {"config.json", "tokenizer.json", "vocabulary.txt"} <= {p.name for p in folder.iterdir()}
    mtime = model_bin.stat().st_mtime_ns
    assert whisper_models.resolve_faster_whisper_model("Systran/faster-whisper-base") == folder
    assert model_bin.stat().st_mtime_ns == mtime  # reused, not rebuilt


def test_bundled_base_rebuilds_a_damaged_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MSA_CACHE_DIR", str(tmp_path))
    broken = tmp_path / "models" / "faster-whisper-base"
    broken.mkdir(parents=True)
    (broken / "model.bin").write_bytes(b"half a model")
    folder = whisper_models.resolve_faster_whisper_model("base")
    assert folder == broken and (folder / "model.bin").stat().st_size == whisper_models.BUNDLED_BASE_MODEL_BYTES
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_model_resolution_paths_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("MSA_ALLOW_DOWNLOAD", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    base = whisper_models.resolve_faster_whisper_model("base")
    assert whisper_models.resolve_faster_whisper_model(str(base)) == base  # a local folder is used as is
    with pytest.raises(ModelNotAvailable):
        whisper_models.resolve_faster_whisper_model(str(tmp_path))  # a folder without model.bin
    with pytest.raises(ModelNotAvailable, match="no-such-model"):
        whisper_models.resolve_faster_whisper_model("Systran/faster-whisper-no-such-model")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(ModelNotAvailable, match="medium"):
        whisper_models.resolve_openai_whisper_checkpoint("medium")
    pt = tmp_path / "x.pt"
    pt.write_bytes(b"")
    assert whisper_models.resolve_openai_whisper_checkpoint(pt) == pt
    # an official name already in whisper's download folder is taken from there
    cached = tmp_path / "xdg" / "whisper" / "medium.pt"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    assert whisper_models.resolve_openai_whisper_checkpoint("medium") == cached


# ------------------------------------------------------------------------------- converter
def _synthetic_ct2_whisper(out_dir: Path, quantization: str = "float32", d: int = 8, n_mels: int = 4,
                           vocab: int = 20, audio_ctx: int = 6, text_ctx: int = 5, seed: int = 0):
    """A tiny random Whisper written by CTranslate2's own serializer (the format we parse)."""
    from ctranslate2.specs import whisper_spec

    rng = np.random.default_rng(seed)
    spec = whisper_spec.WhisperSpec(2, 2, 2, 2)
    todo = []

    def wanted(name, value):
        return value is None or (isinstance(value, str) and value == "__optional"
                                 and (name.endswith("/bias") or name.endswith("/encodings")))

    spec._visit(lambda layer, name, value: todo.append((layer, name)) if wanted(name, value) else None)

    def shape(name):
        if name.endswith("conv1/weight"):
            return (d, n_mels, 3)
        if name.endswith("conv2/weight"):
            return (d, d, 3)
        if "position_encodings" in name:
            return (audio_ctx if name.startswith("encoder") else text_ctx, d)
        if name.endswith("embeddings/weight"):
            return (vocab, d)
        out = (3 * d if "self_attention/linear_0" in name else 2 * d if "/attention/linear_1" in name
               else 4 * d if "ffn/linear_0" in name else d)
        return (out, 4 * d if "ffn/linear_1" in name else d) if name.endswith("/weight") else (out,)

    for layer, name in todo:
        arr = rng.standard_normal(shape(name)).astype(np.float32)
        if name.endswith("self_attention/linear_0/bias"):
            arr[d:2 * d] = 0  # Whisper's key projections have no bias
        if name.endswith("/attention/linear_1/bias"):
            arr[:d] = 0
        setattr(layer, name.split("/")[-1], arr)
    spec.decoder.projection.weight = spec.decoder.embeddings.weight
    spec.register_vocabulary(["<|endoftext|>", "<|startoftranscript|>"] + [f"t{i}" for i in range(2, vocab)])
    spec.validate()
    spec.optimize(quantization=quantization)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec.save(str(out_dir))
    return spec


def test_converter_matches_ctranslate2_on_a_synthetic_model(tmp_path):
    import ctranslate2
    import torch
    import whisper

    spec = _synthetic_ct2_whisper(tmp_path / "ct2")
    ckpt_path = convert_ctranslate2_whisper(tmp_path / "ct2", tmp_path / "tiny.pt", dtype="float32")
    model = whisper.load_model(str(ckpt_path), device="cpu")  # the real loader accepts the file
    sd = model.state_dict()
    qkv = spec.encoder.layer[1].self_attention.linear[0].weight.numpy()
    assert np.array_equal(sd["encoder.blocks.1.attn.value.weight"].numpy(), qkv[16:24])
    assert "encoder.blocks.1.attn.key.bias" not in sd
    # the encoder computes the same function as CTranslate2's own engine
    ct2 = ctranslate2.models.Whisper(str(tmp_path / "ct2"), device="cpu", compute_type="float32")
    mel = np.random.default_rng(1).standard_normal((1, 4, 12)).astype(np.float32)
    ours = model.encoder(torch.from_numpy(mel)).detach().numpy()
    theirs = np.array(ct2.encode(ctranslate2.StorageView.from_array(mel)))
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_converter_dequantises_int8(tmp_path):
    _synthetic_ct2_whisper(tmp_path / "f32")
    _synthetic_ct2_whisper(tmp_path / "i8", quantization="int8")
    ref = ct2_to_openai_whisper(read_ctranslate2_model(tmp_path / "f32"), dtype="float32")["model_state_dict"]
    deq = ct2_to_openai_whisper(read_ctranslate2_model(tmp_path / "i8"), dtype="float32")["model_state_dict"]
    assert ref.keys() == deq.keys()
    worst = max(float((ref[k] - deq[k]).abs().max() / (ref[k].abs().max() + 1e-9)) for k in ref)
    assert worst < 0.01  # int8 per-row quantisation: half a step of 1/127 of the row's range


def test_converter_rejects_other_files(tmp_path):
    bad = tmp_path / "model.bin"
    bad.write_bytes(b"\x06\x00\x00\x00garbage")
    with pytest.raises(WhisperConversionError):
        read_ctranslate2_model(bad)
    with pytest.raises(WhisperConversionError, match="no CTranslate2 model.bin"):
        read_ctranslate2_model(tmp_path / "missing")


def test_converted_base_loads_in_openai_whisper(ow):
    import whisper

    path = whisper_models.resolve_openai_whisper_checkpoint("base")
    assert path.is_file() and path.suffix == ".pt"
    model = ow.model  # loaded through whisper.load_model(path)
    assert isinstance(model, whisper.model.Whisper)
    assert model.dims.n_audio_state == 512 and model.dims.n_vocab == 51865 and model.is_multilingual
    assert whisper_models.resolve_openai_whisper_checkpoint("base") == path  # cached, not converted again


# ---------------------------------------------------------------------------------- ASR
def test_languages_and_transcripts(fw_results, clips):
    zh_edits = zh_chars = 0
    for row in clips:
        r = fw_results[row["file"]]
        assert r.has_speech and r.backend == "faster-whisper"
        assert r.language == row["lang"], (row["file"], r.language, r.text)
        assert r.language_detected and 0.5 < r.language_probability <= 1.0
        assert r.segments and all(0 <= s <= e <= r.duration_s + 0.5 for s, e, _ in r.segments)
        if row["lang"] == "zh":
            ref = _han(row["text"])  # the parenthesised words are spoken in the clip too
            hyp = _han(r.text)
            assert asr.to_simplified(r.text) == r.text  # simplified characters only
            edits = _edit_distance(hyp, ref)
            assert edits / len(ref) < 1.0, (row["file"], r.text)
            zh_edits, zh_chars = zh_edits + edits, zh_chars + len(ref)
        else:
            assert _word_recall(r.text, row["text"]) >= 0.6, (row["file"], r.text)
    assert zh_edits / zh_chars <= 0.6


def test_language_is_detected_per_clip_on_a_reused_model(fw, fw_results, ow_results, clips):
    # both fixtures ran English clips first, then Mandarin ones, each on one reused model
    for results in (fw_results, ow_results):
        langs = [r.language for r in results.values()]
        assert "en" in langs and langs[-1] == "zh"
        assert all(r.language_detected for r in results.values())
    # and back again: English after Mandarin
    assert fw.detect_language(_shortest(clips, "en")["wav"])[0] == "en"


def test_backends_agree_on_language(ow, fw_results, ow_results, clips):
    for row in clips:
        ref = fw_results[row["file"]]
        if row["file"] in ow_results:
            lang_ow, p_ow = ow_results[row["file"]].language, ow_results[row["file"]].language_probability
        else:
            lang_ow, p_ow, top = ow.detect_language(row["wav"])
            assert top[0] == (lang_ow, p_ow)
        assert ref.language == lang_ow == row["lang"]
        assert abs(ref.language_probability - p_ow) < 0.3


def test_openai_backend_transcribes_like_faster_whisper(ow_results, fw_results):
    for file, r in ow_results.items():
        ref = fw_results[file]
        assert r.backend == "openai-whisper" and r.has_speech and r.language == ref.language
        if r.language == "zh":
            assert asr.to_simplified(r.text) == r.text
            assert _edit_distance(_han(r.text), _han(ref.text)) / max(1, len(_han(ref.text))) <= 0.5
        else:
            assert _word_recall(r.text, ref.text) >= 0.6


def test_forced_language_reports_no_probability(fw, clips):
    zh = next(row for row in clips if row["lang"] == "zh")
    r = fw.transcribe(zh["wav"], language="zh")
    assert r.language == "zh" and r.language_probability is None and not r.language_detected
    assert _han(r.text)


def test_translate_gives_english_text(fw, clips):
    zh = next(row for row in clips if row["lang"] == "zh")
    r = fw.translate(zh["wav"])
    assert r.task == "translate" and r.language == "zh"  # the spoken language, not the output's
    assert r.has_speech and not _han(r.text) and _words(r.text)


def test_silence_and_noise_are_no_speech(fw, ow, tmp_path):
    silent = _write_wav(tmp_path / "silence.wav", np.zeros(32000, np.float32))
    noise = (0.01 * np.random.default_rng(0).standard_normal(32000)).astype(np.float32)
    for t in (fw, ow):
        for audio in (silent, noise):
            r = t.transcribe(audio)
            assert not r.has_speech and r.text == "" and r.segments == [] and r.language is None
            assert r.duration_s == pytest.approx(2.0)


def test_bad_input_raises_one_clear_error(fw, tmp_path):
    with pytest.raises(AudioInputError, match="not found"):
        fw.transcribe(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(AudioInputError, match="junk.wav"):
        fw.transcribe(junk)
    with pytest.raises(AudioInputError, match="1-D"):
        fw.transcribe(np.zeros((2, 16000), np.float32))
    with pytest.raises(AudioInputError, match="empty"):
        fw.transcribe(np.zeros(0, np.float32))
    with pytest.raises(ASRConfigError):
        ASRConfig(backend="kaldi")
    with pytest.raises(ASRConfigError):
        ASRConfig(language="klingon")
    assert ASRConfig(language="zh-CN").language == "zh" and ASRConfig(language="Mandarin").language == "zh"


def test_simplified_chinese_normalisation():
    assert asr.to_simplified("我們說話") == "我们说话"
    assert asr.to_simplified("Now, the title") == "Now, the title"


# ------------------------------------------------------------------------ encoder features
def test_encoder_frames_shapes_and_names(encoder, enc_frames, enc_clips):
    assert encoder.feature_names[0] == "whisper_enc_000" and len(encoder.feature_names) == 512
    for row, f in zip(enc_clips, enc_frames):
        duration = asr.load_audio_16k(row["wav"]).size / 16000
        assert f.dtype == np.float32 and f.shape == (int(np.ceil(duration * 10 - 1e-6)), 512)
        assert np.isfinite(f).all()
    first = enc_clips[0]["wav"]
    emb = encoder.utterance_embeddings([first], progress=False)  # one clip alone: batching changes nothing
    assert emb.shape == (1, 512)
    np.testing.assert_allclose(emb[0], enc_frames[0].mean(axis=0), atol=1e-3, rtol=1e-3)


def test_encoder_handles_clips_longer_than_30s(encoder, clips):
    longest = max(clips, key=lambda r: Path(r["wav"]).stat().st_size)
    audio = asr.load_audio_16k(longest["wav"])
    long_audio = np.concatenate([audio] * int(np.ceil(31 * 16000 / audio.size)))  # > 30 s: two windows
    frames = encoder.extract(long_audio)
    assert frames.shape == (int(np.ceil(long_audio.size / 16000 * 10 - 1e-6)), 512)
    assert np.isfinite(frames).all()


def test_encoder_native_rate_and_pooling_agree(enc_frames, clips):
    wav = clips[0]["wav"]
    native = WhisperEncoderFeatures(WhisperEncoderConfig(frame_rate_hz=None, num_threads=THREADS, device="cpu"))
    full = native.extract(wav)
    assert full.shape[0] == int(np.ceil(asr.load_audio_16k(wav).size / 320))  # 50 frames per second
    # the encoder pass written out in WhisperEncoderFeatures is whisper's own AudioEncoder.forward
    import torch
    import whisper

    audio = asr.load_audio_16k(wav)
    with torch.no_grad():
        reference = native.model.encoder(whisper.log_mel_spectrogram(whisper.pad_or_trim(audio))[None])[0]
    np.testing.assert_allclose(full, reference[: full.shape[0]].numpy(), atol=1e-3, rtol=1e-3)
    pooled = enc_frames[0]
    np.testing.assert_allclose(pooled[0], full[:5].mean(axis=0), atol=1e-3, rtol=1e-3)  # 10 Hz = mean of 5 frames
    with pytest.raises(ASRConfigError):
        WhisperEncoderConfig(frame_rate_hz=100)


def test_encoder_short_window_and_intermediate_layer(clips):
    wav = clips[0]["wav"]
    enc = WhisperEncoderFeatures(WhisperEncoderConfig(window_seconds=5, layer=2, frame_rate_hz=25,
                                                      num_threads=THREADS, device="cpu"))
    frames = enc.extract(wav)
    assert frames.shape == (int(np.ceil(asr.load_audio_16k(wav).size / 16000 * 25 - 1e-6)), 512)
    assert np.isfinite(frames).all()
    with pytest.raises(ASRConfigError, match="layer"):
        WhisperEncoderFeatures(WhisperEncoderConfig(layer=6, device="cpu")).extract(wav)


def test_decode_windows_cut_long_audio_in_pauses():
    sr = asr.SAMPLE_RATE
    assert asr.decode_windows(100 * sr, 120.0) == [(0, 100 * sr)]  # short audio: one pass, as before
    assert asr.decode_windows(70 * sr, 60.0) == [(0, 70 * sr)]  # within 1.25 windows: still one
    assert asr.decode_windows(1000 * sr, 0) == [(0, 1000 * sr)]  # 0: never windowed
    speech = [(0.0, 50.0), (50.5, 54.0), (56.0, 110.0), (111.0, 300.0)]  # pauses at 50.25, 55, 110.5 s
    windows = asr.decode_windows(300 * sr, 60.0, speech)
    assert windows[0] == (0, int(55.0 * sr))  # the longest pause in [45, 60] s, not the nearest
    assert windows[1] == (int(55.0 * sr), int(110.5 * sr))
    assert [s for s, _ in windows[1:]] == [e for _, e in windows[:-1]] and windows[-1][1] == 300 * sr
    no_pause = asr.decode_windows(300 * sr, 60.0, [(0.0, 300.0)])  # no pause: nominal cuts
    assert [s for s, _ in no_pause] == [0, 60 * sr, 120 * sr, 180 * sr, 240 * sr]
    with pytest.raises(ASRConfigError):
        ASRConfig(decode_window_s=10)


def test_long_audio_is_transcribed_window_by_window(fw, clips):
    """Two real English clips with a pause between them, decoded with 30-s windows: the cut falls in
    the pause, segment times are seconds of the whole audio, and each clip's words come out."""
    en = sorted((row for row in clips if row["lang"] == "en"), key=lambda r: Path(r["wav"]).stat().st_size)[:2]
    first, second = (asr.load_audio_16k(row["wav"]) for row in en)
    pause = np.zeros(int(1.5 * asr.SAMPLE_RATE), np.float32)
    pad = np.zeros(max(0, int(24 * asr.SAMPLE_RATE) - first.size), np.float32)  # first clip + silence ~ 24 s
    audio = np.concatenate([first, pad, pause, second, np.zeros(int(14 * asr.SAMPLE_RATE), np.float32)])
    windowed = Transcriber(fw.config, decode_window_s=30.0)  # the same (cached) model
    speech = asr.speech_regions(audio)
    windows = asr.decode_windows(audio.size, 30.0, speech)
    assert len(windows) == 2
    cut_s = windows[0][1] / asr.SAMPLE_RATE
    assert not any(s < cut_s < e for s, e in speech)  # cut in a pause
    result = windowed.transcribe(audio)
    assert result.language == "en"
    assert [s for s, _, _ in result.segments] == sorted(s for s, _, _ in result.segments)
    assert any(s >= cut_s for s, _, _ in result.segments)  # the second window's segments, in clip time
    assert _word_recall(result.text, en[0]["text"]) >= 0.6
    assert _word_recall(result.text, en[1]["text"]) >= 0.6
