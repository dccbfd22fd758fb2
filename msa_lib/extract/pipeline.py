"""Raw clips -> per-clip text, audio and face features -> one feature file.

Per clip (:func:`extract_clip`): decode (ffmpeg) -> every selected extractor, modality by modality:
text (ASR with per-clip language detection, a manifest transcript overriding it, then the text
encoder's token sequences + pooled vector), audio (frame-level prosody; optionally Whisper-encoder
states, eGeMAPS), vision (MediaPipe face features with a face-present mask). The representations
are classes in a registry (:mod:`msa_lib.extract.registry`, built-ins in
:mod:`msa_lib.extract.extractors`): this module decodes, runs them, caches and assembles, and names
none of them, so a new representation is one class there.

Bad input never stops a batch: a clip that cannot be decoded at all is a *failure*; a clip that lacks
one modality (no audio track, silence, no speech, no face in any frame) keeps the others and the gap is
recorded. Both end up in the failures table saved with the batch (``dataset.failures`` and
``<out>.failures.csv``).

Speed (``benchmarks/bench_extract.py``, ``benchmarks/bench_predict.py``): nothing loads before the
inputs are checked (a batch whose files are all missing loads no model); then every model loads once
per process in background threads while the first clip decodes (:func:`start_loading_models`; each
load's seconds go to ``ds.meta.extra["model_load_s"]``, and the first clip's stage timings include any
wait for a model still loading; :func:`load_models` loads them up front instead, as the benchmarks
do). The default extraction imports neither torch nor transformers (the e5 text encoder runs in numpy,
:mod:`msa_lib.extract.text_numpy`). The sampled frames stream from ffmpeg into the face models
(:class:`~msa_lib.extract.media.FrameStream`: a bounded buffer, so memory does not grow with the clip's
length, ``benchmarks/bench_length.py``), and faster-whisper detects the language from the encoder pass its decoding
reuses. Pool workers (``workers > 1``, dask) get one share of the cores each in every thread pool
(:func:`init_worker`, :func:`pinned_config`). Each record keeps the wall seconds of every stage on the
clip's critical path (``timings``) and of the whole clip (``wall_s``).

Every finished clip is cached under ``cache_dir()/extract/<content hash>-<settings hash>.pkl``
(written by the worker itself, atomically), so a rerun skips finished clips and a crash loses nothing.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from msa_lib.data.labels import MOSI_SCHEME, SIMS_SCHEME, LabelScheme, scores_to_classes
from msa_lib.data.io import atomic_pickle, write_features
from msa_lib.data.schema import DatasetMeta, ModalitySpec, MultimodalDataset
from msa_lib.core.paths import cache_dir, project_path
from msa_lib.core.pretrained import sha256_file
from msa_lib.core.utils import get_logger, normalize_transcript
from msa_lib.extract.asr import ASRConfig, whisper_language
from msa_lib.extract.whisper_features import WhisperEncoderConfig
from msa_lib.extract.audio import AudioFeatureConfig, is_silent
from msa_lib.extract.errors import ExtractionError, MediaError, MissingToolError
from msa_lib.extract.executors import map_unordered, threads_per_worker
from msa_lib.extract.media import FrameStream, MediaConfig, extract_audio, probe, stack_frames
from msa_lib.extract.registry import (
    MODALITIES,
    SELECTION_FIELDS,
    ClipData,
    check_selection,
    get_extractor,
    selected_extractors,
)
from msa_lib.extract.text_types import TextEncoderConfig
from msa_lib.extract.visual import VisualFeatureConfig

log = get_logger("extract")

PIPELINE_VERSION = 4  # bump when the per-clip output changes: invalidates cached clips (3: language gate,
# unreliable ASR segments dropped, deterministic decoding; 4: long transcripts encoded in windows)
VIDEO_SUFFIXES = {".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v", ".flv", ".mpg", ".mpeg"}
AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac"}


@dataclass
class ExtractConfig:
    """What to extract and how. Sub-configs hold each extractor's own settings."""

    modalities: tuple[str, ...] = MODALITIES
    # the extractors per modality, by registry name (msa_lib.extract.registry lists them)
    audio_features: tuple[str, ...] = ("prosody",)  # add "whisper" (pretrained) or "egemaps" (openSMILE)
    face_features: tuple[str, ...] = ("face",)  # MediaPipe landmarks, head pose, AUs, HoG, expressions
    text_features: tuple[str, ...] = ("text",)  # ASR transcript + text-encoder states
    # settings of extractors that have no ExtractConfig field of their own, by name (default: their
    # config_class()); part of the cache key when the extractor is selected
    extractor_settings: dict = field(default_factory=dict)
    # speech is transcribed only when the detector's most likely language is one of these with at least
    # this probability; other speech leaves the text modality missing (never a forced language)
    supported_languages: tuple[str, ...] = ("zh", "en")
    min_language_probability: float = 0.5
    label_scale: str = "sims"  # manifest labels are scores in [-1, 1] ("mosi": [-3, 3])
    split: str = "test"  # split given to the clips (a manifest ``split`` column overrides)
    media: MediaConfig = field(default_factory=MediaConfig)
    asr: ASRConfig = field(default_factory=ASRConfig)
    text: TextEncoderConfig = field(default_factory=lambda: TextEncoderConfig(show_progress=False))
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    whisper_encoder: WhisperEncoderConfig = field(default_factory=WhisperEncoderConfig)
    visual: VisualFeatureConfig = field(default_factory=lambda: VisualFeatureConfig(allow_no_face=False))
    workers: int = 1
    # Stream the sampled video frames (an ffmpeg process and a reader thread) into the face models as
    # they decode: memory stays flat whatever the clip's length and decoding overlaps the face analysis.
    # False decodes every frame first (memory grows with the clip; an ablation in benchmarks/bench_extract.py).
    overlap_decode: bool = True
    stage_progress: bool = False  # per-stage bars within each clip (extract() sets it when drawing on a terminal)
    executor: str = "local"  # local | dask | ray
    scheduler_address: str | None = None  # dask/ray: an existing cluster
    use_cache: bool = True
    cache_folder: str | None = None  # default: cache_dir()/extract

    def __post_init__(self):
        bad = set(self.modalities) - set(MODALITIES)
        if bad or not self.modalities:
            raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}, got {self.modalities}")
        for modality, selection in SELECTION_FIELDS.items():
            check_selection(modality, getattr(self, selection))
        if self.label_scale not in ("sims", "mosi"):
            raise ValueError(f"label_scale must be 'sims' or 'mosi', got {self.label_scale!r}")
        if not 0 <= self.min_language_probability <= 1:
            raise ValueError(f"min_language_probability must be in [0, 1], got {self.min_language_probability}")

    def settings_for_cache(self) -> dict:
        """Everything that changes a clip's output (not workers, executor or cache location).

        The face and text selections join the dict only when they differ from their defaults, and an
        extractor without an ExtractConfig field only when selected, so a config that uses the
        representations that existed before the registry gives the same dict (and cache key) as then."""
        d = asdict(self)
        for key in ("workers", "executor", "scheduler_address", "use_cache", "cache_folder", "split",
                    "overlap_decode", "stage_progress", "extractor_settings"):
            d.pop(key)
        for sub in ("text", "asr", "whisper_encoder", "visual"):
            for key in ("device", "show_progress", "batch_size", "num_threads", "runtime"):
                d[sub].pop(key, None)
        for selection in ("face_features", "text_features"):
            if tuple(d[selection]) == self.__dataclass_fields__[selection].default:
                d.pop(selection)
        extractors = {name: get_extractor(name).cache_settings(self)
                      for selection in SELECTION_FIELDS.values() for name in getattr(self, selection)
                      if get_extractor(name).cache_key_entry}
        if extractors:
            d["extractors"] = dict(sorted(extractors.items()))
        d["pipeline_version"] = PIPELINE_VERSION
        return d

    @classmethod
    def from_settings(cls, settings: dict, **overrides) -> "ExtractConfig":
        """The config that :meth:`settings_for_cache` describes (as recorded in a feature file's metadata),
        with ``overrides`` (e.g. ``use_cache``) applied: so features can be extracted again as before."""
        import dataclasses
        import typing

        hints = typing.get_type_hints(cls)
        values = {}
        for f in dataclasses.fields(cls):
            if f.name not in settings:
                continue
            value, hint = settings[f.name], hints.get(f.name)
            if dataclasses.is_dataclass(hint) and isinstance(value, dict):
                names = {g.name for g in dataclasses.fields(hint)}
                value = hint(**{k: v for k, v in value.items() if k in names})
            elif isinstance(value, list):
                value = tuple(value)
            values[f.name] = value
        if settings.get("extractors"):
            values["extractor_settings"] = dict(settings["extractors"])
        return cls(**{**values, **overrides})

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
    label: float | None = None  # a score
    split: str | None = None  # train / valid / test
    group: str = ""  # speaker or source video (group-aware splits)
    label_class: str = ""  # a class name (e.g. an emotion) when the manifest's labels are names


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
                                       row.split or None, row.group, row.label_class))
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
def cache_key(clip: ClipInput, config: ExtractConfig) -> str | None:
    try:
        content = sha256_file(clip.path)
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
def load_models(cfg: ExtractConfig, need_asr: bool = True) -> dict[str, float]:
    """Load (once per process) every model ``cfg`` needs and return the seconds each load took (about
    0 when already loaded; a one-off warm-up already paid is left out). :func:`extract` calls it before
    its in-process loop, so one-off load costs never land in a clip's stage timings; benchmarks report
    them separately. ``need_asr=False``: every clip comes with a transcript, so no ASR model is loaded."""
    seconds: dict[str, float] = {}

    def timed_load(name, fn):
        start = time.perf_counter()
        fn()
        seconds[name] = round(time.perf_counter() - start, 3)

    for extractor in selected_extractors(cfg):
        extractor.load(cfg, timed_load, need_asr=need_asr)
    return seconds


