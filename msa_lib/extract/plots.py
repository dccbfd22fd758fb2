"""Tables and figures for the extraction stage (notebook ``01_extraction``; the notebook holds no logic).

Inputs are what :func:`msa_lib.extract.pipeline.extract` returns (a ``MultimodalDataset`` whose
``extra`` holds per-clip timings, language probability, face ratio, ...) or plain arrays, so every
function also works on synthetic data.

* :func:`clip_table` - per clip: language (+ probability and source), transcript next to a reference.
* :func:`timing_table` / :func:`plot_stage_timings` - wall seconds per stage, and per second of video.
* :func:`prosody_curves` / :func:`plot_pitch_energy` - F0 (Hz, voiced frames) and energy (dBFS).
* :func:`expression_curves` / :func:`plot_expression_probabilities` - facial-expression probabilities.
* :func:`frame_with_landmarks` / :func:`plot_images` - the face mesh drawn on a video frame.
"""
from __future__ import annotations

import os
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from msa_lib.core.cache import shared
from msa_lib.core.plots import plt  # noqa: F401  (imports matplotlib with the headless backend first)
from msa_lib.extract.visual import EXPRESSION_LABELS

STAGES = ("decode", "asr", "text", "audio", "audio_whisper", "audio_egemaps", "vision")
STAGE_COLORS = {"decode": "#8c8c8c", "asr": "#1f77b4", "text": "#2ca02c", "audio": "#ff7f0e",
                "audio_whisper": "#e377c2", "audio_egemaps": "#bcbd22", "vision": "#d62728"}


class PlotInputError(ValueError):
    """Arrays given to a plotting helper do not have the expected shape or columns."""


# ------------------------------------------------------------------------------------------ tables
def clip_table(ds, references: Mapping[str, str] | None = None) -> pd.DataFrame:
    """One row per extracted clip: language, its probability and source, transcript (and the
    reference transcript when ``references`` maps clip id -> text), face-present ratio, frames, length."""
    rows = []
    for i, clip_id in enumerate(ds.ids):
        extra = ds.extra[i] or {}
        prob = extra.get("language_probability")
        row = {"clip_id": clip_id, "language": ds.language[i],
               "language_probability": np.nan if prob is None else round(float(prob), 3),
               "language_source": extra.get("language_source", ""),
               "transcript": ds.raw_text[i], "transcript_source": extra.get("transcript_source", "")}
        if references is not None:
            row["reference"] = references.get(clip_id, "")
        row.update(face_ratio=extra.get("face_ratio", np.nan), frames=extra.get("n_frames", np.nan),
                   duration_s=round(float(extra.get("duration") or np.nan), 2))
        rows.append(row)
    return pd.DataFrame(rows)


def timing_table(ds, stages: Sequence[str] | None = None) -> pd.DataFrame:
    """Per clip: video length, wall seconds per stage (``extra[i]["timings"]``), their sum, the clip's
    whole wall time and wall seconds per second of video; a last ``total`` row sums the clips.

    Cached clips keep the timings of the run that computed them (column ``cached``)."""
    records = []
    for i, clip_id in enumerate(ds.ids):
        extra = ds.extra[i] or {}
        timings = extra.get("timings") or {}
        records.append({"clip_id": clip_id, "duration_s": float(extra.get("duration") or np.nan),
                        "cached": bool(extra.get("cached", False)), **timings,
                        "wall_s": float(extra.get("wall_s", np.nan) or np.nan)})
    table = pd.DataFrame(records)
    present = [s for s in (stages or STAGES) if s in table.columns]
    other = [c for c in table.columns if c not in ("clip_id", "duration_s", "cached", "wall_s", *present)]
    stage_cols = present + other
    table = table[["clip_id", "duration_s", "cached", *stage_cols, "wall_s"]] if len(table) else table
    if not len(table):
        return pd.DataFrame(columns=["clip_id", "duration_s", "cached", "stages_s", "wall_s", "wall_per_video_s"])
    table[stage_cols] = table[stage_cols].fillna(0.0)
    table["stages_s"] = table[stage_cols].sum(axis=1)
    total = {"clip_id": "total", "duration_s": table["duration_s"].sum(), "cached": bool(table["cached"].any()),
             **{c: table[c].sum() for c in [*stage_cols, "stages_s", "wall_s"]}}
    table = pd.concat([table, pd.DataFrame([total])], ignore_index=True)
    table["wall_per_video_s"] = table["wall_s"].where(table["wall_s"].notna(), table["stages_s"]) / table["duration_s"]
    return table.set_index("clip_id").round(4)


