"""Captum attributions for :class:`~msa_lib.models.multimodal.MultimodalModel`.

Every method explains one scalar per sample, :func:`prediction_target`: the score for regression
labels, the 2-class log-odds for binary labels, the logit of the predicted (or given) class for
multiclass labels.

- :func:`modality_ablation` — Captum ``FeatureAblation`` with one mask group per modality: the
  contribution of modality *m* is ``f(x) - f(x without m)``. "Without" is either the model's own
  absent-modality path (``mode="absent"``: the modality is masked out, exactly as for a sample that
  lacks it; train with ``modality_dropout`` so this is in-distribution) or the features replaced by a
  baseline (``mode="baseline"``: zeros = the training mean of standardised features).
- :func:`integrated_gradients` — ``IntegratedGradients`` on feature sequences (B x T x D per
  modality); :func:`group_time_attribution` sums a sample's attributions per named feature group
  (``ModalitySpec.groups``: MFCC, pitch, energy, ...) and per time step.
- :class:`TokenAttributor` — ``LayerIntegratedGradients`` on the *embedding layer* of a pretrained
  text encoder whose top layers the model fine-tunes (``pretrained_top``): token ids run through the
  embeddings and the frozen lower layers, then through the trained model, so attributions land on real
  tokens. The baseline replaces transcript tokens with the pad token (special and prefix tokens are
  kept, so they get exactly zero), and Captum's convergence delta is returned per sample.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn

from msa_lib.data.torch_data import batch_to
from msa_lib.core.utils import get_logger

log = get_logger("explain")

CSV_NAMES = {"vision": "visual"}  # modality key -> column name in reports


class AttributionError(ValueError):
    """An attribution cannot run on this model/batch as asked (the message says what is expected)."""


# ---------------------------------------------------------------------------------------------- target
def prediction_target(output, scheme, target: Tensor | None = None) -> Tensor:
    """The scalar per sample that attributions explain (B)."""
    kind = getattr(scheme, "kind", "regression")
    if kind == "regression":
        return output.score
    if kind == "binary":
        logits = output.logits["2"]
        return logits[:, 1] - logits[:, 0]
    logits = output.logits["cls"]
    if target is None:
        target = logits.argmax(1)
    return logits.gather(1, target.long().view(-1, 1)).squeeze(1)


def target_description(scheme) -> str:
    kind = getattr(scheme, "kind", "regression")
    return {"regression": "predicted sentiment score", "binary": "2-class log-odds (positive vs negative)"}.get(
        kind, "logit of the predicted class")


def _scheme(model, scheme):
    scheme = scheme or getattr(model, "label_scheme", None)
    if scheme is None:
        raise AttributionError("no label scheme: pass scheme= or build the model with a label scheme")
    return scheme


def _device(model) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------------------------------------- batch <-> tensors
class BatchForward(nn.Module):
    """Runs ``model`` on a batch whose ``inputs`` modalities arrive as positional tensors (what Captum
    perturbs) and everything else as tensors in ``additional_forward_args`` (which Captum repeats along
    the batch dimension together with the inputs). Returns :func:`prediction_target`.

    ``gates=True``: the first input is instead a B x M float tensor of modality gates (1 keep,
    0 remove), used by :func:`modality_ablation` in ``absent`` mode.
    """

    def __init__(self, model, batch: dict, inputs: Sequence[str] = (), scheme=None, gates: bool = False):
        super().__init__()
        self.model, self.scheme, self.gates = model, _scheme(model, scheme), gates
        self.inputs = list(inputs)
        self.in_batch = [m for m in model.modalities if m in batch["x"]]
        missing = [m for m in self.inputs if m not in self.in_batch]
        if missing:
            raise AttributionError(f"modalities {missing} are not in the batch (it has {list(batch['x'])})")
        self.fixed = [m for m in self.in_batch if m not in self.inputs]

    def extra_args(self, batch: dict, target: Tensor) -> tuple:
        return (*[batch["x"][m] for m in self.fixed], *[batch["mask"][m] for m in self.in_batch],
                *[batch["present"][m] for m in self.in_batch], target)

    def rebuild(self, xs: Sequence[Tensor], extras: Sequence[Tensor]) -> tuple[dict, Tensor]:
        n_fixed, n = len(self.fixed), len(self.in_batch)
        fixed, masks = extras[:n_fixed], extras[n_fixed:n_fixed + n]
        present, target = extras[n_fixed + n:n_fixed + 2 * n], extras[-1]
        x = dict(zip(self.inputs, xs))
        x.update(zip(self.fixed, fixed))
        return ({"x": x, "mask": dict(zip(self.in_batch, masks)), "present": dict(zip(self.in_batch, present))},
                target)

    def forward(self, *args):
        k = 1 if self.gates else len(self.inputs)
        if self.gates:
            gates, extras = args[0], args[1:]
            batch, target = self.rebuild([], extras)
            for i, m in enumerate(self.in_batch):
                keep = gates[:, i] > 0.5
                batch["present"][m] = batch["present"][m].bool() & keep
                batch["mask"][m] = batch["mask"][m].bool() & keep[:, None]
        else:
            batch, target = self.rebuild(args[:k], args[k:])
        out = self.model(batch)
        return prediction_target(out, self.scheme, target)


@torch.no_grad()
def _reference_target(model, batch, scheme) -> tuple[Tensor, Tensor]:
    """(prediction target, class index used for multiclass) of the unperturbed batch."""
    out = model(batch)
    kind = getattr(scheme, "kind", "regression")
    cls = out.logits["cls"].argmax(1) if kind == "multiclass" else torch.zeros_like(out.score, dtype=torch.long)
    return prediction_target(out, scheme, cls if kind == "multiclass" else None), cls


def _feature_baselines(xs: Sequence[Tensor], modalities: Sequence[str], baselines: dict | None) -> tuple[Tensor, ...]:
    """Per modality the B x T x D baseline: ``baselines[m]`` (a D vector) broadcast, or zeros."""
    out = []
    for m, x in zip(modalities, xs):
        b = (baselines or {}).get(m)
        b = torch.zeros(x.shape[-1]) if b is None else torch.as_tensor(np.asarray(b), dtype=x.dtype)
        out.append(b.to(x.device).expand_as(x).contiguous())
    return tuple(out)


def _prepared(model, batch):
    model.eval()
    return batch_to(batch, _device(model))


# ---------------------------------------------------------------------------------------------- ablation
def modality_ablation(model, batch: dict, scheme=None, mode: str = "absent", baselines: dict | None = None,
                      target: Tensor | None = None) -> pd.DataFrame:
    """Per sample and modality: ``f(x) - f(x without the modality)`` (Captum ``FeatureAblation``, one
    mask group per modality). Columns: ``sample_id, language, prediction`` and one per model
    modality (``vision`` is written ``visual``); a modality the sample lacks contributes 0.

    ``mode="absent"`` removes a modality the way the model handles a missing one (masked out);
    ``mode="baseline"`` replaces its features by ``baselines[m]`` (a D vector; default zeros, the
    training mean of standardised features).
    """
    from captum.attr import FeatureAblation

    scheme = _scheme(model, scheme)
    batch = _prepared(model, batch)
    ref, cls = _reference_target(model, batch, scheme)
    cls = target if target is not None else cls
    mods = [m for m in model.modalities if m in batch["x"]]
    if mode == "absent":
        fwd = BatchForward(model, batch, (), scheme, gates=True)
        gates = torch.ones(len(ref), len(mods), device=ref.device)
        attr = FeatureAblation(fwd).attribute(gates, baselines=0.0, feature_mask=torch.arange(len(mods), device=ref.device)[None],
                                              additional_forward_args=fwd.extra_args(batch, cls),
                                              perturbations_per_eval=len(mods))
        values = attr.detach().cpu().numpy()
    elif mode == "baseline":
        fwd = BatchForward(model, batch, mods, scheme)
        xs = tuple(batch["x"][m] for m in mods)
        bases = _feature_baselines(xs, mods, baselines)
        masks = tuple(torch.full((1, 1, 1), i, dtype=torch.long, device=x.device) for i, x in enumerate(xs))
        attr = FeatureAblation(fwd).attribute(xs, baselines=bases, feature_mask=masks,
                                              additional_forward_args=fwd.extra_args(batch, cls),
                                              perturbations_per_eval=1)
        values = np.stack([a.detach().flatten(1)[:, 0].cpu().numpy() for a in attr], 1)
    else:
        raise AttributionError(f"mode must be 'absent' or 'baseline', got {mode!r}")
    present = np.stack([batch["present"][m].bool().cpu().numpy() & batch["mask"][m].bool().any(1).cpu().numpy()
                        for m in mods], 1)
    values = np.where(present, values, 0.0)
    frame = pd.DataFrame({"sample_id": list(batch["ids"]), "language": list(batch["language"]),
                          "prediction": ref.detach().cpu().numpy()})
    for i, m in enumerate(mods):
        frame[CSV_NAMES.get(m, m)] = values[:, i]
    return frame


def modality_ablation_loader(model, loader, scheme=None, mode: str = "absent", baselines: dict | None = None,
                             progress: bool = False) -> pd.DataFrame:
    """:func:`modality_ablation` over every batch of a loader (one row per sample)."""
    from tqdm.auto import tqdm

    parts = [modality_ablation(model, b, scheme, mode, baselines) for b in tqdm(loader, disable=not progress,
                                                                                desc="ablation", leave=False)]
    return pd.concat(parts, ignore_index=True)


def with_predictions(contributions: pd.DataFrame, model, loader) -> pd.DataFrame:
    """``contributions`` (rows keyed by ``sample_id``) with each sample's ``label`` and 2-class /
    argmax decision ``predicted`` from :func:`msa_lib.train.trainer.predict` on the same loader."""
    from msa_lib.train.trainer import predict

    preds = predict(model, loader).set_index("id")
    out = contributions.copy()
    out["label"] = preds.loc[out["sample_id"], "label"].to_numpy()
    out["predicted"] = preds.loc[out["sample_id"], "pred"].to_numpy()
    return out


def contribution_summary(contributions: pd.DataFrame, modalities: Sequence[str],
                         baseline_contributions: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per modality column of a binary-label contribution frame (with ``label``, see
    :func:`with_predictions`): mean |contribution|, mean contribution on POS (label 1) and NEG (label 0)
    samples, the share of samples where the modality has the largest |contribution| and, given the
    ``mode="baseline"`` contributions of the same samples, the Spearman ρ between the two modes."""
    mods = list(modalities)
    values = contributions[mods]
    table = pd.DataFrame({
        "mean |contribution|": values.abs().mean(),
        "mean contribution (POS label)": values[contributions["label"] == 1].mean(),
        "mean contribution (NEG label)": values[contributions["label"] == 0].mean(),
        "share of samples where it is the largest": values.abs().idxmax(axis=1).value_counts(normalize=True)
        .reindex(mods).fillna(0.0),
    })
    if baseline_contributions is not None:
        table["ρ(absent, zero-baseline ablation)"] = [spearman(contributions[m], baseline_contributions[m]) for m in mods]
    return table


