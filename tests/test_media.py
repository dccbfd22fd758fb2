"""msa_lib.extract.media and .errors: probing and decoding real and broken media with ffmpeg."""
from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from msa_lib.extract import media
from msa_lib.extract.errors import ExtractionError, MediaError, MissingToolError, NoFaceError, NoSpeechError
from msa_lib.extract.media import MediaInfo, extract_audio, extract_frames, probe


# ----------------------------------------------------------------------------------------- errors

def test_errors_carry_clip_and_stage_and_pickle():
    err = MediaError("clip.mp4 has no audio track", clip="clip.mp4")
    assert isinstance(err, ExtractionError) and isinstance(err, RuntimeError)
    assert err.clip == "clip.mp4" and err.stage == "media"
    assert NoFaceError("x", clip="a.mp4").stage == "visual"
    assert NoSpeechError("x", clip="a.mp4").stage == "asr"
    assert MediaError("x", clip="a.mp4", stage="frames").stage == "frames"
    clone = pickle.loads(pickle.dumps(err))  # survives dask / multiprocessing workers
    assert type(clone) is MediaError and clone.clip == err.clip and str(clone) == str(err)
    # the file is named even when the message does not mention it
    assert "b.mp4" in str(NoFaceError("no face in any frame", clip="b.mp4"))


def test_missing_ffmpeg_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(media.shutil, "which", lambda name: None)
    with pytest.raises(MissingToolError) as info:
        probe(tmp_path / "whatever.mp4")
    msg = str(info.value)
    assert "ffmpeg" in msg and "apt-get install ffmpeg" in msg and "scripts/setup.sh" in msg


# ----------------------------------------------------------------------------------------- probe

def test_probe_video_with_audio(test_video):
    info = probe(test_video)
    assert isinstance(info, MediaInfo)
    assert info.has_audio and info.has_video
    assert info.duration == pytest.approx(2.0, abs=0.1)
    assert info.fps == pytest.approx(25.0)
    assert (info.width, info.height) == (320, 240)


def test_probe_audio_only_files(audio_wav, audio_opus):
    for path in (audio_wav, audio_opus):
        info = probe(path)
        assert info.has_audio and not info.has_video
        assert info.duration == pytest.approx(1.0, abs=0.05)
        assert info.width is None and info.fps is None


def test_probe_video_without_audio(video_no_audio):
    info = probe(video_no_audio)
    assert info.has_video and not info.has_audio


@pytest.mark.parametrize("fixture, expected", [
    ("empty_media", "empty (0 bytes)"),
    ("corrupt_mp4", "not a valid or complete"),
    ("garbage_file", "not a valid or complete"),
])
def test_broken_files_give_one_media_error(request, fixture, expected):
    path = request.getfixturevalue(fixture)
    for call in (probe, extract_audio, extract_frames):
        with pytest.raises(MediaError) as info:
            call(path)
        assert expected in str(info.value)
        assert str(path) in str(info.value) and info.value.clip == str(path)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(MediaError, match="not found"):
        extract_audio(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="directory"):
        probe(tmp_path)


def test_truncated_file_with_index_first_is_caught(truncated_faststart_mp4):
    probe(truncated_faststart_mp4)  # the header is intact ...
    with pytest.raises(MediaError, match="truncated"):  # ... but the streams stop early
        extract_audio(truncated_faststart_mp4)
    with pytest.raises(MediaError, match="truncated"):
        extract_frames(truncated_faststart_mp4)


# ----------------------------------------------------------------------------------------- audio

def _peak_hz(y: np.ndarray, sr: int) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.fft.rfftfreq(len(y), 1 / sr)[np.argmax(spec)])


