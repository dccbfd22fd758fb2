"""Contrastive objectives for cross-lingual transfer (the NCE losses of the second seed paper).

- :func:`info_nce`: InfoNCE with in-batch negatives. Row ``i`` of ``anchors`` must pick row ``i`` of
  ``positives`` among all rows (cosine similarity / temperature, cross-entropy); ``symmetric``
  averages both directions.
- **Cross-lingual NCE**: an utterance's representation is pulled towards the representation of its
  translation and pushed from the other translations in the batch. The representation is the model's
  fused vector computed from the text *plus* the conditioning modalities (``condition``: ``"none"``,
  ``"audio"``, ``"vision"`` or ``"both"``) — the same acoustic/visual context for the original and
  the translated text, so the text representation is aligned *given* how the utterance was said.
  With conditioning, plain in-batch negatives would be solvable from the audio/visual features alone
  (they identify the utterance), so by default (``negatives="same_condition"``) the negatives of
  anchor ``i`` are the other translations ``j`` fused with anchor ``i``'s own audio/visual: only the
  text can tell the positive apart.
- **Inter-modal NCE**: the text of an utterance is aligned with its audio and with its visual
  features (encoder outputs through small projection heads), in-batch negatives.

:class:`CrossLingualObjective` (an ``nn.Module``: it owns the projection heads) computes the task loss
on the original batch, optionally the task loss on the translated copy (translation augmentation) and
the weighted NCE terms; ``total = task + translation_task_weight * task_tr + cross_lingual_weight *
nce_xl + inter_modal_weight * nce_im``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msa_lib.models.encoders import EncodedModality
from msa_lib.models.heads import HeadOutput, LossConfig, LossParts, compute_loss
from msa_lib.train.objectives import Objective

CONDITIONS = ("none", "audio", "vision", "both")
NEGATIVES = ("same_condition", "in_batch")


def info_nce(anchors: Tensor, positives: Tensor, temperature: float = 0.1, symmetric: bool = True,
             normalize: bool = True) -> Tensor:
    """InfoNCE with in-batch negatives: ``-mean_i log softmax_j(sim(a_i, p_j) / T)[i]``.

    ``anchors`` and ``positives`` are B x D (row i of each is a positive pair; every other row of
    ``positives`` is a negative). Cosine similarity when ``normalize``, dot product otherwise.
    ``symmetric`` also scores positives -> anchors and averages the two directions.
    """
    if anchors.shape != positives.shape or anchors.dim() != 2:
        raise ValueError(f"info_nce needs two B x D tensors of the same shape, got {tuple(anchors.shape)} "
                         f"and {tuple(positives.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if normalize:
        anchors, positives = F.normalize(anchors, dim=-1), F.normalize(positives, dim=-1)
    logits = anchors @ positives.t() / temperature
    target = torch.arange(len(anchors), device=anchors.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.t(), target))
    return loss


def info_nce_with_candidates(anchors: Tensor, candidates: Tensor, temperature: float = 0.1,
                             normalize: bool = True) -> Tensor:
    """InfoNCE where anchor ``i`` has its own candidate set: ``candidates`` is B x B x D, row ``i``
    holds the candidates of anchor ``i`` and ``candidates[i, i]`` is its positive."""
    if candidates.dim() != 3 or candidates.shape[0] != candidates.shape[1] or candidates.shape[0] != anchors.shape[0]:
        raise ValueError(f"candidates must be B x B x D for {len(anchors)} anchors, got {tuple(candidates.shape)}")
    if normalize:
        anchors, candidates = F.normalize(anchors, dim=-1), F.normalize(candidates, dim=-1)
    logits = torch.einsum("bd,bkd->bk", anchors, candidates) / temperature
    return F.cross_entropy(logits, torch.arange(len(anchors), device=anchors.device))


@dataclass
class NCEConfig:
    """Weights (0 disables a term), temperature and conditioning of the contrastive losses."""

    cross_lingual_weight: float = 0.0
    condition: str = "none"  # modalities fused with the text for the cross-lingual representation
    negatives: str = "same_condition"  # or "in_batch" (see the module docstring)
    inter_modal_weight: float = 0.0
    inter_modal_pairs: tuple[str, ...] = ("audio", "vision")  # text is aligned with each of these
    temperature: float = 0.1
    projection_dim: int = 128
    translation_task_weight: float = 0.0  # task loss on the translated copy (translation augmentation)
    text_key: str = "text"  # the model's text modality
    translation_key: str = "text_tr"  # batch key holding the translation's features (same dim as text)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self):
        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {CONDITIONS}, got {self.condition!r}")
        if self.negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {self.negatives!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")

    def condition_modalities(self) -> tuple[str, ...]:
        return {"none": (), "audio": ("audio",), "vision": ("vision",), "both": ("audio", "vision")}[self.condition]


def translated_batch(batch: dict, text_key: str = "text", translation_key: str = "text_tr") -> dict:
    """The batch with the translation's features in place of the text (other modalities unchanged)."""
    out = {k: v for k, v in batch.items()}
    for part in ("x", "mask", "lengths", "present"):
        if translation_key not in batch[part]:
            raise KeyError(f"batch has no '{translation_key}' features (add the translations' features to the dataset)")
        out[part] = {**batch[part], text_key: batch[part][translation_key]}
    return out


