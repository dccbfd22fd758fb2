"""Small synthetic media files for tests, generated with ffmpeg's lavfi sources.

Every generator writes into the folder it is given (use pytest's ``tmp_path`` / ``tmp_path_factory``)
and returns the path. They need the ``ffmpeg`` binary; ``require_ffmpeg()`` skips the calling test
with a clear reason when it is missing.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np


def have_ffmpeg() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def require_ffmpeg() -> None:
    import pytest

    if not have_ffmpeg():
        pytest.skip("ffmpeg/ffprobe not installed (apt-get install ffmpeg)")


def _run_ffmpeg(args: list[str]) -> None:
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"test media generation failed: {' '.join(cmd)}\n{proc.stderr}")


def make_video(
    out_dir: str | Path,
    name: str = "testsrc.mp4",
    duration: float = 2.0,
    size: tuple[int, int] = (320, 240),
    fps: int = 25,
    source: str = "testsrc",
    audio: str | None = "sine",
    frequency: float = 440.0,
    sample_rate: int = 44100,
) -> Path:
    """A short H.264 mp4. ``source``: a lavfi video source (``testsrc``, ``color=c=black``...);
    ``audio``: ``"sine"``, ``"silence"`` (anullsrc) or None for a video without an audio track."""
    out = Path(out_dir) / name
    w, h = size
    vsrc = f"{source}=size={w}x{h}:rate={fps}:duration={duration}" if "=" not in source else (
        f"{source}:size={w}x{h}:rate={fps}:duration={duration}"
    )
    args = ["-f", "lavfi", "-i", vsrc]
    if audio == "sine":
        args += ["-f", "lavfi", "-i", f"sine=frequency={frequency}:sample_rate={sample_rate}:duration={duration}"]
    elif audio == "silence":
        args += ["-f", "lavfi", "-i", f"anullsrc=r={sample_rate}:cl=mono", "-t", str(duration)]
    elif audio is not None:
        raise ValueError(f"unknown audio kind {audio!r}")
    args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p"]
    if audio is not None:
        args += ["-c:a", "aac", "-b:a", "64k", "-shortest"]
    _run_ffmpeg([*args, str(out)])
    return out


def make_audio(
    out_dir: str | Path,
    name: str = "tone.wav",
    duration: float = 1.0,
    frequency: float = 440.0,
    sample_rate: int = 16000,
    silence: bool = False,
) -> Path:
    """An audio-only file; the codec follows the extension (.wav -> PCM, .opus -> libopus, .m4a -> aac)."""
    out = Path(out_dir) / name
    src = f"anullsrc=r={sample_rate}:cl=mono" if silence else (
        f"sine=frequency={frequency}:sample_rate={sample_rate}:duration={duration}"
    )
    args = ["-f", "lavfi", "-i", src, "-t", str(duration), "-ac", "1"]
    ext = out.suffix.lower()
    if ext == ".opus":
        args += ["-c:a", "libopus", "-b:a", "32k", "-ar", "48000" if sample_rate not in (8000, 12000, 16000, 24000, 48000) else str(sample_rate)]
    elif ext == ".m4a":
        args += ["-c:a", "aac"]
    _run_ffmpeg([*args, str(out)])
    return out


def make_image_video(
    out_dir: str | Path, image: np.ndarray, name: str = "still.mp4", duration: float = 1.0, fps: int = 10
) -> Path:
    """A video showing one RGB uint8 image (e.g. ``skimage.data.astronaut()``) for ``duration`` s."""
    out = Path(out_dir) / name
    h, w = image.shape[:2]
    w2, h2 = w - w % 2, h - h % 2  # yuv420p needs even sides
    img = np.ascontiguousarray(image[:h2, :w2, :3].astype(np.uint8))
    cmd = [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
        "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w2}x{h2}", "-framerate", "1", "-i", "-",
        "-vf", f"loop=loop=-1:size=1,fps={fps}", "-t", str(duration),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(out),
    ]
    proc = subprocess.run(cmd, input=img.tobytes(), capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"test media generation failed: {proc.stderr.decode(errors='replace')}")
    return out


def make_empty_file(out_dir: str | Path, name: str = "empty.mp4") -> Path:
    out = Path(out_dir) / name
    out.write_bytes(b"")
    return out


def make_truncated(src: str | Path, out_dir: str | Path, name: str = "truncated.mp4", keep: float = 0.3) -> Path:
    """The first ``keep`` fraction of ``src``'s bytes: an mp4 cut before its index (moov) atom."""
    data = Path(src).read_bytes()
    out = Path(out_dir) / name
    out.write_bytes(data[: max(1, int(len(data) * keep))])
    return out


