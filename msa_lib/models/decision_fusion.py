"""Decision-level (late) fusion rules: combine the class-probability tables of several branches.

Every rule takes a list of ``N x K`` probability tables (one per branch, rows sum to 1) and returns one
fused ``N x K`` table (take its argmax for the label). The rules that need information beyond the
test-time probabilities learn it in ``fit`` from *validation* predictions (``fit(probs, labels)``);
``fuse`` never receives labels, so nothing fitted can see a test label.

========================  ==========================================================================
rule                       fused probabilities
========================  ==========================================================================
``average``                ``mean_m p_m``
``accuracy_weighted``      ``sum_m w_m p_m`` with ``w_m = acc_m / sum_j acc_j`` (validation accuracy)
``accuracy_weighted_above_chance``  the same with ``w_m ∝ max(acc_m - 1/K, 0)`` (a branch at chance
                           gets no weight; plain accuracy weights stay close to uniform)
``confidence_weighted``    per sample ``w_m = c_m / sum_j c_j`` with ``c_m = max_k p_m[k]``, the
                           probability of branch *m*'s own predicted label ("dynamic weighting")
``rule_based``             the documented rule of :func:`rule_based` (agreement, then a trusted
                           branch above a confidence threshold, else the most confident branch)
``stacking``               multinomial logistic regression on the branches' log-probabilities,
                           fitted on validation (or out-of-fold) predictions
========================  ==========================================================================

Averaging rules assume the branches' probabilities are on a comparable scale. A strongly regularised
branch gives soft probabilities and is out-voted by a sharper one regardless of accuracy, so the
branches can first be *temperature-scaled* on validation predictions (:func:`fit_temperature`): one
scalar per branch, argmax unchanged, probabilities made as sharp as the branch's validation accuracy
warrants.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from msa_lib.core.selection import best_setting

__all__ = [
    "FusionInputError",
    "check_probs",
    "average",
    "weighted_average",
    "accuracy_weights",
    "confidence_weights",
    "confidence_weighted",
    "rule_based",
    "flatten_probs",
    "apply_temperature",
    "fit_temperature",
    "FusionRule",
    "AverageRule",
    "AccuracyWeightedRule",
    "ConfidenceWeightedRule",
    "RuleBasedCombiner",
    "StackingRule",
    "default_rules",
    "fuse_all",
]

EPS = 1e-12


class FusionInputError(ValueError):
    """Probability tables that cannot be fused (shapes differ, negative values, rows not summing to 1)."""


def check_probs(probs: Sequence[np.ndarray], atol: float = 1e-4) -> list[np.ndarray]:
    """Validate a list of ``N x K`` probability tables (same shape, rows on the simplex)."""
    if len(probs) == 0:
        raise FusionInputError("no probability tables given: expected one N x K table per branch")
    out = [np.asarray(p, dtype=np.float64) for p in probs]
    shape = out[0].shape
    for m, p in enumerate(out):
        if p.ndim != 2 or p.shape != shape:
            raise FusionInputError(f"branch {m}: expected an N x K table shaped like branch 0 {shape}, got {p.shape}")
        if not np.isfinite(p).all() or (p < -atol).any():
            raise FusionInputError(f"branch {m}: probabilities must be finite and non-negative")
        bad = np.abs(p.sum(axis=1) - 1) > atol
        if bad.any():
            raise FusionInputError(f"branch {m}: row {int(np.flatnonzero(bad)[0])} sums to "
                                   f"{p[bad][0].sum():.4f}, expected 1")
    return out


def average(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Unweighted mean of the branches' probabilities."""
    return np.mean(check_probs(probs), axis=0)


