"""Extraction pipeline: a batch with every kind of bad input goes on, records why, and resumes from
the per-clip cache."""
import numpy as np
import pandas as pd
import pytest

from msa_lib.extract.pipeline import ExtractConfig, extract, extract_clip, resolve_inputs, cache_key
from msa_lib.data.io import read_features


@pytest.fixture(scope="module")
def batch(tmp_path_factory, clips_dir, video_no_audio, blank_video, empty_media, corrupt_mp4, garbage_file,
          audio_wav, face_video):
    out = tmp_path_factory.mktemp("extract") / "batch.npz"
    inputs = [clips_dir / "mosi_0h-zjBukYpk_1.mp4", video_no_audio, blank_video, empty_media, corrupt_mp4,
              garbage_file, audio_wav, face_video, out.parent / "does_not_exist.mp4"]
    cfg = ExtractConfig(cache_folder=str(out.parent / "cache"))
    return extract(inputs, cfg, out=out, progress=False), out, cfg


def test_good_clip_has_every_modality(batch):
    ds, _, _ = batch
    i = list(ds.ids).index("mosi_0h-zjBukYpk_1")
    assert ds.language[i] == "en" and ds.extra[i]["transcript_source"] == "asr"
    assert "title" in ds.raw_text[i].lower()
    assert ds.features["text"][i].shape[1] == 384 and ds.features["audio"][i].shape[1] == 43
    assert ds.features["vision"][i].shape[0] > 0 and ds.extra[i]["face_ratio"] > 0.5


def test_partial_clips_keep_what_they_have(batch):
    ds, _, _ = batch
    ids = list(ds.ids)
    tone = ids.index("tone")  # a sine wave: audio features, no speech, no video
    assert ds.features["audio"][tone].shape[0] > 0 and ds.features["text"][tone].shape[0] == 0
    assert ds.features["vision"][tone].shape[0] == 0
    face = ids.index("astronaut")  # a still face without an audio track
    assert ds.features["vision"][face].shape[0] > 0 and ds.features["audio"][face].shape[0] == 0
    kinds = {(f["clip_id"], f["stage"]): f["error"] for f in ds.failures if f["kind"] == "modality missing"}
    assert "no speech" in kinds[("tone", "text")] and kinds[("astronaut", "audio")] == "no audio track"


@pytest.mark.parametrize("clip_id, needle", [
    ("empty", "empty"), ("truncated", "truncated.mp4"), ("garbage", "garbage.mp4"),
    ("does_not_exist", "does_not_exist.mp4"),
    ("noaudio", "no face in any frame"), ("black", "silent audio track"),
])
def test_unusable_clips_are_recorded_failures(batch, clip_id, needle):
    ds, _, _ = batch
    assert clip_id not in ds.ids
    failed = {f["clip_id"]: f for f in ds.failures if f["kind"] == "failed"}
    assert needle in failed[clip_id]["error"]


def test_feature_file_and_failures_table_are_written(batch):
    ds, out, _ = batch
    back = read_features(out)
    assert list(back.ids) == list(ds.ids) and back.failures == ds.failures
    table = pd.read_csv(out.with_suffix(".failures.csv"))
    assert {"clip_id", "kind", "stage", "error"} <= set(table.columns) and len(table) == len(ds.failures)


def test_rerun_reuses_cache_and_resumes_after_a_crash(batch, audio_wav, tmp_path):
    ds, _, cfg = batch
    again = extract([audio_wav], cfg, progress=False)
    assert again.extra[0]["cached"] is True
    np.testing.assert_array_equal(again.features["audio"][0], ds.features["audio"][list(ds.ids).index("tone")])
    # a "crash" after one clip: only that clip's cache entry exists; the rerun computes only the other
    fresh = ExtractConfig(modalities=("audio",), cache_folder=str(tmp_path / "c"))
    clips = resolve_inputs([audio_wav, tmp_path / "missing.wav"])
    extract_clip((clips[0], fresh, cache_key(clips[0], fresh)))
    resumed = extract([audio_wav], fresh, progress=False)
    assert resumed.extra[0].get("cached") is True


def test_process_pool_matches_in_process(media_dir, tmp_path):
    import media_factory as mf

    files = [mf.make_audio(media_dir, f"pool_{f}.wav", duration=1.0, frequency=f) for f in (220.0, 330.0)]
    serial = extract(files, ExtractConfig(modalities=("audio",), use_cache=False), progress=False)
    pooled = extract(files, ExtractConfig(modalities=("audio",), use_cache=False, workers=2), progress=False)
    assert list(serial.ids) == list(pooled.ids)
    for a, b in zip(serial.features["audio"], pooled.features["audio"]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
