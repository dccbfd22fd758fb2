"""File-backed waveforms (msa_lib.extract.waveform): the same samples as an in-memory decode, and a
pass over them leaves at most one block resident (issue 19: flat memory for long clips)."""
from __future__ import annotations

import numpy as np
import pytest

from msa_lib.extract import audio, waveform
from msa_lib.extract.asr import peak_dbfs
from msa_lib.extract.media import extract_audio
from tests.media_factory import require_ffmpeg


def _resident_kb(y: np.ndarray) -> int:
    """Resident kB of the memory mapping that holds ``y`` (from /proc/self/smaps)."""
    address = y.__array_interface__["data"][0]
    rss, inside = None, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and ":" not in head:
                lo, hi = (int(x, 16) for x in head.split("-"))
                inside = lo <= address < hi
            elif inside and head == "Rss:":
                rss = int(line.split()[1])
    assert rss is not None, "mapping not found"
    return rss


def _raw_file(tmp_path, samples: np.ndarray):
    path = tmp_path / "audio.f32"
    samples.astype("<f4").tofile(path)
    return path


def test_mapped_waveform_equals_the_file_and_is_read_only(tmp_path):
    samples = np.random.default_rng(0).uniform(-0.9, 0.9, 100_000).astype(np.float32)
    y = waveform.map_waveform(_raw_file(tmp_path, samples))
    assert waveform.is_file_backed(y) and waveform.is_file_backed(y[10:20])
    assert not waveform.is_file_backed(samples)
    np.testing.assert_array_equal(y, samples)
    with pytest.raises(ValueError):
        y[0] = 0.5


def test_mapped_waveform_sanitises_non_finite_and_clips(tmp_path):
    samples = np.array([0.5, np.nan, np.inf, -np.inf, 1.5, -2.0, -0.25], np.float32)
    y = waveform.map_waveform(_raw_file(tmp_path, samples))
    np.testing.assert_array_equal(y, [0.5, 0.0, 1.0, -1.0, 1.0, -1.0, -0.25])
    assert waveform.map_waveform(_raw_file(tmp_path, np.zeros(0, np.float32))).size == 0


def test_a_pass_over_a_mapped_waveform_keeps_one_block_resident(tmp_path):
    n = 8 * waveform.BLOCK_SAMPLES  # 32 MB of samples
    samples = np.random.default_rng(1).uniform(-0.5, 0.5, n).astype(np.float32)
    samples[-5] = 0.75  # the loudest sample is in the last block
    y = waveform.map_waveform(_raw_file(tmp_path, samples))
    del samples
    block_kb = waveform.BLOCK_SAMPLES * 4 // 1024
    assert waveform.peak_abs(y) == pytest.approx(0.75)
    assert waveform.all_finite(y)
    assert _resident_kb(y) <= block_kb
    assert not audio.is_silent(y)
    assert peak_dbfs(y) == pytest.approx(20 * np.log10(0.75), abs=1e-4)
    assert _resident_kb(y) <= block_kb
    np.asarray(y).sum()  # an ordinary whole-array pass does read it all in ...
    assert _resident_kb(y) > 4 * block_kb
    waveform.release_pages(y[100:200])  # ... and releasing through any view gives it back
    assert _resident_kb(y) <= block_kb


def test_blockwise_silence_check_finds_a_late_sound():
    y = np.zeros(3 * waveform.BLOCK_SAMPLES, np.float32)
    assert audio.is_silent(y)
    y[-400:] = 0.1  # one loud 25-ms frame at the very end
    assert not audio.is_silent(y)
    y[-400:] = np.nan
    assert audio.is_silent(y)


def test_extract_audio_is_file_backed_and_prosody_matches_the_in_memory_array(test_video):
    require_ffmpeg()
    y = extract_audio(test_video)
    assert waveform.is_file_backed(y) and not y.flags.writeable
    in_memory = np.array(y)
    assert not waveform.is_file_backed(in_memory)
    mapped, names = audio.extract_prosody(y, 16000)
    plain, _ = audio.extract_prosody(in_memory, 16000)
    np.testing.assert_array_equal(mapped, plain)
    assert mapped.dtype == np.float32 and mapped.shape[1] == len(names)


def test_voice_activity_on_a_mapped_waveform_equals_stock_faster_whisper(tmp_path, monkeypatch, clip_paths):
    """speech_regions hands faster-whisper's get_speech_timestamps a pad-free stand-in and runs the
    Silero model batch by batch from the file: the regions equal the stock function on the in-memory
    array, over several model batches (> 10000 windows), and the mapping is released afterwards."""
    import faster_whisper.vad as fw_vad

    from msa_lib.extract import asr

    require_ffmpeg()
    speech = np.array(extract_audio(next(p for p in clip_paths if "mosi" in str(p))))
    with_pause = np.concatenate([speech, np.zeros(8000, np.float32)])  # the clip, then 0.5 s of silence
    looped = np.tile(with_pause, int(np.ceil(12_000 * 512 / with_pause.size)))[: 12_000 * 512 + 777]  # ragged tail
    y = waveform.map_waveform(_raw_file(tmp_path, looped))
    regions = asr.speech_regions(y)
    assert _resident_kb(y) <= 1024

    blockwise = fw_vad.get_vad_model()
    stock = object.__new__(fw_vad.SileroVADModel)
    stock.session = blockwise.session
    monkeypatch.setattr(fw_vad, "get_vad_model", lambda: stock)
    stamps = fw_vad.get_speech_timestamps(looped, fw_vad.VadOptions(speech_pad_ms=0, min_silence_duration_ms=100))
    assert len(regions) > 20
    assert regions == [(t["start"] / asr.SAMPLE_RATE, t["end"] / asr.SAMPLE_RATE) for t in stamps]


def test_writable_copies_only_read_only_arrays(tmp_path):
    plain = np.ones(10, np.float32)
    assert waveform.writable(plain) is plain
    y = waveform.map_waveform(_raw_file(tmp_path, plain))
    copy = waveform.writable(y[2:5])
    assert copy.flags.writeable and not waveform.is_file_backed(copy)
    np.testing.assert_array_equal(copy, plain[2:5])
