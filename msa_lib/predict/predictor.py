"""Sentiment of raw clips with the bilingual default model (``msa predict``).

>>> p = Predictor.load()                      # models/default (train: python -m msa_lib.predict.train_default)
>>> p.predict(["data/clips/chsims_video_0001_0001.mp4"])[0]["label"]

Per clip the extraction pipeline (:func:`msa_lib.extract.pipeline.extract`) gives the ASR transcript and
language, the e5 pooled sentence vector, frame-level prosody and the per-frame MediaPipe face
blendshapes; each branch of the default model turns its part into a score in [-1, 1], and the scores
of the modalities present are averaged with the model's fusion weights renormalised over them.

Bad input never raises: a missing, unreadable or non-media file gets ``status = "error"`` and a message;
a clip without speech or without a face is predicted from what is present (``missing`` says what is
not, ``predicted_from`` what was used). Speech in a language other than Chinese or English, or whose
language the detector is unsure of, is not transcribed: its text modality is missing with that reason,
``language`` is the detected language and ``language_supported`` is False. The extraction models stay loaded in the process (the pipeline's module cache), so a warm
:class:`Predictor` only pays the per-clip work.
"""
from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Sequence

import numpy as np

from msa_lib.data.labels import CLASS_NAMES, SIMS_CUTS
from msa_lib.data.run_folder import ModelNotFound, RunError, read_run_header  # noqa: F401  (ModelNotFound: re-exported)
from msa_lib.core.paths import project_path
from msa_lib.core.utils import get_logger, normalize_language
from msa_lib.extract.text_language import detect_text_language
from msa_lib.predict.train_default import DEFAULT_MODEL_DIR, linear_proba, text_branch_score

log = get_logger("predict")

MODALITIES = ("text", "audio", "face")
MIN_AUDIO_SCORE_S = 0.5  # shorter clips get no audio score (the audio model was trained on 3-s utterances)
LABELS = CLASS_NAMES[5]  # SNEG, WNEG, NEUT, WPOS, SPOS


def score_to_label(score: float, cuts: Sequence[float] = SIMS_CUTS[5]) -> str:
    """SIMS-style right-closed intervals: (-inf, -0.7] SNEG, (-0.7, -0.1] WNEG, (-0.1, 0.1] NEUT, ..."""
    return LABELS[int(np.searchsorted(np.asarray(cuts), score, side="left"))]


def fuse(scores: dict[str, float | None], weights: dict[str, float]) -> dict:
    """Weighted average of the available scores with the weights renormalised over them.

    Returns ``{"score", "weights" (renormalised, present modalities), "contributions" (weight * score,
    summing to the score), "missing"}``; score is None when no modality is present."""
    present = {m: float(s) for m, s in scores.items() if s is not None and np.isfinite(s) and weights.get(m, 0) > 0}
    missing = [m for m in scores if m not in present]
    total = sum(weights[m] for m in present)
    if not present or total <= 0:
        return {"score": None, "weights": {}, "contributions": {}, "missing": missing}
    w = {m: weights[m] / total for m in present}
    contrib = {m: w[m] * present[m] for m in present}
    return {"score": float(np.clip(sum(contrib.values()), -1, 1)), "weights": w, "contributions": contrib,
            "missing": missing}


def check_clip_paths(paths) -> tuple[list, list, list]:
    """``(paths, results, clips)``: the inputs as a list, an error result for every path that is not a
    readable file (``None`` for the others), and ``(index, ClipInput)`` of the readable ones."""
    from msa_lib.extract.pipeline import ClipInput

    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = list(paths)
    results: list[dict | None] = [None] * len(paths)
    clips = []
    for i, p in enumerate(paths):
        path = Path(p).expanduser()
        base = {"clip": str(p), "path": str(path)}
        if not path.exists():
            results[i] = {**base, "status": "error", "error": f"{p}: file not found"}
        elif path.is_dir():
            results[i] = {**base, "status": "error", "error": f"{p}: is a folder, expected a video or audio file"}
        elif not os.access(path, os.R_OK):
            results[i] = {**base, "status": "error", "error": f"{p}: file is not readable (permission denied)"}
        else:
            clips.append((i, ClipInput(str(path), f"clip{i:04d}")))
    return paths, results, clips


