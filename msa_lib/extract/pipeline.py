"""Raw clips -> per-clip text, audio and face features -> one feature file.

Per clip (:func:`extract_clip`): decode (ffmpeg) -> ASR with per-clip language detection (a manifest
transcript overrides ASR) -> text encoder (token sequences + pooled vector) -> frame-level prosody
(and optionally Whisper-encoder embeddings) -> MediaPipe face features with a face-present mask.

Bad input never stops a batch: a clip that cannot be decoded at all is a *failure*; a clip that lacks
one modality (no audio track, silence, no speech, no face in any frame) keeps the others and the gap is
recorded. Both end up in the failures table saved with the batch (``dataset.failures`` and
``<out>.failures.csv``).

Speed (``benchmarks/bench_extract.py``): models are loaded once per process before the first clip
(:func:`load_models`; their load times go to ``ds.meta.extra["model_load_s"]``, never into a clip's
``timings``), the sampled frames are decoded by ffmpeg in the background while the audio path runs,
and faster-whisper detects the language from the encoder pass its decoding reuses. Each record keeps
the wall seconds of every stage on the clip's critical path (``timings``) and of the whole clip
(``wall_s``).

Every finished clip is cached under ``cache_dir()/extract/<content hash>-<settings hash>.pkl``
(written by the worker itself, atomically), so a rerun skips finished clips and a crash loses nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import threading
import time
from concurrent.futures import Future, wait
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from msa_lib.data.labels import SIMS_SCHEME, MOSI_SCHEME, scores_to_classes
from msa_lib.data.io import atomic_pickle, write_features
from msa_lib.data.schema import DatasetMeta, ModalitySpec, MultimodalDataset
from msa_lib.core.paths import cache_dir, project_path
from msa_lib.core.utils import get_logger
from msa_lib.extract.asr import ASRConfig, WhisperEncoderConfig, normalise_language
from msa_lib.extract.audio import AudioFeatureConfig, feature_groups, feature_names as audio_feature_names, is_silent
from msa_lib.extract.errors import ExtractionError, MediaError, MissingToolError, NoFaceError
from msa_lib.extract.executors import map_unordered, threads_per_worker
from msa_lib.extract.media import MediaConfig, extract_audio, extract_frames, probe
from msa_lib.extract.text import TextEncoderConfig, normalize_transcript
from msa_lib.extract.visual import VisualFeatureConfig, visual_feature_names

log = get_logger("extract")

PIPELINE_VERSION = 2  # bump when the per-clip output changes: invalidates cached clips
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}
MODALITIES = ("text", "audio", "vision")
AUDIO_REPRESENTATIONS = ("prosody", "whisper", "egemaps")


@dataclass
class ExtractConfig:
    """What to extract and how. Sub-configs hold each extractor's own settings."""

    modalities: tuple[str, ...] = MODALITIES
    audio_features: tuple[str, ...] = ("prosody",)  # add "whisper" (pretrained) or "egemaps" (openSMILE)
    supported_languages: tuple[str, ...] = ("zh", "en")  # detection is restricted to these (see _restrict)
    label_scale: str = "sims"  # manifest labels are scores in [-1, 1] ("mosi": [-3, 3])
    split: str = "test"  # split given to the clips (a manifest ``split`` column overrides)
    media: MediaConfig = field(default_factory=MediaConfig)
    asr: ASRConfig = field(default_factory=ASRConfig)
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(show_progress=False))
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    whisper_encoder: WhisperEncoderConfig = field(default_factory=WhisperEncoderConfig)
    visual: VisualFeatureConfig = field(default_factory=lambda: VisualFeatureConfig(allow_no_face=False))
    workers: int = 1
    # Decode the sampled video frames (an ffmpeg process) in the background while the audio path
    # (ASR, text, prosody) runs: on 2 cores it hides most of the frame decoding (benchmarks/bench_extract.py).
    overlap_decode: bool = True
    executor: str = "local"  # local | dask | ray
    scheduler_address: str | None = None  # dask/ray: an existing cluster
    use_cache: bool = True
    cache_folder: str | None = None  # default: cache_dir()/extract

    def __post_init__(self):
        bad = set(self.modalities) - set(MODALITIES)
        if bad or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        bad = set(self.audio_features) - set(AUDIO_REPRESENTATIONS)
        if bad:
            raise ValueError(f"audio_features must be among {AUDIO_REPRESENTATIONS}, got {sorted(bad)}")
        if self.label_scale not in ("sims", "mosi"):
            raise ValueError(f"label_scale must be 'sims' or 'mosi', got {self.label_scale!r}")

    def settings_for_cache(self) -> dict:
        """Everything that changes a clip's output (not workers, executor or cache location)."""
        d = asdict(self)
        for key in ("workers", "executor", "scheduler_address", "use_cache", "cache_folder", "split",
                    "overlap_decode"):
            d.pop(key)
        for sub in ("text", "asr", "whisper_encoder", "visual"):
            for key in ("device", "show_progress", "batch_size", "num_threads"):
                d[sub].pop(key, None)
        d["pipeline_version"] = PIPELINE_VERSION
        return d

    def cache_path(self) -> Path:
        p = project_path(self.cache_folder) if self.cache_folder else cache_dir() / "extract"
        p.mkdir(parents=True, exist_ok=True)
        return p


