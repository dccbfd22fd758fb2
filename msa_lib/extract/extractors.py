"""The built-in feature extractors, one class per representation (see :mod:`msa_lib.extract.registry`).

A new representation is one more class here: subclass :class:`~msa_lib.extract.registry.Extractor`,
decorate it with :func:`~msa_lib.extract.registry.register_extractor`, and select it by name in
``ExtractConfig`` (``text_features`` / ``audio_features`` / ``face_features``). Heavy libraries are
imported inside the methods, so importing this module stays cheap.
"""
from __future__ import annotations

from dataclasses import asdict, replace
from typing import Sequence

import numpy as np

from msa_lib.core.cache import contains, shared
from msa_lib.core.utils import normalize_transcript
from msa_lib.data.schema import ModalitySpec
from msa_lib.extract.audio import feature_groups, feature_names as audio_feature_names
from msa_lib.extract.errors import NoFaceError
from msa_lib.extract.registry import ClipData, Extractor, register_extractor
from msa_lib.extract.visual import visual_feature_names


class BuiltinExtractor(Extractor):
    """The extractors that existed before the registry: their settings are ExtractConfig fields, keyed
    (with ``PIPELINE_VERSION``) exactly as before, so existing per-clip caches stay valid."""

    cache_key_entry = False


def _first_dim(records: Sequence[dict], key: str, default: int) -> int:
    """Width of feature ``key`` in the first record that has it (``default`` before any extraction)."""
    return next((r["features"][key].shape[1] for r in records if key in r["features"]), default)


# ------------------------------------------------------------------------------------------- text
@register_extractor
class TranscriptText(BuiltinExtractor):
    """ASR transcript (unless the manifest gives one) -> text-encoder token states and pooled vector.

    Whisper detects the language per clip; only speech whose most likely language is one of
    ``cfg.supported_languages`` (p >= ``cfg.min_language_probability``) is transcribed. Other speech,
    or a detection too uncertain to tell, leaves the text modality missing with the reason and the
    detected language (``language_supported`` False): a language is never forced onto it. The record
    gets the transcript, language, their sources, the ASR segments and the segments dropped as
    unreliable."""

    name = "text"
    modality = "text"
    outputs = ("text", "text_pooled")
    record_keys = ("tokens", "text_windows", "language_supported", "top_languages", "dropped_segments")
    config_field = "text"

    def transcriber(self, cfg, language: str | None = None):
        """The ASR model for ``cfg.asr`` with ``language`` forced (None/"auto": detect), once per process."""
        from msa_lib.extract.asr import Transcriber

        return self.shared_model("asr", replace(cfg.asr, language=language or "auto"), Transcriber)

    def encoder(self, cfg):
        """The text encoder for ``cfg.text``: the default e5 runs in numpy (no torch / transformers import,
        see :mod:`msa_lib.extract.text_numpy`), other models through transformers."""
        from msa_lib.extract.text_numpy import text_encoder_for_extraction

        return self.shared_model("text", cfg.text, text_encoder_for_extraction)

    def needs_audio(self, clip) -> bool:
        return not clip.transcript  # a manifest transcript replaces ASR

    def load(self, cfg, timed, need_asr=True):
        if need_asr:  # the model itself, not just the (lazy) Transcriber
            timed(f"asr ({cfg.asr.backend})", lambda: self.transcriber(cfg).model)
        timed("text encoder", lambda: self.encoder(cfg).encode_with_pooled(["warm-up"]))

    def extract(self, clip: ClipData) -> dict[str, np.ndarray]:
        cfg, record = clip.config, clip.record
        if not record["transcript"]:
            self._transcribe(clip)
        if not record["transcript"]:
            return {}
        from msa_lib.extract.text_windows import encode_windowed

        # one pass; a transcript longer than the encoder's window is encoded in windows over the whole text
        seqs, pooled, windows = clip.timed("text", encode_windowed, self.encoder(cfg), [record["transcript"]])
        record["tokens"] = seqs.tokens[0]
        record["text_windows"] = windows[0]
        return {"text": seqs.embeddings[0], "text_pooled": pooled[0][None]}

    def _transcribe(self, clip: ClipData) -> None:
        cfg, record = clip.config, clip.record
        if clip.samples is None or clip.silent:
            clip.missing("text", "no speech (no audio track)" if clip.samples is None else "no speech (silence)")
            return
        from msa_lib.extract.asr import whisper_language

        # the manifest's language, else the one forced for the batch (msa extract --lang), else None: detect
        language = record["language"] or whisper_language(cfg.asr.language)
        if language and not record["language"]:
            record["language_source"] = "forced (--lang)"
        asr = self.transcriber(cfg, language)
        with clip.stage_progress("asr", round(clip.samples.size / clip.sample_rate, 1), "s") as bar:
            result = clip.timed("asr", asr.transcribe, clip.samples,
                                accept_languages=None if language else cfg.supported_languages,
                                min_language_probability=cfg.min_language_probability, progress=bar)
        record["dropped_segments"] = [tuple(s) for s in result.dropped_segments]
        if not language:
            record["top_languages"] = [tuple(t) for t in result.top_languages]
        if not result.language_supported:
            record.update(language=result.language, language_probability=result.language_probability,
                          language_source="detected (not supported)", language_supported=False)
            clip.missing("text", result.language_rejection)
        elif result.has_speech and result.text:
            record.update(transcript=normalize_transcript(result.text), transcript_source="asr",
                          language=result.language, language_probability=result.language_probability,
                          language_source=record["language_source"] if language else "detected",
                          language_supported=True, segments=[tuple(s) for s in result.segments])
        else:
            clip.missing("text", f"no speech detected: {result.no_speech_reason}" if result.no_speech_reason
                         else "no speech detected")

    def specs(self, cfg, records):
        dim = _first_dim(records, "text", 384)
        text_settings = {"name": "text-encoder", **asdict(cfg.text), "asr": asdict(cfg.asr)}
        names = [f"text_{i:03d}" for i in range(dim)]
        return {"text": ModalitySpec(dim, names, {"embedding": list(range(dim))}, "sequence", None, text_settings),
                "text_pooled": ModalitySpec(dim, names, {"embedding": list(range(dim))}, "utterance", None,
                                            text_settings)}


