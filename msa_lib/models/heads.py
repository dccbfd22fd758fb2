"""Prediction heads and losses.

One head gives, from one fused vector, a regression score plus 2/3/5-class logits (sentiment label
schemes) or K-class logits under ``"cls"`` (multiclass schemes such as RAVDESS emotions).

Losses use whatever targets a batch has: known scores (not NaN) -> L1 (or MSE) on the score plus
cross-entropy on the classes :func:`msa_lib.data.labels.scores_to_classes` derives from them; known
class labels (not -1) without a score -> cross-entropy on the 2-class head (binary schemes; optionally
also BCE with the score read as a logit) or on the ``cls`` head (multiclass). Unknown targets are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msa_lib.data.labels import LabelScheme, scores_to_classes

SENTIMENT_CLASS_SETS = (2, 3, 5)


@dataclass
class HeadSpec:
    """``kind="sentiment"``: score + logits for ``class_sets`` (keys "2", "3", "5");
    ``kind="multiclass"``: score + ``num_classes`` logits under "cls"."""

    kind: str = "sentiment"
    num_classes: int = 2
    class_sets: tuple[int, ...] = SENTIMENT_CLASS_SETS
    hidden: int | None = None  # None: same width as the input vector

    def __post_init__(self):
        self.class_sets = tuple(self.class_sets)  # a JSON config gives a list
        if self.kind not in ("sentiment", "multiclass"):
            raise ValueError(f"head kind must be 'sentiment' or 'multiclass', got {self.kind!r}")

    @property
    def logit_sizes(self) -> dict[str, int]:
        if self.kind == "multiclass":
            return {"cls": self.num_classes}
        return {str(k): k for k in self.class_sets}


def head_spec_for(scheme: LabelScheme) -> HeadSpec:
    if scheme.kind == "multiclass":
        return HeadSpec("multiclass", scheme.num_classes)
    return HeadSpec("sentiment")


@dataclass
class HeadOutput:
    score: Tensor  # B
    logits: dict[str, Tensor]  # name -> B x K
    valid: Tensor | None = None  # B bool: samples this output speaks for (late fusion: modality present)


class PredictionHead(nn.Module):
    def __init__(self, in_dim: int, spec: HeadSpec | None = None, dropout: float = 0.3):
        super().__init__()
        self.spec = spec or HeadSpec()
        hidden = self.spec.hidden or in_dim
        self.sizes = self.spec.logit_sizes
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 1 + sum(self.sizes.values())))

    def forward(self, fused: Tensor, valid: Tensor | None = None) -> HeadOutput:
        out = self.net(fused)
        logits, start = {}, 1
        for name, k in self.sizes.items():
            logits[name] = out[:, start:start + k]
            start += k
        return HeadOutput(out[:, 0], logits, valid)


# ---------------------------------------------------------------------------------------------- losses
@dataclass
class LossConfig:
    regression: str = "l1"  # "l1" or "mse" on known scores
    class_weight: float = 1.0  # weight of the cross-entropy terms next to the regression term
    binary_score_bce: bool = False  # binary labels: also BCE with the score as a logit
    aux_weight: float = 1.0  # weight of a fusion's auxiliary loss (AdaMML decision loss)

    def __post_init__(self):
        if self.regression not in ("l1", "mse"):
            raise ValueError(f"regression loss must be 'l1' or 'mse', got {self.regression!r}")


@dataclass
class LossParts:
    total: Tensor
    parts: dict[str, float] = field(default_factory=dict)
    n_targets: int = 0


def _derived_classes(scores: Tensor, k: int, scale: str) -> Tensor:
    classes = scores_to_classes(scores.detach().cpu().numpy().astype(np.float64), k, scale)
    return torch.as_tensor(classes, dtype=torch.long, device=scores.device)


def head_loss(out: HeadOutput, batch: dict, scheme: LabelScheme, config: LossConfig | None = None,
              sample_mask: Tensor | None = None) -> LossParts:
    """Loss of one head output against the batch's known targets (means over known samples)."""
    config = config or LossConfig()
    score_t, label_t = batch["score"].to(out.score.device), batch["label"].to(out.score.device)
    keep = torch.ones_like(label_t, dtype=torch.bool)
    if out.valid is not None:
        keep &= out.valid
    if sample_mask is not None:
        keep &= sample_mask
    total = out.score.sum() * 0.0  # keeps the graph when a batch has no usable target
    parts, n = {}, 0

    if scheme.kind == "multiclass":
        known = keep & (label_t >= 0)
        if known.any():
            ce = F.cross_entropy(out.logits["cls"][known], label_t[known])
            total = total + config.class_weight * ce
            parts["ce"], n = float(ce.detach()), int(known.sum())
        return LossParts(total, parts, n)

    has_score = keep & ~torch.isnan(score_t)
    if scheme.kind == "regression" and has_score.any():
        target = score_t[has_score]
        pred = out.score[has_score]
        reg = F.l1_loss(pred, target) if config.regression == "l1" else F.mse_loss(pred, target)
        total = total + reg
        parts["regression"], n = float(reg.detach()), int(has_score.sum())
        for name, logits in out.logits.items():
            ce = F.cross_entropy(logits[has_score], _derived_classes(target, int(name), scheme.scale))
            total = total + config.class_weight * ce / len(out.logits)
            parts[f"ce{name}"] = float(ce.detach())
    else:
        has_score = torch.zeros_like(has_score)
    # class labels where no score is known (binary schemes; regression data with label-only samples)
    labelled = keep & ~has_score & (label_t >= 0)
    if labelled.any():
        ce = F.cross_entropy(out.logits["2"][labelled], label_t[labelled])
        total = total + config.class_weight * ce
        parts["ce2"] = float(ce.detach())
        if config.binary_score_bce:
            bce = F.binary_cross_entropy_with_logits(out.score[labelled], label_t[labelled].float())
            total = total + bce
            parts["bce"] = float(bce.detach())
        n += int(labelled.sum())
    return LossParts(total, parts, n)


def compute_loss(output, batch: dict, scheme: LabelScheme, config: LossConfig | None = None) -> LossParts:
    """Loss of a :class:`~msa_lib.models.multimodal.ModelOutput`: the joint head's loss, or the sum of
    the per-modality losses for late fusion, plus the weighted auxiliary loss of the fusion."""
    config = config or LossConfig()
    if output.train_per_modality:
        total, parts, n = None, {}, 0
        for m, out in output.per_modality.items():
            lp = head_loss(out, batch, scheme, config)
            total = lp.total if total is None else total + lp.total
            parts.update({f"{m}/{k}": v for k, v in lp.parts.items()})
            n = max(n, lp.n_targets)
        result = LossParts(total, parts, n)
    else:
        result = head_loss(HeadOutput(output.score, output.logits), batch, scheme, config)
    if output.aux_loss is not None and config.aux_weight:
        result.total = result.total + config.aux_weight * output.aux_loss
        result.parts["aux"] = float(output.aux_loss.detach())
    return result
