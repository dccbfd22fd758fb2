"""Speech recognition with Whisper, and the 16 kHz audio loading it shares with the encoder features.

Two ASR backends share one interface (:class:`Transcriber`, :class:`ASRConfig`, :class:`ASRResult`):

* ``faster-whisper`` (CTranslate2, int8 on CPU by default) — the fast one;
* ``openai-whisper`` (PyTorch, float32 on CPU) — the reference implementation.

Where the weights come from and how a loaded model is shared: :mod:`msa_lib.extract.whisper_models`.
Whisper-encoder states as audio features: :mod:`msa_lib.extract.whisper_features`.

Behaviour worth knowing:

* Language is detected afresh for every clip (both backends), never carried over from the previous
  call on the same loaded model. When ``language`` is forced, no detection runs and
  ``ASRResult.language_probability`` is ``None`` (``language_detected`` is ``False``).
* ``ASRResult.language`` is the *spoken* language, also for ``task="translate"`` (whose text is
  English).
* faster-whisper: the language is detected from the same encoder pass that decoding starts with
  (faster-whisper 1.2 would run the encoder on the first 30-s window twice: ~1 s per clip on 2 cores).
* Chinese transcripts are normalised to simplified characters (OpenCC ``t2s``): Whisper base often
  writes traditional characters for Mandarin.
* Silence is a result, not an error: ``has_speech=False``, empty text, ``language=None`` unless it
  was forced, and ``no_speech_reason``. Decided by a peak-level gate (digital silence never reaches
  the model), a Silero VAD gate (``vad_gate``, on by default: noise, and clips with less than
  ``min_speech_s`` of voice, never reach the model either), then the reliability checks of
  :func:`reliable_segments`.
* No invented transcripts: decoding is deterministic (beam search at temperature 0, no sampling
  fallback), and decoded segments Whisper itself was unsure of (``avg_logprob``, ``no_speech_prob``,
  ``compression_ratio``) or that lie where the VAD heard no voice are dropped
  (``ASRResult.dropped_segments`` keeps them with the reason).
* Unsupported languages: ``transcribe(accept_languages=("zh", "en"))`` decodes only when the
  detector's most likely language is one of them with p >= 0.5 (:func:`decide_language`); otherwise
  nothing is decoded and ``language_rejection`` says why. A language is never forced onto speech in
  another one.
* Models are loaded once per process and shared (keyed by weights, device and precision): see
  :mod:`msa_lib.extract.whisper_models`.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence, Union

import numpy as np

from msa_lib.core.cache import shared
from msa_lib.core.utils import get_logger, normalize_language
from msa_lib.extract.errors import ASRConfigError, AudioInputError
from msa_lib.extract.waveform import all_finite, peak_abs, release_pages, segment, writable
from msa_lib.extract.whisper_models import load_faster_whisper, load_openai_whisper, set_torch_threads

log = get_logger("extract.asr")

SAMPLE_RATE = 16_000

AudioInput = Union[str, os.PathLike, np.ndarray]


# ---------------------------------------------------------------------------------------- audio
def load_audio_16k(audio: AudioInput, *, name: str | None = None) -> np.ndarray:
    """Return mono float32 samples at 16 kHz from a sound file path or a 1-D array.

    Arrays are taken to be 16 kHz already (integer PCM is scaled to [-1, 1]); files are decoded and
    resampled with librosa. Video files should go through the media module first (audio track ->
    16 kHz wav).
    """
    label = name or (str(audio) if not isinstance(audio, np.ndarray) else "<array>")
    if isinstance(audio, (str, os.PathLike)):
        path = Path(audio).expanduser()
        if not path.is_file():
            raise AudioInputError(f"{path}: audio file not found")
        try:
            import librosa

            with warnings.catch_warnings():
                # librosa warns on its soundfile -> audioread fallback; failures get our own message
                warnings.simplefilter("ignore", (UserWarning, FutureWarning))
                samples, _ = librosa.load(str(path), sr=SAMPLE_RATE, mono=True)
        except Exception as exc:  # decoder errors come in many types; one clear message instead
            raise AudioInputError(
                f"{path}: could not decode audio ({type(exc).__name__}: {exc}); expected a sound file "
                "(wav/flac/ogg/opus/mp3) — extract the audio track of a video to 16 kHz wav first"
            ) from None
    elif isinstance(audio, np.ndarray):
        samples = audio
        if samples.ndim == 2 and 1 in samples.shape:
            samples = samples.reshape(-1)
        if samples.ndim != 1:
            raise AudioInputError(
                f"{label}: expected a 1-D mono array of 16 kHz samples, got shape {audio.shape}"
            )
        if samples.dtype.kind in "iu":
            samples = samples.astype(np.float32) / float(np.iinfo(samples.dtype).max)
        elif samples.dtype.kind != "f":
            raise AudioInputError(f"{label}: expected float or integer PCM samples, got {samples.dtype}")
    else:
        raise AudioInputError(f"{label}: expected a file path or a numpy array, got {type(audio).__name__}")
    samples = np.ascontiguousarray(samples, dtype=np.float32)
    if samples.size == 0:
        raise AudioInputError(f"{label}: audio is empty")
    if not all_finite(samples):
        raise AudioInputError(f"{label}: audio contains NaN or infinite samples")
    return samples


def peak_dbfs(samples: np.ndarray) -> float:
    peak = peak_abs(samples)
    return -math.inf if peak <= 0 else 20.0 * math.log10(peak)


# --------------------------------------------------------------------------------- ASR config
BACKENDS = ("faster-whisper", "openai-whisper")
TASKS = ("transcribe", "translate")


def whisper_language(language: str | None) -> str | None:
    """A language option for Whisper: ``auto``/``detect``/empty/None -> None (detect); any spelling
    :func:`~msa_lib.core.utils.normalize_language` knows (``zh-CN``, ``Mandarin``) -> its code, which
    must be a Whisper language code (else :class:`ASRConfigError`)."""
    if language is None or str(language).strip().lower() in ("", "auto", "detect"):
        return None
    code = normalize_language(str(language), ASRConfigError)
    from faster_whisper.tokenizer import _LANGUAGE_CODES

    if code not in _LANGUAGE_CODES:
        raise ASRConfigError(f"language {language!r} is not a Whisper language code (e.g. 'zh', 'en', 'auto')")
    return code


@dataclass
class ASRConfig:
    """Settings for :class:`Transcriber`.

    ``compute_type`` applies to faster-whisper only (openai-whisper runs float32 on CPU, float16 on
    CUDA). ``num_threads`` > 0 sets CTranslate2's threads, and for openai-whisper torch's
    process-wide thread count; 0 keeps torch's setting and gives CTranslate2 min(4, cores). ``vad_gate`` runs Silero VAD (bundled
    with faster-whisper, ~10 ms per clip) once to decide "no speech at all" before decoding: on noise
    Whisper otherwise spends many seconds in its temperature fallback only to return nothing (or a
    hallucination). ``vad_filter`` (faster-whisper only) also drops the non-speech stretches before
    decoding; with openai-whisper it acts like ``vad_gate``. ``silence_dbfs``: a clip whose peak is
    below this level is reported as silent without running anything.

    No invented transcripts (see :func:`reliable_segments`): ``temperature`` is ``(0.0,)``, so decoding
    is beam search only, without Whisper's sampling fallback: the same audio and settings give the
    same transcript (a fallback tuple such as ``(0.0, 0.2, ..., 1.0)`` is sampled with a fixed seed,
    so it is repeatable too). Then every decoded segment must pass Whisper's own confidence signals
    (``avg_logprob >= log_prob_threshold``, not ``no_speech_prob > no_speech_threshold`` at a low
    log-probability, ``compression_ratio <= compression_ratio_threshold``) and overlap the speech the
    VAD found; a clip with less than ``min_speech_s`` of voice (VAD) gets no transcript at all.
    ``drop_unreliable_segments=False`` keeps what Whisper decoded (its stock behaviour).
    """

    backend: str = "faster-whisper"
    model: str = "base"
    language: str | None = "auto"
    task: str = "transcribe"
    compute_type: str = "int8"
    beam_size: int = 5
    best_of: int = 5
    vad_filter: bool = False
    vad_gate: bool = True
    device: str = "auto"
    num_threads: int = 0
    condition_on_previous_text: bool = True
    no_speech_threshold: float = 0.6
    log_prob_threshold: float = -1.0
    initial_prompt: str | None = None
    silence_dbfs: float = -60.0
    simplify_chinese: bool = True
    temperature: tuple[float, ...] = (0.0,)
    compression_ratio_threshold: float | None = 2.4
    drop_unreliable_segments: bool = True
    min_speech_s: float = 0.25
    # faster-whisper holds the log-mel of all the audio it is given (about 50 MB per minute at its
    # peak), so longer audio is decoded in windows of about this length, cut in a pause the VAD found
    # (see decode_windows); the language is detected once, on the first window. 0: one pass.
    decode_window_s: float = 120.0

    def __post_init__(self) -> None:
        self.temperature = tuple(float(t) for t in (
            self.temperature if isinstance(self.temperature, (list, tuple)) else (self.temperature,)))
        if not self.temperature or any(t < 0 or not math.isfinite(t) for t in self.temperature):
            raise ASRConfigError(f"temperature={self.temperature}: expected temperatures >= 0, e.g. (0.0,)")
        if self.min_speech_s < 0:
            raise ASRConfigError(f"min_speech_s={self.min_speech_s}: expected >= 0 seconds")
        if self.backend not in BACKENDS:
            raise ASRConfigError(f"backend {self.backend!r}: expected one of {BACKENDS}")
        if self.task not in TASKS:
            raise ASRConfigError(f"task {self.task!r}: expected one of {TASKS}")
        if self.beam_size < 1 or self.best_of < 1:
            raise ASRConfigError("beam_size and best_of must be >= 1")
        if not (self.decode_window_s == 0 or self.decode_window_s >= 30):  # Whisper's own window is 30 s
            raise ASRConfigError(f"decode_window_s={self.decode_window_s}: expected 0 (one pass) or >= 30 s")
        self.language = whisper_language(self.language) or "auto"


@dataclass
class ASRResult:
    """One clip's transcript. ``segments`` are ``(start_s, end_s, text)``.

    ``language`` is the spoken language (detected, or the forced one); ``language_probability`` is
    the detector's probability, ``None`` when the language was forced or nothing was detected.
    ``top_languages`` holds the detector's five most likely languages.

    ``language_supported`` is False when the caller restricted the languages
    (``transcribe(accept_languages=...)``) and the detector found another one, or none with enough
    confidence: then nothing was decoded (``text`` is empty, ``has_speech`` True) and
    ``language_rejection`` says why. ``no_speech_reason`` says why ``has_speech`` is False.
    ``dropped_segments`` are the decoded ``(start_s, end_s, text, reason)`` that failed the
    reliability checks (:func:`reliable_segments`); ``speech_s`` is the voiced time the VAD found
    (None when no VAD ran).
    """

    text: str
    language: str | None
    language_probability: float | None
    segments: list[tuple[float, float, str]] = field(default_factory=list)
    backend: str = ""
    model: str = ""
    has_speech: bool = True
    task: str = "transcribe"
    duration_s: float = 0.0
    language_detected: bool = True
    top_languages: list[tuple[str, float]] = field(default_factory=list)
    elapsed_s: float = 0.0
    language_supported: bool = True
    language_rejection: str = ""
    no_speech_reason: str = ""
    dropped_segments: list[tuple[float, float, str, str]] = field(default_factory=list)
    speech_s: float | None = None

    def to_dict(self) -> dict:
        """Plain dict of the fields (``json.dumps``-able: segments and top languages are tuples)."""
        return asdict(self)


def _opencc_t2s():
    from opencc import OpenCC

    return OpenCC("t2s")


def to_simplified(text: str) -> str:
    """Traditional -> simplified Chinese (OpenCC ``t2s``); other scripts pass through unchanged."""
    return shared("asr.opencc-t2s", _opencc_t2s).convert(text)


def _top(probs: Iterable[tuple[str, float]], k: int = 5) -> list[tuple[str, float]]:
    return [(lang, float(p)) for lang, p in sorted(probs, key=lambda lp: -lp[1])[:k]]


# ------------------------------------------------------------------- language and reliability
MIN_LANGUAGE_PROBABILITY = 0.5  # of the most likely language, for a clip to be transcribed at all


def decide_language(top_languages: Sequence[tuple[str, float]], supported: Sequence[str],
                    min_probability: float = MIN_LANGUAGE_PROBABILITY) -> tuple[str | None, str]:
    """Whether to transcribe a clip whose language detector answered ``top_languages`` (most likely
    first) when only ``supported`` languages are wanted: ``(language, "")`` to decode in the detected
    language, or ``(None, reason)`` not to decode at all.

    The most likely language must be one of ``supported`` with probability >= ``min_probability``.
    Speech in another language, or a detection too uncertain to tell, is not transcribed: forcing a
    supported language onto it gives an invented transcript that reads as confidently as a real one.
    """
    ranked = sorted(((str(lang), float(p)) for lang, p in top_languages), key=lambda lp: -lp[1])
    wanted = ", ".join(supported)
    if not ranked:
        return None, f"language could not be detected (supported: {wanted})"
    lang, p = ranked[0]
    if lang in supported and p >= min_probability:
        return lang, ""
    if p >= min_probability:
        return None, f"unsupported language: detected {lang} (p={p:.2f}); supported: {wanted}"
    shown = ", ".join(f"{code} {q:.2f}" for code, q in ranked[:3])
    return None, (f"language too uncertain: detected {shown} (transcribed only when the most likely "
                  f"language is one of {wanted} with p >= {min_probability:g})")


def _define_blockwise_vad_class():
    from faster_whisper.vad import SileroVADModel

    class BlockwiseSileroVAD(SileroVADModel):
        """faster-whisper's Silero VAD with the same outputs, but each batch of windows (with its 64
        samples of context) is cut from the audio as it runs, instead of the whole audio first
        copied into one context-prefixed matrix: about 400 MB less for 30 minutes of audio. Takes an
        array or the lazily padded audio of :class:`_PadFreeWaveform`."""

        def __call__(self, audio, num_samples: int = 512, context_size_samples: int = 64):
            padded = audio if isinstance(audio, _LazilyPadded) else _LazilyPadded(np.asarray(audio), 0)
            assert padded.size % num_samples == 0
            n_windows = padded.size // num_samples
            h = np.zeros((1, 1, 128), dtype="float32")
            c = np.zeros((1, 1, 128), dtype="float32")
            outputs, batch_size = [], 10000  # faster-whisper's encoder batch (h, c carried across)
            for i in range(0, n_windows, batch_size):
                # the batch's windows with the previous window's tail in front (zeros before the first)
                start = i * num_samples - context_size_samples
                stop = min(n_windows, i + batch_size) * num_samples
                samples = padded.read(start, stop)
                windows = samples[context_size_samples:].reshape(-1, num_samples)
                context = np.empty((len(windows), context_size_samples), dtype="float32")
                context[0] = samples[:context_size_samples]
                context[1:] = windows[:-1, -context_size_samples:]
                output, h, c = self.session.run(
                    None, {"input": np.concatenate([context, windows], 1), "h": h, "c": c})
                outputs.append(output)
                release_pages(padded.samples)
            return np.concatenate(outputs, axis=0)

    return BlockwiseSileroVAD


class _LazilyPadded:
    """``samples`` followed by ``pad`` zeros, read a range at a time (zeros outside ``samples``)."""

    def __init__(self, samples: np.ndarray, pad: int):
        self.samples, self.size = samples, samples.shape[0] + pad

    def read(self, start: int, stop: int) -> np.ndarray:
        return segment(self.samples, start, stop)


class _PadFreeWaveform:
    """What :func:`speech_regions` hands to faster-whisper's ``get_speech_timestamps`` instead of the
    waveform. That function's first step, ``np.pad(audio, (0, k))``, copies the whole audio (115 MB
    for 30 minutes) only to give it to the VAD model; through NumPy's ``__array_function__`` protocol
    ``np.pad`` of this object returns a lazily padded view that the blockwise model reads batch by
    batch. ``len`` and ``shape`` are the waveform's, all the function reads of it besides."""

    def __init__(self, samples: np.ndarray):
        self.samples, self.shape = samples, samples.shape

    def __len__(self) -> int:
        return self.shape[0]

    def __array_function__(self, func, types, args, kwargs):
        if func is np.pad and not kwargs and len(args) == 2 and tuple(args[1])[0] == 0:
            return _LazilyPadded(self.samples, int(tuple(args[1])[1]))
        raise TypeError(f"{func.__name__} on a pad-free waveform: faster-whisper's VAD changed, see speech_regions")


