"""Sentiment metrics, named for exactly what they compute.

- ``acc2_has0``: negative (< 0) vs non-negative (>= 0), all samples.
- ``acc2_non0``: samples whose *true* score is 0 are dropped; then negative (< 0) vs positive (> 0),
  labels and predictions mapped the same way (a predicted 0 counts as not positive, as in MMSA).
- ``acc3`` / ``acc5`` / ``acc7``: class agreement after :func:`msa_lib.data.labels.scores_to_classes`.
- ``f1_macro`` / ``f1_weighted``: scikit-learn F1 with that averaging.
- ``mae``, ``pearson_r`` on scores; ``confusion`` with fixed class order.
- the fine-grained set as MMSA reports it (:func:`fine_grained_metrics`: ``f1_has0``, ``f1_non0``,
  ``f1_macro_5class``, ``confusion_5class`` and the ones above), see :func:`fine_grained_metrics`.
- ``roc_auc`` and ``best_threshold_accuracy`` on binary labels and real-valued scores: how well the
  scores *rank* the samples, apart from where the decision threshold sits. ``best_threshold_accuracy``
  picks the threshold with the labels it is scored on, so it is a diagnostic ceiling (what any prior or
  threshold correction could reach at best), never a result.
"""
from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score, roc_curve

from msa_lib.data.labels import CLASS_NAMES, scores_to_classes


def _arr(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x).reshape(-1)


def accuracy(y_true, y_pred) -> float:
    return float(accuracy_score(_arr(y_true), _arr(y_pred)))


def f1_macro(y_true, y_pred, labels=None) -> float:
    return float(f1_score(_arr(y_true), _arr(y_pred), average="macro", labels=labels, zero_division=0))


def f1_weighted(y_true, y_pred, labels=None) -> float:
    return float(f1_score(_arr(y_true), _arr(y_pred), average="weighted", labels=labels, zero_division=0))


def acc2_has0(true_scores, pred_scores) -> float:
    return accuracy(_arr(true_scores) >= 0, _arr(pred_scores) >= 0)


def acc2_non0(true_scores, pred_scores) -> float:
    t, p = _arr(true_scores).astype(float), _arr(pred_scores).astype(float)
    keep = t != 0
    if not keep.any():
        return float("nan")
    return accuracy(t[keep] > 0, p[keep] > 0)


def acc_k(true_scores, pred_scores, k: int, scale: str = "mosi") -> float:
    return accuracy(scores_to_classes(_arr(true_scores), k, scale), scores_to_classes(_arr(pred_scores), k, scale))


def acc3(true_scores, pred_scores, scale: str = "mosi") -> float:
    return acc_k(true_scores, pred_scores, 3, scale)


def acc5(true_scores, pred_scores, scale: str = "mosi") -> float:
    return acc_k(true_scores, pred_scores, 5, scale)


def acc7(true_scores, pred_scores) -> float:
    return acc_k(true_scores, pred_scores, 7, "mosi")


def mae(true_scores, pred_scores) -> float:
    return float(np.mean(np.abs(_arr(true_scores).astype(float) - _arr(pred_scores).astype(float))))


