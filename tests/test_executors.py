"""Scale-out extraction with Dask: same features as the in-process run, and resume from the per-clip cache.

One ``LocalCluster`` of 2 worker processes (1 thread each) extracts the two shortest shipped clips
(text from the manifest transcripts, so the test does not depend on ASR; prosody; face features).
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

pytest.importorskip("distributed")

from msa_lib.extract.executors import map_unordered  # noqa: E402
from msa_lib.extract.pipeline import ClipInput, ExtractConfig, extract  # noqa: E402


def _square(x):
    return x * x


def _clips(clips_dir, clip_manifest):
    rows = {r["file"]: r for r in clip_manifest}
    out = []
    for name in ("chsims_video_0001_0001.mp4", "mosi_0h-zjBukYpk_1.mp4"):
        row = rows[name]
        out.append(ClipInput(str(clips_dir / name), name.rsplit(".", 1)[0], row["lang"], row["text"].lower()))
    return out


def _config(**kw):
    from dataclasses import replace

    from msa_lib.extract.media import MediaConfig
    from msa_lib.extract.visual import VisualFeatureConfig

    return ExtractConfig(audio_features=("prosody",), media=replace(MediaConfig(), fps=2.0),
                         visual=VisualFeatureConfig(use_hog=False), **kw)


def test_map_unordered_dask_yields_every_result():
    got = sorted(map_unordered(_square, range(5), executor="dask", workers=2))
    assert got == [0, 1, 4, 9, 16]


def test_dask_matches_local_and_resumes_from_cache(clips_dir, clip_manifest, tmp_path):
    clips = _clips(clips_dir, clip_manifest)
    local = extract(clips, _config(use_cache=False), progress=False)
    assert len(local) == 2 and not [f for f in local.failures if f["kind"] == "failed"]

    cache = tmp_path / "cache"
    cfg = _config(executor="dask", workers=2, cache_folder=str(cache))
    start = time.perf_counter()
    dist = extract(clips, cfg, progress=False)
    first_s = time.perf_counter() - start
    assert list(dist.ids) == list(local.ids)
    assert not any(e.get("cached") for e in dist.extra)
    for modality in ("text_pooled", "audio", "vision"):
        for a, b in zip(local.features[modality], dist.features[modality]):
            assert a.shape == b.shape, modality
            assert np.allclose(a, b, atol=1e-4, equal_nan=True), modality
    assert list(dist.raw_text) == list(local.raw_text)
    assert list(dist.language) == list(local.language)

    # second run: every clip comes from the cache the workers wrote; no clip is extracted again
    entries = {p.name: p.stat().st_mtime_ns for p in cache.iterdir()}
    assert len(entries) == 2
    start = time.perf_counter()
    again = extract(clips, cfg, progress=False)
    second_s = time.perf_counter() - start
    assert all(e.get("cached") for e in again.extra)
    assert {p.name: p.stat().st_mtime_ns for p in cache.iterdir()} == entries  # nothing rewritten
    for modality in ("text_pooled", "audio", "vision"):
        for a, b in zip(dist.features[modality], again.features[modality]):
            assert np.array_equal(a, b, equal_nan=True)
    # wall times of the original extraction are kept, not re-measured
    assert [e["wall_s"] for e in again.extra] == [e["wall_s"] for e in dist.extra]
    print(f"dask first run {first_s:.1f} s, cached rerun {second_s:.1f} s (cpu count {os.cpu_count()})")
