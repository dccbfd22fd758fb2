"""Self-training on unlabelled Chinese text with a fine-tuned encoder (notebook 04, issue 20).

A frozen encoder caps zero-shot transfer: no head on the frozen e5 vectors gets past what a linear model
trained on *all* labelled reviews reaches. Here the top ``fine_tuned_layers`` layers of e5 are trained:

1. **Source model (round 0).** A text-only model -- e5's top layers (fine-tuned) -> mean pooling -> head --
   trained on the English MOSI train utterances and, by default, their dictionary translations into
   Chinese (translation augmentation), with early stopping on the English validation split.
2. **Pseudo-labels.** The model labels the Chinese *training* reviews, which enter as an unlabelled pool
   (:func:`unlabelled_pool` replaces their labels by -1 before anything sees them). Class-balanced
   selection as in CBST (Zou et al., 2018): for each predicted class, the ``share`` most confident of the
   reviews predicted as that class are kept, so the easier class cannot crowd out the other.
3. **Fine-tuning.** The model continues on the English data (+ translations) and the kept pseudo-labelled
   reviews, encoder layers included, then labels the pool again. The share grows each round (a
   curriculum, ``shares``).
4. **When to stop** is read from agreement statistics, never from Chinese labels: training stops after the
   round whose pseudo-labels changed on fewer than ``stop_change`` of the pool since the previous round
   (or after the last share). Every round is reported; the row marked ``selected`` is the stopping round.

The confidence schedule (``shares``) is fixed in advance. The pseudo-label accuracy that the notebook
reports is a diagnostic computed afterwards from the stored pseudo-labels (:func:`pseudo_label_accuracy`).

:func:`fine_tuned_reference` trains the same architecture from e5 on k % of the *labelled* Chinese train
reviews: the supervised references that show how close zero-shot comes to supervision with this encoder.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from msa_lib.core.paths import cache_dir
from msa_lib.core.utils import get_logger, set_seed
from msa_lib.data.schema import MultimodalDataset, concat
from msa_lib.data.torch_data import make_loader
from msa_lib.models.encoders import EncoderConfig, advance_hidden_states
from msa_lib.models.multimodal import ModelConfig, MultimodalModel, build_model_for
from msa_lib.studies.crosslingual import TEXT, TRANSLATION, adjust_posteriors, em_prior, scores
from msa_lib.studies.fewshot import target_sample
from msa_lib.train.trainer import TrainConfig, fit, predict

log = get_logger("self_training")

STUDENT_TRAINING = TrainConfig(lr=5e-4, weight_decay=1e-2, batch_size=32, dropout=0.1, max_epochs=6, patience=2,
                               grad_clip=1.0, monitor="valid_acc2", device="auto", progress=False)


@dataclass
class SelfTrainingConfig:
    fine_tuned_layers: int = 2  # e5's top layers trained (the states below them are computed once)
    encoder_lr_scale: float = 0.1  # pretrained layers at train.lr x this (the new head at train.lr)
    with_translation: bool = True  # English data = MOSI + its dictionary translation (translation_aug)
    shares: tuple = (0.25, 0.5, 0.75, 1.0)  # per-class share of the pool kept as pseudo-labels, round by round
    pool_max: int | None = 2000  # unlabelled reviews drawn at random from the train split (None: all; CPU time)
    stop_change: float = 0.02  # stop once fewer than this share of the pool changed its pseudo-label
    round_epochs: int = 1  # fine-tuning epochs per round (no target validation data exists)
    round_lr_scale: float = 0.5  # rounds continue at train.lr x this
    reference_steps: int = 100  # optimiser steps of a supervised reference (any k)
    train: TrainConfig = field(default_factory=lambda: replace(STUDENT_TRAINING))

    def __post_init__(self):
        if not self.shares or any(not 0 < s <= 1 for s in self.shares):
            raise ValueError(f"shares must be in (0, 1], got {self.shares}")
        if not 0 <= self.stop_change < 1:
            raise ValueError(f"stop_change must be in [0, 1), got {self.stop_change}")

    @property
    def input_layer(self) -> int:
        return 12 - self.fine_tuned_layers


# ---------------------------------------------------------------------------------------------- data
def _text_dataset(ds: MultimodalDataset, key: str, id_suffix: str = "") -> MultimodalDataset:
    """``ds`` with ``key`` as its only modality, named ``text``."""
    out = ds.with_modalities([]).with_features(TEXT, ds.features[key], ds.meta.modalities[key])
    if id_suffix:
        out.ids = np.array([f"{i}{id_suffix}" for i in out.ids], dtype=object)
    return out


def student_inputs(source: MultimodalDataset, target: MultimodalDataset, input_layer: int
                   ) -> tuple[MultimodalDataset, MultimodalDataset]:
    """Source (``text`` and, when present, ``text_tr``) and target ``text`` token states advanced from the
    cached layer (8, see :class:`~msa_lib.studies.crosslingual.DataConfig` ``text_input = "tokens"``) to
    ``input_layer`` through e5's frozen layers, as text-only datasets."""
    def advanced(ds, keys):
        out = ds.with_modalities([])
        for key in keys:
            spec = ds.meta.modalities[key]
            below = spec.extractor.get("hidden_layer")
            if below is None or below > input_layer:
                raise ValueError(f"{ds.meta.name}.{key}: token states after layer {below}; self-training needs "
                                 f"states at or below layer {input_layer} (DataConfig(text_input='tokens'))")
            seqs = advance_hidden_states(ds.features[key], below, input_layer, spec.extractor["model_id"])
            out = out.with_features(key, seqs, replace(spec, extractor={**spec.extractor, "hidden_layer": input_layer}))
        return out

    src_keys = [TEXT] + ([TRANSLATION] if TRANSLATION in source.features else [])
    return advanced(source, src_keys), advanced(target, [TEXT])