class Predictor:
    """Predicts raw clips with a trained model folder (see :mod:`msa_lib.data.run_folder`).

    :meth:`load` reads any run folder and returns the predictor of its kind (the default model:
    :class:`DefaultModelPredictor`; a ``msa train`` run: :class:`~msa_lib.predict.run_predictor.RunPredictor`);
    :meth:`predict` is the one prediction loop: check the paths, extract every readable clip with the
    model's extraction settings, then one result per clip from the kind's :meth:`_predict_row`."""

    extract_config = None  # ExtractConfig: how the model's features are made from a clip

    @classmethod
    def load(cls, model_dir: str | os.PathLike | None = None, use_cache: bool = False,
             fps: float | None = None) -> "Predictor":
        """Read a run folder (default ``models/default``, written by :mod:`msa_lib.predict.train_default`;
        or one written by ``msa train``)."""
        path = project_path(model_dir or DEFAULT_MODEL_DIR)
        header = read_run_header(path)
        if header["kind"] == "network":
            from msa_lib.predict.run_predictor import RunPredictor

            return RunPredictor.load(path, use_cache=use_cache, fps=fps)
        return DefaultModelPredictor.from_folder(path, header, use_cache=use_cache, fps=fps)

    # -------------------------------------------------------------------------------- prediction
    def predict(self, paths: Sequence[str | os.PathLike] | str | os.PathLike, progress: bool = False) -> list[dict]:
        """One dict per input path, in input order, with ``clip``, ``path`` and ``status`` (``ok`` or
        ``error`` with ``error``) and the outputs of the model kind (see :meth:`_predict_row`)."""
        from msa_lib.extract.errors import MissingToolError
        from msa_lib.extract.pipeline import extract

        started = time.perf_counter()
        paths, results, clips = check_clip_paths(paths)
        if clips:
            # the models load in the background while the first clip decodes (extract() starts them)
            try:
                ds = extract([c for _, c in clips], self.extract_config, progress=progress, name="predict")
            except MissingToolError:
                raise  # ffmpeg missing: a setup problem, reported once by the caller
            except Exception as exc:  # never a traceback for the user: every clip gets the message
                log.exception("extraction failed")
                for i, _ in clips:
                    results[i] = {"clip": str(paths[i]), "path": str(paths[i]), "status": "error",
                                  "error": f"extraction failed: {type(exc).__name__}: {exc}"}
                ds = None
            if ds is not None:
                rows = {cid: k for k, cid in enumerate(ds.ids)}
                fail = {f["clip_id"]: f for f in ds.failures if f["kind"] == "failed"}
                if len(ds):
                    self._begin(ds)  # a model-level problem (features of another spec) is one error, raised
                for i, clip in clips:
                    if clip.clip_id in rows:
                        try:
                            results[i] = {"clip": str(paths[i]), "path": clip.path, "status": "ok",
                                          **self._predict_row(ds, rows[clip.clip_id], str(paths[i]))}
                        except Exception as exc:
                            log.exception("prediction failed for %s", paths[i])
                            results[i] = {"clip": str(paths[i]), "path": clip.path, "status": "error",
                                          "error": f"prediction failed: {type(exc).__name__}: {exc}"}
                    else:
                        f = fail.get(clip.clip_id, {})
                        results[i] = {"clip": str(paths[i]), "path": clip.path, "status": "error",
                                      "error": _clean_error(f.get("error", "extraction produced no result"))}
        log.debug("predicted %d clips in %.2f s", len(paths), time.perf_counter() - started)
        return results  # type: ignore[return-value]

    def _begin(self, ds) -> None:
        """Work on the whole extracted batch before the per-clip results (e.g. one forward pass)."""

    def _predict_row(self, ds, k: int, name: str) -> dict:
        raise NotImplementedError

    def warm_up(self) -> dict[str, float]:
        """Load every extraction model now (once per process); returns the seconds each load took."""
        from msa_lib.extract.pipeline import init_worker, load_models, threads_per_worker

        init_worker(threads_per_worker(1))  # as extract() does for one local worker (all cores)
        seconds = load_models(self.extract_config)
        self._loaded = True
        return seconds

    @staticmethod
    def table(results: list[dict]) -> str:
        return format_table(results)

    def score_texts(self, texts: Sequence[str] | str, language: str | None = None) -> list[dict]:
        raise RunError(f"{type(self).__name__}: this model scores clips only; sentences are scored by the "
                       f"default model's text branch (msa predict --text without --model)")