def weighted_average(probs: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """``sum_m w_m p_m`` with the weights normalised to sum to 1 (global, one weight per branch)."""
    probs = check_probs(probs)
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if len(w) != len(probs) or (w < 0).any() or not np.isfinite(w).all():
        raise FusionInputError(f"expected {len(probs)} non-negative finite weights, got {list(w)}")
    w = np.full(len(probs), 1.0 / len(probs)) if w.sum() <= 0 else w / w.sum()  # all-zero: plain average
    return np.tensordot(w, np.stack(probs), axes=1)


def accuracy_weights(accuracies: Sequence[float], chance: float = 0.0) -> np.ndarray:
    """Branch weights ``∝ max(acc_m - chance, 0)`` (``chance=0``: plain accuracy weighting), summing to 1.

    If every branch is at or below chance the weights fall back to uniform."""
    a = np.maximum(np.asarray(accuracies, dtype=np.float64) - chance, 0.0)
    return np.full(len(a), 1.0 / len(a)) if a.sum() <= 0 else a / a.sum()


def confidence_weights(probs: Sequence[np.ndarray]) -> np.ndarray:
    """``N x M`` per-sample weights: ``w_m = c_m / sum_j c_j``, ``c_m`` = branch *m*'s top probability."""
    conf = np.stack([p.max(axis=1) for p in check_probs(probs)], axis=1)
    return conf / np.maximum(conf.sum(axis=1, keepdims=True), EPS)


def confidence_weighted(probs: Sequence[np.ndarray]) -> np.ndarray:
    """Dynamic (per-sample) weighting by confidence: ``sum_m w_m(x) p_m(x)``."""
    w = confidence_weights(probs)
    return np.einsum("nm,mnk->nk", w, np.stack(check_probs(probs)))


def rule_based(probs: Sequence[np.ndarray], trusted: int, threshold: float) -> np.ndarray:
    """A transparent rule, applied per sample:

    1. all branches predict the same label -> keep it (output: the average of the branches);
    2. otherwise, if the *trusted* branch (the most accurate one on validation) is at least
       ``threshold`` sure of its label -> follow it (output: its probabilities);
    3. otherwise -> follow the branch that is most sure of its own label (its probabilities).

    ``threshold`` = 0 always follows the trusted branch on disagreement; > 1 always follows the most
    confident branch. :class:`RuleBasedCombiner` picks both on validation predictions.
    """
    probs = check_probs(probs)
    stack = np.stack(probs)  # M x N x K
    if not 0 <= trusted < len(probs):
        raise FusionInputError(f"trusted branch {trusted} out of range for {len(probs)} branches")
    preds, conf = stack.argmax(axis=2), stack.max(axis=2)  # M x N
    agree = (preds == preds[0]).all(axis=0)
    most_confident = conf.argmax(axis=0)
    follow = np.where(conf[trusted] >= threshold, trusted, most_confident)
    out = stack[follow, np.arange(stack.shape[1])]
    out[agree] = stack[:, agree].mean(axis=0)
    return out


def flatten_probs(p: np.ndarray, alpha: float) -> np.ndarray:
    """Blend probabilities towards uniform: ``(1 - alpha) p + alpha / K`` (argmax unchanged for alpha < 1,
    the branch only becomes less sure of itself)."""
    if not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    p = np.asarray(p, dtype=np.float64)
    return (1 - alpha) * p + alpha / p.shape[1]


def apply_temperature(p: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)``: T > 1 softens, T < 1 sharpens; the argmax never changes."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    logits = np.log(np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def fit_temperature(p: np.ndarray, labels: np.ndarray, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """Temperature scaling (Guo et al., 2017): the T that minimises the negative log-likelihood of
    ``labels`` under :func:`apply_temperature` (searched on log T within ``bounds``)."""
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels, int).reshape(-1)
    rows = np.arange(len(labels))

    def nll(log_t):
        return -np.mean(np.log(np.maximum(apply_temperature(p, np.exp(log_t))[rows, labels], 1e-12)))

    res = minimize_scalar(nll, bounds=tuple(np.log(bounds)), method="bounded")
    return float(np.exp(res.x))


# ----------------------------------------------------------------------------------- rule objects
@dataclass
class FusionRule:
    """Base class: ``fit(valid_probs, valid_labels)`` once, then ``fuse(probs)`` on any rows."""

    name: str = "rule"

    def fit(self, probs: Sequence[np.ndarray], labels: np.ndarray) -> "FusionRule":
        return self

    def fuse(self, probs: Sequence[np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> dict:
        return {}


@dataclass
class AverageRule(FusionRule):
    name: str = "average"

    def fuse(self, probs):
        return average(probs)


@dataclass
class AccuracyWeightedRule(FusionRule):
    """Weights from validation accuracy; ``above_chance`` subtracts 1/K first."""

    name: str = "accuracy_weighted"
    above_chance: bool = False
    weights_: np.ndarray | None = None

    def fit(self, probs, labels):
        probs = check_probs(probs)
        labels = np.asarray(labels).reshape(-1)
        accs = [float(np.mean(p.argmax(axis=1) == labels)) for p in probs]
        self.weights_ = accuracy_weights(accs, 1.0 / probs[0].shape[1] if self.above_chance else 0.0)
        return self

    def fuse(self, probs):
        if self.weights_ is None:
            raise RuntimeError(f"{self.name}: call fit() on validation predictions first")
        return weighted_average(probs, self.weights_)

    def describe(self):
        return {"weights": [round(float(w), 4) for w in self.weights_]}


@dataclass
class ConfidenceWeightedRule(FusionRule):
    name: str = "confidence_weighted"

    def fuse(self, probs):
        return confidence_weighted(probs)


@dataclass
class RuleBasedCombiner(FusionRule):
    """:func:`rule_based` with the trusted branch = best validation accuracy and the threshold that
    maximises validation accuracy (ties -> the lowest threshold, i.e. trust the better branch more)."""

    name: str = "rule_based"
    thresholds: tuple[float, ...] = tuple(np.round(np.arange(0.0, 1.01, 0.05), 2)) + (1.01,)
    trusted_: int | None = None
    threshold_: float | None = None

    def fit(self, probs, labels):
        probs = check_probs(probs)
        labels = np.asarray(labels).reshape(-1)
        accs = [np.mean(p.argmax(axis=1) == labels) for p in probs]
        self.trusted_ = int(np.argmax(accs))
        scores = [np.mean(rule_based(probs, self.trusted_, t).argmax(axis=1) == labels) for t in self.thresholds]
        self.threshold_ = float(self.thresholds[int(np.argmax(scores))])
        return self

    def fuse(self, probs):
        if self.trusted_ is None:
            raise RuntimeError(f"{self.name}: call fit() on validation predictions first")
        return rule_based(probs, self.trusted_, self.threshold_)

    def describe(self):
        return {"trusted_branch": self.trusted_, "threshold": self.threshold_}


@dataclass
class StackingRule(FusionRule):
    """Multinomial logistic regression on the concatenated branch log-probabilities.

    Fit it on predictions the branch models made for rows they were *not* trained on (validation
    actors, out-of-fold predictions); ``n_fit_rows_`` records how many rows it saw. With ``groups``
    (the actor of each row) its strength ``C`` is chosen from ``C_grid`` by grouped cross-validation
    (whole actors held out), else ``C_grid[-1]`` is used; ``cv_acc_`` is that cross-validated accuracy."""

    name: str = "stacking"
    C_grid: tuple[float, ...] = (0.01, 0.1, 1.0)
    n_folds: int = 4
    seed: int = 0
    model_: object = None
    C_: float | None = None
    cv_acc_: float = float("nan")
    n_fit_rows_: int = 0
    classes_: np.ndarray = field(default_factory=lambda: np.zeros(0, int))

    @staticmethod
    def features(probs: Sequence[np.ndarray]) -> np.ndarray:
        return np.concatenate([np.log(np.clip(p, 1e-6, 1.0)) for p in check_probs(probs)], axis=1)

    def _model(self, C):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=2000, random_state=self.seed)

    def fit(self, probs, labels, groups=None):
        X, y = self.features(probs), np.asarray(labels).reshape(-1)
        self.n_classes_ = probs[0].shape[1]
        self.C_ = self.C_grid[-1]
        if groups is not None and len(set(groups)) >= 2 and len(self.C_grid) > 1:
            from sklearn.model_selection import GroupKFold

            folds = list(GroupKFold(n_splits=min(self.n_folds, len(set(groups)))).split(X, y, groups))
            scores = {}
            for C in self.C_grid:
                hits = sum(int(np.sum(self._model(C).fit(X[a], y[a]).predict(X[b]) == y[b])) for a, b in folds)
                scores[C] = hits / len(y)
            self.C_ = best_setting(scores)  # ties -> stronger regularisation
            self.cv_acc_ = scores[self.C_]
        self.model_ = self._model(self.C_).fit(X, y)
        self.classes_ = self.model_.classes_
        self.n_fit_rows_ = len(y)
        return self

    def fuse(self, probs):
        if self.model_ is None:
            raise RuntimeError(f"{self.name}: call fit() on validation predictions first")
        p = self.model_.predict_proba(self.features(probs))
        out = np.zeros((p.shape[0], self.n_classes_))
        out[:, self.classes_] = p  # a class absent from the fitting rows keeps probability 0
        return out

    def describe(self):
        return {"n_fit_rows": self.n_fit_rows_, "C": self.C_, "cv_acc": round(float(self.cv_acc_), 4)}


def default_rules(seed: int = 0) -> list[FusionRule]:
    return [AverageRule(), AccuracyWeightedRule(), AccuracyWeightedRule("accuracy_weighted_above_chance", True),
            ConfidenceWeightedRule(), RuleBasedCombiner(), StackingRule(seed=seed)]


def fuse_all(rules: Sequence[FusionRule], fit_probs: Sequence[np.ndarray], fit_labels: np.ndarray,
             eval_probs: Sequence[np.ndarray], stack_probs: Sequence[np.ndarray] | None = None,
             stack_labels: np.ndarray | None = None, stack_groups: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Fit every rule on ``fit_probs``/``fit_labels`` (validation predictions) and fuse ``eval_probs``.

    ``stack_probs``/``stack_labels``/``stack_groups`` (e.g. out-of-fold train predictions plus
    validation predictions, with the actor of each row) replace the fitting rows for the stacker only.
    The evaluation rows come without labels.
    """
    out = {}
    for rule in rules:
        if isinstance(rule, StackingRule):
            if stack_probs is not None:
                rule.fit(stack_probs, stack_labels, stack_groups)
            else:
                rule.fit(fit_probs, fit_labels)
        else:
            rule.fit(fit_probs, fit_labels)
        out[rule.name] = rule.fuse(eval_probs)
    return out