def contribution_by_class(contributions: pd.DataFrame, modalities: Sequence[str], class_names: Sequence[str]) -> pd.DataFrame:
    """Mean |contribution| per modality column for each true class (rows named by ``class_names``),
    plus a last row ``all``."""
    mods = list(modalities)
    table = contributions.groupby(contributions["label"].map(dict(enumerate(class_names))))[mods].apply(
        lambda f: f.abs().mean())
    table.loc["all"] = contributions[mods].abs().mean()
    return table


# ---------------------------------------------------------------------------------------------- IG
@dataclass
class SequenceAttribution:
    """Integrated gradients of one batch: per modality B x T x D attributions (padded steps 0)."""

    ids: list[str]
    attributions: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]  # B x T bool
    delta: np.ndarray  # B: sum of attributions - (f(x) - f(baseline))
    prediction: np.ndarray  # B: f(x)
    baseline_prediction: np.ndarray  # B: f(baseline)

    def sample(self, i: int, modality: str) -> np.ndarray:
        """T_i x D attributions of sample ``i`` (real steps only)."""
        return self.attributions[modality][i][self.masks[modality][i]]


def integrated_gradients(model, batch: dict, modalities: Sequence[str], scheme=None, n_steps: int = 32,
                         baselines: dict | None = None, internal_batch_size: int | None = None,
                         target: Tensor | None = None) -> SequenceAttribution:
    """Captum ``IntegratedGradients`` on the feature sequences of ``modalities`` (the other
    modalities stay as they are). Baselines: ``baselines[m]`` (D vector) or zeros."""
    from captum.attr import IntegratedGradients

    scheme = _scheme(model, scheme)
    batch = _prepared(model, batch)
    ref, cls = _reference_target(model, batch, scheme)
    cls = target if target is not None else cls
    requested = list(modalities)
    # a modality no sample of this batch has never reaches the model's graph: its attribution is 0
    modalities = [m for m in requested if bool(batch["present"][m].any())]
    if not modalities:
        raise AttributionError(f"none of {requested} is present in this batch")
    fwd = BatchForward(model, batch, modalities, scheme)
    xs = tuple(batch["x"][m] for m in modalities)
    bases = _feature_baselines(xs, modalities, baselines)
    extras = fwd.extra_args(batch, cls)
    attr, delta = IntegratedGradients(fwd).attribute(xs, baselines=bases, additional_forward_args=extras,
                                                     n_steps=n_steps, internal_batch_size=internal_batch_size,
                                                     return_convergence_delta=True)
    with torch.no_grad():
        base_pred = fwd(*bases, *extras)
    masks = {m: (batch["mask"][m].bool() & batch["present"][m].bool()[:, None]).cpu().numpy() for m in requested}
    by_modality = dict(zip(modalities, attr))
    return SequenceAttribution(list(batch["ids"]),
                               {m: ((by_modality[m].detach() * torch.as_tensor(masks[m], device=by_modality[m].device)[..., None])
                                    .cpu().numpy() if m in by_modality else np.zeros(tuple(batch["x"][m].shape), np.float32))
                                for m in requested},
                               masks, delta.detach().cpu().numpy(), ref.detach().cpu().numpy(),
                               base_pred.detach().cpu().numpy())


