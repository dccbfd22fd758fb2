"""Fine-grained sentiment on the CMU standard MOSI split (notebook ``09_mosi_standard``).

Protocol ``mosi_standard`` (:mod:`msa_lib.data.protocols`): continuous scores in [-3, 3], train / dev
(= valid) / test videos of the CMU split. Every model of the zoo trains with the regression head (L1 on
the score, as MMSA and the seed paper, plus the cross-entropy of the 2/3/5-class heads on the classes
derived from the score) and is scored with :func:`msa_lib.evaluate.metrics.fine_grained_metrics`.

Inputs are the project's own: e5 text (the two-stage recipe of :mod:`msa_lib.studies.recipes`, stage 1
fine-tuned here with L1 on the continuous labels) and the shipped openSMILE audio (no labels involved).
The shipped 3D-CNN video and text-CNN vectors were learned with bc-LSTM train labels and are refused on
this split; runs that use them anyway (``allow_label_trained_features=True``) carry the marker in the
``label_trained_features`` column.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from msa_lib.data.protocols import (SHIPPED_FEATURES, check_features_allowed, label_trained_marker, load_mosi_bclstm,
                                    load_mosi_standard)
from msa_lib.data.schema import MultimodalDataset
from msa_lib.data.torch_data import Standardizer, check_videos_within_one_split, make_loader, videos_in_spoken_order
from msa_lib.evaluate.metrics import (FINE_GRAINED_METRICS,  # noqa: F401  (notebook 11 reads it here)
                                      confusion_5class, f1_macro, fine_grained_metrics)
from msa_lib.extract.text_features import (MOSI_TEXT, TextFeatureConfig, add_text_features, layer_pooled_vectors,
                                          video_context_vectors)
from msa_lib.models.encoders import EncoderConfig
from msa_lib.models.heads import LossConfig
from msa_lib.models.multimodal import ModelConfig, build_model_for
from msa_lib.core.utils import get_logger
from msa_lib.studies.recipes import AdaptedText, RunOutput, adapt_text_encoder, model_config, run_models
from msa_lib.train.trainer import TrainConfig, predict

log = get_logger("fine_grained")

STANDARD_TEXT = ("text", "text_context")
STANDARD_OWN_INPUTS = (*STANDARD_TEXT, "audio")  # text with its context + the label-free openSMILE audio
STANDARD_WITH_VISION = (*STANDARD_OWN_INPUTS, "vision")  # + the label-trained 3D-CNN (marked rows only)
UNIMODAL_INPUTS = {"text_only": STANDARD_TEXT, "audio_only": ("audio",), "visual_only": ("vision",)}
# L1 on the score (MMSA); the class heads' cross-entropy at a small weight keeps the 5-class head usable
# without pulling the score towards class centres
REGRESSION_LOSS = LossConfig(regression="l1", class_weight=0.1)
# Stage 1 (top 4 e5 layers): lr 3e-4 (the e5 layers train at half of it), 8 epochs of cosine decay, the
# dev MAE picks the epoch. Chosen on the dev videos over lr 1e-4 / class weight 1 / 6 epochs (dev MAE
# 0.825 there, 0.756 here).
STAGE1_TRAIN = TrainConfig(lr=3e-4, max_epochs=8, patience=3, monitor="valid_mae", loss=REGRESSION_LOSS)
# Stage 2 (every model on the adapted states): the recipe of notebook 03 with the regression loss
STAGE2_TRAIN = TrainConfig(max_epochs=8, patience=2, monitor="valid_mae", progress=False, loss=REGRESSION_LOSS)


def prepare_mosi_standard(text: TextFeatureConfig | None = MOSI_TEXT, shipped: Sequence[str] | None = None,
                          allow_label_trained_features: bool = False,
                          max_videos: int | None = None) -> MultimodalDataset:
    """``mosi_standard`` with e5 text features (states after layer 8, pooled vectors, neighbour context)
    and the shipped vectors ``shipped`` (default: those the leakage guard allows) standardised with
    train statistics. ``max_videos`` keeps that many videos per split (smoke runs)."""
    ds = load_mosi_standard(shipped=shipped, allow_label_trained_features=allow_label_trained_features)
    if max_videos is not None:
        keep = np.zeros(len(ds), bool)
        for split in ("train", "valid", "test"):
            videos = sorted(set(ds.group[ds.split == split]))[:max_videos]
            keep |= (ds.split == split) & np.isin(ds.group, videos)
        ds = ds.subset(keep)
    if text is not None:
        ds = add_text_features(ds, text)
    shipped_here = [m for m in ds.modalities if m in SHIPPED_FEATURES]
    return Standardizer(modalities=shipped_here).fit_transform(ds) if shipped_here else ds


def standard_model_inputs(models: Sequence[str], with_vision: bool = False) -> dict[str, tuple[str, ...]]:
    """Inputs per named model: unimodal models their one modality (text with its context), fusions the
    project's own inputs (text + audio), plus the shipped video when ``with_vision``."""
    fusion_inputs = STANDARD_WITH_VISION if with_vision else STANDARD_OWN_INPUTS
    return {m: UNIMODAL_INPUTS.get(m, fusion_inputs) for m in models}