def make_garbage(out_dir: str | Path, name: str = "garbage.mp4", n_bytes: int = 4096, seed: int = 0) -> Path:
    out = Path(out_dir) / name
    out.write_bytes(np.random.default_rng(seed).integers(0, 256, n_bytes, dtype=np.uint8).tobytes())
    return out


def harmonic_tone(f0: float = 150.0, sr: int = 16000, duration: float = 1.0, n_harmonics: int = 8) -> np.ndarray:
    """A periodic, voice-like tone: harmonics of ``f0`` with 1/k amplitudes, peak 0.5."""
    t = np.arange(int(sr * duration)) / sr
    y = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, n_harmonics + 1) if k * f0 < sr / 2)
    return (0.5 * y / np.max(np.abs(y))).astype(np.float32)


def white_noise(sr: int = 16000, duration: float = 1.0, rms: float = 0.1, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(int(sr * duration)) * rms).astype(np.float32)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + noise`` with the noise scaled so that 10 log10(P_signal / P_noise) = ``snr_db``."""
    ps, pn = np.mean(signal.astype(np.float64) ** 2), np.mean(noise.astype(np.float64) ** 2)
    scale = np.sqrt(ps / (pn * 10 ** (snr_db / 10)))
    return (signal + scale * noise).astype(np.float32)


# ------------------------------------------------------------------ real clips: cut, synthesise, mux
def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def require_espeak() -> None:
    import pytest

    if not have_espeak():
        pytest.skip("espeak-ng is not installed and could not be installed by scripts/setup.sh "
                    "(apt-get install espeak-ng): no speech in a third language to test with")


def cut_clip(src: str | Path, out_dir: str | Path, start: float, duration: float, name: str | None = None) -> Path:
    """``duration`` seconds of a real clip from ``start``, re-encoded (frame-accurate cut)."""
    out = Path(out_dir) / (name or f"{Path(src).stem}_{start:g}_{duration:g}s.mp4")
    _run_ffmpeg(["-ss", f"{start}", "-i", str(src), "-t", f"{duration}", "-c:v", "libx264", "-preset", "ultrafast",
                 "-pix_fmt", "yuv420p", "-c:a", "aac", str(out)])
    return out


def speak(text: str, out_dir: str | Path, voice: str = "fr", name: str | None = None, words_per_minute: int = 150) -> Path:
    """``text`` spoken by espeak-ng (``voice`` e.g. ``fr``, ``de``) as a wav file."""
    out = Path(out_dir) / (name or f"espeak_{voice}.wav")
    proc = subprocess.run(["espeak-ng", "-v", voice, "-s", str(words_per_minute), "-w", str(out), text],
                          capture_output=True, text=True)
    if proc.returncode != 0 or not out.is_file():
        raise RuntimeError(f"espeak-ng failed for voice {voice!r}: {proc.stderr}")
    return out


def mux_audio(video: str | Path, audio: str | Path, out_dir: str | Path, name: str | None = None) -> Path:
    """``video``'s picture with ``audio`` as its sound track, as long as the shorter of the two."""
    out = Path(out_dir) / (name or f"{Path(video).stem}_with_{Path(audio).stem}.mp4")
    _run_ffmpeg(["-i", str(video), "-i", str(audio), "-map", "0:v:0", "-map", "1:a:0", "-c:v", "libx264",
                 "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest", str(out)])
    return out