def _use_blockwise_vad() -> None:
    """Make faster-whisper's VAD (ours and ``transcribe(vad_filter=True)``) run block by block; its
    ``get_speech_timestamps`` takes the model from ``get_vad_model()``, so that is what is replaced."""
    import faster_whisper.vad as fw_vad

    if getattr(fw_vad.get_vad_model, "msa_blockwise", False):
        return
    original = fw_vad.get_vad_model

    def blockwise_vad_model():
        def build():
            vad = object.__new__(_define_blockwise_vad_class())
            vad.session = original().session  # the same loaded ONNX session
            return vad
        return shared("asr.blockwise-vad", build)

    blockwise_vad_model.msa_blockwise = True
    fw_vad.get_vad_model = blockwise_vad_model


def speech_regions(samples: np.ndarray) -> list[tuple[float, float]]:
    """Voiced stretches ``(start_s, end_s)`` of 16-kHz samples found by Silero VAD (bundled with
    faster-whisper), without the padding faster-whisper adds around speech for decoding."""
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    _use_blockwise_vad()
    stamps = get_speech_timestamps(_PadFreeWaveform(samples), VadOptions(speech_pad_ms=0, min_silence_duration_ms=100))
    return [(t["start"] / SAMPLE_RATE, t["end"] / SAMPLE_RATE) for t in stamps]