def english_training_set(source: MultimodalDataset, with_translation: bool) -> MultimodalDataset:
    """The labelled source data of one run: MOSI train utterances and, with ``with_translation``, their
    translations as rows of their own (same labels, ids ``<id>#tr``), with ``text`` as the one modality."""
    train = source.get_split("train")
    parts = [_text_dataset(train, TEXT)]
    if with_translation and TRANSLATION in source.features:
        parts.append(_text_dataset(train, TRANSLATION, "#tr"))
    return concat(parts, name=f"{source.meta.name}-english" + ("+tr" if len(parts) > 1 else ""))


def unlabelled_pool(target: MultimodalDataset, split: str = "train", max_n: int | None = None,
                    seed: int = 0) -> MultimodalDataset:
    """The target's ``split`` (at most ``max_n`` texts drawn at random, without looking at labels) with
    every label replaced by -1 (unknown): what self-training may see."""
    pool = target.get_split(split)
    if max_n is not None and len(pool) > max_n:
        pool = pool.subset(np.sort(np.random.default_rng(seed).permutation(len(pool))[:max_n]))
    pool.labels = np.full(len(pool), -1, dtype=int)
    pool.scores = np.full(len(pool), np.nan)
    return pool


def select_confident(prob_pos: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced selection (CBST): for each predicted class, the ``share`` most confident of the
    samples predicted as that class. Returns (indices into ``prob_pos``, their pseudo-labels)."""
    prob_pos = np.asarray(prob_pos, float)
    pred = (prob_pos >= 0.5).astype(int)
    confidence = np.where(pred == 1, prob_pos, 1 - prob_pos)
    keep = []
    for c in (0, 1):
        members = np.flatnonzero(pred == c)
        n = int(round(share * len(members)))
        keep.append(members[np.argsort(-confidence[members], kind="stable")[:n]])
    index = np.sort(np.concatenate(keep))
    return index, pred[index]


def pseudo_labelled(pool: MultimodalDataset, index: np.ndarray, labels: np.ndarray) -> MultimodalDataset:
    out = pool.subset(index)
    out.labels = np.asarray(labels, dtype=int)
    out.split = np.array(["train"] * len(out), dtype=object)
    return out


# ---------------------------------------------------------------------------------------------- model
def build_student(ds: MultimodalDataset, cfg: SelfTrainingConfig, seed: int) -> MultimodalModel:
    """e5's top ``fine_tuned_layers`` layers (from the pretrained weights) -> mean pooling -> head."""
    set_seed(seed)
    encoder = EncoderConfig(kind="pretrained_top", layers=cfg.fine_tuned_layers, lr_scale=cfg.encoder_lr_scale)
    config = ModelConfig(dropout=cfg.train.dropout, encoders={TEXT: encoder})
    return build_model_for("text_only", ds, config, modalities=[TEXT])


def _loader(ds: MultimodalDataset, batch_size: int, shuffle: bool = False, seed: int = 0):
    return make_loader(ds, [TEXT], batch_size, shuffle=shuffle, seed=seed)


def predict_sorted(model: MultimodalModel, ds: MultimodalDataset, batch_size: int = 64) -> pd.DataFrame:
    """:func:`~msa_lib.train.trainer.predict` in length-sorted batches (little padding), rows in ``ds`` order."""
    order = np.argsort(ds.lengths(TEXT), kind="stable")
    frame = predict(model, _loader(ds.subset(order), batch_size), model.label_scheme)
    back = np.empty(len(order), dtype=int)
    back[order] = np.arange(len(order))
    return frame.iloc[back].reset_index(drop=True)


def _fit(model, train: MultimodalDataset, valid: MultimodalDataset | None, train_cfg: TrainConfig, seed: int):
    loader = _loader(train, train_cfg.batch_size, shuffle=True, seed=seed)
    valid_loader = _loader(valid, 2 * train_cfg.batch_size) if valid is not None else None
    monitor = train_cfg.monitor if valid is not None else "epoch"
    return fit(model, loader, valid_loader, replace(train_cfg, monitor=monitor, seed=None), model.label_scheme)


# ---------------------------------------------------------------------------------------------- evaluation
def evaluate_student(model: MultimodalModel, source: MultimodalDataset, target: MultimodalDataset,
                     train_prior: float, pool_prob: np.ndarray | None = None) -> list[dict]:
    """Rows for MOSI test (text), the Chinese test split as predicted (``prior = "source"``) and, with
    the model's ``pool_prob`` (p(positive) on the unlabelled pool), after EM re-estimation of the Chinese
    class prior from them (``prior = "em"``)."""
    rows = [{"eval_set": "mosi_test_text_only", "prior": "source",
             **scores(predict_sorted(model, _text_dataset(source.get_split("test"), TEXT)))}]
    test = predict_sorted(model, target.get_split("test"))
    rows.append({"eval_set": "zh_test", "prior": "source", **scores(test)})
    if pool_prob is not None and len(pool_prob):
        prior = em_prior(pool_prob, train_prior)
        test = test.assign(prob_em=adjust_posteriors(test["prob_pos"].to_numpy(), train_prior, prior))
        rows.append({"eval_set": "zh_test", "prior": "em", "estimated_prior": prior, **scores(test, "prob_em")})
    return rows


# ---------------------------------------------------------------------------------------------- runs
@dataclass
class SelfTrainingResult:
    model: MultimodalModel  # the model of the selected (stopping) round
    rows: list  # one group of evaluation rows per round
    rounds: pd.DataFrame  # per round: share, pseudo-labels kept, change since the previous round
    pseudo_labels: dict  # round -> (pool ids, pseudo-label of every pool review at the start of that round)
    selected_round: int
    seconds: float


def run_self_training(source: MultimodalDataset, target: MultimodalDataset, seed: int,
                      cfg: SelfTrainingConfig | None = None, evaluate_rounds: bool = True) -> SelfTrainingResult:
    """Round 0 trains on English (+ translations); each later round pseudo-labels the unlabelled Chinese
    train reviews with the current model, keeps the class-balanced confident share and fine-tunes on
    English + pseudo-labels. ``source`` / ``target`` come from :func:`student_inputs`. Target labels are
    read only by :func:`evaluate_student` on the *test* split."""
    cfg = cfg or SelfTrainingConfig()
    start = time.perf_counter()
    english = english_training_set(source, cfg.with_translation)
    valid = _text_dataset(source.get_split("valid"), TEXT)
    pool = unlabelled_pool(target, max_n=cfg.pool_max)
    train_prior = float((english.labels == 1).mean())
    model = build_student(english, cfg, seed)
    _fit(model, english, valid, replace(cfg.train, seed=seed), seed)
    round_cfg = replace(cfg.train, lr=cfg.train.lr * cfg.round_lr_scale, max_epochs=cfg.round_epochs)
    rows, info, pseudo, previous = [], [], {}, None
    for r in range(len(cfg.shares) + 1):
        prob = predict_sorted(model, pool)["prob_pos"].to_numpy()
        if evaluate_rounds:
            rows += [{"round": r, **row} for row in evaluate_student(model, source, target, train_prior, prob)]
        labels = (prob >= 0.5).astype(int)
        change = float(np.mean(labels != previous)) if previous is not None else float("nan")
        info.append({"round": r, "share": cfg.shares[r - 1] if r else 0.0, "pool_positive_rate": float(labels.mean()),
                     "change_since_previous": change})
        pseudo[r] = (pool.ids.copy(), labels)
        log.info("seed %d round %d: pool %.1f %% positive, %.1f %% changed (%.0f s)", seed, r, 100 * labels.mean(),
                 100 * change, time.perf_counter() - start)
        if r == len(cfg.shares) or change < cfg.stop_change:  # NaN (round 0) never stops
            break
        index, kept = select_confident(prob, cfg.shares[r])
        info[-1]["pseudo_labels_next_round"] = len(index)
        train = concat([english, pseudo_labelled(pool, index, kept)], name="english+pseudo")
        _fit(model, train, None, replace(round_cfg, seed=seed + 1000 * (r + 1)), seed + 1000 * (r + 1))
        previous = labels
    selected = r
    if not evaluate_rounds:
        rows = [{"round": r, **row} for row in evaluate_student(model, source, target, train_prior, prob)]
    for row in rows:
        row["selected"] = row["round"] == selected
        row["seed"] = seed
    return SelfTrainingResult(model.eval(), rows, pd.DataFrame(info).assign(seed=seed), pseudo, selected,
                              time.perf_counter() - start)


def _run_key(source: MultimodalDataset, target: MultimodalDataset, seed: int, cfg: SelfTrainingConfig) -> str:
    h = hashlib.sha256(json.dumps({"cfg": str(cfg), "seed": seed, "version": 1}, sort_keys=True).encode())
    for ds in (source, target):
        h.update(json.dumps(ds.meta.modalities[TEXT].extractor, sort_keys=True, default=str).encode())
        for sid, split in zip(ds.ids, ds.split):
            h.update(f"{sid}:{split};".encode())
    return h.hexdigest()[:12]


def cached_self_training(source: MultimodalDataset, target: MultimodalDataset, seed: int,
                         cfg: SelfTrainingConfig | None = None) -> SelfTrainingResult:
    """:func:`run_self_training`, kept on disk per (data, settings, seed) so that notebook 05 starts its
    rehearsal runs from the models notebook 04 self-trained (same weights, no second run)."""
    cfg = cfg or SelfTrainingConfig()
    path = cache_dir() / "self_training" / f"{_run_key(source, target, seed, cfg)}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=False)
        model = build_student(english_training_set(source, cfg.with_translation), cfg, seed)
        model.load_state_dict(saved["state_dict"])
        return SelfTrainingResult(model.eval(), saved["rows"], saved["rounds"], saved["pseudo_labels"],
                                  saved["selected_round"], saved["seconds"])
    result = run_self_training(source, target, seed, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()},
                "rows": result.rows, "rounds": result.rounds, "pseudo_labels": result.pseudo_labels,
                "selected_round": result.selected_round, "seconds": result.seconds}, tmp)
    tmp.replace(path)
    return result