def fine_grained_row(pred: pd.DataFrame) -> dict[str, float]:
    """The MMSA metrics of a :func:`~msa_lib.train.trainer.predict` frame (score-based), plus the
    5-class head's own decision (``acc5_head``, ``f1_macro_5class_head``) when the frame has one."""
    known = pred[~pred["score"].isna()]
    row = fine_grained_metrics(known["score"], known["score_pred"])
    if "pred_5" in known:
        from msa_lib.data.labels import scores_to_classes

        true5 = scores_to_classes(known["score"].to_numpy(float), 5, "mosi")
        row["acc5_head"] = float(np.mean(true5 == known["pred_5"].to_numpy(int)))
        row["f1_macro_5class_head"] = f1_macro(true5, known["pred_5"].to_numpy(int), labels=list(range(5)))
    return row


def run_fine_grained(ds: MultimodalDataset, models: dict[str, Sequence[str]], seed: int,
                     train: TrainConfig | None = None, config: ModelConfig | None = None, experiment: str = "",
                     out: RunOutput | None = None, allow_label_trained_features: bool = False) -> RunOutput:
    """:func:`~msa_lib.studies.recipes.run_models` per model, each row rewritten to the fine-grained
    metrics and marked with the protocol and the label-trained shipped vectors it used ("" = none).
    The leakage guard refuses label-trained inputs unless ``allow_label_trained_features``."""
    out = out or RunOutput()
    train = train or STAGE2_TRAIN
    for name, inputs in models.items():
        used = check_features_allowed(ds, inputs, allow_label_trained_features)
        run_models(ds, {name: inputs}, seed, train, copy.deepcopy(config), experiment=experiment, out=out)
        row, pred = out.rows[-1], out.predictions[-1]
        keep = {k: row[k] for k in ("experiment", "model", "seed", "inputs", "best_epoch", "epochs_run",
                                    "seconds_per_epoch", "train_seconds")}
        marker = label_trained_marker(used)
        out.rows[-1] = {**keep, **fine_grained_row(pred), "protocol": ds.meta.extra.get("protocol", ds.meta.name),
                        "label_trained_features": marker}
        out.predictions[-1] = pred.assign(experiment=experiment, label_trained_features=marker)
    return out