@dataclass
class ClipInput:
    path: str
    clip_id: str
    language: str = "auto"  # manifest language overrides detection
    transcript: str = ""  # manifest transcript overrides ASR
    label: float | None = None
    split: str | None = None


# ----------------------------------------------------------------------------------------- inputs
def resolve_inputs(inputs: str | os.PathLike | Sequence) -> list[ClipInput]:
    """Files, folders (their video and audio files, sorted) and manifest CSVs -> clip inputs."""
    from msa_lib.data.sources import read_clip_manifest

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    clips: list[ClipInput] = []
    for item in inputs:
        if isinstance(item, ClipInput):
            clips.append(item)
            continue
        path = Path(item).expanduser()
        if path.suffix.lower() == ".csv":
            man = read_clip_manifest(path)
            for row in man.itertuples():
                clips.append(ClipInput(row.path, str(row.clip_id), row.language or "auto", row.transcript or "",
                                       None if np.isnan(row.label) else float(row.label),
                                       getattr(row, "split", None)))
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES | AUDIO_SUFFIXES)
            if not files:
                raise FileNotFoundError(f"{path}: no video or audio files in this folder")
            clips.extend(ClipInput(str(p), p.stem) for p in files)
        else:
            # a missing or unreadable file is recorded as a failure for that clip, not raised here
            clips.append(ClipInput(str(path), path.stem))
    seen: dict[str, int] = {}
    for clip in clips:  # ids must be unique within a batch
        n = seen.get(clip.clip_id, 0)
        seen[clip.clip_id] = n + 1
        if n:
            clip.clip_id = f"{clip.clip_id}__{n}"
    return clips


# ----------------------------------------------------------------------------------------- caching
def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(clip: ClipInput, config: ExtractConfig) -> str | None:
    try:
        content = file_digest(clip.path)
    except OSError:
        return None  # unreadable: nothing to cache; the worker records the failure
    settings = config.settings_for_cache()
    settings["override"] = {"language": clip.language, "transcript": clip.transcript}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()
    return f"{content[:24]}-{digest[:16]}"


def _load_cached(path: Path) -> dict | None:
    try:
        with open(path, "rb") as fh:
            record = pickle.load(fh)
        return record if isinstance(record, dict) and record.get("status") == "ok" else None
    except (OSError, pickle.UnpicklingError, EOFError, AttributeError, ValueError):
        return None  # a damaged entry is recomputed


# ----------------------------------------------------------------------------------------- workers
_MODELS: dict[str, object] = {}
_WARMED: set[str] = set()  # one-off first-call set-ups already paid in this process


