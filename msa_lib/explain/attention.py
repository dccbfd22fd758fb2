"""Attention weights of a trained model, named and checked, and attention-based importance scores.

:meth:`MultimodalModel.forward(batch, return_attention=True) <msa_lib.models.multimodal.MultimodalModel.forward>`
returns every attention map under a string key; :func:`parse_key` turns a key into an
:class:`AttentionKey` (direction, layer, query and key modality) so the explorer can offer
"direction / layer / head" choices. Padded keys carry weight 0 and padded query rows are all zero;
:func:`row_sum_errors` checks exactly that.

Attention is not an explanation by itself (Jain & Wallace, 2019): :func:`token_importance` turns a
map into a per-key score (attention *received*, averaged over heads and real queries, or the
attention *rollout* of Abnar & Zuidema, 2020, over stacked self-attention layers) so it can be
compared with gradient attributions, e.g. by rank correlation.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

_SELF = re.compile(r"^(?P<m>[^/]+)/layer(?P<i>\d+)$")
_CROSS = re.compile(r"^cross/(?P<q>[^/]+)->(?P<k>[^/]+)$")
_MULT = re.compile(r"^mult/(?P<q>[^/]+)->(?P<k>[^/]+)/layer(?P<i>\d+)$")
_MULT_SELF = re.compile(r"^mult/(?P<m>[^/]+)/self/layer(?P<i>\d+)$")
_MODALITY = re.compile(r"^modality(?:/layer(?P<i>\d+))?$")


class AttentionKeyError(ValueError):
    """An attention key that none of the model's naming patterns matches."""


@dataclass(frozen=True)
class AttentionKey:
    """One attention map: ``direction`` is a readable name shared by all layers of the same kind."""

    name: str  # the key in ``ModelOutput.attention``
    kind: str  # "self" (encoder), "cross", "mult", "mult_self", "modality"
    query: str  # modality of the query rows ("modality" for modality-attention)
    key: str  # modality of the key columns
    layer: int

    @property
    def direction(self) -> str:
        if self.kind == "self":
            return f"{self.query} self-attention"
        if self.kind == "cross":
            return f"{self.query} → {self.key} (cross-attention)"
        if self.kind == "mult":
            return f"{self.query} → {self.key} (MulT crossmodal)"
        if self.kind == "mult_self":
            return f"{self.query} (MulT memory self-attention)"
        return "modality attention"


def parse_key(name: str) -> AttentionKey:
    """``"text/layer2"``, ``"cross/audio->text"``, ``"mult/text->audio/layer0"``,
    ``"mult/text/self/layer0"``, ``"modality"`` -> :class:`AttentionKey`."""
    for pattern, kind in ((_CROSS, "cross"), (_MULT, "mult"), (_MULT_SELF, "mult_self"), (_MODALITY, "modality")):
        m = pattern.match(name)
        if m:
            d = m.groupdict()
            layer = int(d["i"]) if d.get("i") else 0
            if kind == "modality":
                return AttentionKey(name, kind, "modality", "modality", layer)
            if kind == "mult_self":
                return AttentionKey(name, kind, d["m"], d["m"], layer)
            return AttentionKey(name, kind, d["q"], d["k"], layer)
    m = _SELF.match(name)
    if m:
        return AttentionKey(name, "self", m["m"], m["m"], int(m["i"]))
    raise AttentionKeyError(f"attention key {name!r} matches none of '<modality>/layer<i>', 'cross/<q>-><k>', "
                            "'mult/<q>-><k>/layer<i>', 'mult/<m>/self/layer<i>', 'modality'")


def directions(names) -> dict[str, list[AttentionKey]]:
    """Attention keys grouped by readable direction, layers in order."""
    out: dict[str, list[AttentionKey]] = {}
    for key in sorted((parse_key(n) for n in names), key=lambda k: (k.kind, k.query, k.key, k.layer)):
        out.setdefault(key.direction, []).append(key)
    return out


@torch.no_grad()
def attention_maps(model, batch: dict) -> tuple[dict[str, Tensor], "object"]:
    """``(attention dict, model output)`` for one batch, in evaluation mode, tensors on the CPU."""
    from msa_lib.data.torch_data import batch_to

    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        output = model(batch_to(batch, device), return_attention=True)
    finally:
        model.train(was_training)
    return {k: v.detach().float().cpu() for k, v in output.attention.items()}, output


def query_key_masks(key: AttentionKey, batch: dict, modalities: list[str]) -> tuple[Tensor, Tensor]:
    """(B x Tq, B x Tk) masks of the real steps of one attention map's queries and keys (modality
    attention: the modalities each sample has)."""
    if key.kind == "modality":
        present = torch.stack([batch["present"][m].bool() & batch["mask"][m].bool().any(1) for m in modalities], 1)
        return present, present
    qm = batch["mask"][key.query].bool() & batch["present"][key.query].bool()[:, None]
    km = batch["mask"][key.key].bool() & batch["present"][key.key].bool()[:, None]
    return qm, km


