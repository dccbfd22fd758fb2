"""Streamed frames (issue 19, item 3): the same frames and timestamps as a direct ffmpeg decode, a
bounded number of frames in memory whatever the clip's length, early stops that end ffmpeg, and the
pipeline's streamed and all-at-once paths giving identical features on a real clip."""
from __future__ import annotations

import subprocess
import threading
import time
import tracemalloc

import numpy as np
import pytest

from msa_lib.extract.errors import MediaError
from msa_lib.extract.media import FrameStream, extract_frames, iter_frames, output_size, probe
from msa_lib.extract.pipeline import ExtractConfig, extract_clip, resolve_inputs
from msa_lib.extract.registry import ClipData

CLIP = "mosi_0h-zjBukYpk_2.mp4"  # 12.3 s, 480 x 360, a real face


@pytest.fixture(scope="module")
def clip_path(clips_dir):
    return clips_dir / CLIP


def test_stream_matches_a_direct_ffmpeg_decode(clip_path):
    info = probe(clip_path)
    w, h = output_size(info.width, info.height, 640)
    raw = subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clip_path), "-map", "0:v:0",
                          "-vf", f"fps=5,scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
                         capture_output=True, check=True).stdout
    reference = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    pairs = list(iter_frames(clip_path, fps=5.0, max_side=640))
    assert len(pairs) == len(reference) > 50
    np.testing.assert_array_equal(np.stack([f for f, _ in pairs]), reference)
    times = np.array([t for _, t in pairs])
    np.testing.assert_allclose(times, np.arange(len(times)) * 0.2, atol=0.05)  # showinfo pts on a 5-fps grid
    frames, stamps = extract_frames(clip_path, fps=5.0)  # the materialised stream
    np.testing.assert_array_equal(frames, reference)
    np.testing.assert_array_equal(stamps, times)


def test_stream_holds_a_bounded_number_of_frames(clip_path):
    stream = FrameStream(clip_path, fps=5.0, buffer_frames=4)
    frame_bytes = stream.width * stream.height * 3
    tracemalloc.start()
    try:
        n = 0
        for frame, _ in stream:
            time.sleep(0.005)  # a consumer slower than ffmpeg: the buffer fills up
            n += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n > 50
    # all frames at once would be n frames; the stream's buffer, the one in hand and the reader's read
    assert peak < 8 * frame_bytes < n * frame_bytes / 6


def test_an_early_stop_ends_ffmpeg_and_the_reader(clip_path):
    stream = iter_frames(clip_path, fps=5.0, buffer_frames=2)
    it = iter(stream)
    next(it)
    it.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(t.name.startswith("msa-ffmpeg") for t in threading.enumerate()):
        time.sleep(0.05)
    assert not any(t.name.startswith("msa-ffmpeg") for t in threading.enumerate())
    assert len(list(stream)) > 50  # re-iterable: a second pass decodes afresh


def test_a_clip_shorter_than_one_tick_streams_its_first_frame(clip_path, tmp_path):
    short = tmp_path / "short.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(clip_path), "-t", "0.2", str(short)],
                   check=True)
    pairs = list(iter_frames(short, fps=2.0))
    assert len(pairs) == 1 and pairs[0][1] == pytest.approx(0.0, abs=0.05)


def test_a_corrupt_video_ends_the_stream_with_one_media_error(clip_path, tmp_path):
    broken = tmp_path / "broken.mp4"
    data = clip_path.read_bytes()
    broken.write_bytes(data[: len(data) // 3])  # cut: the index announces more than decodes
    with pytest.raises(MediaError):
        list(iter_frames(broken, fps=5.0))


def test_clip_data_materialises_the_stream_only_when_asked(clip_path):
    stream = FrameStream(clip_path, fps=5.0)
    data = ClipData(clip=None, config=ExtractConfig(), record={}, info=None, frame_stream=stream)
    streamed = list(data.iter_frames())
    assert data._frames is None  # streaming kept nothing
    assert data.expected_frames == pytest.approx(len(streamed), abs=2)
    np.testing.assert_array_equal(data.frames, np.stack([f for f, _ in streamed]))
    np.testing.assert_array_equal(data.timestamps, [t for _, t in streamed])


def test_streamed_and_all_at_once_pipelines_give_identical_features(clip_path):
    clip = resolve_inputs([clip_path])[0]
    records = [extract_clip((clip, ExtractConfig(modalities=("vision",), face_features=("face", "blendshapes"),
                                                 use_cache=False, overlap_decode=overlap), None))
               for overlap in (True, False)]
    assert all(r["status"] == "ok" for r in records)
    streamed, at_once = (r["features"] for r in records)
    assert set(streamed) == set(at_once) == {"vision", "vision_blendshapes", "vision_blendshapes_pooled"}
    for key in streamed:
        np.testing.assert_array_equal(streamed[key], at_once[key])
    assert records[0]["n_frames"] == records[1]["n_frames"] == len(streamed["vision"])