# ---------------------------------------------------------------------------------------------- stage 1
@dataclass
class Stage1:
    """The stage-1 text model of one seed: adapted data for stage 2 and its own test predictions."""

    adapted: AdaptedText
    predictions: pd.DataFrame
    valid_predictions: pd.DataFrame | None = None  # the same model on the dev videos (for choices made on dev)

    def result_row(self, seed: int, experiment: str) -> dict:
        return {"experiment": experiment, "model": "text_only", "seed": seed, "inputs": "text",
                "best_epoch": self.adapted.best_epoch, **fine_grained_row(self.predictions),
                "protocol": self.adapted.dataset.meta.extra.get("protocol", ""), "label_trained_features": ""}


def adapt_text_regression(ds: MultimodalDataset, seed: int, train: TrainConfig | None = None,
                          layers: int = 4) -> Stage1:
    """Stage 1 on ``mosi_standard``: fine-tune the top ``layers`` e5 layers as a text-only regression
    model (L1, early stopping on the dev videos), then score that model itself on test (and predict the
    dev videos, for choices made there)."""
    train = train or STAGE1_TRAIN
    adapted = adapt_text_encoder(ds, seed, train, layers=layers)
    config = model_config(text_encoder=EncoderConfig(kind="pretrained_top", layers=layers))
    model = build_model_for("text_only", ds, config, modalities=["text"])
    model.load_state_dict(adapted.state_dict)
    pred = {split: predict(model, make_loader(ds.get_split(split), ["text"], 64), ds.meta.labels)
            for split in ("valid", "test")}
    return Stage1(adapted, pred["test"], pred["valid"])


# ---------------------------------------------------------------------------------------------- references
def ridge_reference(ds: MultimodalDataset, feature_sets: dict[str, Sequence[str]],
                    alphas: Sequence[float] = (0.1, 1.0, 10.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)) -> pd.DataFrame:
    """scikit-learn ridge regression on mean-pooled features (alpha chosen on the valid videos by MAE,
    refitted on train, scored on test), plus the train-mean constant: reference rows, not models."""
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def matrix(part, mods):
        return np.hstack([np.stack([np.nan_to_num(np.nanmean(a, axis=0)) for a in part.features[m]]) for m in mods])

    train, valid, test = (ds.get_split(s) for s in ("train", "valid", "test"))
    rows = [{"model": "train mean (constant)", **fine_grained_metrics(test.scores, np.full(len(test), train.scores.mean()))}]
    for name, mods in feature_sets.items():
        xtr, xva, xte = (matrix(p, mods) for p in (train, valid, test))
        fit = lambda a: make_pipeline(StandardScaler(), Ridge(alpha=a)).fit(xtr, train.scores)  # noqa: E731
        best = min(alphas, key=lambda a: np.mean(np.abs(fit(a).predict(xva) - valid.scores)))
        rows.append({"model": f"ridge: {name} (alpha={best:g})", **fine_grained_metrics(test.scores, fit(best).predict(xte))})
    return pd.DataFrame(rows)