def row_sum_errors(weights: Tensor, query_mask: Tensor, key_mask: Tensor) -> dict[str, float]:
    """How far a B x heads x Tq x Tk map is from "every real query row sums to one over the real keys,
    padded keys get nothing, padded query rows are zero". All three are ~0 for a correct model."""
    w = weights.float()
    qm = query_mask.bool()[:, None, :, None]
    km = key_mask.bool()[:, None, None, :]
    has_key = key_mask.bool().any(1)[:, None, None, None]
    real_rows = qm & has_key
    sums = (w * km).sum(-1, keepdim=True)
    row_err = ((sums - 1).abs() * real_rows).amax() if real_rows.any() else torch.tensor(0.0)
    masked_key = (w * ~km).abs().amax()
    padded_row = (w * ~qm).abs().amax()
    return {"row_sum": float(row_err), "masked_keys": float(masked_key), "padded_queries": float(padded_row)}


def head_select(weights: np.ndarray | Tensor, head: int | None) -> np.ndarray:
    """heads x Tq x Tk -> Tq x Tk: one head, or the mean over heads (``head=None``)."""
    w = weights.detach().cpu().numpy() if isinstance(weights, Tensor) else np.asarray(weights)
    w = w.astype(np.float32)
    if head is None:
        return w.mean(0)
    if not 0 <= head < w.shape[0]:
        raise IndexError(f"head {head} out of range: the map has {w.shape[0]} heads")
    return w[head]


def attention_received(weights: np.ndarray | Tensor, query_mask=None) -> np.ndarray:
    """Per key: the attention it receives, averaged over heads and real query rows (heads x Tq x Tk
    or Tq x Tk for one sample)."""
    w = weights.detach().cpu().numpy() if isinstance(weights, Tensor) else np.asarray(weights, dtype=np.float32)
    if w.ndim == 3:
        w = w.mean(0)
    rows = np.ones(w.shape[0], bool) if query_mask is None else np.asarray(query_mask, bool)
    if not rows.any():
        return np.zeros(w.shape[1], np.float32)
    return w[rows].mean(0)


def attention_rollout(layers: list[np.ndarray | Tensor], mask=None, residual: float = 0.5) -> np.ndarray:
    """Attention rollout over stacked self-attention layers of one sample (each heads x T x T or
    T x T): per layer ``residual * I + (1 - residual) * mean-over-heads attention``, rows renormalised,
    multiplied bottom-up. Returns the T x T rollout (padded rows/columns zero)."""
    mats = [head_select(a, None) if np.asarray(a).ndim == 3 else np.asarray(a, np.float32) for a in layers]
    t = mats[0].shape[0]
    keep = np.ones(t, bool) if mask is None else np.asarray(mask, bool)
    eye = np.diag(keep.astype(np.float32))
    out = eye.copy()
    for a in mats:
        a = residual * eye + (1 - residual) * a * keep[None, :] * keep[:, None]
        a = a / np.clip(a.sum(-1, keepdims=True), 1e-12, None)
        out = a @ out
    return out * keep[None, :] * keep[:, None]


def token_importance(attention: dict[str, np.ndarray], modality: str, mask=None, method: str = "rollout",
                     query: str | None = None) -> np.ndarray:
    """Attention-based importance of each step of ``modality`` for one sample.

    ``method="rollout"``: rollout of the modality's encoder self-attention layers, averaged over
    real query rows; ``"last_layer"``: attention received in the top self-attention layer;
    ``"cross"``: attention received from ``query`` in ``cross/{query}->{modality}`` (or the mean over
    every other modality's cross-attention to it when ``query`` is None).
    ``attention`` maps keys to heads x Tq x Tk arrays of this sample.
    """
    if method in ("rollout", "last_layer"):
        layers = sorted((parse_key(k) for k in attention if _SELF.match(k) and parse_key(k).query == modality),
                        key=lambda k: k.layer)
        if not layers:
            raise KeyError(f"no self-attention layers of {modality!r} among {sorted(attention)}")
        if method == "last_layer":
            return attention_received(attention[layers[-1].name], mask)
        roll = attention_rollout([attention[k.name] for k in layers], mask)
        rows = np.ones(roll.shape[0], bool) if mask is None else np.asarray(mask, bool)
        return roll[rows].mean(0) if rows.any() else np.zeros(roll.shape[1], np.float32)
    if method == "cross":
        names = [f"cross/{query}->{modality}"] if query else [k for k in attention
                                                               if _CROSS.match(k) and parse_key(k).key == modality]
        names = [n for n in names if n in attention]
        if not names:
            raise KeyError(f"no cross-attention to {modality!r} among {sorted(attention)}")
        return np.mean([attention_received(attention[n]) for n in names], 0)
    raise ValueError(f"method must be 'rollout', 'last_layer' or 'cross', got {method!r}")


@torch.no_grad()
def adamml_gates(model, loader) -> tuple[list[str], np.ndarray]:
    """(ids, N x windows x M gates) of an AdaMML model in evaluation mode (1 = modality used in that
    window; order: ``model.modalities``)."""
    from msa_lib.data.torch_data import batch_to

    model.eval()
    device = next(model.parameters()).device
    ids, gates = [], []
    for batch in loader:
        out = model(batch_to(batch, device))
        if out.gates is None:
            raise ValueError(f"model {getattr(model, 'name', '?')} has no modality gates (not an AdaMML fusion)")
        ids.extend(batch["ids"])
        gates.append(out.gates.detach().float().cpu().numpy())
    return ids, np.concatenate(gates)