def test_extract_audio_from_video(test_video):
    y = extract_audio(test_video, sr=16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert len(y) / 16000 == pytest.approx(2.0, abs=0.1)
    assert np.abs(y).max() <= 1.0
    assert _peak_hz(y, 16000) == pytest.approx(440.0, abs=5.0)


@pytest.mark.parametrize("fixture", ["audio_wav", "audio_opus"])
def test_extract_audio_from_audio_only_file(request, fixture):
    path = request.getfixturevalue(fixture)
    for sr in (16000, 8000):
        y = extract_audio(path, sr=sr)
        assert y.dtype == np.float32 and y.ndim == 1
        assert len(y) / sr == pytest.approx(1.0, abs=0.05)
        assert _peak_hz(y, sr) == pytest.approx(440.0, abs=5.0)


def test_extract_audio_segment(test_video):
    y = extract_audio(test_video, sr=16000, start=0.5, duration=1.0)
    assert len(y) == pytest.approx(16000, abs=400)


def test_video_without_audio_track(video_no_audio):
    with pytest.raises(MediaError) as info:
        extract_audio(video_no_audio)
    assert "no audio track" in str(info.value) and str(video_no_audio) in str(info.value)


def test_audio_temp_file_stays_out_of_the_working_dir(test_video, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    extract_audio(test_video)
    assert os.listdir(work) == []


# ----------------------------------------------------------------------------------------- frames

def test_extract_frames_sampled(test_video):
    frames, times = extract_frames(test_video, fps=5.0, max_side=None)
    assert frames.dtype == np.uint8 and frames.shape == (10, 240, 320, 3)
    np.testing.assert_allclose(times, np.arange(10) * 0.2, atol=1e-3)
    assert frames.std() > 10  # testsrc is colourful, not blank


def test_extract_frames_every_frame_and_resize(test_video):
    frames, times = extract_frames(test_video, fps=None, max_side=160)
    assert frames.shape == (50, 120, 160, 3)
    assert np.all(np.diff(times) > 0) and times[1] == pytest.approx(0.04, abs=1e-3)


def test_extract_frames_segment_timestamps(test_video):
    frames, times = extract_frames(test_video, fps=5.0, start=1.0, duration=0.6)
    assert len(frames) == 3
    np.testing.assert_allclose(times, [1.0, 1.2, 1.4], atol=1e-3)


def test_blank_video_frames_are_black(blank_video):
    frames, _ = extract_frames(blank_video, fps=5.0)
    assert frames.shape[0] == 10 and frames.max() < 30


def test_audio_only_file_has_no_frames(audio_wav):
    with pytest.raises(MediaError, match="no video stream"):
        extract_frames(audio_wav)


def test_output_size_keeps_aspect_and_even_sides():
    assert media.output_size(1920, 804, 640) == (640, 268)
    assert media.output_size(480, 360, 640) == (480, 360)
    w, h = media.output_size(101, 51, None)
    assert w % 2 == 0 and h % 2 == 0 and abs(w - 101) <= 1 and abs(h - 51) <= 1


# ----------------------------------------------------------------------------------------- real clips

def test_real_clips_decode(clip_paths):
    for path in clip_paths:
        info = probe(path)
        assert info.has_audio and info.has_video, path
        y = extract_audio(path)
        assert len(y) / 16000 == pytest.approx(info.audio_duration or info.duration, abs=0.15)
        assert np.abs(y).max() > 0.01  # there is speech, not silence
        frames, times = extract_frames(path, fps=5.0, max_side=640)
        assert max(frames.shape[1:3]) <= 640
        assert len(frames) == pytest.approx(info.duration * 5, abs=2)
        assert times[0] == pytest.approx(0.0, abs=0.05) and np.all(np.diff(times) > 0)


def test_decode_clip(test_video, audio_opus, video_no_audio):
    from msa_lib.extract.media import MediaConfig, decode_clip

    clip = decode_clip(test_video, MediaConfig(sample_rate=8000, fps=2.0, max_side=160))
    assert clip.info.has_audio and clip.sample_rate == 8000
    assert len(clip.audio) == pytest.approx(16000, abs=400)
    assert clip.frames.shape == (4, 120, 160, 3) and len(clip.timestamps) == 4
    audio_only = decode_clip(audio_opus, need_video=False)
    assert audio_only.frames is None and audio_only.audio is not None
    with pytest.raises(MediaError, match="no video stream"):
        decode_clip(audio_opus)
    silent = decode_clip(video_no_audio, need_audio=False)
    assert silent.audio is None and silent.frames is not None