def leakage_diagnostic(modalities: Sequence[str] = tuple(SHIPPED_FEATURES), folds: int = 5,
                       c: float = 0.1) -> pd.DataFrame:
    """How each shipped vector behaves on ``mosi_bclstm``: logistic regression accuracy under
    video-grouped cross-validation *inside* bc-LSTM train, next to the accuracy on the bc-LSTM test
    videos of the same classifier fitted on all of train. A vector made by a network that learned the
    train labels separates train videos it has never been *fitted* on almost perfectly (the extractor
    saw their labels) but not the unseen test videos; a label-free vector scores alike on both."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    ds = load_mosi_bclstm()
    tr, te = ds.split == "train", ds.split == "test"
    rows = []
    for m in modalities:
        x = np.stack([a[0] for a in ds.features[m]])
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
        cv = cross_val_predict(clf, x[tr], ds.labels[tr], groups=ds.group[tr], cv=GroupKFold(folds))
        test_acc = float(np.mean(clf.fit(x[tr], ds.labels[tr]).predict(x[te]) == ds.labels[te]))
        cv_acc = float(np.mean(cv == ds.labels[tr]))
        rows.append({"feature": m, "extractor": SHIPPED_FEATURES[m].extractor,
                     "grouped_cv_acc_inside_train": cv_acc, "test_acc": test_acc, "gap": cv_acc - test_acc,
                     "label_trained": SHIPPED_FEATURES[m].label_trained})
    return pd.DataFrame(rows)


def standard_test_overlap() -> pd.DataFrame:
    """Where the ``mosi_standard`` videos sit in the bc-LSTM split (the reason for the guard)."""
    standard, bclstm = load_mosi_standard(shipped=[]), load_mosi_bclstm()
    where = dict(zip(bclstm.group, bclstm.split))
    rows = [{"standard_split": s, "bclstm_split": where[v]} for s in ("train", "valid", "test")
            for v in sorted(set(standard.group[standard.split == s]))]
    return pd.DataFrame(rows).value_counts().rename("videos").reset_index()


# Published MOSI rows (regression, unaligned features, BERT-base text) from thuiar/MMSA
# results/result-stat.md @ a239548236c7 (MAE and Corr there are x 100); TETFN is not in that file's
# stored version: its row is the TETFN paper's (Wang et al., Pattern Recognition 2023) as tabulated in
# mmm587/DEMSA README.md, without Acc-5 / Acc-7.
MMSA_MOSI_PUBLISHED = pd.DataFrame([
    {"model": "MulT (MMSA)", "acc2_has0": 79.71, "f1_has0": 79.79, "acc2_non0": 80.98, "f1_non0": 81.0,
     "acc5": 42.68, "acc7": 36.91, "mae": 0.8799, "corr": 0.7022, "source": "thuiar/MMSA results/result-stat.md"},
    {"model": "MISA (MMSA)", "acc2_has0": 81.84, "f1_has0": 81.85, "acc2_non0": 83.54, "f1_non0": 83.49,
     "acc5": 47.08, "acc7": 41.37, "mae": 0.7765, "corr": 0.7781, "source": "thuiar/MMSA results/result-stat.md"},
    {"model": "Self-MM (MMSA)", "acc2_has0": 83.0, "f1_has0": 83.05, "acc2_non0": 84.82, "f1_non0": 84.81,
     "acc5": 52.66, "acc7": 46.07, "mae": 0.7244, "corr": 0.7892, "source": "thuiar/MMSA results/result-stat.md"},
    {"model": "TETFN (paper)", "acc2_has0": 84.05, "f1_has0": 83.83, "acc2_non0": 86.10, "f1_non0": 86.07,
     "acc5": np.nan, "acc7": np.nan, "mae": 0.717, "corr": 0.800, "source": "TETFN paper via mmm587/DEMSA README.md"},
])
# Published mosi_bclstm references (binary accuracy, trimodal, same speaker-independent split)
BCLSTM_PUBLISHED = pd.DataFrame([
    {"model": "bc-LSTM (Poria et al., ACL 2017)", "acc2": 80.3},
    {"model": "MMMU-BA (Ghosal et al., EMNLP 2018)", "acc2": 82.31},
])


def side_by_side(summary: pd.DataFrame, models: Sequence[str] | None = None) -> pd.DataFrame:
    """Our summary rows (means in %, MAE / r as is) beside :data:`MMSA_MOSI_PUBLISHED`."""
    cols = ["acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7", "mae", "corr"]
    ours = summary if models is None else summary[summary["model"].isin(models)]
    rows = []
    for _, r in ours.iterrows():
        label = f"{r['model']} ({r['experiment']})" if "experiment" in r and r["experiment"] else r["model"]
        row = {"model": label, "source": "this suite, mean of seeds"}
        for c in cols:
            mean = r[f"{c}_mean"]
            row[c] = round(100 * mean, 2) if c not in ("mae", "corr") else round(mean, 4)
        rows.append(row)
    return pd.concat([pd.DataFrame(rows), MMSA_MOSI_PUBLISHED[["model", *cols, "source"]]], ignore_index=True)


def confusion_5class_by_model(predictions: pd.DataFrame, by: str | Sequence[str] = "model") -> dict[str, np.ndarray]:
    """5 x 5 confusion matrices of the score's classes (rows true, columns predicted), summed over
    seeds, per value of ``by`` (column names joined with " · ")."""
    by = [by] if isinstance(by, str) else list(by)
    return {" · ".join(map(str, name if isinstance(name, tuple) else (name,))):
            sum(confusion_5class(p["score"], p["score_pred"]) for _, p in part.groupby("seed"))
            for name, part in predictions.groupby(by, sort=False)}




# ---------------------------------------------------------------------------------------------- figures
def plot_fine_grained_summary(summary: pd.DataFrame, label_col: str = "label",
                              references: dict[str, dict[str, float]] | None = None):
    """Four panels (Non0 Acc-2 %, Acc-7 %, MAE, Pearson r): mean ± std over seeds per row of a
    :func:`~msa_lib.evaluate.results.summarize` table; ``references`` draws dashed lines
    (name -> {metric: value}, accuracies as fractions)."""
    import matplotlib.pyplot as plt

    panels = [("acc2_non0", "Non0 Acc-2 (%)", 100), ("acc7", "Acc-7 (%)", 100), ("mae", "MAE", 1), ("corr", "Pearson r", 1)]
    fig, axes = plt.subplots(1, 4, figsize=(max(12, 1.1 * len(summary) + 6), 3.8), sharey=False)
    names = summary[label_col].astype(str)
    for ax, (metric, title, scale) in zip(axes, panels):
        mean, std = scale * summary[f"{metric}_mean"], scale * summary[f"{metric}_std"]
        ax.barh(names, mean, xerr=std, capsize=2, color="tab:blue", alpha=0.85)
        for i, (name, ref) in enumerate((references or {}).items()):
            if metric in ref and np.isfinite(ref[metric]):
                ax.axvline(scale * ref[metric], ls="--", lw=1, color=f"C{i + 1}", label=name)
        finite = mean[np.isfinite(mean)]
        if len(finite):
            lo, hi = float((finite - std.fillna(0)).min()), float((finite + std.fillna(0)).max())
            pad = 0.08 * (hi - lo + 1e-6)
            ax.set_xlim(max(0.0, lo - 4 * pad), hi + pad)
        ax.set_title(title)
        ax.invert_yaxis()
        if ax is not axes[0]:
            ax.set_yticklabels([])
    if references:
        axes[-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return fig


def plot_true_vs_predicted(pred: pd.DataFrame, title: str = ""):
    """Predicted against true scores (one seed's test set), with the identity line and r / MAE."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.2, 4.0))
    t, p = pred["score"].to_numpy(float), pred["score_pred"].to_numpy(float)
    ax.scatter(t, p, s=8, alpha=0.45)
    ax.plot([-3, 3], [-3, 3], ls="--", lw=1, color="grey")
    m = fine_grained_metrics(t, p)
    ax.set_title(f"{title}\nr = {m['corr']:.3f}, MAE = {m['mae']:.3f}", fontsize=9)
    ax.set_xlabel("true score")
    ax.set_ylabel("predicted score")
    ax.set_xlim(-3.2, 3.2)
    ax.set_ylim(-3.2, 3.2)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- kernel + video context
@dataclass(frozen=True)
class KernelContextConfig:
    """Support-vector regression (RBF kernel, epsilon-insensitive loss: like L1, robust to the outlying
    scores) on a frozen e5 sentence vector per utterance joined with its video context
    (:func:`~msa_lib.extract.text_features.video_context_vectors`): ``[u, w_v * v, w_n * n] /
    sqrt(1 + w_v^2 + w_n^2)``, with ``u`` the utterance's vector (mean over e5 ``layers``), ``v`` the
    mean of the video's other utterances, ``n`` the previous + next utterance (all unit length)."""

    layers: tuple[int, ...] = (10, 11, 12)
    video_weight: float = 0.5
    neighbour_weight: float = 0.5
    C: float = 1.0
    epsilon: float = 0.1
    gamma: float = 2.0

    def label(self) -> str:
        return (f"layers {'-'.join(map(str, self.layers))}, video {self.video_weight:g}, neighbours "
                f"{self.neighbour_weight:g}, C {self.C:g}, epsilon {self.epsilon:g}, gamma {self.gamma:g}")


# The settings searched on the dev videos (144 fits, about 3 min on 2 cores); nothing here reads test.
KERNEL_CONTEXT_GRID: dict[str, list] = {"layers": [(12,), (10, 11, 12)], "video_weight": [0.0, 0.5, 1.0],
                                        "neighbour_weight": [0.0, 0.5], "C": [1.0, 3.0], "epsilon": [0.1, 0.3],
                                        "gamma": [0.5, 1.0, 2.0]}
KERNEL_CONTEXT_MODEL = "svr_video_context"


class KernelContextFeatures:
    """The joined vectors of :class:`KernelContextConfig` for every utterance of ``ds`` (the e5 pass is
    cached per layer set). Context never crosses a video, and a video never spans two splits."""

    def __init__(self, ds: MultimodalDataset, text: TextFeatureConfig | None = None):
        check_videos_within_one_split(ds)
        self.ds, self.text = ds, text
        self._parts: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def __call__(self, config: KernelContextConfig) -> np.ndarray:
        layers = tuple(config.layers)
        if layers not in self._parts:
            vectors = layer_pooled_vectors(self.ds, layers, self.text)
            self._parts[layers] = (vectors, *video_context_vectors(self.ds, vectors))
        weights = (1.0, config.video_weight, config.neighbour_weight)
        joined = [w * x for w, x in zip(weights, self._parts[layers]) if w]
        return np.hstack(joined) / np.sqrt(sum(w * w for w in weights))


def fit_kernel_context(features: KernelContextFeatures, config: KernelContextConfig, train_split: str = "train"):
    """The fitted scikit-learn ``SVR`` of ``config`` on ``train_split``, and the joined vectors of every
    utterance (rows of ``features.ds``)."""
    from sklearn.svm import SVR

    x = features(config)
    train = features.ds.split == train_split
    model = SVR(kernel="rbf", C=config.C, epsilon=config.epsilon, gamma=config.gamma).fit(x[train], features.ds.scores[train])
    return model, x


def select_kernel_context(features: KernelContextFeatures, grid: dict[str, list] | None = None
                          ) -> tuple[KernelContextConfig, pd.DataFrame]:
    """Fit every setting of ``grid`` (default :data:`KERNEL_CONTEXT_GRID`) on train and score it on the
    valid (dev) videos; the lowest dev MAE wins (first in grid order on ties). Only train and valid
    utterances are read: the test scores play no part. Returns the winner and one row per setting."""
    import itertools

    grid = grid or KERNEL_CONTEXT_GRID
    ds = features.ds
    valid = ds.split == "valid"
    if not valid.any():
        raise ValueError(f"{ds.meta.name}: no valid (dev) utterances to choose the kernel settings on")
    rows, configs = [], []
    for values in itertools.product(*grid.values()):
        config = KernelContextConfig(**dict(zip(grid, values)))
        model, x = fit_kernel_context(features, config)
        m = fine_grained_metrics(ds.scores[valid], model.predict(x[valid]))
        rows.append({"setting": config.label(), **{f"valid_{k}": m[k] for k in ("mae", "corr", "acc2_non0", "acc7")}})
        configs.append(config)
    table = pd.DataFrame(rows)
    best = int(table["valid_mae"].to_numpy().argmin())
    table["selected"] = np.arange(len(table)) == best
    return configs[best], table


def kernel_context_predictions(features: KernelContextFeatures, config: KernelContextConfig,
                               splits: Sequence[str] = ("valid", "test")) -> dict[str, pd.DataFrame]:
    """Fit ``config`` on train once and predict each of ``splits``: per split a frame like
    :func:`~msa_lib.train.trainer.predict`'s (``id``, ``score``, ``score_pred``) for :func:`fine_grained_row`."""
    model, x = fit_kernel_context(features, config)
    ds = features.ds
    out = {}
    for split in splits:
        rows = ds.split == split
        out[split] = pd.DataFrame({"id": np.asarray(ds.ids)[rows], "score": ds.scores[rows],
                                   "score_pred": model.predict(x[rows])})
    return out


# The issue-16 quality bar on the mosi_standard test videos: metric -> (comparison, bound)
MOSI_STANDARD_BAR: dict[str, tuple[str, float]] = {"acc2_non0": (">=", 0.855), "corr": (">=", 0.80),
                                                   "mae": ("<=", 0.75), "acc7": (">=", 0.42)}


def bar_verdicts(values: dict[str, float], bar: dict[str, tuple[str, float]] | None = None) -> pd.DataFrame:
    """One row per metric of ``bar`` (default :data:`MOSI_STANDARD_BAR`): the value, the bound and
    whether it is met."""
    bar = bar or MOSI_STANDARD_BAR
    rows = []
    for metric, (op, bound) in bar.items():
        value = float(values[metric])
        rows.append({"metric": metric, "value": value, "bar": f"{op} {bound:g}",
                     "met": value >= bound if op == ">=" else value <= bound})
    return pd.DataFrame(rows)


def adjacent_polarity_agreement(ds: MultimodalDataset) -> pd.DataFrame:
    """How often two adjacent utterances of a video share their polarity (score >= 0), with the
    utterances in file order and in spoken order (the id's number). A diagnostic of the shipped files:
    their row order groups each video by label, which is why context follows the ids."""
    spoken = videos_in_spoken_order(ds.group, ds.ids)
    rows = []
    for name, videos in (("file order", [sorted(members) for members in spoken]), ("spoken order (id number)", spoken)):
        same = pairs = 0
        for members in videos:
            polarity = ds.scores[members] >= 0
            same += int((polarity[1:] == polarity[:-1]).sum())
            pairs += len(members) - 1
        rows.append({"order": name, "adjacent_pairs": pairs, "same_polarity": same / max(pairs, 1)})
    return pd.DataFrame(rows)


BLEND_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0)