def decode_windows(n_samples: int, window_s: float, speech: Sequence[tuple[float, float]] | None = None,
                   sr: int = SAMPLE_RATE) -> list[tuple[int, int]]:
    """``(start, stop)`` sample ranges that cover ``n_samples`` in windows of about ``window_s``.

    Each cut goes in the middle of the pause between two ``speech`` regions nearest to where the
    window would end (searched in the last quarter of the window), so no word is split; without a
    pause there (or without VAD regions) the cut falls at the nominal length. ``window_s=0`` or audio
    no longer than 1.25 windows: one window, the whole audio."""
    if window_s <= 0 or n_samples <= 1.25 * window_s * sr:
        return [(0, n_samples)]
    pauses = [((a_end + b_start) / 2, b_start - a_end) for (_, a_end), (b_start, _) in zip(speech or [], (speech or [])[1:])
              if b_start > a_end]
    cuts, start = [], 0
    while n_samples - start > 1.25 * window_s * sr:
        lo, nominal = start / sr + 0.75 * window_s, start / sr + window_s
        near = [p for p in pauses if lo <= p[0] <= nominal]
        cut_s = max(near, key=lambda p: (p[1], p[0]))[0] if near else nominal  # the longest pause
        cut = int(round(cut_s * sr))
        cuts.append((start, cut))
        start = cut
    cuts.append((start, n_samples))
    return cuts


