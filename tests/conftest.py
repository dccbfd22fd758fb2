"""Shared pytest fixtures: small generated media (see ``media_factory``) and the shipped real clips.

Generated files are made once per session, lazily (only when a test asks for them), in a temporary
folder; nothing is written to the project tree.
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

TESTS_DIR = Path(__file__).resolve().parent
if str(TESTS_DIR) not in sys.path:  # lets test files `import media_factory`
    sys.path.insert(0, str(TESTS_DIR))

import media_factory as mf  # noqa: E402

PROJECT_ROOT = TESTS_DIR.parent
CLIPS_DIR = PROJECT_ROOT / "data" / "clips"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    mf.require_ffmpeg()
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def test_video(media_dir) -> Path:
    """2-s 320x240 25-fps ``testsrc`` video with a 440-Hz sine audio track."""
    return mf.make_video(media_dir, "testsrc.mp4", duration=2.0)


@pytest.fixture(scope="session")
def video_no_audio(media_dir) -> Path:
    return mf.make_video(media_dir, "noaudio.mp4", duration=2.0, audio=None)


@pytest.fixture(scope="session")
def blank_video(media_dir) -> Path:
    """2-s black video with a silent audio track: no face, no speech."""
    return mf.make_video(media_dir, "black.mp4", duration=2.0, source="color=c=black", audio="silence")


@pytest.fixture(scope="session")
def audio_wav(media_dir) -> Path:
    """1-s 440-Hz sine, 16-kHz mono PCM wav (no video)."""
    return mf.make_audio(media_dir, "tone.wav", duration=1.0, frequency=440.0)


@pytest.fixture(scope="session")
def audio_opus(media_dir) -> Path:
    """1-s 440-Hz sine in Ogg/Opus (the RAVDESS speech format)."""
    return mf.make_audio(media_dir, "tone.opus", duration=1.0, frequency=440.0)


@pytest.fixture(scope="session")
def empty_media(media_dir) -> Path:
    return mf.make_empty_file(media_dir, "empty.mp4")


@pytest.fixture(scope="session")
def corrupt_mp4(test_video, media_dir) -> Path:
    """First 30 % of an mp4 whose index (moov atom) is at the end: unreadable."""
    return mf.make_truncated(test_video, media_dir, "truncated.mp4", keep=0.3)


@pytest.fixture(scope="session")
def truncated_faststart_mp4(media_dir) -> Path:
    """An mp4 with its index first, cut after 25 % of its bytes: probes fine, decodes partially."""
    full = mf.make_video(media_dir, "faststart_src.mp4", duration=2.0)
    fast = media_dir / "faststart.mp4"
    mf._run_ffmpeg(["-i", str(full), "-c", "copy", "-movflags", "+faststart", str(fast)])
    return mf.make_truncated(fast, media_dir, "faststart_truncated.mp4", keep=0.25)


@pytest.fixture(scope="session")
def garbage_file(media_dir) -> Path:
    return mf.make_garbage(media_dir, "garbage.mp4")


@pytest.fixture(scope="session")
def astronaut_image():
    """RGB uint8 512x512 photo with one frontal face (scikit-image's bundled sample)."""
    from skimage import data

    return data.astronaut()


@pytest.fixture(scope="session")
def face_video(media_dir, astronaut_image) -> Path:
    """1-s 10-fps video of the astronaut photo (a real face, no audio)."""
    return mf.make_image_video(media_dir, astronaut_image, "astronaut.mp4", duration=1.0, fps=10)


@pytest.fixture(scope="session")
def clips_dir() -> Path:
    if not CLIPS_DIR.is_dir():
        pytest.skip(f"real clips not found in {CLIPS_DIR}")
    return CLIPS_DIR


@pytest.fixture(scope="session")
def clip_manifest(clips_dir) -> list[dict]:
    """Rows of data/clips/manifest.csv (file, dataset, clip_id, lang, text, label, ...)."""
    with open(clips_dir / "manifest.csv", newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="session")
def clip_paths(clips_dir, clip_manifest) -> list[Path]:
    paths = [clips_dir / row["file"] for row in clip_manifest]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        pytest.skip(f"clips listed in manifest.csv are missing: {missing}")
    return paths


@pytest.fixture(scope="module")
def data():
    """16 synthetic samples with text / audio / vision sequences (model and explain tests)."""
    from dataset_factory import make_dataset

    return make_dataset(n=16, max_len=6)


@pytest.fixture(scope="module")
def dims(data):
    return {m: data.meta.modalities[m].dim for m in data.modalities}