def blend_on_dev(first: dict[str, pd.DataFrame], second: dict[str, pd.DataFrame],
                 weights: Sequence[float] = BLEND_WEIGHTS) -> tuple[float, pd.DataFrame]:
    """Score-level blend ``w * first + (1 - w) * second`` of two models' predictions (frames with ``id``,
    ``score``, ``score_pred`` per split ``"valid"`` / ``"test"``), ``w`` chosen by the dev MAE (the first
    of ``weights`` on ties); returns ``w`` and the blended test frame. Test scores are never read."""
    def joined(split):
        a, b = first[split], second[split]
        merged = a[["id", "score", "score_pred"]].merge(b[["id", "score_pred"]], on="id", suffixes=("", "_b"),
                                                           validate="one_to_one")
        if len(merged) != len(a) or len(merged) != len(b):
            raise ValueError(f"{split}: the two prediction frames hold different utterances")
        return merged

    valid = joined("valid")
    mae = [np.mean(np.abs(w * valid["score_pred"] + (1 - w) * valid["score_pred_b"] - valid["score"])) for w in weights]
    w = float(weights[int(np.argmin(mae))])
    test = joined("test")
    return w, test.assign(score_pred=w * test["score_pred"] + (1 - w) * test["score_pred_b"]).drop(columns="score_pred_b")