def integrated_gradients_loader(model, loader, modalities: Sequence[str], n_steps: int = 32,
                                progress: bool = False, **kwargs) -> list[SequenceAttribution]:
    """:func:`integrated_gradients` over every batch of a loader (one :class:`SequenceAttribution` per batch)."""
    from tqdm.auto import tqdm

    return [integrated_gradients(model, b, modalities, n_steps=n_steps, **kwargs)
            for b in tqdm(loader, disable=not progress, desc="integrated gradients", leave=False)]


def modality_sums(parts: Sequence[SequenceAttribution], modalities: Sequence[str]) -> pd.DataFrame:
    """One row per sample: ``sample_id`` and each modality's signed attribution summed over steps and
    features (columns named as in :func:`modality_ablation`, so the two frames merge on ``sample_id``)."""
    frame = pd.DataFrame({"sample_id": [i for p in parts for i in p.ids]})
    for m in modalities:
        frame[CSV_NAMES.get(m, m)] = np.concatenate([p.attributions[m].reshape(len(p.ids), -1).sum(1) for p in parts])
    return frame


def relative_deltas(parts: Sequence[SequenceAttribution]) -> np.ndarray:
    """Per sample: Captum's |convergence delta| relative to what IG must explain, |f(x) - f(baseline)|
    (floored at 1e-6): how far the attributions are from completeness."""
    delta = np.concatenate([p.delta for p in parts])
    gap = np.concatenate([p.prediction - p.baseline_prediction for p in parts])
    return np.abs(delta) / np.maximum(np.abs(gap), 1e-6)


