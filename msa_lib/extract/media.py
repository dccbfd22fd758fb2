"""Read audio and video frames from media files with ffmpeg/ffprobe (run as subprocesses).

* ``probe(path)`` -> :class:`MediaInfo` (duration, which streams exist, fps, frame size).
* ``extract_audio(path, sr=16000)`` -> mono float32 waveform in [-1, 1].
* ``extract_frames(path, fps=5.0, max_side=640)`` -> ``(frames N x H x W x 3 uint8 RGB, timestamps s)``.
* ``iter_frames(path, fps=5.0)`` -> the same frames one ``(frame, timestamp)`` at a time (bounded memory).
* ``decode_clip(path, MediaConfig())`` -> both, probing once.

Any problem with the file (missing, empty, corrupt, truncated, no such stream) ends in a single
:class:`~msa_lib.extract.errors.MediaError` naming the file; a missing ffmpeg ends in
:class:`~msa_lib.extract.errors.MissingToolError` saying how to install it. Audio-only files (wav,
opus, m4a, ...) work for ``probe`` and ``extract_audio``.
"""
from __future__ import annotations

import json
import math
import os
import queue
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from msa_lib.extract.errors import MediaError, MissingToolError
from msa_lib.extract.waveform import map_waveform

__all__ = [
    "MediaConfig",
    "MediaInfo",
    "DecodedClip",
    "decode_clip",
    "check_ffmpeg",
    "probe",
    "extract_audio",
    "extract_frames",
    "iter_frames",
    "stack_frames",
    "FrameStream",
    "output_size",
]

INSTALL_HINT = "install it with `apt-get install ffmpeg` (Debian/Ubuntu) or run `bash scripts/setup.sh`"


@dataclass
class MediaConfig:
    """How media is decoded. ``fps=None`` keeps every video frame; ``max_side`` caps the longer side
    of returned frames (aspect kept, sides even) so face analysis stays cheap on HD clips."""

    sample_rate: int = 16000
    fps: float | None = 5.0
    max_side: int | None = 640
    max_frames: int | None = None  # safety cap for very long inputs (None = no cap)
    timeout_s: float = 300.0


@dataclass
class MediaInfo:
    path: str
    duration: float  # seconds (container duration, else the longest stream)
    has_audio: bool
    has_video: bool
    fps: float | None  # average frame rate of the first video stream
    width: int | None  # display size: rotation metadata already applied, as ffmpeg decodes it
    height: int | None
    n_frames: int | None = None
    audio_sample_rate: int | None = None
    audio_channels: int | None = None
    video_codec: str | None = None
    audio_codec: str | None = None
    rotation: int = 0
    video_duration: float | None = None  # per-stream durations (None when the container omits them)
    audio_duration: float | None = None


# --------------------------------------------------------------------------------------------- utils

def check_ffmpeg() -> tuple[str, str]:
    """Paths of ``ffmpeg`` and ``ffprobe``; :class:`MissingToolError` with install advice if absent."""
    ffmpeg, ffprobe = shutil.which("ffmpeg"), shutil.which("ffprobe")
    missing = [name for name, p in (("ffmpeg", ffmpeg), ("ffprobe", ffprobe)) if p is None]
    if missing:
        raise MissingToolError(
            f"{' and '.join(missing)} not found on PATH: the extraction stage decodes media with ffmpeg; "
            + INSTALL_HINT,
            stage="setup",
        )
    return ffmpeg, ffprobe  # type: ignore[return-value]


def _check_file(path: str | os.PathLike) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise MediaError(f"media file not found: {p}", clip=p)
    if not p.is_file():
        raise MediaError(f"expected a media file, got a directory or special file: {p}", clip=p)
    if p.stat().st_size == 0:
        raise MediaError(f"media file is empty (0 bytes): {p}", clip=p)
    return p


def _last_lines(text: str, n: int = 2) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return " | ".join(lines[-n:]) if lines else "no error output"


def _float(value, default=None):
    try:
        f = float(value)
    except (TypeError, ValueError):
        return default
    return f if math.isfinite(f) else default


def _rate(text: str | None) -> float | None:
    if not text or text in ("0/0", "N/A"):
        return None
    num, _, den = text.partition("/")
    try:
        val = float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return None
    return val if val > 0 else None


