"""Frame-level acoustic (prosodic + spectral) features, and utterance-level functionals.

``extract_prosody(y, sr, cfg)`` returns a ``T x 43`` float32 matrix, one row per hop (10 ms by
default, frame ``t`` centred at ``t * hop``), and the names of its columns:

==========  ===================================================================================
group       columns
==========  ===================================================================================
mfcc        ``mfcc_1..13`` (c1..c13 of a 40-band log-mel spectrum; c0 is left out because
            ``rms_db`` carries the energy) and their deltas ``mfcc_delta_1..13``
pitch       ``log_f0``: natural log of F0 in Hz on voiced frames, **0 on unvoiced frames**
            (always read it together with ``voiced``)
voicing     ``voiced`` (0/1) and ``voicing_prob`` in [0, 1]
energy      ``rms_db``: frame RMS in dBFS (floor -100 dB)
zcr         ``zcr``: zero-crossing rate (crossings per sample)
spectral    ``spectral_centroid_khz``, ``spectral_bandwidth_khz``, ``spectral_rolloff_khz`` (85 %),
            ``spectral_flatness`` and ``spectral_contrast_1..7`` (dB, octave bands from 100 Hz)
hnr         ``hnr_db``: harmonic-to-noise ratio (Boersma 1993, autocorrelation method)
==========  ===================================================================================

Pitch and voicing come from a vectorised YIN (de Cheveigné & Kawahara 2002) written here so that the
same pass also gives YIN's aperiodicity d'(T0): ``voicing_prob = 1 - d'(T0)`` (clipped to [0, 1], 0 on
silent frames) and a frame is voiced when d'(T0) < ``voicing_threshold`` and it is not silent.
pyin would give smoother voicing but costs ~0.1 s per second of audio here (measured), against a few
ms for this YIN, so it is not the default.

HNR follows Boersma (1993): the mean-removed frame is Hann-windowed, its autocorrelation is divided
by the window's own autocorrelation, normalised to r(0) = 1, and the highest peak r_max in the pitch
lag range (refined by parabolic interpolation) gives ``HNR = 10 log10(r_max / (1 - r_max))``. For a
periodic signal plus white noise this is close to the signal-to-noise ratio in dB. It is clipped to
[``hnr_floor_db``, ``hnr_ceiling_db``] and set to the floor on silent frames.

Silence never yields NaN/inf: every log has a floor and every ratio a guarded denominator.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np

from msa_lib.extract.errors import AudioInputError
from msa_lib.extract.waveform import BLOCK_SAMPLES, all_finite, release_pages, segment

__all__ = [
    "AudioFeatureConfig",
    "FeatureBackendMissing",
    "FEATURE_GROUPS",
    "extract_prosody",
    "feature_names",
    "feature_groups",
    "frame_times",
    "harmonics_to_noise",
    "yin_pitch",
    "is_silent",
    "summarize",
    "extract_egemaps",
]

DB_FLOOR = -100.0
_EPS = 1e-10


class FeatureBackendMissing(RuntimeError):
    """An optional feature backend (openSMILE) is not installed."""


@dataclass
class AudioFeatureConfig:
    sr: int = 16000  # input is resampled to this rate
    hop_ms: float = 10.0
    win_ms: float = 25.0  # analysis window of the spectral features, MFCC, RMS and ZCR
    n_fft: int = 512
    n_mels: int = 40
    n_mfcc: int = 13  # c1..c13 (c0 dropped)
    mfcc_deltas: bool = True
    delta_width: int = 9
    fmin: float = 60.0  # pitch search range (Hz); also the HNR lag range
    fmax: float = 600.0  # expressive female speech goes past 500 Hz (Praat's default ceiling is 600)
    pitch_frame_ms: float = 64.0  # YIN / HNR window: >= 3 periods of fmin
    pitch_method: str = "yin"  # "yin" (fast, default) or "pyin" (librosa; ~30x slower, HMM-smoothed)
    yin_threshold: float = 0.1  # YIN absolute threshold for picking the first trough
    voicing_threshold: float = 0.4  # voiced when YIN aperiodicity d'(T0) is below this
    silence_db: float = -55.0  # frames quieter than this (dBFS) count as silent ...
    dynamic_range_db: float = 50.0  # ... and so do frames this far below the loudest frame
    contrast_fmin: float = 100.0
    contrast_bands: int = 6  # -> 7 contrast values
    rolloff_percent: float = 0.85
    hnr_floor_db: float = -20.0
    hnr_ceiling_db: float = 50.0
    chunk_frames: int = 2000  # frames processed at once (20 s): bounds memory for any clip length

    @property
    def hop_length(self) -> int:
        return max(1, int(round(self.sr * self.hop_ms / 1000.0)))

    @property
    def win_length(self) -> int:
        return min(self.n_fft, max(2, int(round(self.sr * self.win_ms / 1000.0))))

    @property
    def pitch_frame_length(self) -> int:
        return max(int(round(self.sr * self.pitch_frame_ms / 1000.0)), 2 * int(np.ceil(self.sr / self.fmin)) + 2)


# Column name prefix -> group (order matters: first match wins).
FEATURE_GROUPS: dict[str, tuple[str, ...]] = {
    "mfcc": ("mfcc_",),
    "pitch": ("log_f0",),
    "voicing": ("voiced", "voicing_prob"),
    "energy": ("rms_db",),
    "zcr": ("zcr",),
    "spectral": ("spectral_",),
    "hnr": ("hnr_",),
}


def feature_names(cfg: AudioFeatureConfig | None = None) -> list[str]:
    cfg = cfg or AudioFeatureConfig()
    names = [f"mfcc_{i}" for i in range(1, cfg.n_mfcc + 1)]
    if cfg.mfcc_deltas:
        names += [f"mfcc_delta_{i}" for i in range(1, cfg.n_mfcc + 1)]
    names += ["log_f0", "voiced", "voicing_prob", "rms_db", "zcr",
              "spectral_centroid_khz", "spectral_bandwidth_khz", "spectral_rolloff_khz", "spectral_flatness"]
    names += [f"spectral_contrast_{i}" for i in range(1, cfg.contrast_bands + 2)]
    names += ["hnr_db"]
    return names


def _base_name(name: str) -> str:
    """``mfcc_3__mean`` -> ``mfcc_3`` (functionals from :func:`summarize` keep their group)."""
    return name.split("__", 1)[0]


def feature_groups(names: list[str]) -> dict[str, list[int]]:
    """Column indices of each feature group (mfcc, pitch, voicing, energy, zcr, spectral, hnr).

    Works on frame-level names and on the ``name__functional`` names of :func:`summarize`. Columns
    that match no group go to ``"other"`` (only present when non-empty)."""
    groups: dict[str, list[int]] = {g: [] for g in FEATURE_GROUPS}
    other: list[int] = []
    for i, name in enumerate(names):
        base = _base_name(name)
        for group, prefixes in FEATURE_GROUPS.items():
            if any(base == p or (p.endswith("_") and base.startswith(p)) for p in prefixes):
                groups[group].append(i)
                break
        else:
            other.append(i)
    out = {g: idx for g, idx in groups.items() if idx}
    if other:
        out["other"] = other
    return out


def frame_times(n_frames: int, cfg: AudioFeatureConfig | None = None) -> np.ndarray:
    """Centre time (s) of each feature frame."""
    cfg = cfg or AudioFeatureConfig()
    return np.arange(n_frames) * cfg.hop_length / cfg.sr


# ------------------------------------------------------------------------------------------ helpers

def _as_mono_float(y, sr: int | None = None) -> np.ndarray:
    y = np.asarray(y)
    if y.size == 0:
        raise AudioInputError("empty waveform: expected at least one audio sample")
    if np.issubdtype(y.dtype, np.integer):
        y = y.astype(np.float32) / float(np.iinfo(y.dtype).max)
    elif not np.issubdtype(y.dtype, np.floating):
        raise AudioInputError(f"expected a numeric waveform, got dtype {y.dtype}")
    if y.ndim == 2:  # librosa layout is (channels, samples); accept (samples, channels) too
        y = y.mean(axis=1) if (y.shape[1] <= 8 < y.shape[0]) else y.mean(axis=0)
    elif y.ndim != 1:
        raise AudioInputError(f"expected a 1-D (or channels x samples) waveform, got shape {y.shape}")
    y = y.astype(np.float32, copy=False)
    if not all_finite(y):
        raise AudioInputError("waveform contains NaN or infinite samples")
    if sr is not None and sr <= 0:
        raise AudioInputError(f"sample rate must be positive, got {sr}")
    return y


def _centered_frames(y: np.ndarray, frame_length: int, hop: int, start: int = 0,
                     stop: int | None = None) -> np.ndarray:
    """Frames ``start..stop`` (default: all ``1 + len(y) // hop``) as a ``(n x frame_length)`` view,
    frame t centred at t*hop over zero-padded ``y`` (librosa's ``center=True`` framing, so all
    features line up). Only the samples of the requested frames are copied."""
    stop = 1 + len(y) // hop if stop is None else stop
    pad = frame_length // 2
    seg = segment(y, start * hop - pad, (stop - 1) * hop - pad + frame_length)
    return np.lib.stride_tricks.sliding_window_view(seg, frame_length)[::hop][: stop - start]


def _rms_db(frames: np.ndarray) -> np.ndarray:
    """RMS level (dBFS, floored at ``DB_FLOOR``) of each row of ``frames``."""
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return np.maximum(20 * np.log10(np.maximum(rms, _EPS)), DB_FLOOR)


def _silent_frames(rms_db: np.ndarray, cfg: AudioFeatureConfig) -> np.ndarray:
    peak = float(rms_db.max()) if rms_db.size else DB_FLOOR
    return (rms_db < cfg.silence_db) | (rms_db < peak - cfg.dynamic_range_db)


def is_silent(y, sr: int = 16000, threshold_db: float = -50.0, frame_ms: float = 25.0) -> bool:
    """True when no 25-ms frame of ``y`` reaches ``threshold_db`` dBFS RMS (an empty signal is silent)."""
    y = np.asarray(y, dtype=np.float32).reshape(-1) if np.asarray(y).size else np.zeros(0, np.float32)
    if y.size == 0:
        return True
    frame = max(2, int(round(sr * frame_ms / 1000)))
    hop = max(1, frame // 2)
    n_frames = 1 + len(y) // hop
    step = max(1, BLOCK_SAMPLES // hop)  # frames per block: memory bounded, stops at the first loud one
    for s in range(0, n_frames, step):
        frames = np.nan_to_num(_centered_frames(y, frame, hop, s, min(n_frames, s + step)))
        release_pages(y)
        if _rms_db(frames).max() >= threshold_db:
            return False
    return True


# ------------------------------------------------------------------------------- pitch, voicing, HNR

def _parabolic_peak(values: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sub-sample offset and value of the extremum at column ``idx`` of each row (3-point parabola);
    offsets are 0 at the edges, where there is no neighbour on one side."""
    n = values.shape[1]
    rows = np.arange(values.shape[0])
    interior = (idx > 0) & (idx < n - 1)
    i = np.clip(idx, 1, max(1, n - 2))
    if n < 3:
        return np.zeros(len(idx)), values[rows, idx]
    a, b, c = values[rows, i - 1], values[rows, i], values[rows, i + 1]
    denom = a - 2 * b + c
    ok = interior & (np.abs(denom) > 1e-12)
    shift = np.clip(np.where(ok, 0.5 * (a - c) / np.where(ok, denom, 1.0), 0.0), -1.0, 1.0)
    peak = np.where(ok, b - 0.25 * (a - c) * shift, values[rows, idx])
    return shift, peak


def _autocorr(frames: np.ndarray, max_lag: int) -> np.ndarray:
    """Linear (not circular) autocorrelation of each row for lags 0..max_lag, via float32 FFT."""
    from scipy import fft as sfft

    n = frames.shape[1]
    nfft = sfft.next_fast_len(n + max_lag + 1, real=True)
    spec = sfft.rfft(np.asarray(frames, dtype=np.float32), nfft, axis=1)
    return sfft.irfft(spec.real ** 2 + spec.imag ** 2, nfft, axis=1)[:, : max_lag + 1].astype(np.float64)


def yin_pitch(frames: np.ndarray, sr: int, fmin: float, fmax: float, threshold: float = 0.1,
              tolerance: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """YIN on rows of ``frames``: ``(f0 Hz, aperiodicity d'(T0) in [0, inf))`` per frame.

    The difference function uses the first half of each frame as the integration window, so the
    frame must be at least twice the longest period. Float32 FFTs (scipy) keep it fast; the
    precision is ample for a threshold of ~0.1."""
    from scipy import fft as sfft

    frames = np.asarray(frames, dtype=np.float32)
    n = frames.shape[1]
    w = n // 2
    min_p = max(2, int(np.floor(sr / fmax)))
    max_p = min(int(np.ceil(sr / fmin)), n - w - 1)
    # d(tau) = sum_{j<w} (x_j - x_{j+tau})^2 = E[0:w] + E[tau:tau+w] - 2 * xcorr(tau)
    energy_cum = np.zeros((frames.shape[0], n + 1), dtype=np.float64)
    np.cumsum(np.square(frames, dtype=np.float64), axis=1, out=energy_cum[:, 1:])
    e0 = energy_cum[:, w][:, None]
    taus = np.arange(0, max_p + 2)
    e_tau = energy_cum[:, taus + w] - energy_cum[:, taus]
    nfft = sfft.next_fast_len(n + w, real=True)
    head_spec = sfft.rfft(frames[:, :w], nfft, axis=1)
    full_spec = sfft.rfft(frames, nfft, axis=1)
    xcorr = sfft.irfft(np.conj(head_spec) * full_spec, nfft, axis=1)[:, : max_p + 2]
    diff = np.maximum(e0 + e_tau - 2 * xcorr, 0.0)
    diff[:, 0] = 0.0
    cum = np.cumsum(diff[:, 1:], axis=1) / np.arange(1, diff.shape[1])
    cmnd = np.ones_like(diff)
    cmnd[:, 1:] = diff[:, 1:] / np.maximum(cum, 1e-20)
    # Silent frames have diff == 0 everywhere: make them fully aperiodic rather than 0/0.
    flat = e0[:, 0] <= 1e-12
    cmnd[flat] = 1.0

    search = cmnd[:, min_p: max_p + 1]
    # a trough qualifies below the absolute threshold, or (tolerance > 0) within ``tolerance`` of the
    # deepest trough: the period's dip is then preferred to its (similar-depth) multiples
    below = search < np.maximum(threshold, search.min(axis=1, keepdims=True) + tolerance)
    # first local minimum below the threshold (YIN's "absolute threshold" step), else the global minimum
    is_trough = np.zeros_like(below)
    is_trough[:, 1:-1] = (search[:, 1:-1] <= search[:, :-2]) & (search[:, 1:-1] <= search[:, 2:])
    candidates = below & is_trough
    first = np.argmax(candidates, axis=1)
    idx = np.where(candidates.any(axis=1), first, np.argmin(search, axis=1))
    shift, value = _parabolic_peak(search, idx)
    period = min_p + idx + shift
    f0 = sr / np.maximum(period, 1.0)
    aperiodicity = np.clip(np.where(flat, 1.0, value), 0.0, None)
    return f0, aperiodicity


def harmonics_to_noise(frames: np.ndarray, sr: int, fmin: float, fmax: float,
                       floor_db: float = -20.0, ceiling_db: float = 50.0) -> tuple[np.ndarray, np.ndarray]:
    """Boersma (1993) HNR per row of ``frames``: ``(hnr_db, r_max)``.

    r(tau) = [r_xw(tau) / r_xw(0)] / [r_w(tau) / r_w(0)] for the mean-removed, Hann-windowed frame;
    r_max is its highest (parabola-refined) peak for lags in [sr/fmax, sr/fmin], capped at half the
    window where the window correction stays reliable."""
    frames = np.asarray(frames, dtype=np.float32)
    n = frames.shape[1]
    window = np.hanning(n + 2)[1:-1].astype(np.float32)  # no zero end-points
    x = (frames - frames.mean(axis=1, keepdims=True)) * window
    min_lag = max(2, int(np.floor(sr / fmax)))
    max_lag = min(int(np.ceil(sr / fmin)), n // 2)
    r_x = _autocorr(x, max_lag + 1)
    r_w = _autocorr(window[None, :], max_lag + 1)[0]
    energy = r_x[:, :1]
    r = (r_x / np.maximum(energy, 1e-20)) / (r_w / r_w[0])
    energy_ok = energy[:, 0] > 1e-12 * n
    search = r[:, min_lag: max_lag + 1]
    idx = np.argmax(search, axis=1)
    _, r_max = _parabolic_peak(search, idx)
    r_max = np.where(energy_ok, r_max, 0.0)
    lo = 10 ** (floor_db / 10) / (1 + 10 ** (floor_db / 10))  # r at which HNR hits the floor/ceiling
    hi = 10 ** (ceiling_db / 10) / (1 + 10 ** (ceiling_db / 10))
    rc = np.clip(r_max, lo, hi)
    return 10 * np.log10(rc / (1 - rc)), r_max


# ------------------------------------------------------------------------------------- main entry

def _delta(x: np.ndarray, width: int) -> np.ndarray:
    """Regression deltas along time (axis 1), tolerant of very short sequences."""
    import librosa

    n = x.shape[1]
    if n < 3:
        return np.zeros_like(x)
    width = min(width, n if n % 2 == 1 else n - 1)
    return librosa.feature.delta(x, width=max(3, width), axis=1, mode="interp")


def extract_prosody(y, sr: int, cfg: AudioFeatureConfig | None = None) -> tuple[np.ndarray, list[str]]:
    """Frame-level features of a waveform: ``(T x D float32, names)``; see the module docstring.

    ``y`` may be any float or int mono waveform (2-D input is averaged to mono) at any rate; it is
    resampled to ``cfg.sr``. ``T = 1 + len(y_resampled) // hop``; row ``t`` is centred at
    ``t * hop_ms``. Raises :class:`AudioInputError` for empty or non-finite input."""
    import librosa

    cfg = cfg or AudioFeatureConfig()
    y = _as_mono_float(y, sr)
    if sr != cfg.sr:
        y = librosa.resample(y, orig_sr=sr, target_sr=cfg.sr, res_type="soxr_hq").astype(np.float32)
    sr = cfg.sr
    hop, win, n_fft = cfg.hop_length, cfg.win_length, cfg.n_fft
    n_frames = 1 + len(y) // hop

    # Every feature below is per frame except the deltas, the silence threshold (relative to the
    # loudest frame) and pyin's HMM, so the frame-level passes run in blocks of ``chunk_frames``,
    # each copying only its own samples: the working memory does not grow with the clip length and
    # the values equal one whole-clip pass (up to float32 rounding). librosa's ``center=True``
    # framing (zero padding) is reproduced by cutting each block out of the zero-padded signal.
    y_spec = y if len(y) >= n_fft else np.pad(y, (0, n_fft - len(y)))  # zeros = librosa's own padding
    if cfg.pitch_method not in ("yin", "pyin"):
        raise ValueError(f"pitch_method must be 'yin' or 'pyin', got {cfg.pitch_method!r}")
    mfcc = np.empty((cfg.n_mfcc, n_frames), dtype=np.float32)  # float32 like librosa's, so deltas agree
    centroid, bandwidth, rolloff, flatness = (np.empty(n_frames) for _ in range(4))  # Hz, Hz, Hz, ratio
    contrast = np.empty((cfg.contrast_bands + 1, n_frames))
    rms_db, zcr = np.empty(n_frames), np.empty(n_frames)
    f0, aper = np.zeros(n_frames), np.ones(n_frames)
    hnr = np.full(n_frames, cfg.hnr_floor_db)
    freqs = librosa.fft_frequencies(sr=sr, n_fft=n_fft)
    for s in range(0, n_frames, cfg.chunk_frames):
        e = min(n_frames, s + cfg.chunk_frames)
        block = slice(s, e)
        # spectral pass (one STFT shared by everything spectral)
        samples = segment(y_spec, s * hop - n_fft // 2, (e - 1) * hop + n_fft - n_fft // 2)
        mag = np.abs(librosa.stft(samples, n_fft=n_fft, hop_length=hop, win_length=win, window="hann",
                                  center=False))[:, : e - s]
        power = mag ** 2
        mel = librosa.feature.melspectrogram(S=power, sr=sr, n_mels=cfg.n_mels, fmin=0.0, fmax=sr / 2)
        log_mel = 10 * np.log10(np.maximum(mel, _EPS))
        mfcc[:, block] = librosa.feature.mfcc(S=log_mel, n_mfcc=cfg.n_mfcc + 1)[1:]
        mag_sum = mag.sum(axis=0)
        has_energy = mag_sum > _EPS
        weights = mag / np.where(has_energy, mag_sum, 1.0)
        block_centroid = (freqs[:, None] * weights).sum(axis=0)
        block_bandwidth = np.sqrt((((freqs[:, None] - block_centroid) ** 2) * weights).sum(axis=0))
        cum = np.cumsum(power, axis=0)
        rolloff_idx = np.argmax(cum >= cfg.rolloff_percent * cum[-1:], axis=0)
        rolloff[block] = np.where(has_energy, freqs[rolloff_idx], 0.0)
        centroid[block] = np.where(has_energy, block_centroid, 0.0)
        bandwidth[block] = np.where(has_energy, block_bandwidth, 0.0)
        block_flatness = librosa.feature.spectral_flatness(S=mag, power=2.0, amin=_EPS)[0]
        flatness[block] = np.where(has_energy, block_flatness, 1.0)  # silence is "flat"; librosa agrees
        contrast[:, block] = librosa.feature.spectral_contrast(S=mag, sr=sr, n_fft=n_fft, fmin=cfg.contrast_fmin,
                                                               n_bands=cfg.contrast_bands)
        # time-domain pass: RMS and ZCR on the short window
        frames = _centered_frames(y, win, hop, s, e)
        rms_db[block] = _rms_db(frames)
        signs = np.signbit(frames)
        zcr[block] = np.mean(signs[:, 1:] != signs[:, :-1], axis=1)
        # pitch / voicing / HNR pass on the long window
        chunk = _centered_frames(y, cfg.pitch_frame_length, hop, s, e)
        if cfg.pitch_method == "yin":
            f0[block], aper[block] = yin_pitch(chunk, sr, cfg.fmin, cfg.fmax, cfg.yin_threshold)
        hnr[block], _ = harmonics_to_noise(chunk, sr, cfg.fmin, cfg.fmax, cfg.hnr_floor_db, cfg.hnr_ceiling_db)
        release_pages(y)
    silent = _silent_frames(rms_db, cfg)
    in_range = (f0 >= cfg.fmin * 0.95) & (f0 <= cfg.fmax * 1.05)
    if cfg.pitch_method == "pyin":
        y_p = y if len(y) >= cfg.pitch_frame_length else np.pad(y, (0, cfg.pitch_frame_length - len(y)))
        f0_p, flag, prob = librosa.pyin(y_p, fmin=cfg.fmin, fmax=cfg.fmax, sr=sr, hop_length=hop,
                                        frame_length=cfg.pitch_frame_length, center=True, fill_na=0.0)
        f0, flag, prob = f0_p[:n_frames], flag[:n_frames], prob[:n_frames]
        voiced = flag & ~silent & (f0 > 0)
        voicing_prob = np.where(silent, 0.0, np.nan_to_num(prob))
    else:
        voiced = (aper < cfg.voicing_threshold) & ~silent & in_range
        voicing_prob = np.where(silent, 0.0, np.clip(1.0 - aper, 0.0, 1.0))
    log_f0 = np.where(voiced, np.log(np.maximum(f0, 1.0)), 0.0)
    hnr = np.where(silent, cfg.hnr_floor_db, hnr)

    cols = [mfcc]
    if cfg.mfcc_deltas:
        cols.append(_delta(mfcc, cfg.delta_width))
    cols += [log_f0, voiced, voicing_prob, rms_db, zcr, centroid / 1000, bandwidth / 1000, rolloff / 1000,
             flatness, contrast, hnr]
    names = feature_names(cfg)
    feats = np.empty((n_frames, len(names)), dtype=np.float32)  # filled column by column: no float64 copy
    at = 0
    for col in cols:
        col = col.reshape(1, -1) if col.ndim == 1 else col
        feats[:, at: at + col.shape[0]] = col[:, :n_frames].T
        at += col.shape[0]
    assert at == len(names), (at, len(names))
    # Belt and braces: a feature must never leak NaN/inf downstream.
    np.nan_to_num(feats, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return feats, names


# ----------------------------------------------------------------------------- utterance functionals

DEFAULT_FUNCTIONALS = ("mean", "std", "p10", "p50", "p90")
VOICED_ONLY = ("log_f0", "hnr_db")


def _functional(values: np.ndarray, func: str) -> np.ndarray:
    """Column-wise functional of a (n, D) array with NaNs ignored; columns with no data give 0."""
    if values.shape[0] == 0:
        return np.zeros(values.shape[1])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: handled below
        if func == "mean":
            out = np.nanmean(values, axis=0)
        elif func == "std":
            out = np.nanstd(values, axis=0)
        elif func == "min":
            out = np.nanmin(values, axis=0)
        elif func == "max":
            out = np.nanmax(values, axis=0)
        elif func == "range":
            out = np.nanmax(values, axis=0) - np.nanmin(values, axis=0)
        elif (m := re.fullmatch(r"p(\d{1,2})", func)):
            out = np.nanpercentile(values, float(m.group(1)), axis=0)
        elif func == "slope":  # least-squares slope per frame index
            t = np.arange(values.shape[0], dtype=np.float64)
            ok = np.isfinite(values)
            out = np.zeros(values.shape[1])
            for j in range(values.shape[1]):
                if ok[:, j].sum() >= 2:
                    out[j] = np.polyfit(t[ok[:, j]], values[ok[:, j], j], 1)[0]
        else:
            raise ValueError(f"unknown functional {func!r}; use mean, std, min, max, range, pNN or slope")
    return np.nan_to_num(np.asarray(out, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def summarize(
    seq: np.ndarray,
    names: list[str],
    mask: np.ndarray | None = None,
    functionals: tuple[str, ...] = DEFAULT_FUNCTIONALS,
    voiced_only: tuple[str, ...] = VOICED_ONLY,
    voicing_column: str = "voiced",
) -> tuple[np.ndarray, list[str]]:
    """Utterance-level vector of functionals over time: ``(vector D*len(functionals), names)``.

    Output names are ``f"{name}__{functional}"`` (grouped like the frame names by
    :func:`feature_groups`), ordered functional-major. ``mask`` (T bool) selects the frames to use,
    e.g. the face-present mask of visual features; NaNs are ignored. Columns listed in
    ``voiced_only`` are summarised over voiced frames only (as eGeMAPS does for F0 and HNR), when a
    ``voicing_column`` exists. A column with no usable frame gives 0."""
    seq = np.asarray(seq, dtype=np.float64)
    if seq.ndim != 2 or seq.shape[1] != len(names):
        raise ValueError(f"expected a T x {len(names)} sequence, got shape {seq.shape}")
    keep = np.ones(seq.shape[0], bool) if mask is None else np.asarray(mask, bool).reshape(-1)
    if keep.shape[0] != seq.shape[0]:
        raise ValueError(f"mask has {keep.shape[0]} entries for {seq.shape[0]} frames")
    data = seq[keep].copy()
    if voicing_column in names and voiced_only:
        voiced = data[:, names.index(voicing_column)] > 0.5
        for col in voiced_only:
            if col in names:
                data[~voiced, names.index(col)] = np.nan
    vec = np.concatenate([_functional(data, f) for f in functionals]).astype(np.float32)
    out_names = [f"{n}__{f}" for f in functionals for n in names]
    return vec, out_names


# ----------------------------------------------------------------------------------- openSMILE

def extract_egemaps(y, sr: int) -> tuple[np.ndarray, list[str]]:
    """eGeMAPSv02 functionals (88 values) with openSMILE, when the optional ``opensmile`` package is
    installed (its licence is research/non-commercial, so the project does not depend on it)."""
    try:
        import opensmile  # type: ignore[import-not-found]
    except ImportError as exc:
        raise FeatureBackendMissing(
            "extract_egemaps needs the optional 'opensmile' package (research/non-commercial licence), "
            "which is not installed; `pip install opensmile` to enable it, or use extract_prosody() + "
            "summarize() which need no extra package"
        ) from exc
    y = _as_mono_float(y, sr)
    smile = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                            feature_level=opensmile.FeatureLevel.Functionals)
    df = smile.process_signal(y, sr)
    return df.to_numpy(dtype=np.float32).reshape(-1), [str(c) for c in df.columns]