def plot_stage_timings(table: pd.DataFrame, per_video_second: bool = True, target: float | None = None,
                       title: str = "extraction time per stage"):
    """Horizontal stacked bars: one bar per row of ``table`` (clips, or settings), one colour per stage
    column found among :data:`STAGES`. ``per_video_second`` divides by ``duration_s``; ``target`` draws
    a vertical line (e.g. the 0.5 s/s goal)."""
    stages = [s for s in STAGES if s in table.columns]
    if not stages:
        raise PlotInputError(f"no stage columns among {STAGES} in the timing table (columns: {list(table.columns)})")
    values = table[stages].astype(float).fillna(0.0)
    if per_video_second:
        if "duration_s" not in table.columns:
            raise PlotInputError("per_video_second needs a duration_s column")
        values = values.div(table["duration_s"].astype(float), axis=0)
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(values) + 1.4))
    left = np.zeros(len(values))
    labels = [str(i) for i in values.index]
    for stage in stages:
        ax.barh(labels, values[stage].to_numpy(), left=left, color=STAGE_COLORS.get(stage), label=stage)
        left += values[stage].to_numpy()
    if target is not None:
        ax.axvline(target, color="black", linestyle="--", linewidth=1, label=f"target {target:g}")
    ax.invert_yaxis()
    ax.set_xlabel("wall s per s of video" if per_video_second else "wall seconds")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=min(4, len(stages) + (target is not None)), loc="lower right")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ audio
def _columns(features: np.ndarray, feature_names: Sequence[str], wanted: Sequence[str], what: str) -> np.ndarray:
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[1] != len(feature_names):
        raise PlotInputError(f"{what}: expected a T x {len(feature_names)} array, got shape {features.shape}")
    missing = [w for w in wanted if w not in feature_names]
    if missing:
        raise PlotInputError(f"{what}: feature columns {missing} not found")
    return features[:, [list(feature_names).index(w) for w in wanted]].astype(np.float64)


def prosody_curves(features: np.ndarray, feature_names: Sequence[str], frame_rate_hz: float = 100.0) -> pd.DataFrame:
    """``time_s``, ``f0_hz`` (NaN on unvoiced frames) and ``energy_db`` from a clip's frame-level audio
    features (``msa_lib.extract.audio``: ``log_f0`` is 0 on unvoiced frames, read with ``voiced``)."""
    log_f0, voiced, rms_db = _columns(features, feature_names, ["log_f0", "voiced", "rms_db"], "prosody").T
    f0 = np.where(voiced > 0.5, np.exp(log_f0), np.nan)
    return pd.DataFrame({"time_s": np.arange(len(f0)) / float(frame_rate_hz), "f0_hz": f0, "energy_db": rms_db})


def plot_pitch_energy(clips: Mapping[str, np.ndarray], feature_names: Sequence[str], frame_rate_hz: float = 100.0):
    """One panel per clip: F0 in Hz on voiced frames (left axis) and frame energy in dBFS (right axis)."""
    if not clips:
        raise PlotInputError("no clips to plot")
    fig, axes = plt.subplots(len(clips), 1, figsize=(8, 2.1 * len(clips)), squeeze=False)
    for ax, (name, feats) in zip(axes[:, 0], clips.items()):
        curves = prosody_curves(feats, feature_names, frame_rate_hz)
        ax.plot(curves.time_s, curves.f0_hz, ".", color="#1f77b4", markersize=2.5, label="F0 (voiced)")
        ax.set_ylabel("F0 (Hz)", color="#1f77b4")
        ax.set_title(str(name), fontsize=9)
        energy_ax = ax.twinx()
        energy_ax.plot(curves.time_s, curves.energy_db, color="#ff7f0e", linewidth=0.9, label="energy")
        energy_ax.set_ylabel("energy (dBFS)", color="#ff7f0e")
        energy_ax.set_ylim(max(-100.0, float(np.nanmin(curves.energy_db)) - 5) if len(curves) else -100.0, 0)
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------ vision
def expression_curves(features: np.ndarray, feature_names: Sequence[str], frame_rate_hz: float = 5.0,
                      labels: Sequence[str] = EXPRESSION_LABELS) -> pd.DataFrame:
    """``time_s``, ``face`` (face present) and one probability column per expression label from a
    clip's frame-level face features; frames without a face hold NaN."""
    probs = _columns(features, feature_names, [f"expr_{label}" for label in labels], "expression")
    face = np.isfinite(probs).all(axis=1)
    table = pd.DataFrame(np.where(face[:, None], probs, np.nan), columns=list(labels))
    table.insert(0, "face", face)
    table.insert(0, "time_s", np.arange(len(probs)) / float(frame_rate_hz))
    return table


