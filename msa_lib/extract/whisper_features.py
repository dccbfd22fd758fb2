"""Whisper-encoder states as a pretrained audio representation (the ``whisper`` audio feature).

:class:`WhisperEncoderFeatures` gives frame-level encoder states of Whisper base (``T x 512``, float32),
average-pooled from the encoder's 50 Hz to ``frame_rate_hz``; :class:`WhisperEncoderConfig` chooses
the layer, the input window and the rate. The weights are openai-whisper's, resolved and shared by
:mod:`msa_lib.extract.whisper_models` (offline: the bundled base, converted once).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np

from msa_lib.extract.asr import SAMPLE_RATE, AudioInput, load_audio_16k
from msa_lib.extract.errors import ASRConfigError
from msa_lib.extract.waveform import writable
from msa_lib.extract.whisper_models import load_openai_whisper, set_torch_threads

WHISPER_WINDOW_SECONDS = 30.0
ENCODER_FRAME_RATE_HZ = 50.0  # mel hop 10 ms, then the encoder's stride-2 conv: one state per 20 ms


@dataclass
class WhisperEncoderConfig:
    """Settings for :class:`WhisperEncoderFeatures`.

    ``frame_rate_hz``: average-pool the 50 Hz encoder states to this rate (``None`` or 50 keeps them).
    ``layer``: ``None`` = the encoder output (after its final layer norm, what the decoder sees);
    ``k`` = the output of block ``k`` (0-based, before any final norm); middle layers often carry
    more paralinguistic (emotion) information. ``window_seconds``: 30 is Whisper's own input size
    (pad/trim to 30 s); a shorter window runs the encoder on fewer positions (much faster for short
    clips) but gives representations the model was not trained to produce — keep 30 unless speed
    matters more than fidelity. ``batch_size``: windows per encoder call.
    """

    model: str = "base"
    frame_rate_hz: float | None = 10.0
    layer: int | None = None
    window_seconds: float = WHISPER_WINDOW_SECONDS
    batch_size: int = 8
    device: str = "auto"
    num_threads: int = 0

    def __post_init__(self) -> None:
        if self.frame_rate_hz is not None and not (0 < self.frame_rate_hz <= ENCODER_FRAME_RATE_HZ):
            raise ASRConfigError(f"frame_rate_hz={self.frame_rate_hz}: expected 0 < rate <= 50 or None")
        if not (0 < self.window_seconds <= WHISPER_WINDOW_SECONDS):
            raise ASRConfigError(f"window_seconds={self.window_seconds}: expected 0 < window <= 30")
        if self.batch_size < 1:
            raise ASRConfigError("batch_size must be >= 1")


class WhisperEncoderFeatures:
    """Frame-level Whisper encoder states (``T x 512`` float32 for base) as a pretrained audio representation.

    Each clip is cut into ``window_seconds`` windows, each padded to the window (30 s by default, as
    Whisper requires), encoded, and only the states covering real audio are kept (50 per second),
    then average-pooled to ``frame_rate_hz``. ``T = ceil(duration * frame_rate_hz)``.

    >>> enc = WhisperEncoderFeatures()
    >>> frames = enc.extract("clip.wav")            # (T, 512)
    >>> frames_list = enc.extract_batch(list_of_paths_or_arrays)
    >>> X = enc.utterance_embeddings(list_of_paths)  # (N, 512) mean over frames
    """

    def __init__(self, config: WhisperEncoderConfig | None = None, **overrides) -> None:
        base = config or WhisperEncoderConfig()
        self.config = WhisperEncoderConfig(**{**asdict(base), **overrides}) if overrides else base
        self._model = None

    @property
    def model(self):
        if self._model is None:
            set_torch_threads(self.config.num_threads)
            self._model = load_openai_whisper(self.config.model, self.config.device)
            n_layers = len(self._model.encoder.blocks)
            if self.config.layer is not None and not (-n_layers <= self.config.layer < n_layers):
                raise ASRConfigError(f"layer={self.config.layer}: the encoder has {n_layers} blocks")
        return self._model

    @property
    def dim(self) -> int:
        return int(self.model.dims.n_audio_state)

    @property
    def feature_names(self) -> list[str]:
        return [f"whisper_enc_{i:03d}" for i in range(self.dim)]

    @property
    def frame_rate_hz(self) -> float:
        return float(self.config.frame_rate_hz or ENCODER_FRAME_RATE_HZ)

    # -- internals --------------------------------------------------------------------------
    def _windows(self, samples: np.ndarray) -> list[tuple[np.ndarray, int]]:
        """(window audio, number of real encoder frames in it) for one clip."""
        win = int(round(self.config.window_seconds * SAMPLE_RATE))
        hop_samples = SAMPLE_RATE / ENCODER_FRAME_RATE_HZ  # 320 samples per encoder state
        out = []
        for start in range(0, samples.size, win):
            chunk = writable(samples[start : start + win])
            out.append((chunk, max(1, math.ceil(chunk.size / hop_samples))))
        return out

    def _encode(self, chunks: list[np.ndarray]) -> np.ndarray:
        """Encoder states (B, n_ctx, D) for a batch of windows."""
        import torch
        import torch.nn.functional as F
        import whisper

        model = self.model
        enc = model.encoder
        win = int(round(self.config.window_seconds * SAMPLE_RATE))
        mels = torch.stack([
            whisper.log_mel_spectrogram(whisper.pad_or_trim(c, win), n_mels=model.dims.n_mels) for c in chunks
        ]).to(model.device)
        layer = self.config.layer
        stop = len(enc.blocks) if layer is None else (layer % len(enc.blocks)) + 1
        with torch.no_grad():
            # AudioEncoder.forward, written out so a shorter window and an intermediate layer work
            x = F.gelu(enc.conv1(mels))
            x = F.gelu(enc.conv2(x)).permute(0, 2, 1)
            x = (x + enc.positional_embedding[: x.shape[1]]).to(x.dtype)
            for block in enc.blocks[:stop]:
                x = block(x)
            if layer is None:
                x = enc.ln_post(x)
        return x.float().cpu().numpy()

    def _pool(self, frames: np.ndarray) -> np.ndarray:
        rate = self.config.frame_rate_hz
        if rate is None or rate >= ENCODER_FRAME_RATE_HZ:
            return frames
        step = ENCODER_FRAME_RATE_HZ / rate  # source frames per output frame (need not be an integer)
        n_out = max(1, math.ceil(frames.shape[0] / step - 1e-9))
        edges = np.minimum(np.round(np.arange(n_out + 1) * step).astype(int), frames.shape[0])
        edges[-1] = frames.shape[0]
        return np.stack([frames[a:max(b, a + 1)].mean(axis=0) for a, b in zip(edges[:-1], edges[1:])])

    # -- public API -------------------------------------------------------------------------
    def extract(self, audio: AudioInput) -> np.ndarray:
        """``T x D`` float32 frame sequence for one clip (any length)."""
        return self.extract_batch([audio], progress=False)[0]

    def extract_batch(self, audios: Sequence[AudioInput], progress: bool = True) -> list[np.ndarray]:
        """Frame sequences for many clips; windows of several clips share encoder calls."""
        from tqdm.auto import tqdm

        jobs: list[tuple[int, np.ndarray, int]] = []  # (clip index, window audio, real frames)
        for i, audio in enumerate(audios):
            jobs.extend((i, chunk, n) for chunk, n in self._windows(load_audio_16k(audio)))
        per_clip: list[list[np.ndarray]] = [[] for _ in audios]
        bs = self.config.batch_size
        for start in tqdm(range(0, len(jobs), bs), desc="whisper encoder", disable=not progress,
                          total=math.ceil(len(jobs) / bs)):
            batch = jobs[start : start + bs]
            states = self._encode([chunk for _, chunk, _ in batch])
            for (clip, _, n_real), s in zip(batch, states):
                per_clip[clip].append(s[:n_real])
        return [self._pool(np.concatenate(parts, axis=0)).astype(np.float32) for parts in per_clip]

    def utterance_embeddings(self, audios: Sequence[AudioInput], progress: bool = True) -> np.ndarray:
        """``N x D`` clip vectors: the mean of each clip's encoder frames."""
        return np.stack([f.mean(axis=0) for f in self.extract_batch(audios, progress=progress)])