@dataclass
class DecodedSegment:
    """One segment as Whisper decoded it, with the decoder's own confidence signals."""

    start: float
    end: float
    text: str
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float


VAD_TOLERANCE_S = 0.3  # Whisper's segment times are coarse: speech regions are widened by this much
MIN_VAD_OVERLAP_S = 0.1


def _unreliable(seg: DecodedSegment, speech: list[tuple[float, float]] | None, c: "ASRConfig") -> str:
    """Why a decoded segment is not trusted ("" when it is)."""
    if c.log_prob_threshold is not None and seg.avg_logprob < c.log_prob_threshold:
        why = f"avg log-prob {seg.avg_logprob:.2f} < {c.log_prob_threshold:g}"
        if c.no_speech_threshold is not None and seg.no_speech_prob > c.no_speech_threshold:
            why += f", no-speech probability {seg.no_speech_prob:.2f}"
        return why
    if c.compression_ratio_threshold is not None and seg.compression_ratio > c.compression_ratio_threshold:
        return f"repetitive text (compression ratio {seg.compression_ratio:.2f} > {c.compression_ratio_threshold:g})"
    if speech is not None:
        overlap = sum(max(0.0, min(seg.end, e + VAD_TOLERANCE_S) - max(seg.start, s - VAD_TOLERANCE_S))
                      for s, e in speech)
        if overlap < min(MIN_VAD_OVERLAP_S, max(seg.end - seg.start, 0.0)) or overlap <= 0:
            return f"no voice (VAD) during {seg.start:.2f}-{seg.end:.2f} s"
    return ""