# ------------------------------------------------------------------------------------------ audio
_PROSODY_WARM_KEY = ("extract.warm-up", "prosody")


@register_extractor
class ProsodyAudio(BuiltinExtractor):
    """Frame-level prosody (pitch, energy, voicing, spectral shape; librosa + numpy)."""

    name = "prosody"
    modality = "audio"
    outputs = ("audio",)
    config_field = "audio"

    def load(self, cfg, timed, need_asr=True):
        if contains(_PROSODY_WARM_KEY):
            return
        from msa_lib.extract.audio import extract_prosody

        def warm_up() -> bool:
            # librosa's first call imports and JIT-compiles (numba) for several seconds: once per process
            noise = np.random.default_rng(0).standard_normal(cfg.media.sample_rate // 2).astype(np.float32)
            extract_prosody(0.1 * noise, cfg.media.sample_rate, cfg.audio)
            return True

        timed("audio features (first call)", lambda: shared(_PROSODY_WARM_KEY, warm_up))

    def extract(self, clip: ClipData) -> dict[str, np.ndarray]:
        from msa_lib.extract.audio import extract_prosody

        return {"audio": clip.timed("audio", extract_prosody, clip.samples, clip.sample_rate, clip.config.audio)[0]}

    def specs(self, cfg, records):
        names = audio_feature_names(cfg.audio)
        return {"audio": ModalitySpec(len(names), names, feature_groups(names), "sequence", 1000.0 / cfg.audio.hop_ms,
                                      {"name": "librosa prosody", **asdict(cfg.audio)})}


@register_extractor
class WhisperEncoderAudio(BuiltinExtractor):
    """Frame-level Whisper-encoder states (a pretrained audio representation)."""

    name = "whisper"
    modality = "audio"
    outputs = ("audio_whisper",)
    config_field = "whisper_encoder"

    def encoder(self, cfg):
        from msa_lib.extract.whisper_features import WhisperEncoderFeatures

        return self.shared_model("whisper_encoder", cfg.whisper_encoder, WhisperEncoderFeatures)

    def load(self, cfg, timed, need_asr=True):
        timed("whisper encoder", lambda: self.encoder(cfg).model)

    def extract(self, clip: ClipData) -> dict[str, np.ndarray]:
        return {"audio_whisper": clip.timed("audio_whisper", self.encoder(clip.config).extract, clip.samples)}

    def specs(self, cfg, records):
        dim = _first_dim(records, "audio_whisper", 512)
        return {"audio_whisper": ModalitySpec(dim, [f"whisper_enc_{i:03d}" for i in range(dim)],
                                              {"whisper_encoder": list(range(dim))}, "sequence",
                                              cfg.whisper_encoder.frame_rate_hz or 50.0,
                                              {"name": "whisper encoder", **asdict(cfg.whisper_encoder)})}


@register_extractor
class EgemapsAudio(BuiltinExtractor):
    """openSMILE eGeMAPSv02 utterance functionals (88 values per clip)."""

    name = "egemaps"
    modality = "audio"
    outputs = ("audio_egemaps",)

    def extract(self, clip: ClipData) -> dict[str, np.ndarray]:
        from msa_lib.extract.audio import extract_egemaps

        return {"audio_egemaps": clip.timed("audio_egemaps", extract_egemaps, clip.samples, clip.sample_rate)[0][None]}

    def specs(self, cfg, records):
        dim = _first_dim(records, "audio_egemaps", 88)
        return {"audio_egemaps": ModalitySpec(dim, None, {}, "utterance", None, {"name": "openSMILE eGeMAPSv02"})}


# ----------------------------------------------------------------------------------------- vision
@register_extractor
class FaceFeatures(BuiltinExtractor):
    """MediaPipe face features of the main face per sampled frame: key landmarks, head pose, geometric
    action units, HoG of the aligned face (``visual.use_hog``) and FER expression probabilities
    (``visual.use_expression``), with a face-present mask. One representation: the groups share the
    face track and the mask, and their columns are listed in ``ModalitySpec.groups``."""

    name = "face"
    modality = "vision"
    outputs = ("vision",)
    record_keys = ("face_ratio", "n_frames")
    config_field = "visual"

    def face_extractor(self, cfg):
        from msa_lib.extract.visual import FaceFeatureExtractor

        return self.shared_model("visual", cfg.visual, FaceFeatureExtractor)

    def load(self, cfg, timed, need_asr=True):
        timed("face models", lambda: self.face_extractor(cfg).detect_faces(np.zeros((64, 64, 3), np.uint8)))

    def extract(self, clip: ClipData) -> dict[str, np.ndarray]:
        with clip.stage_progress("face", clip.expected_frames, "frame") as bar:
            try:
                out = clip.timed("vision", self.face_extractor(clip.config).extract_stream, clip.iter_frames(),
                                 source=clip.clip.path, progress=bar)
            except NoFaceError as exc:
                clip.missing("vision", "no face in any frame")
                clip.record["face_ratio"], clip.record["n_frames"] = 0.0, exc.n_frames
                return {}
        clip.record["face_ratio"] = out.face_ratio
        clip.record["n_frames"] = int(len(out.mask))
        return {"vision": out.features}

    def specs(self, cfg, records):
        names, groups = visual_feature_names(cfg.visual)
        return {"vision": ModalitySpec(len(names), names, groups, "sequence", cfg.media.fps,
                                       {"name": "mediapipe face", **asdict(cfg.visual), "fps": cfg.media.fps,
                                        "max_side": cfg.media.max_side})}


__all__ = ["BuiltinExtractor", "TranscriptText", "ProsodyAudio", "WhisperEncoderAudio", "EgemapsAudio", "FaceFeatures"]

# Representations with a module of their own, imported here so that every process that loads the
# built-ins (worker processes included) registers them too, after the classes above.
import msa_lib.extract.blendshapes  # noqa: E402,F401  ("blendshapes": MediaPipe face blendshapes)