class ModelLoading:
    """The models of a config loading in background threads, one per extractor (:func:`start_loading_models`)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}  # each load's own wall time (the loads overlap)
        self.jobs: list[tuple[str, Future]] = []

    def timed(self, name: str, fn) -> None:
        start = time.perf_counter()
        fn()
        self.seconds[name] = round(time.perf_counter() - start, 3)

    def wait(self) -> dict[str, float]:
        """Wait for every load; a failed one is logged (the clips that need it report the error)."""
        for name, job in self.jobs:
            try:
                job.result()
            except MissingToolError:
                raise
            except Exception as exc:
                log.warning("loading the %s models failed (%s: %s); the clips will report it", name,
                            type(exc).__name__, exc)
        return dict(self.seconds)


def start_loading_models(cfg: ExtractConfig, need_asr: bool = True) -> ModelLoading:
    """Start loading every model ``cfg`` needs, each extractor's in its own thread, and return at once.

    The first clip starts decoding meanwhile and each extractor waits only for its own model (the
    process-wide model cache lets a second caller of a model that is still loading wait for it): so
    ffmpeg, the ASR's loading and decoding (native code that releases the GIL) and the Python-heavy
    imports of the other models overlap. Cold ``msa predict`` of a 10-s clip: see
    ``benchmarks/bench_predict.py``."""
    loading = ModelLoading()
    for extractor in selected_extractors(cfg):
        job = partial(extractor.load, cfg, loading.timed, need_asr=need_asr)
        loading.jobs.append((extractor.name, _background(job, name=f"msa-load-{extractor.name}")))
    return loading


def init_worker(num_threads: int) -> None:
    """Pin this process's native thread pools to ``num_threads`` (a pool worker's share of the cores, see
    :func:`threads_per_worker`): numpy's BLAS (threadpoolctl), the OpenMP / MKL / OpenBLAS defaults of
    libraries loaded later, and torch's pool when torch is loaded (the default extraction never imports
    it). CTranslate2 takes its count from the ASR config (:func:`pinned_config`). Two workers on two
    cores with two threads each would fight over the cores and be slower than one worker."""
    n = max(1, int(num_threads))
    if n < (os.cpu_count() or 1):
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(n)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(n)
        except ImportError:  # threadpoolctl comes with scikit-learn; without it the env vars still apply
            pass
    torch = sys.modules.get("torch")
    # a model loading in a background thread may be importing torch right now (partially initialised)
    if torch is not None and hasattr(torch, "set_num_threads"):
        torch.set_num_threads(n)


def pinned_config(cfg: ExtractConfig, num_threads: int) -> ExtractConfig:
    """``cfg`` with every extractor's own thread setting left at "auto" (0) set to ``num_threads``
    (thread counts are not part of the cache key, so cached clips stay valid)."""
    asr = cfg.asr if cfg.asr.num_threads else replace(cfg.asr, num_threads=num_threads)
    encoder = cfg.whisper_encoder if cfg.whisper_encoder.num_threads else replace(cfg.whisper_encoder,
                                                                                    num_threads=num_threads)
    return replace(cfg, asr=asr, whisper_encoder=encoder)


def extract_clip(job: tuple[ClipInput, ExtractConfig, str | None]) -> dict:
    """Extract one clip. Never raises for bad media: returns a record with ``status`` ok or failed."""
    clip, cfg, key = job
    started = time.perf_counter()
    timings: dict[str, float] = {}  # wall seconds per stage on this clip's critical path
    record: dict = {"clip_id": clip.clip_id, "path": clip.path, "label": clip.label, "split": clip.split,
                    "group": clip.group, "label_class": clip.label_class,
                    "status": "ok", "features": {}, "missing": {}, "timings": timings}
    data = ClipData(clip, cfg, record, info=None, timings=timings, show_progress=cfg.stage_progress)
    timed = data.timed
    extractors = selected_extractors(cfg)

    try:
        need_audio = "audio" in cfg.modalities or any(e.needs_audio(clip) for e in extractors)
        info = data.info = timed("decode", probe, clip.path, cfg.media.timeout_s)
        record["duration"] = info.duration
        if not info.duration or info.duration <= 0:
            raise MediaError(f"{clip.path}: zero-length media", clip=clip.path, stage="media")
        if "vision" in cfg.modalities and info.has_video:
            stream = FrameStream(clip.path, fps=cfg.media.fps, max_side=cfg.media.max_side,
                                 max_frames=cfg.media.max_frames, timeout_s=cfg.media.timeout_s, info=info)
            if cfg.overlap_decode:  # decoded while the face models run, a few frames in memory at a time
                data.frame_stream = stream
            else:
                data.set_frames(*timed("decode", stack_frames, stream))
        if need_audio:
            if info.has_audio:
                data.samples = timed("decode", extract_audio, clip.path, sr=cfg.media.sample_rate,
                                     timeout_s=cfg.media.timeout_s, info=info)
            else:
                record["missing"]["audio"] = "no audio track"
        data.silent = data.samples is not None and is_silent(data.samples, cfg.media.sample_rate)
        if data.silent:
            record["missing"]["audio"] = "silent audio track"

        # --- the manifest's transcript and language (the text extractor fills them in from ASR)
        language, transcript = whisper_language(clip.language), normalize_transcript(clip.transcript)
        record.update(transcript=transcript, transcript_source="manifest" if transcript else "none",
                      language=language, language_probability=None,
                      language_source="manifest" if language else "none", segments=[])
        if language is None and transcript:
            record["language"] = _guess_language(transcript)
            record["language_source"] = "script"

        # --- every selected extractor, modality by modality, on the inputs that modality reads
        for modality in MODALITIES:
            if modality not in cfg.modalities:
                continue
            if modality == "audio" and (data.samples is None or data.silent):
                continue  # already recorded as missing
            if modality == "vision" and data.frame_stream is None and data.expected_frames is None:
                record["missing"]["vision"] = "no video stream" if not info.has_video else "no frames decoded"
                continue
            for extractor in extractors:
                if extractor.modality == modality:
                    record["features"].update(extractor.extract(data))
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
        record["wall_s"] = time.perf_counter() - started
    if key and cfg.use_cache:
        atomic_pickle(record, cfg.cache_path() / f"{key}.pkl")
    return record


# Set by the SIGINT handler of `msa extract` (msa_lib/app/cli.py): a KeyboardInterrupt that library code
# swallowed (one raised inside a __del__ or a callback is only printed) still stops the batch at the
# next clip, before the output is written; the finished clips are in the cache.
STOP_REQUESTED = threading.Event()


def _background(fn, name: str) -> Future:
    """Run ``fn()`` in a daemon thread (a model load)."""
    future: Future = Future()

    def run():
        try:
            future.set_result(fn())
        except BaseException as exc:  # re-raised by future.result() in the clip's own thread
            future.set_exception(exc)

    threading.Thread(target=run, name=name, daemon=True).start()
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
            cached.update(clip_id=clip.clip_id, path=clip.path, label=clip.label, split=clip.split, group=clip.group,
                          label_class=clip.label_class)
            cached["cached"] = True
            records[clip.clip_id] = cached
        else:
            todo.append((clip, cfg, key))
    if records:
        log.info("%d of %d clips reused from the cache", len(records), len(clips))
    in_process = cfg.executor == "local" and (cfg.workers <= 1 or len(todo) <= 1)
    threads = threads_per_worker(1 if in_process else cfg.workers)
    loading: ModelLoading | None = None
    # a clip whose file is missing fails without any model: load nothing when no clip can run
    runnable = [clip for clip, _, _ in todo if os.path.isfile(clip.path)]
    if in_process:
        if runnable:
            init_worker(threads)  # (map_unordered calls it again: harmless)
            loading = start_loading_models(cfg, need_asr=any(not clip.transcript for clip in runnable))
        if progress:  # bars within the clip (frames, seconds of audio) only in this process
            todo = [(clip, replace(job_cfg, stage_progress=True), key) for clip, job_cfg, key in todo]
    else:  # worker processes: each gets its share of the cores, in every library's thread pool
        todo = [(clip, pinned_config(job_cfg, threads), key) for clip, job_cfg, key in todo]
    bar = tqdm(total=len(clips), initial=len(records), desc="extract", unit="clip", disable=not progress)
    for record in map_unordered(extract_clip, todo, cfg.executor, cfg.workers, cfg.scheduler_address,
                                initializer=init_worker, initargs=(threads,)):
        records[record["clip_id"]] = record
        if record["status"] != "ok":
            log.warning("skipped %s: %s", record["path"], record["error"])
        bar.update(1)
        if STOP_REQUESTED.is_set():
            raise KeyboardInterrupt
    bar.close()
    if STOP_REQUESTED.is_set():
        raise KeyboardInterrupt
    model_load_s = loading.wait() if loading is not None else {}
    ds = assemble(cfg, [records[c.clip_id] for c in clips], name)
    # one-off costs, each load's own wall time; they overlap the first clip, whose stage timings
    # include any wait for a model still loading (benchmarks load first: load_models)
    ds.meta.extra["model_load_s"] = model_load_s
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
    class_names = sorted({r["label_class"] for r in records if r.get("label_class")})
    if class_names:  # the manifest's labels are class names (e.g. emotions): a multi-class dataset
        scheme = LabelScheme("multiclass", None, tuple(class_names), "class names from the manifest's labels")
        scores = [np.nan] * len(ok)
        labels = [class_names.index(r["label_class"]) if r.get("label_class") else -1 for r in ok]
    else:
        scores = [np.nan if r.get("label") is None else r["label"] for r in ok]
        labels = [-1 if np.isnan(s) else int(scores_to_classes([s], 2, scheme.scale)[0]) for s in scores]
    extra_keys = ("transcript_source", "language_probability", "language_source", "segments", "tokens",
                  "duration", "face_ratio", "n_frames", "timings", "wall_s", "missing", "path", "cached")
    extra_keys += tuple(dict.fromkeys(k for e in selected_extractors(cfg) for k in e.record_keys
                                      if k not in extra_keys))  # metadata of newer extractors
    meta = DatasetMeta(name, specs, scheme, source="msa_lib.extract",
                       extra={"extract_config": cfg.settings_for_cache()})
    return MultimodalDataset.build(
        meta, [r["clip_id"] for r in ok], features,
        split=[r.get("split") or cfg.split for r in ok], language=[r.get("language") or "unknown" for r in ok],
        group=[r.get("group") or r["clip_id"] for r in ok],
        raw_text=[r.get("transcript", "") for r in ok], scores=scores, labels=labels, failures=failures,
        extra=[{k: r.get(k) for k in extra_keys if k in r} for r in ok], source=name)


def modality_specs(cfg: ExtractConfig, records: Iterable[dict] = ()) -> dict[str, ModalitySpec]:
    """Feature names, groups, rates and extractor settings of every feature the config produces."""
    records = list(records)
    specs: dict[str, ModalitySpec] = {}
    for extractor in selected_extractors(cfg):
        specs.update(extractor.specs(cfg, records))
    return specs


def failures_csv(ds: MultimodalDataset, path: str | os.PathLike) -> Path:
    import pandas as pd

    path = Path(path)
    pd.DataFrame(ds.failures, columns=["clip_id", "clip", "kind", "stage", "error"]).to_csv(path, index=False)
    return path