def reliable_segments(segments: Sequence[DecodedSegment], speech: list[tuple[float, float]] | None,
                      config: "ASRConfig") -> tuple[list[DecodedSegment], list[tuple[float, float, str, str]]]:
    """Split decoded segments into the kept ones and the dropped ``(start, end, text, reason)``.

    A segment is dropped when Whisper itself was unsure of it (``avg_logprob`` below
    ``log_prob_threshold``: with the sampling fallback off this is where Whisper would have resampled,
    and what it writes then on a fragment of a word or on noise is a stock phrase such as "Hello." or
    "Thank you."), when it repeats itself (``compression_ratio`` above the threshold) or when it lies
    where the VAD heard no voice (``speech``; None: no VAD ran)."""
    kept, dropped = [], []
    for seg in segments:
        if not seg.text.strip():
            continue
        reason = _unreliable(seg, speech, config)
        if reason:
            dropped.append((round(seg.start, 3), round(seg.end, 3), seg.text.strip(), reason))
        else:
            kept.append(seg)
    return kept, dropped


# --------------------------------------------------------------------------------- Transcriber
class Transcriber:
    """Whisper ASR with per-clip language detection; the model is loaded on first use and reused.

    >>> asr = Transcriber(ASRConfig(backend="faster-whisper", model="base"))
    >>> r = asr.transcribe("clip.wav")          # or a 1-D float32 array at 16 kHz
    >>> r.text, r.language, r.language_probability, r.has_speech
    >>> asr.transcribe("clip.wav", accept_languages=("zh", "en")).language_supported
    >>> asr.translate("mandarin.wav").text     # Whisper's speech translation into English
    """

    def __init__(self, config: ASRConfig | None = None, **overrides) -> None:
        base = config or ASRConfig()
        self.config = ASRConfig(**{**asdict(base), **overrides}) if overrides else base
        self._model = None
        self._sampling = threading.local()  # .model: the private model of a seeded faster-whisper decode

    # -- model ------------------------------------------------------------------------------
    def _faster_whisper_threads(self) -> int:
        # CTranslate2's own default is 4 threads, too many on a 2-core machine
        return self.config.num_threads if self.config.num_threads > 0 else min(4, os.cpu_count() or 1)

    @property
    def model(self):
        private = getattr(self._sampling, "model", None)
        if private is not None:
            return private
        if self._model is None:
            c = self.config
            if c.backend == "faster-whisper":
                self._model = load_faster_whisper(c.model, c.device, c.compute_type, self._faster_whisper_threads())
            else:
                set_torch_threads(c.num_threads)
                self._model = load_openai_whisper(c.model, c.device)
        return self._model

    # -- public API -------------------------------------------------------------------------
    def transcribe(self, audio: AudioInput, *, task: str | None = None, language: str | None = None,
                   accept_languages: Sequence[str] | None = None,
                   min_language_probability: float = MIN_LANGUAGE_PROBABILITY, progress=None) -> ASRResult:
        """Transcribe (or translate) one clip. ``task``/``language`` override the config for this call.
        ``progress``: an optional bar, advanced by the seconds of audio decoded (faster-whisper).

        ``accept_languages`` (with a detected, not forced, language): decode only when
        :func:`decide_language` accepts the detection; otherwise the result has no text,
        ``language_supported=False`` and the reason in ``language_rejection``."""
        c = self.config
        task = task or c.task
        if task not in TASKS:
            raise ASRConfigError(f"task {task!r}: expected one of {TASKS}")
        forced = whisper_language(language if language is not None else c.language)
        samples = load_audio_16k(audio)
        started = time.perf_counter()
        duration = samples.size / SAMPLE_RATE

        def result(**fields) -> ASRResult:
            return ASRResult(backend=c.backend, model=str(c.model), task=task, duration_s=duration,
                             elapsed_s=time.perf_counter() - started, **fields)

        def silent(reason: str, **fields) -> ASRResult:
            return result(text="", language=forced, language_probability=None, segments=[], has_speech=False,
                          language_detected=False, no_speech_reason=reason, **fields)

        if peak_dbfs(samples) < c.silence_dbfs:
            return silent("silence")
        speech = speech_s = None
        if c.vad_gate or c.vad_filter:
            speech = speech_regions(samples)
            speech_s = round(sum(e - s for s, e in speech), 3)
            if not speech:
                return silent("no voice found (VAD)", speech_s=speech_s)
            if speech_s < c.min_speech_s:
                return silent(f"too little voice to transcribe: {speech_s:.2f} s, needs {c.min_speech_s:g} s",
                              speech_s=speech_s)

        accept = tuple(accept_languages) if accept_languages and forced is None else None
        run = self._run_faster_whisper if c.backend == "faster-whisper" else self._run_openai_whisper
        with self._seeded():
            decoded, lang, prob, top, rejection = run(samples, task, forced, accept, min_language_probability,
                                                      progress=progress, speech=speech)
        if rejection:
            return result(text="", language=lang, language_probability=prob, segments=[], has_speech=True,
                          language_detected=True, top_languages=top, language_supported=False,
                          language_rejection=rejection, speech_s=speech_s)
        if c.drop_unreliable_segments:
            kept, dropped = reliable_segments(decoded, speech, c)
        else:
            kept, dropped = [s for s in decoded if s.text.strip()], []
        text = "".join(s.text for s in kept).strip()
        if not text:
            reason = "no speech recognised" if not dropped else (
                f"no reliable speech: {len(dropped)} decoded segment(s) dropped ({dropped[0][3]})")
            return silent(reason, speech_s=speech_s, dropped_segments=dropped, top_languages=top)
        segments = [(s.start, s.end, s.text.strip()) for s in kept]
        if c.simplify_chinese and task == "transcribe" and lang == "zh":
            text = to_simplified(text)
            segments = [(s, e, to_simplified(t)) for s, e, t in segments]
        return result(text=text, language=lang, language_probability=prob, segments=segments, has_speech=True,
                      language_detected=forced is None, top_languages=top, dropped_segments=dropped,
                      speech_s=speech_s)

    def translate(self, audio: AudioInput, *, language: str | None = None) -> ASRResult:
        """Whisper's speech translation: speech in any supported language -> English text."""
        return self.transcribe(audio, task="translate", language=language)

    def transcribe_many(self, audios: Sequence[AudioInput], *, task: str | None = None,
                        progress: bool = True) -> list[ASRResult]:
        """Transcribe clips one after another (each with its own language detection)."""
        from tqdm.auto import tqdm

        return [self.transcribe(a, task=task) for a in tqdm(audios, desc="ASR", disable=not progress)]

    def detect_language(self, audio: AudioInput) -> tuple[str | None, float | None, list[tuple[str, float]]]:
        """Spoken language of one clip from its first 30 s: ``(code, probability, top-5)``.

        One encoder pass and one decoder step, no transcription; ``(None, None, [])`` for a silent clip.
        """
        samples = load_audio_16k(audio)
        if peak_dbfs(samples) < self.config.silence_dbfs:
            return None, None, []
        if self.config.backend == "openai-whisper":
            return self._detect_openai_whisper(samples)
        if not self.model.model.is_multilingual:
            return "en", None, []
        return self._detect_faster_whisper(samples)

    # -- backends ---------------------------------------------------------------------------
    @contextmanager
    def _seeded(self):
        """A fixed random seed around decoding when a temperature > 0 may sample, so that the same
        audio and settings give the same transcript (with the default ``(0.0,)`` nothing is sampled)."""
        if max(self.config.temperature) <= 0:
            yield
            return
        if self.config.backend == "faster-whisper":
            import ctranslate2

            # CTranslate2 seeds each worker thread's generator once, at its first use (a thread_local
            # std::mt19937), so a worker that has sampled before ignores a new seed. A private model, whose
            # workers start after the seed is set, makes every sampled decode repeat; it costs one model load.
            c = self.config
            ctranslate2.set_random_seed(0)
            self._sampling.model = load_faster_whisper(c.model, c.device, c.compute_type,
                                                       self._faster_whisper_threads(), share=False)
            try:
                yield
            finally:
                self._sampling.model = None
        else:
            import torch

            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                yield

    def _detect_openai_whisper(self, samples: np.ndarray) -> tuple[str, float | None, list[tuple[str, float]]]:
        import torch
        import whisper

        model = self.model
        if not model.is_multilingual:
            return "en", None, []
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(writable(samples[: whisper.audio.N_SAMPLES])),
                                          n_mels=model.dims.n_mels)
        with torch.no_grad():
            _, probs = model.detect_language(mel.to(model.device))
        lang = max(probs, key=probs.get)
        return lang, float(probs[lang]), _top(probs.items())

    def _detect_faster_whisper(self, samples: np.ndarray) -> tuple[str, float, list[tuple[str, float]]]:
        """Language of the first 30-s window, from the very window (and encoder pass) that decoding
        starts with: ``transcribe`` then reuses that encoder output (see ``whisper_models._encoder_reusing_model_class``).
        faster-whisper's own detection encodes a window that differs by one mel frame, hence twice."""
        from faster_whisper.audio import pad_or_trim

        model = self.model
        features = model.feature_extractor(samples)
        n_frames = min(model.feature_extractor.nb_max_frames, features.shape[-1] - 1)  # as generate_segments
        encoder_output = model.encode(pad_or_trim(features[:, :n_frames]))
        probs = [(token[2:-2], float(p)) for token, p in model.model.detect_language(encoder_output)[0]]
        return probs[0][0], probs[0][1], _top(probs)

    @staticmethod
    def _accept(lang, prob, top, accept, min_probability) -> str:
        """"" when the detected language may be decoded, else the reason (see :func:`decide_language`)."""
        if accept is None:
            return ""
        return decide_language(top or [(lang, 1.0 if prob is None else prob)], accept, min_probability)[1]

    def _run_faster_whisper(self, samples, task, forced, accept=None, min_probability=MIN_LANGUAGE_PROBABILITY,
                            progress=None, speech=None):
        """``(decoded segments, language, probability, top-5, rejection)`` with faster-whisper, window
        by window (:func:`decode_windows`; one window for audio up to 1.25 x ``decode_window_s``).
        Segment times are seconds of the whole clip."""
        c = self.config
        model = self.model
        lang, prob, top = forced, None, []
        windows = decode_windows(samples.size, c.decode_window_s, speech)
        first = samples[windows[0][0]: windows[0][1]]
        decoded = []
        # the detection's encoder pass is reused by the decoding (one clip, this block only)
        reuse = getattr(model, "reusing_encoder_output", None)
        with reuse() if reuse is not None else nullcontext():
            if forced is None:
                if not model.model.is_multilingual:
                    lang = "en"
                elif c.vad_filter:  # detect on the speech-only audio, as transcribe(vad_filter=True) would
                    lang, prob, all_probs = model.detect_language(first, vad_filter=True)
                    prob, top = float(prob), _top(all_probs or [])
                else:
                    lang, prob, top = self._detect_faster_whisper(first)
                release_pages(samples)
                rejection = self._accept(lang, prob, top, accept, min_probability)
                if rejection:
                    return [], lang, prob, top, rejection
            for start, stop in windows:
                offset = start / SAMPLE_RATE
                segments_iter, _ = model.transcribe(
                    samples[start:stop], language=lang, task=task, beam_size=c.beam_size, best_of=c.best_of,
                    temperature=list(c.temperature), compression_ratio_threshold=c.compression_ratio_threshold,
                    vad_filter=c.vad_filter, condition_on_previous_text=c.condition_on_previous_text,
                    no_speech_threshold=c.no_speech_threshold, log_prob_threshold=c.log_prob_threshold,
                    initial_prompt=c.initial_prompt,
                )
                for s in segments_iter:  # a lazy generator: decoding happens here
                    decoded.append(DecodedSegment(offset + float(s.start), offset + float(s.end), s.text,
                                                  float(s.avg_logprob), float(s.no_speech_prob),
                                                  float(s.compression_ratio)))
                    if progress is not None:
                        progress.update(max(0.0, round(decoded[-1].end - progress.n, 1)))
                release_pages(samples)  # a file-backed waveform holds one window at a time
        return decoded, lang, prob, top, ""

    def _run_openai_whisper(self, samples, task, forced, accept=None, min_probability=MIN_LANGUAGE_PROBABILITY,
                            progress=None, speech=None):  # whisper.transcribe draws no bar with verbose=None
        """``(decoded segments, language, probability, top-5, rejection)`` with openai-whisper."""
        import whisper

        c = self.config
        model = self.model
        samples = writable(samples)  # openai-whisper holds the whole clip as a tensor anyway
        fp16 = model.device.type == "cuda"
        lang, prob, top = forced, None, []
        if forced is None:
            # Detect here rather than inside whisper.transcribe: the same single encoder pass, but we
            # keep the probability (whisper.transcribe only returns the winning code).
            lang, prob, top = self._detect_openai_whisper(samples)
            rejection = self._accept(lang, prob, top, accept, min_probability)
            if rejection:
                return [], lang, prob, top, rejection
        result = whisper.transcribe(
            model, samples, verbose=None, language=lang, task=task, beam_size=c.beam_size, best_of=c.best_of,
            temperature=c.temperature, compression_ratio_threshold=c.compression_ratio_threshold,
            fp16=fp16, condition_on_previous_text=c.condition_on_previous_text,
            no_speech_threshold=c.no_speech_threshold, logprob_threshold=c.log_prob_threshold,
            initial_prompt=c.initial_prompt,
        )
        decoded = [DecodedSegment(float(s["start"]), float(s["end"]), s["text"], float(s["avg_logprob"]),
                                  float(s["no_speech_prob"]), float(s["compression_ratio"])) for s in result["segments"]]
        return decoded, lang, prob, top, ""