def _model(kind: str, config) -> object:
    """Load each heavy model once per process (workers keep them across clips)."""
    key = f"{kind}:{json.dumps(asdict(config), sort_keys=True, default=str)}"
    if key not in _MODELS:
        if kind == "asr":
            from msa_lib.extract.asr import Transcriber

            _MODELS[key] = Transcriber(config)
        elif kind == "text":
            from msa_lib.extract.text import TextEncoder

            _MODELS[key] = TextEncoder(config)
        elif kind == "whisper_encoder":
            from msa_lib.extract.asr import WhisperEncoderFeatures

            _MODELS[key] = WhisperEncoderFeatures(config)
        elif kind == "visual":
            from msa_lib.extract.visual import FaceFeatureExtractor

            _MODELS[key] = FaceFeatureExtractor(config)
        else:
            raise KeyError(kind)
    return _MODELS[key]


def load_models(cfg: ExtractConfig, need_asr: bool = True) -> dict[str, float]:
    """Load (once per process) every model ``cfg`` needs and return the seconds each load took (0 when
    already loaded). :func:`extract` calls it before its in-process loop, so one-off load costs never
    land in a clip's stage timings; benchmarks report them separately."""
    seconds: dict[str, float] = {}

    def timed_load(name, fn):
        start = time.perf_counter()
        fn()
        seconds[name] = round(time.perf_counter() - start, 3)

    if "text" in cfg.modalities:
        if need_asr:  # the model itself, not just the (lazy) Transcriber
            timed_load(f"asr ({cfg.asr.backend})", lambda: _model("asr", replace(cfg.asr, language="auto")).model)
        timed_load("text encoder", lambda: _model("text", cfg.text).encode_with_pooled(["warm-up"]))
    if "audio" in cfg.modalities:
        if "prosody" in cfg.audio_features and "prosody" not in _WARMED:
            from msa_lib.extract.audio import extract_prosody

            # librosa's first call imports and JIT-compiles (numba) for several seconds
            noise = np.random.default_rng(0).standard_normal(cfg.media.sample_rate // 2).astype(np.float32)
            timed_load("audio features (first call)", lambda: extract_prosody(0.1 * noise, cfg.media.sample_rate, cfg.audio))
            _WARMED.add("prosody")
        if "whisper" in cfg.audio_features:
            timed_load("whisper encoder", lambda: _model("whisper_encoder", cfg.whisper_encoder).model)
    if "vision" in cfg.modalities:
        timed_load("face models", lambda: _model("visual", cfg.visual).detect_faces(np.zeros((64, 64, 3), np.uint8)))
    return seconds


def init_worker(num_threads: int) -> None:
    import torch

    torch.set_num_threads(max(1, num_threads))


def _restrict_language(asr, samples, result, supported: Sequence[str]):
    """Whisper sometimes names a language outside the corpus (e.g. ``ja`` for short Mandarin). When the
    detected language is not supported, take the most probable supported one and decode again."""
    if not supported or result.language in supported or not result.has_speech:
        return result, "detected"
    ranked = [lang for lang, _ in result.top_languages if lang in supported]
    if not ranked:
        lang, _, top = asr.detect_language(samples)
        ranked = [lang for lang, _ in top if lang in supported] or list(supported)
    forced = ranked[0]
    again = asr.transcribe(samples, language=forced)
    again.language_probability = dict(result.top_languages).get(forced)
    return again, f"restricted (detected {result.language})"


def extract_clip(job: tuple[ClipInput, ExtractConfig, str | None]) -> dict:
    """Extract one clip. Never raises for bad media: returns a record with ``status`` ok or failed."""
    clip, cfg, key = job
    started = time.perf_counter()
    timings: dict[str, float] = {}  # wall seconds per stage on this clip's critical path
    record: dict = {"clip_id": clip.clip_id, "path": clip.path, "label": clip.label, "split": clip.split,
                    "status": "ok", "features": {}, "missing": {}, "timings": timings}

    def timed(stage, fn, *args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start

    frames_job: Future | None = None
    try:
        need_audio = "audio" in cfg.modalities or ("text" in cfg.modalities and not clip.transcript)
        info = timed("decode", probe, clip.path, cfg.media.timeout_s)
        record["duration"] = info.duration
        if not info.duration or info.duration <= 0:
            raise MediaError(f"{clip.path}: zero-length media", clip=clip.path, stage="media")
        samples = frames = timestamps = None
        if "vision" in cfg.modalities and info.has_video:
            decode_frames = partial(extract_frames, clip.path, fps=cfg.media.fps, max_side=cfg.media.max_side,
                                    max_frames=cfg.media.max_frames, timeout_s=cfg.media.timeout_s, info=info)
            if cfg.overlap_decode:
                frames_job = _background(decode_frames)
            else:
                frames, timestamps = timed("decode", decode_frames)
        if need_audio:
            if info.has_audio:
                samples = timed("decode", extract_audio, clip.path, sr=cfg.media.sample_rate,
                                timeout_s=cfg.media.timeout_s, info=info)
            else:
                record["missing"]["audio"] = "no audio track"
        silent = samples is not None and is_silent(samples, cfg.media.sample_rate)
        if silent:
            record["missing"]["audio"] = "silent audio track"

        # --- speech: transcript + language
        language, transcript = normalise_language(clip.language), normalize_transcript(clip.transcript)
        record.update(transcript=transcript, transcript_source="manifest" if transcript else "none",
                      language=language, language_probability=None,
                      language_source="manifest" if language else "none", segments=[])
        if "text" in cfg.modalities and not transcript:
            if samples is None or silent:
                record["missing"]["text"] = "no speech (no audio track)" if samples is None else "no speech (silence)"
            else:
                asr = _model("asr", replace(cfg.asr, language=language or "auto"))
                result = timed("asr", asr.transcribe, samples)
                if not language:
                    result, source = timed("asr", _restrict_language, asr, samples, result, cfg.supported_languages)
                    record["language_source"] = source
                if result.has_speech and result.text:
                    record.update(transcript=normalize_transcript(result.text), transcript_source="asr",
                                  language=result.language,
                                  language_probability=result.language_probability,
                                  segments=[tuple(s) for s in result.segments])
                else:
                    record["missing"]["text"] = "no speech detected"
        if record["language"] is None and transcript:
            record["language"] = _guess_language(transcript)
            record["language_source"] = "script"

        # --- text features
        if "text" in cfg.modalities and record["transcript"]:
            enc = _model("text", cfg.text)
            seqs, pooled = timed("text", enc.encode_with_pooled, [record["transcript"]])  # one forward pass
            record["features"]["text"] = seqs.embeddings[0]
            record["tokens"] = seqs.tokens[0]
            record["features"]["text_pooled"] = pooled[0][None]

        # --- audio features
        if "audio" in cfg.modalities and samples is not None and not silent:
            sr = cfg.media.sample_rate
            if "prosody" in cfg.audio_features:
                from msa_lib.extract.audio import extract_prosody

                record["features"]["audio"] = timed("audio", extract_prosody, samples, sr, cfg.audio)[0]
            if "whisper" in cfg.audio_features:
                wenc = _model("whisper_encoder", cfg.whisper_encoder)
                record["features"]["audio_whisper"] = timed("audio_whisper", wenc.extract, samples)
            if "egemaps" in cfg.audio_features:
                from msa_lib.extract.audio import extract_egemaps

                record["features"]["audio_egemaps"] = timed("audio_egemaps", extract_egemaps, samples, sr)[0][None]

        # --- face features
        if frames_job is not None:
            frames, timestamps = timed("decode", frames_job.result)  # only the wait counts as decode time
            frames_job = None
        if "vision" in cfg.modalities:
            if frames is None or not len(frames):
                record["missing"]["vision"] = "no video stream" if not info.has_video else "no frames decoded"
            else:
                vis = _model("visual", cfg.visual)
                try:
                    out = timed("vision", vis.extract, frames, timestamps, source=clip.path)
                    record["features"]["vision"] = out.features
                    record["face_ratio"] = out.face_ratio
                    record["n_frames"] = int(len(out.mask))
                except NoFaceError:
                    record["missing"]["vision"] = "no face in any frame"
                    record["face_ratio"], record["n_frames"] = 0.0, int(len(frames))
        if not record["features"]:
            reasons = "; ".join(f"{m}: {why}" for m, why in record["missing"].items()) or "nothing to extract"
            raise ExtractionError(f"{clip.path}: no usable modality ({reasons})", clip=clip.path, stage="extract")
    except MissingToolError:
        raise  # a setup problem, not a property of this clip: stop the batch with the clear message
    except ExtractionError as exc:
        record.update(status="failed", stage=exc.stage or "extract", error=str(exc))
        return record
    except Exception as exc:  # an unexpected library error on one clip must not end the batch
        log.exception("unexpected error on %s", clip.path)
        record.update(status="failed", stage="internal", error=f"{type(exc).__name__}: {exc}")
        return record
    finally:
        if frames_job is not None:  # the clip failed before its frames were used: let ffmpeg finish
            wait([frames_job])
        record["wall_s"] = time.perf_counter() - started
    if key and cfg.use_cache:
        atomic_pickle(record, cfg.cache_path() / f"{key}.pkl")
    return record


def _background(fn) -> Future:
    """Run ``fn()`` in a daemon thread (for an ffmpeg subprocess, which needs no GIL)."""
    future: Future = Future()

    def run():
        try:
            future.set_result(fn())
        except BaseException as exc:  # re-raised by future.result() in the clip's own thread
            future.set_exception(exc)

    threading.Thread(target=run, name="msa-decode-frames", daemon=True).start()
    return future


def _guess_language(text: str) -> str:
    han = sum("\u4e00" <= ch <= "\u9fff" for ch in text)
    return "zh" if han >= max(1, len(text.strip()) // 4) else "en"


# ----------------------------------------------------------------------------------------- batch
def extract(inputs, config: ExtractConfig | None = None, out: str | os.PathLike | None = None,
            progress: bool = True, name: str = "clips") -> MultimodalDataset:
    """Extract every clip (cached clips are reused) and return the batch as a dataset; with ``out``
    also write the feature file and ``<out>.failures.csv``."""
    from tqdm.auto import tqdm

    cfg = config or ExtractConfig()
    clips = resolve_inputs(inputs)
    records: dict[str, dict] = {}
    todo = []
    for clip in clips:
        key = cache_key(clip, cfg)
        cached = _load_cached(cfg.cache_path() / f"{key}.pkl") if key and cfg.use_cache else None
        if cached is not None:
            cached.update(clip_id=clip.clip_id, path=clip.path, label=clip.label, split=clip.split)
            cached["cached"] = True
            records[clip.clip_id] = cached
        else:
            todo.append((clip, cfg, key))
    if records:
        log.info("%d of %d clips reused from the cache", len(records), len(clips))
    threads = threads_per_worker(cfg.workers)
    model_load_s: dict[str, float] = {}
    if todo and cfg.executor == "local" and (cfg.workers <= 1 or len(todo) <= 1):
        init_worker(threads)  # (map_unordered calls it again: harmless)
        try:
            model_load_s = load_models(cfg, need_asr=any(not clip.transcript for clip, _, _ in todo))
        except MissingToolError:
            raise
        except Exception as exc:  # as before preloading: each clip then records the error itself
            log.warning("loading the models failed (%s: %s); the clips will report it", type(exc).__name__, exc)
    bar = tqdm(total=len(clips), initial=len(records), desc="extract", unit="clip", disable=not progress)
    for record in map_unordered(extract_clip, todo, cfg.executor, cfg.workers, cfg.scheduler_address,
                                initializer=init_worker, initargs=(threads,)):
        records[record["clip_id"]] = record
        if record["status"] != "ok":
            log.warning("skipped %s: %s", record["path"], record["error"])
        bar.update(1)
    bar.close()
    ds = assemble(cfg, [records[c.clip_id] for c in clips], name)
    ds.meta.extra["model_load_s"] = model_load_s  # one-off costs, not part of any clip's timings
    if out is not None:
        path = write_features(ds, out)
        failures_csv(ds, path.with_suffix(".failures.csv"))
    return ds


def assemble(cfg: ExtractConfig, records: list[dict], name: str = "clips") -> MultimodalDataset:
    """Per-clip records -> a dataset (failed clips go to the failures table only)."""
    ok = [r for r in records if r["status"] == "ok"]
    failures = [{"clip": r["path"], "clip_id": r["clip_id"], "stage": r.get("stage", ""), "error": r["error"],
                 "kind": "failed"} for r in records if r["status"] != "ok"]
    for r in ok:
        for modality, why in r["missing"].items():
            failures.append({"clip": r["path"], "clip_id": r["clip_id"], "stage": modality, "error": why,
                             "kind": "modality missing"})
    specs = modality_specs(cfg, ok)
    scheme = SIMS_SCHEME if cfg.label_scale == "sims" else MOSI_SCHEME
    features = {m: [np.asarray(r["features"].get(m, np.zeros((0, spec.dim))), np.float32) for r in ok]
                for m, spec in specs.items()}
    scores = [np.nan if r.get("label") is None else r["label"] for r in ok]
    labels = [-1 if np.isnan(s) else int(scores_to_classes([s], 2, scheme.scale)[0]) for s in scores]
    extra_keys = ("transcript_source", "language_probability", "language_source", "segments", "tokens",
                  "duration", "face_ratio", "n_frames", "timings", "wall_s", "missing", "path", "cached")
    meta = DatasetMeta(name, specs, scheme, source="msa_lib.extract",
                       extra={"extract_config": cfg.settings_for_cache()})
    return MultimodalDataset.build(
        meta, [r["clip_id"] for r in ok], features,
        split=[r.get("split") or cfg.split for r in ok], language=[r.get("language") or "unknown" for r in ok],
        raw_text=[r.get("transcript", "") for r in ok], scores=scores, labels=labels, failures=failures,
        extra=[{k: r.get(k) for k in extra_keys if k in r} for r in ok], source=name)


def modality_specs(cfg: ExtractConfig, records: Iterable[dict] = ()) -> dict[str, ModalitySpec]:
    """Feature names, groups, rates and extractor settings of every modality the config produces."""
    records = list(records)
    specs: dict[str, ModalitySpec] = {}
    if "text" in cfg.modalities:
        dim = next((r["features"]["text"].shape[1] for r in records if "text" in r["features"]), 384)
        text_settings = {"name": "text-encoder", **asdict(cfg.text), "asr": asdict(cfg.asr)}
        names = [f"text_{i:03d}" for i in range(dim)]
        specs["text"] = ModalitySpec(dim, names, {"embedding": list(range(dim))}, "sequence", None, text_settings)
        specs["text_pooled"] = ModalitySpec(dim, names, {"embedding": list(range(dim))}, "utterance", None, text_settings)
    if "audio" in cfg.modalities:
        if "prosody" in cfg.audio_features:
            names = audio_feature_names(cfg.audio)
            specs["audio"] = ModalitySpec(len(names), names, feature_groups(names), "sequence",
                                          1000.0 / cfg.audio.hop_ms, {"name": "librosa prosody", **asdict(cfg.audio)})
        if "whisper" in cfg.audio_features:
            dim = next((r["features"]["audio_whisper"].shape[1] for r in records if "audio_whisper" in r["features"]), 512)
            specs["audio_whisper"] = ModalitySpec(dim, [f"whisper_enc_{i:03d}" for i in range(dim)],
                                                  {"whisper_encoder": list(range(dim))}, "sequence",
                                                  cfg.whisper_encoder.frame_rate_hz or 50.0,
                                                  {"name": "whisper encoder", **asdict(cfg.whisper_encoder)})
        if "egemaps" in cfg.audio_features:
            dim = next((r["features"]["audio_egemaps"].shape[1] for r in records if "audio_egemaps" in r["features"]), 88)
            specs["audio_egemaps"] = ModalitySpec(dim, None, {}, "utterance", None, {"name": "openSMILE eGeMAPSv02"})
    if "vision" in cfg.modalities:
        names, groups = visual_feature_names(cfg.visual)
        specs["vision"] = ModalitySpec(len(names), names, groups, "sequence", cfg.media.fps,
                                       {"name": "mediapipe face", **asdict(cfg.visual), "fps": cfg.media.fps,
                                        "max_side": cfg.media.max_side})
    return specs


def failures_csv(ds: MultimodalDataset, path: str | os.PathLike) -> Path:
    import pandas as pd

    path = Path(path)
    pd.DataFrame(ds.failures, columns=["clip_id", "clip", "kind", "stage", "error"]).to_csv(path, index=False)
    return path