class DefaultModelPredictor(Predictor):
    """The bilingual default model (run kind ``branch_fusion``): per-branch scores fused at decision level."""

    def __init__(self, model_dir: Path, config: dict, text: dict, audio: dict, use_cache: bool = False,
                 fps: float | None = None, face: dict | None = None):
        self.model_dir = Path(model_dir)
        self.config = config
        # text.npz holds one linear model per language under "<lang>_<array>" keys
        self.text_branches = {lang: {k[len(lang) + 1:]: v for k, v in text.items() if k.startswith(f"{lang}_")}
                              for lang in config["text"]["languages"]}
        self.audio = audio
        self.face = face  # per-frame blendshape valence model (None: the face is not scored)
        self.weights = dict(config["fusion"]["weights"])
        self.cuts = tuple(config["labels"]["cuts"])
        self.extract_config = self._extract_config(fps if fps is not None else config["extract"]["fps"], use_cache)
        self._loaded = False

    @classmethod
    def from_folder(cls, path: Path, config: dict, use_cache: bool = False,
                    fps: float | None = None) -> "DefaultModelPredictor":
        arrays = {}
        for branch in ("text", "audio", "face"):
            try:
                with np.load(path / config[branch]["file"], allow_pickle=False) as npz:
                    arrays[branch] = {k: npz[k] for k in npz.files}
            except (OSError, ValueError, KeyError) as exc:
                raise RunError(f"{path / config[branch]['file']}: not a readable {branch} branch "
                               f"({type(exc).__name__}); retrain with `msa train-default` or restore it") from None
        return cls(path, config, arrays["text"], arrays["audio"], use_cache=use_cache, fps=fps, face=arrays["face"])

    def _extract_config(self, fps: float, use_cache: bool):
        from msa_lib.extract.media import MediaConfig
        from msa_lib.extract.pipeline import ExtractConfig

        return ExtractConfig(
            modalities=("text", "audio", "vision"), audio_features=("prosody",),
            # the face branch reads the MediaPipe blendshapes only (no landmarks / HoG / FER pass)
            face_features=tuple(self.config["extract"].get("face_features", ("blendshapes",))),
            supported_languages=tuple(self.config["extract"].get("supported_languages", ("zh", "en"))),
            media=replace(MediaConfig(), fps=fps),
            use_cache=use_cache)

    # ---------------------------------------------------------------------------------- branches
    def text_score(self, pooled: np.ndarray, language: str, text: str | None = None) -> float | None:
        """The text branch of ``language`` on one pooled e5 vector and, for a branch with a character
        model (Chinese), the ``text`` itself (None: no vector or no branch)."""
        pooled = np.asarray(pooled, np.float64)
        branch = self.text_branches.get(language)
        if branch is None or pooled.size == 0 or not np.isfinite(pooled).all():
            return None
        kind = self.config["text"]["languages"][language]["kind"]
        texts = [text] if text and text.strip() else None
        return float(text_branch_score(branch, kind, pooled.reshape(1, -1), texts)[0])

    def _text_language(self, language: str | None, transcript: str) -> str | None:
        """The clip's language when a text branch exists for it, else the language of the transcript."""
        if language in self.text_branches:
            return language
        detected = detect_text_language(transcript) if transcript and transcript.strip() else None
        return detected.language if detected else None

    def audio_score(self, frames: np.ndarray, names: list[str]) -> float | None:
        from msa_lib.extract.audio import summarize

        frames = np.asarray(frames, np.float64)
        if frames.ndim != 2 or len(frames) == 0:
            return None
        vec, _ = summarize(frames, names, functionals=tuple(self.config["audio"]["functionals"]))
        if len(vec) != len(self.audio["mean"]):
            raise ValueError(f"audio features have {len(vec)} values, the model expects {len(self.audio['mean'])}")
        return float(2 * linear_proba(self.audio, np.nan_to_num(vec)[None])[0] - 1)

    def score_texts(self, texts: Sequence[str] | str, language: str | None = None) -> list[dict]:
        """The text branch on raw sentences: one dict per text with ``status``, ``language`` (given, or
        detected per text when ``language`` is None / "auto", see :mod:`msa_lib.extract.text_language`),
        ``score`` (2 P(positive) - 1, the text branch's score of a clip) and the 5-class ``label``.

        Empty or non-text input raises ``ValueError`` (it is a caller's mistake); a sentence in a
        language the model does not score gets ``status = "error"`` and the detected language."""
        from msa_lib.extract.registry import get_extractor

        items = [texts] if isinstance(texts, str) else texts
        if not isinstance(items, (list, tuple)) or not items:
            raise ValueError("score_texts: give a sentence or a non-empty list of sentences")
        for i, t in enumerate(items):
            if not isinstance(t, str):
                raise ValueError(f"text {i}: expected a string, got {type(t).__name__}")
            if not t.strip():
                raise ValueError(f"text {i}: empty text")
        supported = tuple(self.extract_config.supported_languages)
        forced = None
        if language is not None and str(language).strip().lower() != "auto":
            forced = normalize_language(language)
            if forced not in supported:
                raise ValueError(f"language {language!r}: the default model scores {', '.join(supported)} text")
        out, keep = [], []
        for i, t in enumerate(items):
            detected = None if forced else detect_text_language(t)
            lang = forced or (detected.language if detected else None)
            row = {"text": t, "language": lang, "language_source": "given" if forced else (detected.source if detected else None),
                   "language_probability": None if forced or not detected else _r(detected.probability)}
            if lang not in supported:
                why = "no letters to tell the language from" if lang is None else f"detected {lang}"
                row.update(status="error", error=f"{why}; the default model scores {', '.join(supported)} text "
                                                   f"(give the language to force one)")
            else:
                row["status"] = "ok"
                keep.append(i)
            out.append(row)
        if keep:
            from msa_lib.extract.text_windows import encode_windowed

            encoder = get_extractor("text").encoder(self.extract_config)
            _, pooled, windows = encode_windowed(encoder, [items[i] for i in keep])
            for i, vec, n in zip(keep, pooled, windows):
                score = self.text_score(vec, out[i]["language"], items[i])
                out[i].update(score=_r(score), label=score_to_label(score, self.cuts), text_windows=n)
        return out

    def face_score(self, frames: np.ndarray) -> tuple[float | None, int]:
        """(mean over the face frames of 2 P(positive) - 1, number of face frames) of T x 52 blendshapes."""
        frames = np.asarray(frames, np.float64)
        if self.face is None or frames.ndim != 2 or len(frames) == 0:
            return None, 0
        if frames.shape[1] != len(self.face["mean"]):
            raise ValueError(f"face features have {frames.shape[1]} columns, the model expects {len(self.face['mean'])}")
        keep = np.isfinite(frames).all(axis=1)  # masked (no-face) frames are NaN rows
        if not keep.any():
            return None, 0
        per_frame = 2 * linear_proba(self.face, frames[keep]) - 1
        return float(np.clip(per_frame.mean(), -1, 1)), int(keep.sum())

    def _predict_row(self, ds, k: int, name: str) -> dict:
        extra = ds.extra[k] or {}
        missing = dict(extra.get("missing") or {})
        scores: dict[str, float | None] = {}
        details: dict[str, dict] = {}
        if "text_pooled" in ds.features:
            language = self._text_language(ds.language[k], str(ds.raw_text[k] or ""))
            scores["text"] = self.text_score(ds.features["text_pooled"][k], language, str(ds.raw_text[k] or ""))
        if "audio" in ds.features:
            spec = ds.meta.modalities["audio"]
            scores["audio"] = self.audio_score(ds.features["audio"][k], list(spec.feature_names))
            duration = extra.get("duration")
            if scores["audio"] is not None and duration is not None and duration < MIN_AUDIO_SCORE_S:
                # prosody functionals of a fragment lie far outside the clips the audio model saw
                scores["audio"] = None
                missing["audio"] = f"too short to score ({duration:.2f} s; the audio model needs {MIN_AUDIO_SCORE_S:g} s)"
        if "vision_blendshapes" in ds.features:
            frames = ds.features["vision_blendshapes"][k]
            scores["face"], n_face = self.face_score(frames)
            details["face"] = {"face_frames": n_face, "frames": int(len(frames)) or None,
                               "face_ratio": extra.get("blendshape_face_ratio")}
        for m in MODALITIES:
            scores.setdefault(m, None)
        fused = fuse(scores, self.weights)
        reasons = {"text": missing.get("text"), "audio": missing.get("audio"), "face": missing.get("vision")}
        missing_out = {m: reasons.get(m) or "not extracted" for m in fused["missing"]}
        modalities = {m: {"score": _r(scores[m]), "weight": _r(fused["weights"].get(m)),
                          "contribution": _r(fused["contributions"].get(m)), **details.get(m, {})}
                      for m in MODALITIES}
        out = {"clip": name, "path": extra.get("path", name), "status": "ok",
               "label": score_to_label(fused["score"], self.cuts) if fused["score"] is not None else None,
               "score": _r(fused["score"]), "language": ds.language[k] if ds.language[k] != "unknown" else None,
               "language_probability": _r(extra.get("language_probability")),
               "transcript": str(ds.raw_text[k] or ""), "duration_s": _r(extra.get("duration")),
               "language_supported": extra.get("language_supported"),
               "modalities": modalities, "missing": missing_out, "predicted_from": list(fused["weights"]),
               "extract_s": _r(extra.get("wall_s"))}
        if fused["score"] is None:
            out.update(status="error", error="no modality could be scored: "
                       + "; ".join(f"{m}: {why}" for m, why in missing_out.items()))
        return out


