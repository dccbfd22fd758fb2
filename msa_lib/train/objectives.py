"""What the trainer minimises: an :class:`Objective` turns one batch into a loss.

:func:`msa_lib.train.trainer.fit` is the library's only training loop; everything that trains goes
through it with an objective:

- :class:`SupervisedObjective` (the default): the model's head loss (``compute_loss``), which already
  adds a fusion's auxiliary loss such as AdaMML's decision loss (``ModelOutput.aux_loss``);
- :class:`~msa_lib.train.contrastive.CrossLingualObjective`: task loss + translation task loss +
  cross-lingual / inter-modal NCE, with projection heads of its own (trained with the model);
- study objectives of their own (e.g. the one-vs-rest BCE head of the RAVDESS study).

An objective is an ``nn.Module`` so that its own parameters (projection heads) are optimised, moved
to the device and switched between train / eval mode together with the model.
"""
from __future__ import annotations

import torch
from torch import nn

from msa_lib.data.labels import LabelScheme
from msa_lib.data.torch_data import batch_to
from msa_lib.models.heads import LossConfig, LossParts, compute_loss


class Objective(nn.Module):
    """One batch -> :class:`~msa_lib.models.heads.LossParts`. Set ``parts.output`` to the model's
    :class:`~msa_lib.models.multimodal.ModelOutput` when there is one: the trainer derives the train
    metrics from it."""

    def move(self, batch, device: torch.device):
        """The batch on ``device`` (default: the project's dict batches)."""
        return batch_to(batch, device)

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def param_groups(self, lr: float) -> list[dict]:
        params = self.trainable_parameters()
        return [{"params": params, "lr": lr}] if params else []

    def forward(self, model: nn.Module, batch, label_scheme: LabelScheme | None) -> LossParts:  # pragma: no cover
        raise NotImplementedError


class SupervisedObjective(Objective):
    """The head loss of the model's prediction (see :func:`~msa_lib.models.heads.compute_loss`)."""

    def __init__(self, loss: LossConfig | None = None):
        super().__init__()
        self.loss = loss or LossConfig()

    def forward(self, model, batch, label_scheme):
        output = model(batch)
        parts = compute_loss(output, batch, label_scheme, self.loss)
        parts.output = output  # type: ignore[attr-defined]
        return parts


__all__ = ["Objective", "SupervisedObjective"]