def _rotation(stream: dict) -> int:
    rot = stream.get("tags", {}).get("rotate")
    for side in stream.get("side_data_list", []) or []:
        if "rotation" in side:
            rot = side["rotation"]
    try:
        return int(round(float(rot))) % 360 if rot is not None else 0
    except ValueError:
        return 0


# --------------------------------------------------------------------------------------------- probe

def probe(path: str | os.PathLike, timeout_s: float = 60.0) -> MediaInfo:
    """Stream layout of ``path``. Raises :class:`MediaError` if it is not a readable media file or
    has no audio/video stream or zero duration."""
    _, ffprobe = check_ffmpeg()
    p = _check_file(path)
    cmd = [ffprobe, "-v", "error", "-print_format", "json", "-show_format", "-show_streams", str(p)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise MediaError(f"ffprobe timed out after {timeout_s:.0f} s reading {p}", clip=p) from None
    if proc.returncode != 0:
        raise MediaError(
            f"cannot read {p}: not a valid or complete audio/video file (ffprobe: {_last_lines(proc.stderr)})",
            clip=p,
        )
    try:
        meta = json.loads(proc.stdout or "{}")
    except json.JSONDecodeError:
        raise MediaError(f"cannot read {p}: ffprobe returned unparseable metadata", clip=p) from None

    streams = meta.get("streams", [])
    # Cover art inside audio files shows up as a one-frame "video" stream: not a video.
    video = [s for s in streams if s.get("codec_type") == "video"
             and not s.get("disposition", {}).get("attached_pic", 0)]
    audio = [s for s in streams if s.get("codec_type") == "audio"]
    if not video and not audio:
        raise MediaError(f"{p} contains no audio or video stream", clip=p)

    fmt = meta.get("format", {})
    durations = [_float(fmt.get("duration"))] + [_float(s.get("duration")) for s in video + audio]
    durations = [d for d in durations if d is not None]
    duration = max(durations) if durations else 0.0
    if duration <= 0:
        raise MediaError(f"{p} has zero length (no duration in its metadata)", clip=p)

    info = MediaInfo(path=str(p), duration=duration, has_audio=bool(audio), has_video=bool(video),
                     fps=None, width=None, height=None)
    if video:
        v = video[0]
        info.fps = _rate(v.get("avg_frame_rate")) or _rate(v.get("r_frame_rate"))
        info.width, info.height = v.get("width"), v.get("height")
        info.rotation = _rotation(v)
        if info.rotation in (90, 270) and info.width and info.height:
            info.width, info.height = info.height, info.width  # ffmpeg autorotates on decode
        nb = v.get("nb_frames")
        info.n_frames = int(nb) if nb and str(nb).isdigit() else None
        info.video_codec = v.get("codec_name")
        info.video_duration = _float(v.get("duration"))
    if audio:
        a = audio[0]
        info.audio_sample_rate = int(a["sample_rate"]) if str(a.get("sample_rate", "")).isdigit() else None
        info.audio_channels = a.get("channels")
        info.audio_codec = a.get("codec_name")
        info.audio_duration = _float(a.get("duration"))
    return info


# --------------------------------------------------------------------------------------------- audio

# A file cut after its header (moov atom first) still probes fine and decodes partially with exit
# code 0; compare what decoded with what the header announces to catch it.
MIN_DECODED_FRACTION = 0.5


def _check_coverage(p: Path, decoded_s: float, announced_s: float | None, start: float | None,
                    duration: float | None, what: str, stderr: str) -> None:
    if announced_s is None:
        return
    expected = max(0.0, announced_s - (start or 0.0))
    if duration is not None:
        expected = min(expected, duration)
    if expected > 1.0 and decoded_s < MIN_DECODED_FRACTION * expected:
        hint = " (ffmpeg reports a partial file)" if "partial file" in stderr else ""
        raise MediaError(
            f"{p} looks truncated or corrupt: its {what} decoded to {decoded_s:.2f} s but the file "
            f"announces {expected:.2f} s{hint}",
            clip=p,
        )


def _segment_args(start: float | None, duration: float | None) -> tuple[list[str], list[str]]:
    """Input-side seek (fast and frame-accurate when transcoding) and output-side length."""
    before = ["-ss", f"{start:.6f}"] if start else []
    after = ["-t", f"{duration:.6f}"] if duration is not None else []
    return before, after


def extract_audio(
    path: str | os.PathLike,
    sr: int = 16000,
    start: float | None = None,
    duration: float | None = None,
    timeout_s: float = 300.0,
    info: MediaInfo | None = None,
) -> np.ndarray:
    """Decode the first audio track of ``path`` to a mono float32 waveform at ``sr`` Hz.

    Works for videos and audio-only files. Channels are averaged by ffmpeg's downmix. The decoded
    samples go to a temporary file in a private temporary directory (never the working dir) and the
    result is a read-only array mapped from that file (:mod:`msa_lib.extract.waveform`: memory stays
    flat for long clips; ``np.array(y)`` gives an ordinary copy).
    ``start``/``duration`` (seconds) cut a segment. Pass ``info`` from an earlier :func:`probe` to
    save a second ffprobe run. Raises :class:`MediaError` when there is no audio track or nothing
    decodes.
    """
    ffmpeg, _ = check_ffmpeg()
    info = info if info is not None else probe(path)
    p = Path(info.path)
    if not info.has_audio:
        raise MediaError(f"{p} has no audio track (expected speech audio for the acoustic features)", clip=p)
    if sr <= 0:
        raise ValueError(f"sample rate must be positive, got {sr}")
    before, after = _segment_args(start, duration)
    with tempfile.TemporaryDirectory(prefix="msa_audio_") as tmp:
        raw = Path(tmp) / "audio.f32"
        cmd = [ffmpeg, "-nostdin", "-hide_banner", "-v", "error", *before, "-i", str(p), *after,
               "-map", "0:a:0", "-vn", "-sn", "-dn", "-ac", "1", "-ar", str(int(sr)),
               "-f", "f32le", "-c:a", "pcm_f32le", "-y", str(raw)]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise MediaError(f"ffmpeg timed out after {timeout_s:.0f} s decoding audio of {p}", clip=p) from None
        if proc.returncode != 0:
            raise MediaError(f"cannot decode the audio of {p} (ffmpeg: {_last_lines(proc.stderr)})", clip=p)
        # mapped from the file, not read into memory: passes over it hold one block at a time
        y = map_waveform(raw) if raw.exists() else np.zeros(0, np.float32)
    if y.size == 0:
        what = "the requested segment" if (start or duration is not None) else "the audio track"
        raise MediaError(f"{what} of {p} decoded to zero samples (empty or corrupt audio)", clip=p)
    _check_coverage(p, y.size / sr, info.audio_duration or info.duration, start, duration, "audio track",
                    proc.stderr)
    return y


# --------------------------------------------------------------------------------------------- video

def output_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """Frame size after capping the longer side at ``max_side`` (aspect kept, even sides for codecs)."""
    if max_side and max(width, height) > max_side:
        scale = max_side / max(width, height)
        width, height = width * scale, height * scale
    w = max(2, int(round(width / 2)) * 2)
    h = max(2, int(round(height / 2)) * 2)
    return w, h


_PTS_RE = re.compile(r"\bn:\s*(\d+)\s+pts:\s*(-?\d+)\s+pts_time:\s*(-?[\d.eE+-]+)")


class FrameStream:
    """The sampled frames of one video, decoded by an ffmpeg process and yielded one at a time.

    Iterating gives ``(frame, timestamp)`` pairs (``H x W x 3`` uint8 RGB, seconds): memory holds at
    most ``buffer_frames`` decoded frames whatever the clip's length (a 10-minute clip at 5 fps is
    3,000 frames, 1.5 GB at 480 x 360, when held at once). A reader thread fills the bounded buffer, so
    ffmpeg decodes the next frames while the caller analyses the current one. Each iteration decodes
    afresh (a second face extractor re-decodes instead of keeping the frames). Same sampling, sizes,
    timestamps and errors as :func:`extract_frames`, which materialises this stream; a :class:`MediaError`
    about the file (ffmpeg failed, truncated stream) comes at the end, after the frames that did decode.
    """

    def __init__(self, path: str | os.PathLike, fps: float | None = 5.0, max_side: int | None = 640,
                 start: float | None = None, duration: float | None = None, max_frames: int | None = None,
                 timeout_s: float = 300.0, info: MediaInfo | None = None, buffer_frames: int = 16) -> None:
        self.ffmpeg, _ = check_ffmpeg()
        self.info = info if info is not None else probe(path)
        p = self.path = Path(self.info.path)
        if not self.info.has_video:
            raise MediaError(f"{p} has no video stream (expected a video with a visible face)", clip=p)
        if fps is not None and fps <= 0:
            raise ValueError(f"fps must be positive or None, got {fps}")
        if not self.info.width or not self.info.height:
            raise MediaError(f"{p}: the video stream reports no frame size", clip=p)
        self.fps, self.max_side, self.start, self.duration = fps, max_side, start, duration
        self.max_frames, self.timeout_s, self.buffer_frames = max_frames, timeout_s, max(1, int(buffer_frames))
        self.width, self.height = output_size(self.info.width, self.info.height, max_side)

    @property
    def expected_frames(self) -> int | None:
        """About how many frames the stream yields (for progress bars; None when unknown)."""
        length = self.info.video_duration or self.info.duration
        rate = self.fps or self.info.fps
        if not length or not rate:
            return self.max_frames
        if self.start:
            length = max(0.0, length - self.start)
        if self.duration is not None:
            length = min(length, self.duration)
        n = max(1, int(round(length * rate)))
        return min(n, self.max_frames) if self.max_frames else n

    def _command(self, fps: float | None, max_frames: int | None) -> list[str]:
        filters = [f"fps={fps:g}"] if fps is not None else []
        filters += [f"scale={self.width}:{self.height}:flags=area", "showinfo"]  # showinfo logs each pts_time
        before, after = _segment_args(self.start, self.duration)
        frames_arg = ["-frames:v", str(int(max_frames))] if max_frames else []
        return [self.ffmpeg, "-nostdin", "-hide_banner", "-nostats", "-loglevel", "info", *before, "-i",
                str(self.path), *after, "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", ",".join(filters),
                *frames_arg, "-f", "rawvideo", "-pix_fmt", "rgb24", "-"]

    def __iter__(self) -> Iterator[tuple[np.ndarray, float]]:
        n = 0
        for n, item in enumerate(self._decode(self.fps, self.max_frames), start=1):
            yield item
        if n == 0 and self.fps is not None:
            # a clip shorter than the sampler's first tick (e.g. 0.2 s at 2 fps) has frames all the same:
            # keep its first one instead of reporting an empty video
            for n, item in enumerate(self._decode(None, 1), start=1):
                yield item
        if n == 0:
            raise MediaError(f"the video stream of {self.path} decoded to zero frames (empty or corrupt video)",
                             clip=self.path)

    def _decode(self, fps: float | None, max_frames: int | None) -> Iterator[tuple[np.ndarray, float]]:
        p, w, h = self.path, self.width, self.height
        frame_bytes = w * h * 3
        proc = subprocess.Popen(self._command(fps, max_frames), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        times: list[float] = []  # pts_time of each frame, from showinfo
        other_lines: list[str] = []  # the last few lines that are not showinfo (for error messages)
        stderr_done = threading.Event()
        frames: queue.Queue = queue.Queue(maxsize=self.buffer_frames)
        stop = threading.Event()

        def read_stderr():
            for raw in proc.stderr:
                line = raw.decode("utf-8", errors="replace")
                m = _PTS_RE.search(line)
                if m:
                    times.append(float(m.group(3)))
                elif "showinfo" not in line:
                    other_lines.append(line.rstrip())
                    del other_lines[:-20]
            stderr_done.set()

        def read_stdout():
            try:
                while not stop.is_set():
                    buf = proc.stdout.read(frame_bytes)
                    if len(buf) < frame_bytes:
                        break  # end of stream (a partial last frame is dropped, as before)
                    frames.put(np.frombuffer(buf, dtype=np.uint8).reshape(h, w, 3))
            finally:
                frames.put(None)

        threading.Thread(target=read_stderr, name="msa-ffmpeg-stderr", daemon=True).start()
        threading.Thread(target=read_stdout, name="msa-ffmpeg-frames", daemon=True).start()
        deadline = time.monotonic() + self.timeout_s
        rate = fps or self.info.fps or 25.0
        n = 0
        finished = False
        try:
            while True:
                try:
                    frame = frames.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    raise MediaError(f"ffmpeg timed out after {self.timeout_s:.0f} s decoding frames of {p}",
                                     clip=p) from None
                if frame is None:
                    break
                # showinfo logs a frame before ffmpeg writes it; wait briefly for a late log line
                while len(times) <= n and not stderr_done.wait(0.005):
                    pass
                t = times[n] if len(times) > n else n / rate  # no showinfo line: the nominal grid
                n += 1
                yield frame, t + float(self.start or 0.0)
            finished = True
        finally:
            stop.set()
            if not finished:  # the caller stopped early, or a timeout: end ffmpeg without waiting
                proc.kill()
                while frames.get() is not None:  # unblock the reader thread
                    pass
            try:
                proc.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            stderr_done.wait(5.0)
        messages = "\n".join(other_lines)
        if proc.returncode != 0:
            raise MediaError(f"cannot decode the video of {p} (ffmpeg: {_last_lines(messages)})", clip=p)
        if n and not max_frames:
            _check_coverage(p, n / rate, self.info.video_duration or self.info.duration, self.start, self.duration,
                            "video stream", messages)


def iter_frames(path: str | os.PathLike, fps: float | None = 5.0, max_side: int | None = 640, **kwargs) -> FrameStream:
    """The sampled frames of ``path`` as a re-iterable stream of ``(frame, timestamp)`` (:class:`FrameStream`)."""
    return FrameStream(path, fps=fps, max_side=max_side, **kwargs)


def stack_frames(pairs: Iterable[tuple[np.ndarray, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Every ``(frame, timestamp)`` of a stream at once: ``(N x H x W x 3 uint8, N seconds float64)``."""
    collected = list(pairs)
    return np.stack([frame for frame, _ in collected]), np.asarray([t for _, t in collected], dtype=np.float64)


def extract_frames(
    path: str | os.PathLike,
    fps: float | None = 5.0,
    max_side: int | None = 640,
    start: float | None = None,
    duration: float | None = None,
    max_frames: int | None = None,
    timeout_s: float = 300.0,
    info: MediaInfo | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Decode video frames as RGB uint8, all at once (:class:`FrameStream` yields them one by one).

    ``fps`` samples the video at that rate (ffmpeg's ``fps`` filter: the frame nearest each tick);
    ``None`` keeps every frame. ``max_side`` downsizes so the longer side is at most that many pixels.
    Returns ``(frames, timestamps)``: an ``N x H x W x 3`` uint8 array and the presentation time of
    each frame in seconds (relative to the start of the file, plus ``start`` when cutting).
    ``max_frames`` caps the count; ``info`` from an earlier :func:`probe` saves an ffprobe run.
    A video shorter than one sampling interval that the ``fps`` filter samples no frame of gives its
    first frame.
    """
    return stack_frames(FrameStream(path, fps=fps, max_side=max_side, start=start, duration=duration,
                                    max_frames=max_frames, timeout_s=timeout_s, info=info))


# --------------------------------------------------------------------------------------------- clip

@dataclass
class DecodedClip:
    info: MediaInfo
    audio: np.ndarray | None  # mono float32 at ``sample_rate`` (None when not requested/absent)
    sample_rate: int
    frames: np.ndarray | None  # N x H x W x 3 uint8 RGB
    timestamps: np.ndarray | None  # N seconds


def decode_clip(path: str | os.PathLike, cfg: MediaConfig | None = None, need_audio: bool = True,
                need_video: bool = True) -> DecodedClip:
    """Probe once, then decode the audio and the sampled frames of ``path`` as ``cfg`` says.

    A stream that is ``need_*`` but absent raises :class:`MediaError`; one that is not needed is
    decoded when present and left as None when absent (so audio-only files pass with
    ``need_video=False``)."""
    cfg = cfg or MediaConfig()
    info = probe(path, timeout_s=cfg.timeout_s)
    audio = frames = times = None
    if need_audio or info.has_audio:
        audio = extract_audio(path, sr=cfg.sample_rate, timeout_s=cfg.timeout_s, info=info)
    if need_video or info.has_video:
        frames, times = extract_frames(path, fps=cfg.fps, max_side=cfg.max_side, max_frames=cfg.max_frames,
                                       timeout_s=cfg.timeout_s, info=info)
    return DecodedClip(info=info, audio=audio, sample_rate=cfg.sample_rate, frames=frames, timestamps=times)