def group_time_by_sample(parts: Sequence[SequenceAttribution], modality: str, groups: dict | None,
                         step_seconds: float | None = None) -> dict[str, dict]:
    """``{sample_id: {modality: (group names, G x T, seconds per step)}}`` -- the ``group_time``
    argument of :func:`msa_lib.explain.explorer.build_bundle`."""
    out = {}
    for p in parts:
        for i, sid in enumerate(p.ids):
            names, values = group_time_attribution(p.sample(i, modality), groups)
            out[sid] = {modality: (names, values, step_seconds)}
    return out


def group_time_attribution(attr: np.ndarray, groups: dict[str, Sequence[int]] | None) -> tuple[list[str], np.ndarray]:
    """T x D attributions -> (group names, G x T): signed sums per named feature group and time step.
    Columns in no group are collected under ``"other"``; ``groups=None`` gives one group ``"all"``."""
    attr = np.asarray(attr, dtype=np.float64)
    if attr.ndim != 2:
        raise AttributionError(f"expected T x D attributions, got shape {attr.shape}")
    if not groups:
        return ["all"], attr.sum(1)[None]
    names, rows, used = [], [], set()
    for name, idx in groups.items():
        idx = [int(i) for i in idx]
        if not idx:
            continue
        bad = [i for i in idx if not 0 <= i < attr.shape[1]]
        if bad:
            raise AttributionError(f"feature group {name!r} names columns {bad[:3]}... outside 0..{attr.shape[1] - 1}")
        names.append(name)
        rows.append(attr[:, idx].sum(1))
        used.update(idx)
    rest = [i for i in range(attr.shape[1]) if i not in used]
    if rest:
        names.append("other")
        rows.append(attr[:, rest].sum(1))
    return names, np.stack(rows)