def plot_expression_probabilities(clips: Mapping[str, np.ndarray], feature_names: Sequence[str],
                                  frame_rate_hz: float = 5.0, labels: Sequence[str] = EXPRESSION_LABELS):
    """One panel per clip: the expression probabilities of each sampled frame as a stacked bar; frames
    with no face are grey (they are masked in the features, not zero)."""
    if not clips:
        raise PlotInputError("no clips to plot")
    colors = plt.get_cmap("tab10").colors
    fig, axes = plt.subplots(len(clips), 1, figsize=(8, 1.9 * len(clips)), squeeze=False)
    for ax, (name, feats) in zip(axes[:, 0], clips.items()):
        curves = expression_curves(feats, feature_names, frame_rate_hz, labels)
        t = curves.time_s.to_numpy()
        step = 1.0 / frame_rate_hz
        bottom = np.zeros(len(t))
        for label, color in zip(labels, colors):
            p = curves[label].fillna(0.0).to_numpy()
            ax.bar(t, p, width=step, bottom=bottom, color=color, label=label, linewidth=0)
            bottom += p
        no_face = ~curves.face.to_numpy()
        if no_face.any():
            ax.bar(t[no_face], np.ones(no_face.sum()), width=step, color="0.85", label="no face", linewidth=0)
        ax.set_ylim(0, 1)
        ax.set_xlim(t[0] - step / 2 if len(t) else 0, t[-1] + step / 2 if len(t) else 1)
        ax.set_ylabel("p")
        ax.set_title(f"{name}  (face in {curves.face.mean():.0%} of frames)", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in [*colors[: len(labels)], "0.85"]]
    axes[0, 0].legend(handles, [*labels, "no face"], fontsize=7, ncol=len(labels) + 1, loc="lower left",
                      bbox_to_anchor=(0, 1.15))
    axes[-1, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return fig


def frame_with_landmarks(video: str | os.PathLike, time_s: float | None = None, fps: float = 5.0,
                         max_side: int = 640, extractor=None) -> tuple[np.ndarray, float, float]:
    """A video frame with the main face's mesh (green), key landmarks (red) and box drawn on it.

    Takes the face frame closest to ``time_s`` (default: the middle of the clip). Returns
    ``(RGB image, its time in s, face-present ratio of the sampled frames)``; with no face anywhere the
    middle frame is returned undrawn."""
    from msa_lib.extract.media import extract_frames
    from msa_lib.extract.visual import FaceFeatureExtractor, VisualFeatureConfig, draw_landmarks

    frames, times = extract_frames(video, fps=fps, max_side=max_side)
    if extractor is None:  # one shared instance: building MediaPipe graphs costs more than a frame
        extractor = shared("extract.plots.landmark-extractor", lambda: FaceFeatureExtractor(
            VisualFeatureConfig(allow_no_face=True, use_hog=False)))
    out = extractor.extract(frames, times, source=video)
    target = float(np.median(times)) if time_s is None else float(time_s)
    candidates = np.flatnonzero(out.mask) if out.mask.any() else np.arange(len(frames))
    k = int(candidates[np.argmin(np.abs(times[candidates] - target))])
    image = draw_landmarks(frames[k], out.landmarks[k], box=out.boxes[k] if out.mask[k] else None)
    return image, float(times[k]), out.face_ratio


def plot_images(images: Mapping[str, np.ndarray], ncols: int = 2, width: float = 4.0):
    """A grid of RGB images titled by their keys."""
    if not images:
        raise PlotInputError("no images to plot")
    n = len(images)
    ncols = max(1, min(ncols, n))
    nrows = int(np.ceil(n / ncols))
    aspect = max(img.shape[0] / img.shape[1] for img in images.values())
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, width * aspect * nrows + 0.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (name, img) in zip(axes.ravel(), images.items()):
        ax.imshow(img)
        ax.set_title(str(name), fontsize=9)
    fig.tight_layout()
    return fig
