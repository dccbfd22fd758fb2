"""The two data/model setups notebook 06 explains, built from the shipped data.

(a) **MOSI, token-level text** — :func:`mosi_token_dataset`: the CMU-MOSI utterances with e5 layer-8
token states (input of a ``pretrained_top`` encoder, so Captum can attribute to the embedding layer),
the neighbouring utterances' text (``text_context``) and the shipped utterance-level openSMILE audio
(73-d) and 3D-CNN vision (100-d) vectors. Audio and vision are single vectors (T = 1): there is no
frame-level MOSI data here, so any attention *to* them is 1 by construction.

(b) **RAVDESS, frame-level audio** — :func:`ravdess_dataset`: the speech recordings with the
project's own 43 prosodic/spectral features (named groups: MFCC, pitch, voicing, energy, ...)
averaged to 25 Hz, the scripted statement as text tokens (RAVDESS has two sentences, known from the
file name, identical across emotions: text carries no emotion by design), and the shipped OpenFace
action units (clip means, 35-d, groups ``AU_intensity`` / ``AU_presence``) as the face modality.
RAVDESS speech files are audio-only, so there are no face *frames*.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np

from msa_lib.data import sources
from msa_lib.data.sampling import cap_splits, stratified_clip_subset
from msa_lib.data.sources import ravdess_clip_key
from msa_lib.data.splits import group_validation_split
from msa_lib.data.torch_data import Standardizer
from msa_lib.data.schema import DatasetMeta, ModalitySpec, MultimodalDataset
from msa_lib.models.encoders import EncoderConfig
from msa_lib.models.fusion import FusionConfig
from msa_lib.models.multimodal import ModelConfig
from msa_lib.core.utils import get_logger

log = get_logger("explain")

RAVDESS_STATEMENTS = {1: "Kids are talking by the door", 2: "Dogs are sitting by the door"}
MOSI_MODALITIES = ("text", "text_context", "audio", "vision")


# ---------------------------------------------------------------------------------------------- MOSI


def mosi_token_dataset(per_split: dict[str, int] | None = None, seed: int = 0, valid_fraction: float = 0.15,
                       progress: bool = True) -> MultimodalDataset:
    """MOSI with ``text`` (e5 layer-8 token states incl. special tokens, tokens in ``extra``),
    ``text_context``, and standardised (train statistics) ``audio`` and ``vision``."""
    from msa_lib.extract.text_features import TextFeatureConfig, add_text_features

    mosi = group_validation_split(sources.load_mosi(), valid_fraction=valid_fraction, seed=seed)
    # a subset (smoke runs) is encoded on its own: cheap, but its utterance context only sees the subset;
    # the full dataset shares its cache entry with every other user of the default text features
    mosi = mosi.subset(cap_splits(mosi.split, mosi.labels, per_split, seed))
    ds = add_text_features(mosi, TextFeatureConfig(hidden_layer=8, context=True, show_progress=progress))
    ds = ds.with_modalities(MOSI_MODALITIES)
    return Standardizer(["audio", "vision"]).fit_transform(ds)  # text stays raw: pretrained layers read it


def mosi_model_config(modality_dropout: float = 0.2, dropout: float = 0.2, text_lr_scale: float = 0.25) -> ModelConfig:
    """Fine-tuned top 4 e5 layers for the tokens, MLPs for the vectors, cross-attention fusion;
    modality dropout so that "modality removed" (ablation) is a situation the model was trained on."""
    return ModelConfig(dropout=dropout, modality_dropout=modality_dropout,
                       encoders={"text": EncoderConfig(kind="pretrained_top", layers=4, lr_scale=text_lr_scale),
                                 "text_context": EncoderConfig(kind="mlp", hidden=128, layers=1),
                                 "audio": EncoderConfig(kind="mlp", hidden=128), "vision": EncoderConfig(kind="mlp", hidden=128)},
                       fusion=FusionConfig(dim=128, heads=4))


# ---------------------------------------------------------------------------------------------- RAVDESS
def pool_frames(seq: np.ndarray, factor: int) -> np.ndarray:
    """Average consecutive blocks of ``factor`` frames (NaN rows ignored; an all-NaN block stays NaN)."""
    if factor <= 1 or len(seq) == 0:
        return seq.astype(np.float32)
    n = int(np.ceil(len(seq) / factor))
    pad = np.full((n * factor - len(seq), seq.shape[1]), np.nan, np.float32)
    blocks = np.concatenate([seq.astype(np.float32), pad]).reshape(n, factor, seq.shape[1])
    with np.errstate(all="ignore"):
        valid = np.isfinite(blocks).all(-1, keepdims=True)
        total = np.where(valid, blocks, 0).sum(1)
        count = valid.sum(1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


def ravdess_dataset(per_actor: int | None = None, pool: int = 4, seed: int = 0, valid_fraction: float = 0.2,
                    progress: bool = True) -> tuple[MultimodalDataset, Standardizer]:
    """RAVDESS speech, and the standardiser fitted on its training split. ``text`` (statement tokens, e5 last layer), ``audio`` (43 prosodic features at
    100 / ``pool`` Hz, standardised on train), ``vision`` (35 OpenFace AUs, clip means, standardised);
    8 emotions; actors 21-24 test, whole validation actors taken out of train."""
    from msa_lib.extract.pipeline import ExtractConfig, extract
    from msa_lib.extract.text import TextEncoder, TextEncoderConfig

    rec = sources.ravdess_recordings().sort_values("path").reset_index(drop=True)
    if per_actor:  # a few recordings of every actor, the emotions rotating over actors (smoke runs)
        rec = rec.iloc[stratified_clip_subset(rec, n_per_actor=per_actor, seed=seed)].reset_index(drop=True)
    cfg = ExtractConfig(modalities=("audio",), audio_features=("prosody",))
    audio_ds = extract(rec["path"].tolist(), cfg, progress=progress, name="ravdess_speech")
    by_path = {e["path"]: seq for seq, e in zip(audio_ds.features["audio"], audio_ds.extra)}
    dropped = [p for p in rec["path"] if p not in by_path]
    if dropped:  # the pipeline's silence gate skips a few very quiet recordings
        log.info("RAVDESS: %d of %d recordings have no audio features (pipeline: %s)", len(dropped), len(rec),
                 "; ".join(sorted({f["error"].split(": ")[-1] for f in audio_ds.failures})) or "unknown")
    rec = rec[rec["path"].isin(by_path)].reset_index(drop=True)
    audio_spec = audio_ds.meta.modalities["audio"]

    encoder = TextEncoder(TextEncoderConfig(show_progress=False))
    seqs, toks = encoder.encode_tokens([RAVDESS_STATEMENTS[k] for k in sorted(RAVDESS_STATEMENTS)])
    statement = {k: (s, t) for k, s, t in zip(sorted(RAVDESS_STATEMENTS), seqs, toks)}

    au = sources.load_ravdess_au_mfcc()
    au_by_key = {ravdess_clip_key(i): v for i, v in zip(au.ids, au.features["vision"])}
    empty_au = np.zeros((0, au.meta.modalities["vision"].dim), np.float32)
    vision = [au_by_key.get(ravdess_clip_key(s), empty_au) for s in rec["stem"]]

    text_spec = ModalitySpec(encoder.dim, encoder.feature_names, {"embedding": list(range(encoder.dim))}, "sequence",
                             None, {"name": "text encoder", **encoder.settings(),
                                    "text": "RAVDESS statement (from the file name)"})
    meta = DatasetMeta("ravdess_speech", {
        "text": text_spec,
        "audio": replace(audio_spec, rate_hz=(audio_spec.rate_hz or 100.0) / pool,
                         extractor={**audio_spec.extractor, "pooled_frames": pool}),
        "vision": au.meta.modalities["vision"]},
        au.meta.labels, source="RAVDESS speech (Livingstone & Russo, 2018) + shipped OpenFace AUs",
        extra={"test_actors": list(sources.RAVDESS_TEST_ACTORS), "statements": RAVDESS_STATEMENTS})
    ds = MultimodalDataset.build(
        meta, rec["stem"].tolist(),
        {"text": [statement[s][0] for s in rec["statement"]],
         "audio": [pool_frames(by_path[p], pool) for p in rec["path"]],
         "vision": vision},
        split=rec["split"].tolist(), language="en", raw_text=[RAVDESS_STATEMENTS[s] for s in rec["statement"]],
        group=[f"actor_{a:02d}" for a in rec["actor"]], labels=rec["emotion"].tolist(),
        extra=[{"tokens": statement[s][1], "path": p, "intensity": int(i)}
               for s, p, i in zip(rec["statement"], rec["path"], rec["intensity"])],
        source="ravdess")
    ds = group_validation_split(ds, valid_fraction=valid_fraction, seed=seed)
    standardizer = Standardizer(["audio", "vision"]).fit(ds)
    return standardizer.transform(ds), standardizer


def ravdess_model_config(modality_dropout: float = 0.2, dropout: float = 0.3, windows: int = 4) -> ModelConfig:
    """Small encoders (1 text layer, 2 audio layers, 64-d) and 64-d fusion: RAVDESS has ~1000 training clips."""
    return ModelConfig(dropout=dropout, modality_dropout=modality_dropout,
                       encoders={"text": EncoderConfig(kind="transformer", hidden=64, layers=1, heads=4),
                                 "audio": EncoderConfig(kind="transformer", hidden=64, layers=2, heads=4),
                                 "vision": EncoderConfig(kind="mlp", hidden=64, layers=1)},
                       fusion={"dim": 64, "heads": 4, "mult": {"width": 32}, "adamml": {"windows": windows}})


# ---------------------------------------------------------------------------------------------- demo clips
def demo_clips(manifest: str = "data/clips/manifest.csv", progress: bool = True) -> MultimodalDataset:
    """The shipped demo clips through the full extraction pipeline (transcripts from the manifest):
    text tokens, prosody at 100 Hz, face features at 5 fps (incl. per-frame expression probabilities)."""
    from msa_lib.extract.pipeline import ExtractConfig, extract
    from msa_lib.core.paths import project_path

    return extract(project_path(manifest), ExtractConfig(), progress=progress, name="demo_clips")


def as_ravdess_inputs(clips: MultimodalDataset, ravdess: MultimodalDataset, standardizer: Standardizer,
                      pool: int = 4) -> MultimodalDataset:
    """Demo clips shaped like :func:`ravdess_dataset` input (text tokens, pooled prosody; no AUs: the
    OpenFace AUs of RAVDESS are not what the project's face extractor computes), standardised with
    RAVDESS training statistics."""
    audio = [pool_frames(a, pool) for a in clips.features["audio"]]
    empty = np.zeros((0, ravdess.meta.modalities["vision"].dim), np.float32)
    meta = DatasetMeta("demo_clips_as_ravdess", dict(ravdess.meta.modalities), ravdess.meta.labels,
                       source=clips.meta.source)
    ds = MultimodalDataset.build(meta, clips.ids, {"text": clips.features["text"], "audio": audio,
                                                    "vision": [empty] * len(clips)},
                                 split="test", language=clips.language, raw_text=clips.raw_text,
                                 extra=clips.extra, source="demo clips")
    return standardizer.transform(ds)


def mosi_text_inputs(texts: Sequence[str], ids: Sequence[str], languages: Sequence[str], reference: MultimodalDataset,
                     progress: bool = False) -> MultimodalDataset:
    """Transcripts as text-only inputs of the MOSI model (e5 layer-8 tokens with the reference's text
    settings; audio, vision and context absent)."""
    from msa_lib.extract.text_features import TextFeatureConfig, add_text_features

    meta = DatasetMeta("texts", {}, reference.meta.labels)
    base = MultimodalDataset.build(meta, list(ids), {}, split="test", language=list(languages), raw_text=list(texts),
                                   group=list(ids), source="texts")
    settings = reference.meta.modalities["text"].extractor
    cfg = TextFeatureConfig(model_id=settings.get("model_id", TextFeatureConfig.model_id),
                            hidden_layer=settings.get("hidden_layer", 8), max_length=settings.get("max_length", 64),
                            context=False, show_progress=progress)
    return add_text_features(base, cfg).with_modalities(["text"])