def group_totals(attr: SequenceAttribution | Sequence[SequenceAttribution], modality: str, groups: dict | None,
                 absolute: bool = True) -> pd.DataFrame:
    """One row per sample (of one batch's attributions or of a list of them): each feature group's
    summed attribution (``|.|`` of the per-step group sums when ``absolute``), over the sample's real steps."""
    rows = []
    for part in ([attr] if isinstance(attr, SequenceAttribution) else attr):
        for i, sid in enumerate(part.ids):
            names, gt = group_time_attribution(part.sample(i, modality), groups)
            vals = np.abs(gt).sum(1) if absolute else gt.sum(1)
            rows.append({"sample_id": sid, **dict(zip(names, vals))})
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------------------------- tokens (LIG)
@dataclass
class TokenAttribution:
    sample_id: str
    language: str
    text: str
    tokens: list[str]  # every token the encoder saw (special and prefix tokens included)
    content: np.ndarray  # bool per token: part of the transcript
    scores: np.ndarray  # attribution per token (summed over the embedding dimension)
    delta: float  # Captum convergence delta: sum(scores) - (f(x) - f(baseline))
    prediction: float
    baseline_prediction: float
    extra: dict = field(default_factory=dict)

    def content_tokens(self) -> tuple[list[str], np.ndarray]:
        idx = np.flatnonzero(self.content)
        return [self.tokens[i] for i in idx], self.scores[idx]

    @property
    def relative_delta(self) -> float:
        """|delta| relative to |f(x) - f(baseline)| (how well the integral converged)."""
        gap = abs(self.prediction - self.baseline_prediction)
        return abs(self.delta) / max(gap, 1e-6)


def _load_tokenizer(source: str):
    from transformers import AutoTokenizer

    from msa_lib.core.pretrained import downloads_allowed, is_local_path

    try:
        if is_local_path(source):
            return AutoTokenizer.from_pretrained(source, local_files_only=True)
        return AutoTokenizer.from_pretrained(source, local_files_only=not downloads_allowed())
    except Exception as exc:  # transformers raises many types
        raise AttributionError(f"{source}: could not load the tokenizer the text features were made with ({exc})") from exc