# ------------------------------------------------------------------------------------------ CLI
def main(argv: Sequence[str] | None = None) -> None:
    """``python -m msa_lib.extract.asr a.wav b.wav --backend both --threads 2``: transcripts + speed."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("audio", nargs="+", help="sound files (16 kHz wav or anything librosa reads)")
    parser.add_argument("--backend", default="faster-whisper", choices=[*BACKENDS, "both"])
    parser.add_argument("--model", default="base")
    parser.add_argument("--language", default="auto")
    parser.add_argument("--task", default="transcribe", choices=TASKS)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1, help="time each clip N times, keep the fastest")
    parser.add_argument("--json", action="store_true", help="one JSON object per clip")
    args = parser.parse_args(argv)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    for backend in backends:
        asr = Transcriber(ASRConfig(backend=backend, model=args.model, language=args.language, task=args.task,
                                    num_threads=args.threads, device="cpu"))
        t0 = time.perf_counter()
        _ = asr.model
        print(f"# {backend}: model loaded in {time.perf_counter() - t0:.2f} s")
        asr.transcribe(np.zeros(SAMPLE_RATE, np.float32) + 1e-3 * np.random.default_rng(0).standard_normal(
            SAMPLE_RATE).astype(np.float32))  # warm-up: first call pays one-off allocation costs
        total_audio = total_time = total_cpu = 0.0
        for path in args.audio:
            runs = []
            for _ in range(max(1, args.repeat)):  # best of N: robust to other processes' bursts
                cpu0 = time.process_time()
                r = asr.transcribe(path)
                runs.append((r.elapsed_s, time.process_time() - cpu0, r))
            wall, cpu, r = min(runs, key=lambda run: run[0])
            total_audio += r.duration_s
            total_time += wall
            total_cpu += cpu
            if args.json:
                print(json.dumps({"file": str(path), **r.to_dict()}, ensure_ascii=False))
            else:
                p = "forced" if r.language_probability is None else f"{r.language_probability:.3f}"
                print(f"{Path(path).name}\taudio {r.duration_s:.2f}s\twall {wall:.2f}s\tcpu {cpu:.2f}s\t"
                      f"wall/audio {wall / r.duration_s:.2f}\t{r.language} ({p})\t{r.text}")
        print(f"# {backend}: wall {total_time:.2f} s, cpu {total_cpu:.2f} s for {total_audio:.2f} s of audio = "
              f"{total_time / total_audio:.3f} wall s per audio second")


if __name__ == "__main__":
    main()