def self_training_runs(source: MultimodalDataset, target: MultimodalDataset, seeds: Sequence[int],
                       cfg: SelfTrainingConfig | None = None, setting: str = "self_training"
                       ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """:func:`cached_self_training` for each seed. Returns (evaluation rows, per-round statistics with the
    after-the-fact pseudo-label accuracy, seed -> result)."""
    rows, rounds, results = [], [], {}
    for seed in seeds:
        result = results[seed] = cached_self_training(source, target, seed, cfg)
        rows += [{"setting": setting, **row} for row in result.rows]
        rounds.append(result.rounds.merge(pseudo_label_accuracy(result, target), on=["seed", "round"]))
        log.info("self-training seed %d: stopped after round %d (%.0f s)", seed, result.selected_round, result.seconds)
    return pd.DataFrame(rows), (pd.concat(rounds, ignore_index=True) if rounds else pd.DataFrame()), results


def rehearsal_from(result: SelfTrainingResult, source: MultimodalDataset, target: MultimodalDataset,
                   k_percent: float, seed: int, cfg: SelfTrainingConfig | None = None, epochs: int = 2,
                   lr_scale: float = 0.5) -> list[dict]:
    """Few-shot rehearsal on the self-trained student: a copy continues on the English data (+ translations)
    and k % of the *labelled* Chinese train reviews (stratified, repeated to about the English data's size,
    at most 20 times) for ``epochs`` epochs at ``cfg.train.lr * lr_scale``; k = 0 continues on English alone.
    Rows: MOSI test (text) and the Chinese test split (prior as trained), as :func:`evaluate_student`."""
    cfg = cfg or SelfTrainingConfig()
    english = english_training_set(source, cfg.with_translation)
    parts, n_target, repeat = [english], 0, 0
    if k_percent > 0:
        sample = target_sample(target, k_percent, seed)
        n_target, repeat = len(sample), int(np.clip(round(len(english) / max(len(sample), 1)), 1, 20))
        for r in range(repeat):
            copy_ = sample.subset(np.arange(len(sample)))
            copy_.ids = np.array([f"{i}#rep{r}" for i in sample.ids], dtype=object)
            parts.append(copy_)
    model = copy.deepcopy(result.model)
    train_cfg = replace(cfg.train, lr=cfg.train.lr * lr_scale, max_epochs=epochs, seed=seed)
    _fit(model, concat(parts, name=f"english+zh-k{k_percent:g}"), None, train_cfg, seed)
    rows = evaluate_student(model.eval(), source, target, float((english.labels == 1).mean()))
    return [{"method": "rehearsal_self_trained", "k_percent": k_percent, "seed": seed, **row,
             "n_target": n_target, "repeat_target": repeat} for row in rows]


def rehearsal_runs(source: MultimodalDataset, target: MultimodalDataset, seeds: Sequence[int],
                   k_percents: Sequence[float], cfg: SelfTrainingConfig | None = None, epochs: int = 2) -> pd.DataFrame:
    """:func:`rehearsal_from` each seed's self-trained student (:func:`cached_self_training`) at every k;
    rows as trained (no EM prior) with ``mosi_delta_vs_english_only``: MOSI test (text) accuracy minus that
    of the same seed's English-only student (round 0), the forgetting check."""
    rows = []
    for seed in seeds:
        result = cached_self_training(source, target, seed, cfg)
        english_only = next(r["acc"] for r in result.rows if r["round"] == 0 and r["eval_set"] == "mosi_test_text_only")
        for k in k_percents:
            for row in rehearsal_from(result, source, target, k, seed, cfg, epochs):
                delta = row["acc"] - english_only if row["eval_set"].startswith("mosi") else float("nan")
                rows.append({key: v for key, v in row.items() if key != "prior"} | {"mosi_delta_vs_english_only": delta})
        log.info("rehearsal on the self-trained student, seed %d done", seed)
    return pd.DataFrame(rows)


def pseudo_label_accuracy(result: SelfTrainingResult, target: MultimodalDataset) -> pd.DataFrame:
    """Diagnostic, after the fact: how many pseudo-labels of each round match the true train labels."""
    truth = dict(zip(target.ids, target.labels))
    return pd.DataFrame([{"seed": result.rounds["seed"].iloc[0], "round": r,
                          "pseudo_label_accuracy": float(np.mean([truth[i] == y for i, y in zip(ids, labels)]))}
                         for r, (ids, labels) in result.pseudo_labels.items()])


def fine_tuned_reference(target: MultimodalDataset, k_percent: float, seed: int,
                         cfg: SelfTrainingConfig | None = None) -> dict:
    """The student architecture from e5, fine-tuned on ``k_percent`` % of the *labelled* Chinese train
    reviews (stratified) for ``cfg.reference_steps`` optimiser steps (no target validation data at small k,
    so none at any k), scored on the Chinese test split."""
    cfg = cfg or SelfTrainingConfig()
    sample = target_sample(target, k_percent, seed)
    model = build_student(sample, cfg, seed)
    batches = max(1, int(np.ceil(len(sample) / cfg.train.batch_size)))
    epochs = max(1, int(np.ceil(cfg.reference_steps / batches)))
    start = time.perf_counter()
    _fit(model, sample, None, replace(cfg.train, max_epochs=epochs, seed=seed), seed)
    row = scores(predict_sorted(model, target.get_split("test")))
    return {"method": "fine_tuned_e5", "k_percent": k_percent, "seed": seed, "eval_set": "zh_test", "n_train": len(sample),
            "epochs": epochs, "seconds": time.perf_counter() - start, **row}


# ---------------------------------------------------------------------------------------------- reports
def selected_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of the English-only student (round 0, zero-shot with fine-tuned layers) and of
    the selected round (the zero-shot self-training result), per evaluation set and prior."""
    from msa_lib.evaluate.results import summarize

    parts = [frame[frame["round"] == 0].assign(model="english_only (round 0)"),
             frame[frame["selected"].astype(bool)].assign(model="self_training (selected round)")]
    keep = ["acc", "f1_macro", "auc", "acc_best_threshold", "round"]
    summary = summarize(pd.concat(parts, ignore_index=True), ["model", "eval_set", "prior"], keep)
    return summary[["model", "eval_set", "prior", "n_seeds", *keep]]


def reference_summary(references: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds of the fine-tuned supervised references, per k."""
    from msa_lib.evaluate.results import summarize

    keep = ["acc", "f1_macro", "auc", "n_train"]
    return summarize(references, ["method", "k_percent"], keep)[["method", "k_percent", "n_seeds", *keep]]


def plot_rounds(frame: pd.DataFrame, references: pd.DataFrame | None = None):
    """Chinese test accuracy (prior as trained) round by round, mean ± std over seeds, with the fine-tuned
    supervised references as horizontal lines."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for eval_set, label in (("zh_test", "Chinese test"), ("mosi_test_text_only", "MOSI test (text)")):
        part = frame[(frame["eval_set"] == eval_set) & (frame["prior"] == "source")].groupby("round")["acc"]
        mean, std = part.mean(), part.std(ddof=1).fillna(0)
        ax.errorbar(mean.index, 100 * mean, yerr=100 * std, marker="o", capsize=3, label=label)
    if references is not None and len(references):
        for k, acc in references.groupby("k_percent")["acc"].mean().items():
            ax.axhline(100 * acc, ls="--", lw=1, color="grey")
            ax.text(ax.get_xlim()[0], 100 * acc, f" fine-tuned on {k:g} % labelled", fontsize=7, va="bottom")
    ax.set_xlabel("self-training round (0 = English only)")
    ax.set_ylabel("accuracy (%)")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


__all__ = ["rehearsal_runs", "self_training_runs", "cached_self_training", "rehearsal_from", "selected_summary", "reference_summary", "plot_rounds", "SelfTrainingConfig", "student_inputs", "english_training_set", "unlabelled_pool", "select_confident",
           "build_student", "predict_sorted", "evaluate_student", "run_self_training", "SelfTrainingResult",
           "pseudo_label_accuracy", "fine_tuned_reference"]