class TokenAttributor:
    """Token attributions through the text encoder's embedding layer (Captum
    ``LayerIntegratedGradients``) for a model whose ``modality`` encoder is ``pretrained_top``.

    ``text_settings`` are the text features' extractor settings
    (``ds.meta.modalities["text"].extractor``: tokenizer source, prefix, max_length, hidden_layer), so
    the token ids are exactly those the cached features were computed from.
    """

    def __init__(self, model, text_settings: dict, modality: str = "text", scheme=None, n_steps: int = 32,
                 internal_batch_size: int | None = 64):
        from msa_lib.models.encoders import PretrainedTopEncoder, _BertLayerWithWeights, _pretrained_text_model

        self.model, self.modality, self.scheme = model, modality, _scheme(model, scheme)
        self.n_steps, self.internal_batch_size = int(n_steps), internal_batch_size
        enc = model.encoders[modality] if modality in model.modalities else None
        if not isinstance(enc, PretrainedTopEncoder):
            raise AttributionError(f"token attributions need a 'pretrained_top' encoder for {modality!r} "
                                   f"(found {type(enc).__name__}); use integrated_gradients on the token features instead")
        hidden_layer = text_settings.get("hidden_layer")
        if hidden_layer != enc.first_layer:
            raise AttributionError(f"the text features are layer-{hidden_layer} states but the encoder starts after "
                                   f"layer {enc.first_layer}: rebuild them with TextFeatureConfig(hidden_layer={enc.first_layer})")
        self.settings = dict(text_settings)
        self.prefix = str(text_settings.get("prefix") or "")
        self.max_length = int(text_settings.get("max_length") or 128)
        self.tokenizer = _load_tokenizer(str(text_settings.get("source") or enc.pretrained))
        self.bert = _pretrained_text_model(enc.pretrained)
        cfg = self.bert.config
        # the frozen lower layers, sharing the pretrained weights (no copy), with the encoder's own masking
        self.lower = nn.ModuleList(_BertLayerWithWeights(layer, cfg.num_attention_heads, cfg.hidden_act)
                                   for layer in self.bert.encoder.layer[:enc.first_layer]).eval()
        self.pad_id = int(self.tokenizer.pad_token_id)

    # ---- pieces
    def tokenize(self, texts: Sequence[str]) -> dict:
        batch = self.tokenizer([self.prefix + str(t) for t in texts], padding=True, truncation=True,
                               max_length=self.max_length, return_tensors="pt", return_offsets_mapping=True,
                               return_special_tokens_mask=True)
        offsets = batch.pop("offset_mapping")
        special = batch.pop("special_tokens_mask").bool()
        attention = batch["attention_mask"].bool()
        content = attention & ~special & (offsets[..., 1] > len(self.prefix))
        return {"input_ids": batch["input_ids"], "attention": attention, "content": content}

    def hidden_states(self, input_ids: Tensor, attention: Tensor) -> Tensor:
        """Embeddings + the frozen lower layers: what the cached text features hold."""
        h = self.bert.embeddings(input_ids=input_ids)
        mask = attention.bool()
        for layer in self.lower:
            h, _ = layer(h, mask)
        return h * mask[..., None].to(h.dtype)

    # ---- attribution
    def attribute(self, batch: dict, target: Tensor | None = None) -> list[TokenAttribution]:
        from captum.attr import LayerIntegratedGradients

        model = self.model
        batch = _prepared(model, batch)
        device = _device(model)
        tok = self.tokenize(batch["raw_text"])
        ids, attention, content = (tok[k].to(device) for k in ("input_ids", "attention", "content"))
        if self.modality in batch["x"] and batch["x"][self.modality].shape[1] != ids.shape[1]:
            raise AttributionError(f"the batch's {self.modality} features have {batch['x'][self.modality].shape[1]} steps "
                                   f"but the tokenizer gives {ids.shape[1]}: the features were not built with these settings")
        text_batch = {k: dict(v) if isinstance(v, dict) else v for k, v in batch.items()}
        text_batch["x"][self.modality] = torch.zeros(len(ids), ids.shape[1], self.bert.config.hidden_size, device=device)
        text_batch["mask"][self.modality] = attention
        text_batch["present"][self.modality] = attention.any(1)
        fwd = BatchForward(model, text_batch, [self.modality], self.scheme)
        ref_ids = torch.where(content, torch.full_like(ids, self.pad_id), ids)

        mask_at = len(fwd.fixed) + fwd.in_batch.index(self.modality)  # where the text mask sits in the extras

        def run(input_ids, *extras):
            return fwd(self.hidden_states(input_ids, extras[mask_at]), *extras)

        with torch.no_grad():
            out = model({**text_batch, "x": {**text_batch["x"], self.modality: self.hidden_states(ids, attention)}})
        kind = getattr(self.scheme, "kind", "regression")
        cls = target if target is not None else (out.logits["cls"].argmax(1) if kind == "multiclass"
                                                 else torch.zeros(len(ids), dtype=torch.long, device=device))
        extras = fwd.extra_args(text_batch, cls)
        lig = LayerIntegratedGradients(run, self.bert.embeddings)
        attr, delta = lig.attribute(ids, baselines=ref_ids, additional_forward_args=extras, n_steps=self.n_steps,
                                    internal_batch_size=self.internal_batch_size, return_convergence_delta=True)
        with torch.no_grad():
            pred, base = run(ids, *extras), run(ref_ids, *extras)
        scores = attr.detach().sum(-1).cpu().numpy()
        results = []
        for i in range(len(ids)):
            n = int(attention[i].sum())
            toks = self.tokenizer.convert_ids_to_tokens(ids[i, :n].tolist())
            results.append(TokenAttribution(str(batch["ids"][i]), str(batch["language"][i]), str(batch["raw_text"][i]),
                                            toks, content[i, :n].cpu().numpy(), scores[i, :n], float(delta[i]),
                                            float(pred[i]), float(base[i])))
        return results

    def attribute_loader(self, loader, progress: bool = False) -> list[TokenAttribution]:
        from tqdm.auto import tqdm

        out = []
        for batch in tqdm(loader, disable=not progress, desc="token IG", leave=False):
            out.extend(self.attribute(batch))
        return out