def _r(x, nd: int = 4):
    return None if x is None else round(float(x), nd)


def _clean_error(msg: str) -> str:
    return str(msg).strip().splitlines()[0] if msg else "unknown error"


def format_table(results: list[dict]) -> str:
    """Human-readable table of :meth:`Predictor.predict` results."""
    header = f"{'clip':<34} {'label':<5} {'score':>6}  {'lang':<4} {'text':>6} {'audio':>6} {'face':>6}  transcript / error"
    lines = [header, "-" * len(header)]
    for r in results:
        name = Path(r["clip"]).name
        name = name if len(name) <= 34 else "..." + name[-31:]
        if r.get("status") != "ok":
            lines.append(f"{name:<34} {'ERROR':<5} {'':>6}  {'':<4} {'':>6} {'':>6} {'':>6}  {r.get('error', '')}")
            continue

        def cell(m):
            s = r["modalities"][m]["score"]
            return f"{s:+.2f}" if s is not None else "-"

        text = r["transcript"] if len(r["transcript"]) <= 60 else r["transcript"][:57] + "..."
        lines.append(f"{name:<34} {r['label']:<5} {r['score']:+6.2f}  {(r['language'] or '?'):<4} "
                     f"{cell('text'):>6} {cell('audio'):>6} {cell('face'):>6}  {text}")
        if r["missing"]:
            used = r.get("predicted_from") or [m for m in MODALITIES if m not in r["missing"]]
            lines.append(f"{'':<34} missing: " + "; ".join(f"{m} ({why})" for m, why in r["missing"].items())
                         + f"; predicted from {' + '.join(used)} only")
    return "\n".join(lines)


def text_table(results: list[dict]) -> str:
    """Human-readable table of :meth:`DefaultModelPredictor.score_texts` results."""
    lines = [f"{'label':<5} {'score':>6}  {'lang':<4} text / error", "-" * 60]
    for r in results:
        text = r["text"] if len(r["text"]) <= 60 else r["text"][:57] + "..."
        if r["status"] != "ok":
            lines.append(f"{'ERROR':<5} {'':>6}  {(r['language'] or '?'):<4} {text}: {r['error']}")
        else:
            lines.append(f"{r['label']:<5} {r['score']:+6.2f}  {r['language']:<4} {text}")
    return "\n".join(lines)