def keep_only(batch: dict, modalities, keep_present: Tensor | None = None) -> dict:
    """The batch with every modality not in ``modalities`` marked absent (``present`` False)."""
    keep = set(modalities)
    out = {k: v for k, v in batch.items()}
    out["present"] = {m: (p if m in keep else torch.zeros_like(p)) for m, p in batch["present"].items()}
    out["mask"] = {m: (v if m in keep else torch.zeros_like(v)) for m, v in batch["mask"].items()}
    return out


class no_modality_dropout:
    """Context manager: the model's modality dropout off (the NCE views choose their modalities)."""

    def __init__(self, model):
        self.model, self.saved = model, None

    def __enter__(self):
        self.saved = self.model.config.modality_dropout
        self.model.config.modality_dropout = 0.0
        return self.model

    def __exit__(self, *exc):
        self.model.config.modality_dropout = self.saved
        return False


def _index_encoded(e: EncodedModality, idx: Tensor) -> EncodedModality:
    return EncodedModality(e.sequence[idx], e.mask[idx], e.pooled[idx], e.present[idx],
                           None if e.inputs is None else e.inputs[idx], {})


class CrossLingualObjective(Objective):
    """Task loss + translation augmentation + cross-lingual NCE + inter-modal NCE for one model.

    >>> objective = CrossLingualObjective(model, NCEConfig(cross_lingual_weight=0.5, condition="both"))
    >>> parts = objective(model, batch, label_scheme)   # batch from a loader with "text_tr" features
    >>> parts.total.backward()
    """

    def __init__(self, model, config: NCEConfig | None = None):
        super().__init__()
        self.config = cfg = config or NCEConfig()
        if cfg.text_key not in model.modalities:
            raise ValueError(f"the model has no text modality {cfg.text_key!r} (has {model.modalities})")
        fused_dim = model.fusion.out_dim
        self.fused_projection = nn.Sequential(nn.Linear(fused_dim, fused_dim), nn.GELU(),
                                              nn.Linear(fused_dim, cfg.projection_dim))
        enc_dims = {m: model.encoders[m].out_dim for m in model.modalities}
        pairs = [m for m in cfg.inter_modal_pairs if m in model.modalities]
        self.inter_pairs = pairs if cfg.inter_modal_weight > 0 else []
        self.modal_projection = nn.ModuleDict({m: nn.Linear(enc_dims[m], cfg.projection_dim)
                                               for m in ([cfg.text_key] + pairs if self.inter_pairs else [])})

    @property
    def needs_translation(self) -> bool:
        c = self.config
        return c.cross_lingual_weight > 0 or c.translation_task_weight > 0

    # ---- representations
    def _fused(self, model, encoded: dict[str, EncodedModality]) -> Tensor:
        return model.fusion(encoded).fused

    def cross_lingual_loss(self, model, batch: dict) -> Tensor | None:
        """NCE between fused(text, condition) and fused(translation, condition) over the samples that
        have both a text and a translation (None when fewer than 2 such samples)."""
        c = self.config
        cond = [m for m in c.condition_modalities() if m in model.modalities]
        if c.translation_key not in batch["present"]:
            return None
        has = batch["present"][c.text_key] & batch["present"][c.translation_key]
        if int(has.sum()) < 2:
            return None
        rows = torch.nonzero(has).squeeze(1)
        sub = _rows(batch, rows)
        with no_modality_dropout(model):
            original = model.encode(keep_only(sub, [c.text_key, *cond]))
            translated = model.encode(keep_only(translated_batch(sub, c.text_key, c.translation_key),
                                                [c.text_key, *cond]))
        anchors = self.fused_projection(self._fused(model, original))
        if not cond or c.negatives == "in_batch":
            positives = self.fused_projection(self._fused(model, translated))
            return info_nce(anchors, positives, c.temperature)
        # candidates (i, j): translation j fused with utterance i's own conditioning modalities
        b = len(rows)
        ii = torch.arange(b, device=anchors.device).repeat_interleave(b)
        jj = torch.arange(b, device=anchors.device).repeat(b)
        mixed = {m: _index_encoded(translated[m] if m == c.text_key else original[m], jj if m == c.text_key else ii)
                 for m in original}
        candidates = self.fused_projection(self._fused(model, mixed)).view(b, b, -1)
        return info_nce_with_candidates(anchors, candidates, c.temperature)

    def inter_modal_loss(self, model, encoded: dict[str, EncodedModality]) -> Tensor | None:
        """Mean over the pairs (text, m) of NCE between the projected pooled encoder outputs, over the
        samples where both modalities are present."""
        c = self.config
        losses = []
        text = encoded[c.text_key]
        for m in self.inter_pairs:
            both = text.present & encoded[m].present
            if int(both.sum()) < 2:
                continue
            a = self.modal_projection[c.text_key](text.pooled[both])
            p = self.modal_projection[m](encoded[m].pooled[both])
            losses.append(info_nce(a, p, c.temperature))
        return torch.stack(losses).mean() if losses else None

    # ---- everything
    def forward(self, model, batch: dict, label_scheme) -> LossParts:
        c = self.config
        encoded = model.encode(batch)
        fused = model.fuse(encoded, batch)
        pred = fused.prediction if fused.prediction is not None else model.head(fused.fused)
        output = _output(model, fused, pred)
        task = compute_loss(output, batch, label_scheme, c.loss)
        total, parts = task.total, {"task": float(task.total.detach())}
        if c.translation_task_weight > 0 and c.translation_key in batch["x"]:
            tr = translated_batch(batch, c.text_key, c.translation_key)
            tr["label"] = torch.where(batch["present"][c.translation_key], batch["label"], torch.full_like(batch["label"], -1))
            tr["score"] = torch.where(batch["present"][c.translation_key], batch["score"], torch.full_like(batch["score"], float("nan")))
            tr_loss = compute_loss(model(tr), tr, label_scheme, c.loss)
            if tr_loss.n_targets:
                total = total + c.translation_task_weight * tr_loss.total
                parts["task_tr"] = float(tr_loss.total.detach())
        if c.cross_lingual_weight > 0:
            xl = self.cross_lingual_loss(model, batch)
            if xl is not None:
                total = total + c.cross_lingual_weight * xl
                parts["nce_xl"] = float(xl.detach())
        if c.inter_modal_weight > 0:
            im = self.inter_modal_loss(model, encoded)
            if im is not None:
                total = total + c.inter_modal_weight * im
                parts["nce_im"] = float(im.detach())
        result = LossParts(total, parts, task.n_targets)
        result.output = output  # type: ignore[attr-defined]  # the trainer records train metrics from it
        return result


def _output(model, fused, pred: HeadOutput):
    from msa_lib.models.multimodal import ModelOutput

    return ModelOutput(pred.score, pred.logits, fused.fused, fused.per_modality, {}, fused.gates, fused.aux_loss,
                       model.fusion.provides_prediction, list(model.modalities))


def _rows(batch: dict, rows: Tensor) -> dict:
    out = {k: v for k, v in batch.items()}
    for part in ("x", "mask", "lengths", "present"):
        out[part] = {m: t[rows] for m, t in batch[part].items()}
    out["label"], out["score"] = batch["label"][rows], batch["score"][rows]
    idx = rows.tolist()
    for key in ("ids", "language", "raw_text"):
        if key in batch:
            out[key] = [batch[key][i] for i in idx]
    return out


__all__ = ["info_nce", "info_nce_with_candidates", "NCEConfig", "CrossLingualObjective", "translated_batch",
           "keep_only", "CONDITIONS", "NEGATIVES"]