def token_frame(results: Sequence[TokenAttribution]) -> pd.DataFrame:
    """One row per transcript token: sample_id, language, position, token, attribution."""
    rows = []
    for r in results:
        toks, scores = r.content_tokens()
        for j, (t, s) in enumerate(zip(toks, scores)):
            rows.append({"sample_id": r.sample_id, "language": r.language, "position": j, "token": t,
                         "attribution": float(s)})
    return pd.DataFrame(rows, columns=["sample_id", "language", "position", "token", "attribution"])


# ---------------------------------------------------------------------------------------------- comparison
def spearman(a, b) -> float:
    """Spearman rank correlation (NaN with fewer than 3 values or a constant input)."""
    from scipy.stats import spearmanr

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(spearmanr(a, b).statistic)


def summarize_correlations(values: Sequence[float]) -> dict[str, float]:
    v = np.asarray([x for x in values if np.isfinite(x)], float)
    if not len(v):
        return {"n": 0, "mean": float("nan"), "median": float("nan"), "std": float("nan"), "share_positive": float("nan")}
    return {"n": int(len(v)), "mean": float(v.mean()), "median": float(np.median(v)), "std": float(v.std()),
            "share_positive": float((v > 0).mean())}


def frame_attention_agreement(samples, parts: Sequence[SequenceAttribution], key: str, modality: str) -> list[float]:
    """Per explained sample that has the attention map ``key`` (e.g. ``"cross/text->audio"``): Spearman ρ
    between the attention each ``modality`` step receives and that step's |IG| (features summed).
    ``samples``: :class:`~msa_lib.explain.explorer.ExplainedSample` objects; ``parts``: the IG of the same
    samples (matched by ``sample_id``; a sample with the map but no IG is an error, not a skip)."""
    from msa_lib.explain.attention import attention_received

    ig_by_id = {sid: (p, i) for p in parts for i, sid in enumerate(p.ids)}
    out = []
    for s in samples:
        if key not in s.attention:
            continue
        if s.sample_id not in ig_by_id:
            raise AttributionError(f"sample {s.sample_id!r} has the attention map {key!r} but no integrated "
                                   "gradients: pass the IG of the same samples")
        p, i = ig_by_id[s.sample_id]
        out.append(spearman(attention_received(s.attention[key]), np.abs(p.sample(i, modality).sum(1))))
    return out


