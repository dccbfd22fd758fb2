"""Cross-lingual experiments (notebooks 04 and 05): data preparation, training with the contrastive
objective, zero-shot evaluation and few-shot transfer.

Source: CMU-MOSI (English, text + audio + vision). Target: the ChnSentiCorp hotel reviews (Chinese,
text only, fixed split of :func:`msa_lib.data.sources.load_zh_reviews`). One trimodal model sees both:
target rows have no audio/vision (``present`` False) and the model is trained with modality dropout, so
text-only input is in its training distribution.

Text representation (``text_input``)
------------------------------------
- ``"pooled"`` (default): the frozen multilingual-e5-small sentence vector, made language-neutral by
  **language-wise mean centering** (each language's mean vector, estimated on that language's
  *unlabelled* training texts, is subtracted and the vector re-normalised; translations count as their
  own "language"). e5 is multilingual but its sentence vectors carry a large language-specific offset;
  removing it is the cheapest unsupervised alignment there is (no labels involved).
- ``"tokens"``: e5 hidden states at layer 8 fed to the top 4 pretrained layers, fine-tuned
  (``pretrained_top`` encoder) — stronger on the source, but fine-tuning erodes e5's cross-lingual
  alignment and costs far more CPU.

Class prior
-----------
The model is trained on MOSI (about half positive); the reviews are mostly positive (68.5 %).
:func:`evaluate_zero_shot` also reports the Chinese test scores after re-estimating the target class prior
by EM from the model's own predictions on *unlabelled* target training texts (Saerens et al., 2002) and
re-weighting the posteriors (``prior = "em"``); no target label is used.

Model selection
---------------
Only the source validation split (taken out of MOSI train by video), scored with *text-only* input: MOSI's
shipped visual features were produced by a network trained on the train videos and score ~95 % on any
validation split cut from train, which says nothing about the text path the Chinese reviews use.

What limits the zero-shot score
-------------------------------
Notebook 04 measures two ceilings: a logistic regression on these frozen e5-small vectors trained on
*all* labelled Chinese training reviews (``zh_supervised_reference.csv``: the most any head on this
representation reaches, zero-shot or few-shot), and per model ``acc_best_threshold`` (see :func:`scores`),
the most a prior or threshold correction could add to its zero-shot scores. Getting beyond them needs the
text encoder itself fine-tuned on Chinese review data, or a stronger multilingual encoder.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from msa_lib.data.labels import LabelScheme
from msa_lib.data.sampling import cap_splits, stratified_sample
from msa_lib.data.splits import group_validation_split
from msa_lib.data.torch_data import Standardizer, make_loader
from msa_lib.evaluate.metrics import best_threshold_accuracy, binary_metrics, roc_auc
from msa_lib.data.schema import ModalitySpec, MultimodalDataset, concat
from msa_lib.extract.text_features import TextFeatureConfig, add_text_features
from msa_lib.models.encoders import EncoderConfig
from msa_lib.models.multimodal import ModelConfig, MultimodalModel, build_model_for
from msa_lib.train.trainer import TrainConfig, fit, predict
from msa_lib.core.utils import get_logger, set_seed
from msa_lib.studies.fewshot import few_shot_training_set
from msa_lib.train.contrastive import CrossLingualObjective, NCEConfig
from msa_lib.extract.translate import DictionaryTranslator, Translator

log = get_logger("crosslingual")

TEXT = "text"  # the model's text modality
TRANSLATION = "text_tr"  # the translation's features (same width as TEXT)
MODALITIES = (TEXT, "audio", "vision")


# ---------------------------------------------------------------------------------------------- data
@dataclass
class DataConfig:
    text_input: str = "pooled"  # "pooled" (frozen e5 sentence vector) or "tokens" (layer-8 states, fine-tuned top)
    center_languages: bool = True  # language-wise mean centering of pooled vectors (unsupervised)
    translation_code_switch: float = 1.0  # dictionary translation of MOSI: 1 = every word, <1 = code-switched
    source_valid_fraction: float = 0.15
    zh_max: dict = field(default_factory=dict)  # e.g. {"train": 300, "test": 200}: stratified subsets (smoke runs)
    source_max: dict = field(default_factory=dict)  # the same for MOSI's splits (smoke runs)
    mosi_text: TextFeatureConfig = field(default_factory=lambda: TextFeatureConfig(show_progress=False))
    zh_text: TextFeatureConfig = field(default_factory=lambda: TextFeatureConfig(max_length=128, show_progress=False))

    def __post_init__(self):
        if self.text_input not in ("pooled", "tokens"):
            raise ValueError(f"text_input must be 'pooled' or 'tokens', got {self.text_input!r}")


def _text_key(cfg: DataConfig) -> str:
    return "text_pooled" if cfg.text_input == "pooled" else "text"


def _with_text(ds: MultimodalDataset, feats: MultimodalDataset, key: str, as_key: str) -> MultimodalDataset:
    spec = feats.meta.modalities[key]
    return ds.with_features(as_key, feats.features[key], ModalitySpec(spec.dim, spec.feature_names, spec.groups,
                                                                      spec.level, spec.rate_hz, spec.extractor))


def load_source(cfg: DataConfig | None = None, translator: Translator | None = None,
                mosi: MultimodalDataset | None = None) -> MultimodalDataset:
    """MOSI (group validation split) with ``text``, ``text_tr`` (its Chinese translation), audio, vision.
    ``mosi``: a subset of that split (tests) instead of all of it."""
    from msa_lib.data.sources import load_mosi

    cfg = cfg or DataConfig()
    if mosi is None:
        mosi = group_validation_split(load_mosi(), valid_fraction=cfg.source_valid_fraction, seed=0)
    if cfg.source_max:
        mosi = mosi.subset(cap_splits(mosi.split, mosi.labels, cfg.source_max))
    key = _text_key(cfg)
    feats = add_text_features(mosi, cfg.mosi_text)
    translator = translator or DictionaryTranslator(code_switch=cfg.translation_code_switch)
    translated = translator.translate(list(mosi.raw_text), "en", "zh")
    tr = copy.copy(mosi)
    tr.raw_text = np.asarray(translated, dtype=object)
    tr.meta = replace(mosi.meta, name=f"mosi-zh-{translator.name}-cs{cfg.translation_code_switch:g}")
    tr_feats = add_text_features(tr, cfg.mosi_text)
    out = mosi.with_modalities(["audio", "vision"])
    out = _with_text(out, feats, key, TEXT)
    out = _with_text(out, tr_feats, key, TRANSLATION)
    out.extra = np.array([{**e, "translation": t} for e, t in zip(out.extra, translated)], dtype=object)
    return out


def load_target(cfg: DataConfig | None = None) -> MultimodalDataset:
    """The Chinese reviews with ``text`` features (optionally capped per split, stratified)."""
    from msa_lib.data.sources import load_zh_reviews

    cfg = cfg or DataConfig()
    zh = load_zh_reviews()
    if cfg.zh_max:
        zh = zh.subset(cap_splits(zh.split, zh.labels, cfg.zh_max))
    feats = add_text_features(zh, cfg.zh_text)
    return _with_text(zh.with_modalities([]), feats, _text_key(cfg), TEXT)


def with_absent(ds: MultimodalDataset, like: MultimodalDataset, modalities: Sequence[str] = MODALITIES) -> MultimodalDataset:
    """``ds`` with every modality of ``like`` it lacks added as empty sequences (``present`` False)."""
    out = ds
    for m in modalities:
        if m not in out.features and m in like.features:
            spec = like.meta.modalities[m]
            out = out.with_features(m, [np.zeros((0, spec.dim), np.float32)] * len(out), spec)
    return out


def combined(source: MultimodalDataset, target: MultimodalDataset) -> MultimodalDataset:
    """Source and target in one dataset; target rows have empty audio/vision/translation (absent)."""
    return concat([source, target], name=f"{source.meta.name}+{target.meta.name}")


@dataclass
class LanguageCentering:
    """Subtract each language's mean text vector (fitted on unlabelled train texts), then re-normalise.

    Keys: the source text (``en``), the source's translations (``en->zh``) and the target text (``zh``).
    """

    means: dict = field(default_factory=dict)

    @staticmethod
    def _groups(ds: MultimodalDataset) -> dict[str, tuple[str, np.ndarray]]:
        groups = {}
        for lang in np.unique(ds.language):
            groups[str(lang)] = (TEXT, ds.language == lang)
        if TRANSLATION in ds.features:
            has = ds.lengths(TRANSLATION) > 0
            for lang in np.unique(ds.language[has]):
                groups[f"{lang}->tr"] = (TRANSLATION, has & (ds.language == lang))
        return groups

    def fit(self, ds: MultimodalDataset, splits: Sequence[str] = ("train",)) -> "LanguageCentering":
        in_split = np.isin(ds.split, list(splits))
        for name, (key, rows) in self._groups(ds).items():
            rows = rows & in_split & (ds.lengths(key) > 0)
            if rows.any():
                self.means[name] = np.mean(np.concatenate([ds.features[key][i] for i in np.flatnonzero(rows)]), 0)
        return self

    def transform(self, ds: MultimodalDataset) -> MultimodalDataset:
        out = ds.subset(np.arange(len(ds)))
        out.features = dict(ds.features)
        for name, (key, rows) in self._groups(ds).items():
            mean = self.means.get(name)
            if mean is None:
                raise ValueError(f"LanguageCentering: no mean for '{name}' (fit on data with that language)")
            seqs = list(out.features[key])
            for i in np.flatnonzero(rows):
                if len(seqs[i]):
                    v = seqs[i] - mean
                    seqs[i] = (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-8)).astype(np.float32)
            out.features[key] = seqs
        return out


def prepare(source: MultimodalDataset, target: MultimodalDataset, cfg: DataConfig | None = None,
            ) -> tuple[MultimodalDataset, MultimodalDataset, Standardizer]:
    """Centre the text vectors per language (unlabelled source + target train texts) and standardise the
    audio/vision features on the source train split. Returns (source, target, standardiser)."""
    cfg = cfg or DataConfig()
    if cfg.text_input == "pooled" and cfg.center_languages:
        centering = LanguageCentering().fit(combined(source, target))
        source, target = centering.transform(source), centering.transform(target)
    std = Standardizer(["audio", "vision"]).fit(source)
    return std.transform(source), with_absent(std.transform(target), source), std


# ---------------------------------------------------------------------------------------------- model
# The source model's training settings: the shared TrainConfig with this study's values. Model selection
# runs on the SOURCE validation split (no target labels in zero-shot): "valid_text_acc2" scores the model with
# text-only input -- the condition of the Chinese reviews -- because MOSI's shipped visual features were
# produced by a network trained on the train videos and score ~95 % on any train-derived validation split.
SOURCE_TRAINING = TrainConfig(lr=3e-4, weight_decay=1e-2, batch_size=32, dropout=0.3, max_epochs=30, patience=8,
                              grad_clip=1.0, monitor="valid_text_acc2", device="cpu", progress=False)


@dataclass
class ExperimentConfig:
    """One training run: ``nce`` sets the task/augmentation/contrastive weights (see :class:`NCEConfig`),
    ``train`` the shared training settings (monitor ``valid_text_acc2`` or ``valid_acc2``, all modalities);
    the rest is how this study builds its model (see :func:`build_crosslingual_model`)."""

    nce: NCEConfig = field(default_factory=NCEConfig)
    train: TrainConfig = field(default_factory=lambda: replace(SOURCE_TRAINING))
    fusion: str = "early_concat"
    hidden: int = 128
    modality_dropout: float = 0.5
    text_lr_scale: float = 0.1  # text_input "tokens": pretrained top layers at lr x this

    @property
    def seed(self) -> int:
        return self.train.seed

    def with_training(self, **changes) -> "ExperimentConfig":
        """A copy with ``changes`` applied to the training settings (e.g. ``seed=1``, ``max_epochs=5``)."""
        return replace(self, train=replace(self.train, **changes))


# The seed paper's own models as the source model (issue 21): MCTN translates the text into the other
# modalities and predicts from the text alone (hierarchical: text -> audio -> vision), so a Chinese review,
# which has only text, is exactly its test-time condition; the contextual LSTM and AdaMML's policy in front
# of it read a MOSI video's utterances as context (a review is a video of its own).
ZOO_FUSIONS = ("mctn_hierarchical", "contextual_lstm", "adamml_context")


def zoo_config(base: ExperimentConfig, fusion: str) -> ExperimentConfig:
    """``base`` with ``fusion`` as the model. MCTN trains without modality dropout: it never reads
    audio or vision to predict (they are translation targets only), so there is nothing to drop."""
    if fusion not in ZOO_FUSIONS:
        raise ValueError(f"fusion {fusion!r}: expected one of {ZOO_FUSIONS}")
    return replace(base, fusion=fusion, modality_dropout=0.0 if fusion.startswith("mctn") else base.modality_dropout)


def build_crosslingual_model(ds: MultimodalDataset, cfg: ExperimentConfig, text_input: str = "pooled") -> MultimodalModel:
    set_seed(cfg.train.seed)
    if text_input == "tokens":
        text_enc = EncoderConfig(kind="pretrained_top", lr_scale=cfg.text_lr_scale)
    else:
        text_enc = EncoderConfig(kind="mlp", hidden=cfg.hidden, layers=1)
    mcfg = ModelConfig(dropout=cfg.train.dropout, encoders={TEXT: text_enc, "audio": EncoderConfig(kind="mlp", hidden=64, layers=1),
                                                       "vision": EncoderConfig(kind="mlp", hidden=64, layers=1)},
                       modality_dropout=cfg.modality_dropout)
    mcfg.fusion = {"dim": cfg.hidden}
    return build_model_for(cfg.fusion, ds, mcfg, modalities=list(MODALITIES))


@dataclass
class FitResult:
    model: MultimodalModel
    objective: CrossLingualObjective
    history: pd.DataFrame
    best_epoch: int
    seconds: float


def _loader(ds, cfg: ExperimentConfig, shuffle: bool, with_translation: bool, seed: int = 0, by_video: bool = False):
    """``by_video``: video batches, for a model that reads a video's utterances as context (MOSI videos;
    a Chinese review is a "video" of its own, or of its duplicates, which share a group and a split)."""
    mods = list(MODALITIES) + ([TRANSLATION] if with_translation and TRANSLATION in ds.features else [])
    batch_size = cfg.train.batch_size
    return make_loader(ds, mods, batch_size if shuffle else 2 * batch_size, shuffle=shuffle, seed=seed, by_video=by_video)


def text_only(ds: MultimodalDataset) -> MultimodalDataset:
    """``ds`` with every modality but the text emptied (as the Chinese reviews arrive)."""
    out = ds.subset(np.arange(len(ds)))
    out.features = {m: (seqs if m == TEXT else [np.zeros((0, ds.meta.modalities[m].dim), np.float32)] * len(ds))
                    for m, seqs in ds.features.items()}
    return out


def _text_only_accuracy(valid: MultimodalDataset, cfg: ExperimentConfig, scheme: LabelScheme, by_video: bool = False):
    """Validator: accuracy on ``valid`` with text-only input (the target's condition)."""
    loader = _loader(text_only(valid), cfg, False, False, by_video=by_video)

    def validator(model) -> dict:
        frame = predict(model, loader, scheme)
        return {"valid_text_acc2": float((frame["pred"] == frame["label"]).mean()) if len(frame) else float("nan")}

    return validator


def fit_crosslingual(model: MultimodalModel, train: MultimodalDataset, valid: MultimodalDataset | None,
                     cfg: ExperimentConfig, scheme: LabelScheme, objective: CrossLingualObjective | None = None,
                     max_epochs: int | None = None) -> FitResult:
    """Train through :func:`msa_lib.train.trainer.fit` on the cross-lingual objective (task + NCE losses);
    early stopping on ``cfg.train.monitor`` of ``valid`` (the source validation split) when given, else the
    last epoch is kept."""
    start = time.perf_counter()
    set_seed(cfg.train.seed)  # before the objective: its projection heads are initialised from this stream
    objective = objective or CrossLingualObjective(model, cfg.nce)
    epochs = max_epochs or cfg.train.max_epochs
    by_video = model.uses_video_context
    loader = _loader(train, cfg, True, objective.needs_translation, seed=cfg.train.seed, by_video=by_video)
    valid_loader, validators, monitor = None, [], "epoch"
    if valid is not None and len(valid):
        valid_loader = _loader(valid, cfg, False, False, by_video=by_video)
        validators, monitor = [_text_only_accuracy(valid, cfg, scheme, by_video)], cfg.train.monitor
    train_cfg = replace(cfg.train, max_epochs=epochs, monitor=monitor, seed=None, min_delta=0.0, eval_every=1)
    result = fit(model, loader, valid_loader, train_cfg, scheme, objective=objective, validators=validators)
    model.eval()
    return FitResult(model, objective, result.history, result.best_epoch, time.perf_counter() - start)


# ---------------------------------------------------------------------------------------------- evaluation
def em_prior(probs_pos: np.ndarray, train_prior: float, iterations: int = 100, tol: float = 1e-6) -> float:
    """Target positive-class prior estimated by EM from unlabelled posteriors (Saerens et al., 2002)."""
    p = np.clip(np.asarray(probs_pos, float), 1e-6, 1 - 1e-6)
    prior = train_prior
    for _ in range(iterations):
        w1, w0 = prior / train_prior, (1 - prior) / (1 - train_prior)
        adjusted = p * w1 / (p * w1 + (1 - p) * w0)
        new = float(adjusted.mean())
        if abs(new - prior) < tol:
            prior = new
            break
        prior = new
    return prior


def adjust_posteriors(probs_pos: np.ndarray, train_prior: float, target_prior: float) -> np.ndarray:
    p = np.asarray(probs_pos, float)
    w1, w0 = target_prior / train_prior, (1 - target_prior) / (1 - train_prior)
    return p * w1 / (p * w1 + (1 - p) * w0)


def predictions(model, ds: MultimodalDataset, cfg: ExperimentConfig, scheme: LabelScheme) -> pd.DataFrame:
    return predict(model, _loader(ds, cfg, False, False, by_video=model.uses_video_context), scheme)


def scores(frame: pd.DataFrame, prob_col: str = "prob_pos") -> dict:
    """Accuracy and macro F1 at p >= 0.5, plus two ranking diagnostics: ``auc`` and
    ``acc_best_threshold``, the accuracy of the best threshold chosen *on these labels* -- the most that
    any prior or threshold correction (EM included) could reach with this model's scores."""
    known = frame[frame["label"] >= 0]
    labels, probs = known["label"].to_numpy(), known[prob_col].to_numpy()
    pred = (probs >= 0.5).astype(int)
    m = binary_metrics(labels, pred)
    return {"acc": m["acc2"], "f1_macro": m["f1_macro"], "auc": roc_auc(labels, probs),
            "acc_best_threshold": best_threshold_accuracy(labels, probs), "n": int(len(known)),
            "pos_rate_pred": float(pred.mean())}


__all__ = ["DataConfig", "load_source", "load_target", "combined", "LanguageCentering", "prepare",
           "ExperimentConfig", "build_crosslingual_model", "FitResult", "fit_crosslingual", "em_prior",
           "adjust_posteriors", "predictions", "scores", "few_shot_training_set", "TEXT", "TRANSLATION", "MODALITIES"]


# ---------------------------------------------------------------------------------------------- runs
def nce_settings(weight: float = 0.5, inter_weight: float = 0.2, temperature: float = 0.1) -> dict[str, NCEConfig]:
    """The settings of notebook 04 (the rows of the seed paper's Table 1): the source-only baseline,
    translation augmentation alone, and each contrastive variant on top of the augmentation."""
    aug = dict(translation_task_weight=1.0, temperature=temperature)
    return {
        "source_only": NCEConfig(temperature=temperature),
        "translation_aug": NCEConfig(**aug),
        "nce_xl": NCEConfig(cross_lingual_weight=weight, condition="none", **aug),
        "nce_xl_audio": NCEConfig(cross_lingual_weight=weight, condition="audio", **aug),
        "nce_xl_vision": NCEConfig(cross_lingual_weight=weight, condition="vision", **aug),
        "nce_xl_both": NCEConfig(cross_lingual_weight=weight, condition="both", **aug),
        "nce_inter": NCEConfig(inter_modal_weight=inter_weight, **aug),
        "nce_all": NCEConfig(cross_lingual_weight=weight, condition="both", inter_modal_weight=inter_weight, **aug),
    }


def evaluate_zero_shot(model, source: MultimodalDataset, target: MultimodalDataset, cfg: ExperimentConfig,
                       scheme: LabelScheme) -> list[dict]:
    """Rows ``eval_set, prior, acc, f1_macro, n, pos_rate_pred`` for the source test split and the target
    test split, the latter as predicted (``prior = "source"``) and after EM prior adaptation on the
    unlabelled target *train* texts (``prior = "em"``; the estimated prior is reported)."""
    rows = []
    src_test = predictions(model, source.get_split("test"), cfg, scheme)
    rows.append({"eval_set": "mosi_test", "prior": "source", **scores(src_test)})
    src_text = predictions(model, text_only(source.get_split("test")), cfg, scheme)
    rows.append({"eval_set": "mosi_test_text_only", "prior": "source", **scores(src_text)})
    tgt_test = predictions(model, target.get_split("test"), cfg, scheme)
    rows.append({"eval_set": "zh_test", "prior": "source", **scores(tgt_test)})
    train_prior = float((source.get_split("train").labels == 1).mean())
    unlabelled = target.get_split("train")
    if len(unlabelled):
        probs = predictions(model, unlabelled, cfg, scheme)["prob_pos"].to_numpy()
        prior = em_prior(probs, train_prior)
        tgt_test = tgt_test.assign(prob_em=adjust_posteriors(tgt_test["prob_pos"].to_numpy(), train_prior, prior))
        rows.append({"eval_set": "zh_test", "prior": "em", "estimated_prior": prior, **scores(tgt_test, "prob_em")})
    return rows


def run_zero_shot(setting: str, nce: NCEConfig, source: MultimodalDataset, target: MultimodalDataset, seed: int,
                  base: ExperimentConfig | None = None, text_input: str = "pooled") -> tuple[list[dict], FitResult]:
    """Train on the source (+ translations) with ``nce``, select on the source validation split, and
    evaluate on the source and target test splits. Returns result rows and the fit."""
    cfg = replace(base or ExperimentConfig(), nce=nce).with_training(seed=seed)
    model = build_crosslingual_model(source, cfg, text_input)
    fit = fit_crosslingual(model, source.get_split("train"), source.get_split("valid"), cfg, source.meta.labels)
    rows = [{"setting": setting, "seed": seed, **r, "best_epoch": fit.best_epoch, "seconds": fit.seconds}
            for r in evaluate_zero_shot(fit.model, source, target, cfg, source.meta.labels)]
    return rows, fit


def continue_training(source_fit: FitResult, source: MultimodalDataset, target: MultimodalDataset, k_percent: float,
                      seed: int, method: str, base: ExperimentConfig, epochs: int, repeat_target: int | None = None,
                      lr_scale: float = 0.1) -> tuple[MultimodalModel, ExperimentConfig, int]:
    """The few-shot model of :func:`run_few_shot` (a trained copy of the source model), its config and the
    target repeat used. The source fit is left as it was."""
    if lr_scale <= 0:
        raise ValueError(f"lr_scale must be > 0, got {lr_scale}")
    cfg = base.with_training(seed=seed, lr=base.train.lr * lr_scale)
    if repeat_target is None:
        n_sample = len(few_shot_training_set(source, target, k_percent, seed, "target_only")) if k_percent > 0 else 0
        n_source = int((source.split == "train").sum())
        repeat_target = int(np.clip(round(n_source / n_sample), 1, 20)) if method == "rehearsal" and n_sample else 1
    model = copy.deepcopy(source_fit.model)
    if k_percent > 0 or method == "rehearsal":
        train = few_shot_training_set(source, target, k_percent, seed, method, repeat_target)
        objective = copy.deepcopy(source_fit.objective)
        fit_crosslingual(model, train, None, cfg, source.meta.labels, objective, max_epochs=epochs)
    return model.eval(), cfg, repeat_target


def run_few_shot(source_fit: FitResult, source: MultimodalDataset, target: MultimodalDataset, k_percent: float,
                 seed: int, method: str, base: ExperimentConfig, epochs: int, repeat_target: int | None = None,
                 lr_scale: float = 0.1) -> list[dict]:
    """Continue training a copy of the source model with ``method`` (``rehearsal``: source train + k % of
    the target train; ``target_only``: the k % alone) for ``epochs`` epochs (no early stopping: there is
    no target validation data in a k-shot budget), then evaluate like :func:`evaluate_zero_shot`
    (target prior: as trained, i.e. no EM adaptation). ``repeat_target`` None: rehearsal repeats the target
    sample so that it is about as large as the source train split (at most 20 times), otherwise a 1 % sample
    would be a few dozen rows among 1,400 source rows.

    The continued training runs at ``base.train.lr * lr_scale``, as fine-tuning usually does: at the full source
    learning rate and without early stopping the model drifts towards MOSI's shipped visual features, which
    were made by a network trained on the MOSI train videos and do not carry over to test, so MOSI test
    accuracy fell even with no target data at all (k = 0)."""
    model, cfg, repeat_target = continue_training(source_fit, source, target, k_percent, seed, method, base, epochs,
                                                  repeat_target, lr_scale)
    rows = []
    for r in evaluate_zero_shot(model, source, target.subset(target.split == "test"), cfg, source.meta.labels):
        rows.append({"method": method, "k_percent": k_percent, "seed": seed, **r, "repeat_target": repeat_target})
    return rows


# ---------------------------------------------------------------------------------------------- reports
def alignment_report(datasets: dict[str, MultimodalDataset], split: str = "test") -> pd.DataFrame:
    """Per named dataset: how often an utterance's text vector retrieves its own translation among all
    translations of ``split`` (top-1), and the mean cosine of matched vs random pairs."""
    rows = []
    for name, ds in datasets.items():
        part = ds.get_split(split)
        a = np.stack([x[0] for x in part.features[TEXT]])
        b = np.stack([x[0] for x in part.features[TRANSLATION]])
        a = a / np.linalg.norm(a, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        sim = a @ b.T
        rng = np.random.default_rng(0)
        rows.append({"features": name, "retrieval_top1": float((sim.argmax(1) == np.arange(len(a))).mean()),
                     "cos_translation": float(np.diag(sim).mean()),
                     "cos_random_pair": float(sim[np.arange(len(a)), rng.permutation(len(a))].mean()),
                     "n": len(a)})
    return pd.DataFrame(rows)


def table_one(summary: pd.DataFrame, settings: Sequence[str] | None = None) -> pd.DataFrame:
    """Seed-paper Table 1 layout: one row per setting, columns ``<eval set> acc`` / ``F1`` (mean ± std, %)."""
    frame = summary.copy()
    frame["column"] = frame["eval_set"] + np.where(frame["prior"] == "em", " (EM prior)", "")
    wide = frame.pivot_table(index="setting", columns="column", values=["acc", "f1_macro"], aggfunc="first")
    wide.columns = [f"{col} {'acc' if metric == 'acc' else 'F1'}" for metric, col in wide.columns]
    order = [c for ev in ("mosi_test", "zh_test", "zh_test (EM prior)") for c in (f"{ev} acc", f"{ev} F1") if c in wide.columns]
    wide = wide[order]
    if settings is not None:
        wide = wide.reindex([s for s in settings if s in wide.index] + [s for s in wide.index if s not in settings])
    return wide


def plot_setting_bars(summary: pd.DataFrame, settings: Sequence[str] | None = None, metric: str = "acc"):
    """Grouped bars: mean ± std of ``metric`` per setting on MOSI test and the Chinese test split."""
    import matplotlib.pyplot as plt

    frame = summary.copy()
    frame["column"] = frame["eval_set"] + np.where(frame["prior"] == "em", " (EM prior)", "")
    names = list(settings) if settings is not None else list(dict.fromkeys(frame["setting"]))
    names = [n for n in names if n in set(frame["setting"])]
    columns = list(dict.fromkeys(frame["column"]))
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names) * len(columns) / 2 + 2), 3.8))
    width = 0.8 / max(1, len(columns))
    for j, col in enumerate(columns):
        part = frame[frame["column"] == col].set_index("setting").reindex(names)
        ax.bar(np.arange(len(names)) + j * width, 100 * part[f"{metric}_mean"], width,
               yerr=100 * part[f"{metric}_std"].fillna(0), label=col, capsize=2)
    ax.set_xticks(np.arange(len(names)) + width * (len(columns) - 1) / 2)
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel(f"{metric} (%)")
    lo = np.nanmin(100 * frame[f"{metric}_mean"]) - 10
    ax.set_ylim(max(0, lo), 100)
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def plot_few_shot_curves(summary: pd.DataFrame, metric: str = "acc"):
    """Accuracy against k % of target training data, one panel per evaluation set, one line per method."""
    import matplotlib.pyplot as plt

    sets = list(dict.fromkeys(summary["eval_set"]))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.6 * len(sets), 3.6), squeeze=False)
    for ax, ev in zip(axes[0], sets):
        part = summary[summary["eval_set"] == ev]
        for method, rows in part.groupby("method", sort=False):
            rows = rows.sort_values("k_percent")
            x = np.arange(len(rows))
            ax.errorbar(x, 100 * rows[f"{metric}_mean"], yerr=100 * rows[f"{metric}_std"].fillna(0), marker="o",
                        capsize=3, label=method)
            ax.set_xticks(x)
            ax.set_xticklabels([f"{k:g}" for k in rows["k_percent"]])
        ax.set_title(ev)
        ax.set_xlabel("k % of the target training data")
        ax.set_ylabel(f"{metric} (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- demo clips
def clip_predictions(model, data_cfg: DataConfig, source_raw: MultimodalDataset, target_raw: MultimodalDataset,
                     manifest: str = "data/clips/manifest.csv", whisper: bool = False) -> pd.DataFrame:
    """The demo clips' transcripts (text only) through ``model``; with ``whisper`` also Whisper's English
    speech translation of the non-English clips. Text vectors get the same language centring as training."""
    from msa_lib.data.sources import read_clip_manifest
    from msa_lib.extract.text import TextEncoder, TextEncoderConfig

    if data_cfg.text_input != "pooled":
        raise ValueError("clip_predictions supports text_input='pooled' only")
    clips = read_clip_manifest(manifest)
    from msa_lib.core.utils import normalize_transcript

    texts = [(row.clip_id, row.language, "transcript", normalize_transcript(row.transcript), row.label)
             for row in clips.itertuples()]
    if whisper:
        from msa_lib.extract.translate import WhisperSpeechTranslator

        foreign = clips[clips["language"] != "en"]
        if len(foreign):
            english = WhisperSpeechTranslator().translate(list(foreign["path"]), "zh", "en")
            texts += [(row.clip_id, "en", "whisper translation", t, row.label)
                      for row, t in zip(foreign.itertuples(), english)]
    encoder = TextEncoder(TextEncoderConfig(max_length=128, show_progress=False))
    vecs = encoder.encode_pooled([t[3] for t in texts])
    if data_cfg.text_input == "pooled" and data_cfg.center_languages:
        centering = LanguageCentering().fit(combined(source_raw, target_raw))
        for i, t in enumerate(texts):
            mean = centering.means.get(t[1] if t[1] in centering.means else "en")
            v = vecs[i] - mean
            vecs[i] = v / max(np.linalg.norm(v), 1e-8)
    model.eval()
    batch = {"x": {TEXT: torch.as_tensor(vecs[:, None, :])}, "mask": {TEXT: torch.ones(len(vecs), 1, dtype=torch.bool)},
             "present": {TEXT: torch.ones(len(vecs), dtype=torch.bool)}}
    with torch.no_grad():
        prob = model(batch).logits["2"].softmax(-1)[:, 1].numpy()
    return pd.DataFrame({"clip": [t[0] for t in texts], "language": [t[1] for t in texts], "text source": [t[2] for t in texts],
                         "text": [t[3] for t in texts], "label": [t[4] for t in texts], "p(positive)": prob.round(3),
                         "prediction": np.where(prob >= 0.5, "positive", "negative")})


# ---------------------------------------------------------------------------------------------- linear reference
def linear_reference(source: MultimodalDataset, target: MultimodalDataset, k_percents: Sequence[float],
                     seeds: Sequence[int], C: float = 1.0) -> pd.DataFrame:
    """Logistic regression on the same (centred) frozen text vectors: trained on MOSI train (k = 0, the
    zero-shot reference) or on k % of the Chinese train reviews alone. k = 100 is the supervised ceiling of
    the frozen representation — the best any head on these vectors can be expected to do."""
    from sklearn.linear_model import LogisticRegression

    def matrix(ds):
        return np.stack([a[0] for a in ds.features[TEXT]])

    src_train, tgt_train, tgt_test = source.get_split("train"), target.get_split("train"), target.get_split("test")
    x_test, y_test = matrix(tgt_test), tgt_test.labels
    rows = []
    for seed in seeds:
        for k in k_percents:
            if k == 0:
                x, y = matrix(src_train), src_train.labels
            else:
                idx = stratified_sample(tgt_train.labels, k, seed)
                x, y = matrix(tgt_train)[idx], tgt_train.labels[idx]
            clf = LogisticRegression(C=C, max_iter=3000).fit(x, y)
            pred = clf.predict(x_test)
            m = binary_metrics(y_test, pred)
            rows.append({"method": "linear_probe", "k_percent": k, "seed": seed, "eval_set": "zh_test",
                         "acc": m["acc2"], "f1_macro": m["f1_macro"], "n": len(y_test)})
    return pd.DataFrame(rows)