def pearson_r(true_scores, pred_scores) -> float:
    t, p = _arr(true_scores).astype(float), _arr(pred_scores).astype(float)
    if np.ptp(t) == 0 or np.ptp(p) == 0:
        return float("nan")  # undefined for a constant series (ptp, not std: std of a constant can round to 1e-16)
    return float(pearsonr(t, p)[0])


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve of binary labels (1 = positive) against scores; NaN with one class."""
    t = _arr(y_true).astype(int)
    if len(np.unique(t)) < 2:
        return float("nan")
    return float(roc_auc_score(t, _arr(scores).astype(float)))


def best_threshold_accuracy(y_true, scores) -> float:
    """The highest accuracy of ``score >= threshold`` over every threshold (including "all negative"),
    the threshold chosen on these same labels: an upper bound, not an estimate."""
    t, s = _arr(y_true).astype(int), _arr(scores).astype(float)
    if len(t) == 0:
        return float("nan")
    n_pos = int(t.sum())
    n_neg = len(t) - n_pos
    if n_pos == 0 or n_neg == 0:
        return 1.0
    fpr, tpr, _ = roc_curve(t, s, drop_intermediate=False)
    correct = tpr * n_pos + (1.0 - fpr) * n_neg
    return float(correct.max() / len(t))


def confusion(y_true, y_pred, num_classes: int) -> np.ndarray:
    return confusion_matrix(_arr(y_true), _arr(y_pred), labels=list(range(num_classes)))


def regression_metrics(true_scores, pred_scores, scale: str = "mosi") -> dict:
    """All score-based metrics for ``mosi`` ([-3, 3]) or ``sims`` ([-1, 1]) scales."""
    t, p = _arr(true_scores).astype(float), _arr(pred_scores).astype(float)
    t2, p2 = (t >= 0).astype(int), (p >= 0).astype(int)
    out = {
        "acc2_has0": acc2_has0(t, p),
        "acc2_non0": acc2_non0(t, p),
        "f1_weighted_has0": f1_weighted(t2, p2),
        "f1_macro_has0": f1_macro(t2, p2),
        "acc3": acc3(t, p, scale),
        "acc5": acc5(t, p, scale),
        "mae": mae(t, p),
        "pearson_r": pearson_r(t, p),
    }
    nz = t != 0
    out["f1_weighted_non0"] = f1_weighted(t[nz] > 0, p[nz] > 0) if nz.any() else float("nan")
    if scale == "mosi":
        out["acc7"] = acc7(t, p)
    return out


def classification_metrics(y_true, y_pred, num_classes: int) -> dict:
    t, p = _arr(y_true).astype(int), _arr(y_pred).astype(int)
    labels = list(range(num_classes))
    return {
        "acc": accuracy(t, p),
        "f1_macro": f1_macro(t, p, labels),
        "f1_weighted": f1_weighted(t, p, labels),
    }


def binary_metrics(y_true, y_pred) -> dict:
    """For binary-only labels (0 = negative, 1 = positive): Acc-2 is plain accuracy here; balanced
    accuracy is the mean of the two recalls (sklearn ``balanced_accuracy_score``)."""
    m = classification_metrics(y_true, y_pred, 2)
    t, p = _arr(y_true).astype(int), _arr(y_pred).astype(int)
    recalls = [float(np.mean(p[t == c] == c)) for c in (0, 1) if (t == c).any()]
    return {"acc2": m["acc"], "f1_macro": m["f1_macro"], "f1_weighted": m["f1_weighted"],
            "balanced_acc": float(np.mean(recalls)) if recalls else float("nan")}


def class_names(k: int) -> tuple[str, ...]:
    return CLASS_NAMES[k]


# ---------------------------------------------------------------------------------------------- fine-grained (MMSA)
FINE_GRAINED_METRICS = ("acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7", "mae", "corr",
                        "f1_macro_5class")


def f1_has0(true_scores, pred_scores) -> float:
    """Weighted F1 of the Has0 split: negative = score < 0, non-negative = score >= 0, every sample
    (MMSA ``Has0_F1_score``)."""
    t, p = _arr(true_scores).astype(float), _arr(pred_scores).astype(float)
    return f1_weighted(t >= 0, p >= 0)


def f1_non0(true_scores, pred_scores) -> float:
    """Weighted F1 of the Non0 split: samples whose *true* score is 0 are dropped, then positive =
    score > 0 for truth and prediction alike (a predicted 0 counts as negative; MMSA ``Non0_F1_score``).
    NaN when every true score is 0."""
    t, p = _arr(true_scores).astype(float), _arr(pred_scores).astype(float)
    keep = t != 0
    if not keep.any():
        return float("nan")
    return f1_weighted(t[keep] > 0, p[keep] > 0)


def five_class(scores) -> np.ndarray:
    """SNEG / WNEG / NEUT / WPOS / SPOS (0..4) of MOSI-scale scores: clip to [-2, 2], then round half
    to even, as MMSA's ``Mult_acc_5`` does, so the halves go to the even neighbour: -1.5 -> SNEG,
    -0.5 and 0.5 -> NEUT, 1.5 -> SPOS, while 1.4 -> WPOS and 0.6 -> WPOS."""
    return scores_to_classes(_arr(scores).astype(float), 5, "mosi")


def f1_macro_5class(true_scores, pred_scores) -> float:
    """Macro F1 over the five classes of :func:`five_class` (all five count, absent ones score 0)."""
    return f1_macro(five_class(true_scores), five_class(pred_scores), labels=list(range(5)))


def confusion_5class(true_scores, pred_scores) -> np.ndarray:
    """5 x 5 counts, rows = true class, columns = predicted class, order SNEG, WNEG, NEUT, WPOS, SPOS."""
    return confusion(five_class(true_scores), five_class(pred_scores), 5)


def fine_grained_metrics(true_scores, pred_scores) -> dict[str, float]:
    """The MOSI regression metrics with MMSA's conventions (``src/MMSA/utils/metricsTop.py``,
    ``__eval_mosei_regression``), on raw (unclipped) scores in [-3, 3]:

    - ``acc2_has0`` / ``f1_has0``: true >= 0 vs predicted >= 0, all samples; weighted F1;
    - ``acc2_non0`` / ``f1_non0``: samples with true score 0 dropped; true > 0 vs predicted > 0;
    - ``acc5`` / ``acc7``: both series clipped to [-2, 2] / [-3, 3], then rounded (half to even, as
      ``np.round``); equal integers count as correct;
    - ``mae``: mean absolute error of the unclipped scores; ``corr``: Pearson r (NaN if either series
      is constant);
    - ``f1_macro_5class``: macro F1 of the Acc-5 classes (not in MMSA; the suite's 5-class output).
    """
    t, p = _arr(true_scores).astype(float), _arr(pred_scores).astype(float)
    if len(t) != len(p):
        raise ValueError(f"{len(t)} true scores but {len(p)} predictions")
    return {"acc2_has0": acc2_has0(t, p), "f1_has0": f1_has0(t, p), "acc2_non0": acc2_non0(t, p),
            "f1_non0": f1_non0(t, p), "acc5": acc5(t, p), "acc7": acc7(t, p), "mae": mae(t, p),
            "corr": pearson_r(t, p), "f1_macro_5class": f1_macro_5class(t, p)}