def clone_batch(batch: dict) -> dict:
    """A deep copy of a collated batch (tensors cloned), for experiments that edit it."""
    return copy.deepcopy(batch)


def attention_token_importances(attention: dict, modality: str = "text") -> dict[str, np.ndarray]:
    """Every attention-based token importance of one sample, by method name: ``rollout`` and
    ``last_layer`` of the modality's self-attention (when it has any), and ``cross:<q>`` for every
    cross-attention from another modality ``q`` to the modality's steps."""
    from msa_lib.explain.attention import parse_key, token_importance

    out = {}
    for method in ("rollout", "last_layer"):
        try:
            out[method] = token_importance(attention, modality, None, method)
        except KeyError:
            continue
    for name in attention:
        k = parse_key(name)
        if k.kind == "cross" and k.key == modality:
            out[f"cross:{k.query}"] = token_importance(attention, modality, None, "cross", query=k.query)
    return out


def token_attention_agreement(attention: dict, token: TokenAttribution, modality: str = "text") -> dict[str, float]:
    """Spearman ρ between |token attribution| and attention-based token importance, over the
    transcript tokens of one sample. ``attention`` holds this sample's maps over its real steps
    (heads x Tq x Tk, e.g. an :class:`~msa_lib.explain.explorer.ExplainedSample`'s); methods as in
    :func:`attention_token_importances`."""
    content = np.asarray(token.content, bool)
    target = np.abs(np.asarray(token.scores, float))[content]
    return {method: spearman(imp[content], target)
            for method, imp in attention_token_importances(attention, modality).items() if len(imp) == len(content)}


def token_attention_top1(attention: dict, token: TokenAttribution, modality: str = "text") -> dict[str, float]:
    """Per method of :func:`token_attention_agreement`: 1.0 when the token with the most attention is
    the token with the largest |attribution|, else 0.0 (methods the sample lacks are left out)."""
    n = len(np.asarray(token.content))
    return {method: float(top_token_agreement(imp, token))
            for method, imp in attention_token_importances(attention, modality).items() if len(imp) == n}


def token_agreement_table(samples, results: Sequence[TokenAttribution], modality: str = "text"
                          ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Attention against token attribution over many samples (``samples``: explained samples with their
    attention maps, ``results``: their :class:`TokenAttribution`, in the same order). Returns the per-sample
    Spearman ρ per attention method (:func:`token_attention_agreement`, plus ``sample_id``) and one row per
    method: :func:`summarize_correlations` of its ρ, the share of samples whose top-1 tokens agree and the
    chance level of that share (mean of 1 / transcript tokens)."""
    per_sample = pd.DataFrame([{"sample_id": r.sample_id, **token_attention_agreement(s.attention, r, modality)}
                               for s, r in zip(samples, results)])
    methods = [c for c in per_sample.columns if c != "sample_id"]
    table = pd.DataFrame({m: summarize_correlations(per_sample[m]) for m in methods}).T
    top1 = pd.DataFrame([token_attention_top1(s.attention, r, modality) for s, r in zip(samples, results)])
    table["top-1 token agrees"] = top1.mean()
    n_tokens = np.array([r.content.sum() for r in results])
    table["chance top-1"] = float(np.mean(1.0 / np.maximum(n_tokens, 1)))
    return per_sample, table


def top_token_agreement(attention_importance: np.ndarray, token: TokenAttribution) -> bool:
    """Whether the transcript token with the most attention is also the one with the largest |attribution|."""
    content = np.asarray(token.content, bool)
    imp = np.asarray(attention_importance, float)[content]
    return bool(np.argmax(imp) == np.argmax(np.abs(np.asarray(token.scores, float)[content])))
