"""Acoustic-centric binary emotion detection: one-vs-rest per emotion with binary cross-entropy.

One head with K sigmoid outputs, trained with ``BCEWithLogitsLoss`` — with a linear head this is
exactly K independent one-vs-rest logistic regressions; with ``hidden > 0`` the K detectors share a
hidden layer. ``class_weighting=True`` passes ``pos_weight = n_negative / n_positive`` per emotion
(from the training rows), which makes a positive count as much as all negatives together: recall at
the 0.5 threshold goes up and precision down, while the ranking (average precision) is barely
touched — the precision-recall curve shows the trade-off.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from msa_lib.models.heads import LossParts
from msa_lib.train.objectives import Objective
from msa_lib.train.trainer import TrainConfig, fit

__all__ = ["BinaryHeadConfig", "one_hot", "pos_weights", "train_one_vs_rest", "predict_scores",
           "detection_metrics", "pr_curves"]


@dataclass
class BinaryHeadConfig:
    hidden: int = 0  # 0 = linear head (K one-vs-rest logistic regressions)
    max_epochs: int = 400  # full-batch epochs
    lr: float = 3e-3
    weight_decay: float = 1e-3
    dropout: float = 0.2  # on the input (and hidden layer)
    class_weighting: bool = False  # pos_weight = n_neg / n_pos per emotion
    eval_every: int = 5
    patience: int = 60  # epochs without a better validation mean AP before stopping
    seed: int = 0


def one_hot(y: np.ndarray, n_classes: int) -> np.ndarray:
    y = np.asarray(y, int).reshape(-1)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"labels must be in 0..{n_classes - 1}, got {y.min()}..{y.max()}")
    out = np.zeros((len(y), n_classes), dtype=np.float32)
    out[np.arange(len(y)), y] = 1
    return out


def pos_weights(Y: np.ndarray) -> np.ndarray:
    """``n_negative / n_positive`` per column; 1 for a column with no positives (nothing to weigh)."""
    Y = np.asarray(Y, dtype=np.float64)
    pos = Y.sum(axis=0)
    neg = len(Y) - pos
    return np.where(pos > 0, neg / np.maximum(pos, 1), 1.0)


def _mean_ap(Y: np.ndarray, scores: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    cols = [k for k in range(Y.shape[1]) if 0 < Y[:, k].sum() < len(Y)]
    return float(np.mean([average_precision_score(Y[:, k], scores[:, k]) for k in cols])) if cols else float("nan")


def _build(n_in: int, n_out: int, cfg: BinaryHeadConfig):
    from torch import nn

    if cfg.hidden > 0:
        return nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(n_in, cfg.hidden), nn.ReLU(),
                             nn.Dropout(cfg.dropout), nn.Linear(cfg.hidden, n_out))
    return nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(n_in, n_out))


class OneVsRestObjective(Objective):
    """Binary cross-entropy of the K sigmoid outputs on a full batch ``(X, Y)``."""

    def __init__(self, pos_weight=None):
        super().__init__()
        import torch

        self.loss = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)

    def move(self, batch, device):
        return tuple(t.to(device) for t in batch)

    def forward(self, model, batch, label_scheme=None) -> LossParts:
        X, Y = batch
        loss = self.loss(model(X), Y)
        return LossParts(loss, {"bce": float(loss.detach())}, len(Y))


def train_one_vs_rest(X_train: np.ndarray, Y_train: np.ndarray, X_valid: np.ndarray, Y_valid: np.ndarray,
                      config: BinaryHeadConfig | None = None):
    """Train the K-output BCE head on standardised features (full batch, constant learning rate, through
    :func:`msa_lib.train.trainer.fit`); keep the epoch with the best validation mean average precision.
    Returns ``(model, history)``; the model maps features to logits."""
    import torch

    cfg = config or BinaryHeadConfig()
    torch.manual_seed(cfg.seed)
    Xt, Yt = torch.as_tensor(X_train, dtype=torch.float32), torch.as_tensor(Y_train, dtype=torch.float32)
    Xv = torch.as_tensor(X_valid, dtype=torch.float32)
    model = _build(Xt.shape[1], Yt.shape[1], cfg)
    pw = torch.as_tensor(pos_weights(Y_train), dtype=torch.float32) if cfg.class_weighting else None

    def validation_ap(m) -> dict:
        with torch.no_grad():
            return {"valid_mean_ap": _mean_ap(Y_valid, torch.sigmoid(m(Xv)).numpy())}

    train = TrainConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, max_epochs=cfg.max_epochs, patience=cfg.patience,
                        eval_every=cfg.eval_every, grad_clip=None, lr_schedule="constant", seed=None, device="cpu",
                        monitor="valid_mean_ap", mode="max", progress=False)
    result = fit(model, [(Xt, Yt)], None, train, objective=OneVsRestObjective(pw), validators=[validation_ap])
    model.eval()
    history = result.history.dropna(subset=["valid_mean_ap"])[["epoch", "train_loss", "valid_mean_ap"]]
    return model, history.assign(epoch=history["epoch"] + 1).reset_index(drop=True)


def predict_scores(model, X: np.ndarray) -> np.ndarray:
    """Sigmoid probabilities ``N x K``."""
    import torch

    with torch.no_grad():
        return torch.sigmoid(model(torch.as_tensor(X, dtype=torch.float32))).numpy()


def detection_metrics(Y: np.ndarray, scores: np.ndarray, names, threshold: float = 0.5) -> pd.DataFrame:
    """Per emotion: average precision, and precision / recall / F1 at ``threshold``."""
    from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score

    rows = []
    for k, name in enumerate(names):
        y, s = Y[:, k].astype(int), scores[:, k]
        pred = (s >= threshold).astype(int)
        rows.append({
            "emotion": name, "positives": int(y.sum()), "predicted_positive": int(pred.sum()),
            "ap": float(average_precision_score(y, s)) if 0 < y.sum() < len(y) else float("nan"),
            "precision": float(precision_score(y, pred, zero_division=0)),
            "recall": float(recall_score(y, pred, zero_division=0)),
            "f1": float(f1_score(y, pred, zero_division=0)),
        })
    return pd.DataFrame(rows)


def pr_curves(Y: np.ndarray, scores: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(precision, recall, thresholds)`` per emotion (sklearn ``precision_recall_curve``)."""
    from sklearn.metrics import precision_recall_curve

    return [precision_recall_curve(Y[:, k].astype(int), scores[:, k]) for k in range(Y.shape[1])]
