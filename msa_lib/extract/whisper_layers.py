"""Whisper-encoder states of *every* encoder block in one pass, cached per clip.

Choosing the encoder layer by validation needs the states of all layers; running the pipeline's
:class:`~msa_lib.extract.whisper_features.WhisperEncoderFeatures` once per layer would cost one encoder pass per
layer. :class:`LayerwiseWhisper` reuses that class (same weights, windows, log-mel input and 10-Hz
average pooling) but keeps the output of each block, so representation ``k`` (0-based block) is
what ``WhisperEncoderConfig(layer=k)`` gives and the last one (``n_blocks``, after the final layer
norm) is what ``layer=None`` gives.

:func:`extract_layerwise` decodes each recording with ffmpeg (as the pipeline does), caches every
finished clip under ``cache_dir()/whisper_layers/<content hash>-<settings hash>.npz`` (float16
frames, written atomically) together with the seconds it took, so a rerun is instant and still
reports the original extraction time.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from msa_lib.extract.whisper_features import WHISPER_WINDOW_SECONDS, WhisperEncoderConfig, WhisperEncoderFeatures
from msa_lib.core.paths import cache_dir, project_path
from msa_lib.core.utils import get_logger

log = get_logger("decision.whisper_layers")

CACHE_VERSION = 1  # bump when the cached content changes


@dataclass
class LayerwiseWhisperConfig:
    """``window_seconds`` 30 is Whisper's own input size (see ``WhisperEncoderConfig``); shorter is
    faster on short clips but the states drift from what the model was trained to produce."""

    model: str = "base"
    frame_rate_hz: float = 10.0
    window_seconds: float = WHISPER_WINDOW_SECONDS
    batch_size: int = 8
    device: str = "cpu"
    num_threads: int = 0  # 0 = leave torch's setting alone
    use_cache: bool = True
    cache_folder: str | None = None  # default: cache_dir()/whisper_layers

    def encoder_config(self) -> WhisperEncoderConfig:
        return WhisperEncoderConfig(model=self.model, frame_rate_hz=self.frame_rate_hz, layer=None,
                                    window_seconds=self.window_seconds, batch_size=self.batch_size,
                                    device=self.device, num_threads=self.num_threads)

    def settings_hash(self) -> str:
        d = {k: v for k, v in asdict(self).items() if k in ("model", "frame_rate_hz", "window_seconds")}
        d["version"] = CACHE_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def cache_path(self) -> Path:
        p = project_path(self.cache_folder) if self.cache_folder else cache_dir() / "whisper_layers"
        p.mkdir(parents=True, exist_ok=True)
        return p


class LayerwiseWhisper(WhisperEncoderFeatures):
    """``(n_blocks + 1) x T x D`` states per clip: every block's output, then the final-norm output."""

    @property
    def n_representations(self) -> int:
        return len(self.model.encoder.blocks) + 1

    def _encode_layers(self, chunks: list[np.ndarray]) -> np.ndarray:
        """``(B, n_blocks + 1, n_ctx, D)``: AudioEncoder.forward written out (as in ``_encode``),
        keeping every block's output."""
        import torch
        import torch.nn.functional as F
        import whisper

        model = self.model
        enc = model.encoder
        win = int(round(self.config.window_seconds * 16000))
        mels = torch.stack([
            whisper.log_mel_spectrogram(whisper.pad_or_trim(c, win), n_mels=model.dims.n_mels) for c in chunks
        ]).to(model.device)
        outs = []
        with torch.no_grad():
            x = F.gelu(enc.conv1(mels))
            x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
            x = (x + enc.positional_embedding[: x.shape[1]]).to(x.dtype)
            for block in enc.blocks:
                x = block(x)
                outs.append(x.float().cpu().numpy())
            outs.append(enc.ln_post(x).float().cpu().numpy())
        return np.stack(outs, axis=1)

    def extract_layers_batch(self, audios: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Per clip a ``(n_blocks + 1, T, D)`` float32 array of 10-Hz (``frame_rate_hz``) frames."""
        jobs = [(i, chunk, n) for i, a in enumerate(audios) for chunk, n in self._windows(a)]
        per_clip: list[list[np.ndarray]] = [[] for _ in audios]
        bs = self.config.batch_size
        for start in range(0, len(jobs), bs):
            batch = jobs[start: start + bs]
            states = self._encode_layers([chunk for _, chunk, _ in batch])
            for (clip, _, n_real), s in zip(batch, states):
                per_clip[clip].append(s[:, :n_real])
        out = []
        for parts in per_clip:
            full = np.concatenate(parts, axis=1)
            out.append(np.stack([self._pool(layer) for layer in full]).astype(np.float32))
        return out


def _file_key(path: str, settings: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return f"{h.hexdigest()[:24]}-{settings}"


def _save_npz(path: Path, **arrays) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written entry
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_npz(path: Path) -> tuple[np.ndarray, float] | None:
    try:
        with np.load(path) as z:
            return z["frames"], float(z["seconds"])
    except (OSError, KeyError, ValueError, EOFError):
        return None  # a damaged entry is recomputed


def extract_layerwise(paths: Sequence[str | os.PathLike], config: LayerwiseWhisperConfig | None = None,
                      progress: bool = True) -> tuple[list[np.ndarray], np.ndarray]:
    """All-layer Whisper frames of every recording: ``(list of (L+1, T, D) float32, seconds per clip)``.

    ``seconds`` is the decode + encode time of each clip when it was extracted (cached clips report
    the time of their original extraction). Raises :class:`~msa_lib.extract.errors.MediaError` for a
    recording that cannot be decoded (it names the file).
    """
    from tqdm.auto import tqdm

    from msa_lib.extract.media import extract_audio

    cfg = config or LayerwiseWhisperConfig()
    folder, settings = cfg.cache_path(), cfg.settings_hash()
    frames: list[np.ndarray | None] = [None] * len(paths)
    seconds = np.zeros(len(paths))
    todo = []
    for i, p in enumerate(paths):
        key = _file_key(str(p), settings)
        hit = _load_npz(folder / f"{key}.npz") if cfg.use_cache else None
        if hit is None:
            todo.append((i, key))
        else:
            frames[i], seconds[i] = hit[0].astype(np.float32), hit[1]
    if len(paths) - len(todo):
        log.info("%d of %d clips reused from %s", len(paths) - len(todo), len(paths), folder)
    if todo:
        enc = LayerwiseWhisper(cfg.encoder_config())
        enc.model  # load before timing: model loading is a one-off, not a per-clip cost
        bar = tqdm(total=len(todo), desc="whisper layers", unit="clip", disable=not progress)
        for start in range(0, len(todo), cfg.batch_size):
            group = todo[start: start + cfg.batch_size]
            t0 = time.perf_counter()
            audios = [extract_audio(paths[i], sr=16000) for i, _ in group]
            out = enc.extract_layers_batch(audios)
            per_clip = (time.perf_counter() - t0) / len(group)
            for (i, key), f in zip(group, out):
                frames[i], seconds[i] = f, per_clip
                if cfg.use_cache:
                    _save_npz(folder / f"{key}.npz", frames=f.astype(np.float16), seconds=np.float64(per_clip))
            bar.update(len(group))
        bar.close()
    return [f for f in frames], seconds


POOLINGS = ("mean", "mean_std", "mean_std_max")


def pool_frames(frames: np.ndarray, pooling: str = "mean") -> np.ndarray:
    """Clip vector from ``T x D`` frames: ``mean``, ``mean_std`` (2D) or ``mean_std_max`` (3D)."""
    frames = np.asarray(frames, dtype=np.float32)
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    parts = [frames.mean(axis=0)]
    if pooling in ("mean_std", "mean_std_max"):
        parts.append(frames.std(axis=0))
    if pooling == "mean_std_max":
        parts.append(frames.max(axis=0))
    return np.concatenate(parts)


def layer_matrix(layer_frames: Sequence[np.ndarray], layer: int, pooling: str = "mean") -> np.ndarray:
    """``N x D'`` clip vectors of representation ``layer`` (``-1`` = final-norm output)."""
    return np.stack([pool_frames(f[layer], pooling) for f in layer_frames])


def n_frames_expected(duration_s: float, frame_rate_hz: float = 10.0) -> int:
    return max(1, math.ceil(duration_s * frame_rate_hz - 1e-9))
