"""Precomputed explanations for the attention explorer, and its (pure) figure.

:func:`build_bundle` runs a model once over chosen samples and stores, per sample, every attention map
(trimmed to the real steps, float16), axis labels (tokens, frame times), token attributions and
modality contributions. :func:`explorer_figure` draws one selection (sample, direction, layer, head)
from a bundle without touching the model, so the widget (:mod:`msa_lib.explain.widgets`) only swaps
figures and a headless run can save the default selection.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from msa_lib.data.io import atomic_pickle
from msa_lib.explain.attention import AttentionKey, directions, head_select, parse_key
from msa_lib.explain.plots import (font_kwargs, plot_attention_map, plot_group_time, plot_modality_bars, plot_token_attributions,
                    plt, shorten)

BUNDLE_VERSION = 1


@dataclass
class ExplainedSample:
    sample_id: str
    language: str
    transcript: str
    label: str  # true label name ("" when unknown)
    prediction: str  # predicted label name (and score)
    attention: dict[str, np.ndarray]  # key -> heads x Tq x Tk over real steps
    axis_labels: dict[str, list[str]]  # modality -> one label per real step
    tokens: list[str] = field(default_factory=list)  # transcript tokens with attributions
    token_scores: np.ndarray | None = None
    token_delta: float | None = None
    contributions: dict[str, float] = field(default_factory=dict)  # modality -> Δ output
    group_time: dict[str, tuple[list[str], np.ndarray, float | None]] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.sample_id} · {self.language} · {shorten(self.transcript, 80)}"


@dataclass
class ExplanationBundle:
    model_name: str
    dataset: str
    target: str  # what the attributions explain
    samples: list[ExplainedSample]
    notes: dict = field(default_factory=dict)
    version: int = BUNDLE_VERSION

    def __len__(self) -> int:
        return len(self.samples)

    def options(self) -> list[tuple[str, int]]:
        """(label, index) pairs for a sample chooser: id, language and the start of the transcript."""
        return [(shorten(s.title, 110), i) for i, s in enumerate(self.samples)]

    def directions(self, index: int = 0) -> dict[str, list[AttentionKey]]:
        return directions(self.samples[index].attention)

    def default_key(self, index: int = 0) -> str:
        """A cross-modal map with more than one key when there is one, else the top self-attention layer."""
        keys = [parse_key(k) for k in self.samples[index].attention]
        shapes = {k.name: self.samples[index].attention[k.name].shape for k in keys}
        for kind in ("cross", "mult"):
            cands = [k for k in keys if k.kind == kind and shapes[k.name][-1] > 1 and shapes[k.name][-2] > 1]
            cands = cands or [k for k in keys if k.kind == kind and shapes[k.name][-1] > 1]
            if cands:
                return sorted(cands, key=lambda k: (k.query != "text", k.layer))[0].name
        selfs = sorted((k for k in keys if k.kind == "self"), key=lambda k: (k.query != "text", -k.layer))
        if selfs:
            return selfs[0].name
        if not keys:
            raise ValueError(f"sample {self.samples[index].sample_id} has no attention maps")
        return keys[0].name

    def save(self, path: str | os.PathLike) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_pickle(self, path)
        return path

    @staticmethod
    def load(path: str | os.PathLike) -> "ExplanationBundle":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no explanation bundle (build one with msa_lib.explain.explorer.build_bundle)")
        with open(path, "rb") as fh:
            bundle = pickle.load(fh)
        if not isinstance(bundle, ExplanationBundle) or bundle.version != BUNDLE_VERSION:
            raise ValueError(f"{path}: not an explanation bundle of version {BUNDLE_VERSION}")
        return bundle


# ---------------------------------------------------------------------------------------------- building
def step_labels(ds, modality: str, index: int, length: int) -> list[str]:
    """Axis labels of one sample's steps: tokens for text, ``previous/next`` for utterance context,
    seconds for timed sequences, the modality name for utterance-level vectors."""
    spec = ds.meta.modalities[modality]
    tokens = ds.extra[index].get("tokens") if modality == "text" else None
    if tokens is not None and len(tokens) == length:
        return [str(t) for t in tokens]
    if modality == "text_context" and length == 2:
        return ["previous utt.", "next utt."]
    if spec.level == "utterance" or length == 1:
        return [modality]
    if spec.rate_hz:
        return [f"{i / spec.rate_hz:.2f}s" for i in range(length)]
    return [f"{modality}[{i}]" for i in range(length)]


def _label_name(scheme, label: int, score: float) -> str:
    names = getattr(scheme, "class_names", ())
    if label is not None and 0 <= int(label) < len(names):
        return str(names[int(label)])
    return "" if score is None or not np.isfinite(score) else f"{score:+.2f}"


def build_bundle(model, ds, indices: Sequence[int] | None = None, token_results: Sequence | None = None,
                 contributions=None, group_time: dict | None = None, batch_size: int = 16,
                 notes: dict | None = None) -> ExplanationBundle:
    """Explanations of ``ds`` rows ``indices`` (default: all).

    ``token_results``: :class:`~msa_lib.explain.attribution.TokenAttribution` items (matched by id);
    ``contributions``: a :func:`~msa_lib.explain.attribution.modality_ablation` frame (matched by
    ``sample_id``); ``group_time``: ``{sample_id: {modality: (groups, G x T, seconds per step)}}``.
    """
    from msa_lib.data.torch_data import make_loader
    from msa_lib.explain.attention import attention_maps
    from msa_lib.explain.attribution import CSV_NAMES, target_description

    indices = np.arange(len(ds)) if indices is None else np.asarray(indices, int)
    part = ds.subset(indices)
    scheme = model.label_scheme or ds.meta.labels
    tokens_by_id = {r.sample_id: r for r in (token_results or [])}
    contrib = contributions.set_index("sample_id") if contributions is not None and len(contributions) else None
    samples: list[ExplainedSample] = []
    row = 0
    for batch in make_loader(part, model.modalities, batch_size=batch_size):
        att, out = attention_maps(model, batch)
        pred = _predicted(out, scheme)
        for b in range(len(batch["ids"])):
            i = row + b
            masks = {m: (batch["mask"][m][b] & batch["present"][m][b]).numpy() for m in batch["mask"]}
            present = [m for m in model.modalities if m in masks and masks[m].any()]
            maps = {}
            for name, w in att.items():
                key = parse_key(name)
                if key.kind == "modality":
                    sel = np.array([m in present for m in model.modalities])
                    maps[name] = w[b][:, sel][:, :, sel].numpy().astype(np.float16)
                    continue
                if key.query not in present or key.key not in present:
                    continue
                maps[name] = w[b][:, masks[key.query]][:, :, masks[key.key]].numpy().astype(np.float16)
            labels = {m: step_labels(part, m, i, int(masks[m].sum())) for m in present}
            labels["modality"] = present
            sid = str(part.ids[i])
            s = ExplainedSample(sid, str(part.language[i]), str(part.raw_text[i]),
                                _label_name(scheme, part.labels[i], part.scores[i]), pred[b], maps, labels)
            tok = tokens_by_id.get(sid)
            if tok is not None:
                s.tokens, s.token_scores = tok.content_tokens()
                s.token_scores = np.asarray(s.token_scores, np.float32)
                s.token_delta = float(tok.delta)
            if contrib is not None and sid in contrib.index:
                r = contrib.loc[sid]
                s.contributions = {CSV_NAMES.get(m, m): float(r[CSV_NAMES.get(m, m)]) for m in model.modalities
                                   if CSV_NAMES.get(m, m) in r.index and np.isfinite(r[CSV_NAMES.get(m, m)])}
            if group_time and sid in group_time:
                s.group_time = group_time[sid]
            samples.append(s)
        row += len(batch["ids"])
    return ExplanationBundle(getattr(model, "name", "model"), ds.meta.name, target_description(scheme), samples,
                             dict(notes or {}))


def _predicted(out, scheme) -> list[str]:
    kind = getattr(scheme, "kind", "regression")
    if kind == "multiclass":
        prob = out.logits["cls"].softmax(-1)
        return [f"{scheme.class_names[int(k)]} ({float(p):.2f})" for k, p in zip(prob.argmax(1), prob.max(1).values)]
    prob = out.logits["2"].softmax(-1)[:, 1]
    names = scheme.class_names if len(scheme.class_names) == 2 else ("NEG", "POS")
    if kind == "regression":
        return [f"{float(s):+.2f} ({names[int(s >= 0)]})" for s in out.score]
    return [f"{names[int(p >= 0.5)]} (p={float(p):.2f})" for p in prob]


# ---------------------------------------------------------------------------------------------- figure
def explorer_figure(bundle: ExplanationBundle, index: int = 0, key: str | None = None, head: int | None = None,
                    figsize=(12, 7.5)):
    """The explorer's view of one selection: attention heat map (one head or the mean over heads),
    modality contributions, token attributions and, when present, feature-group x time attributions."""
    s = bundle.samples[index]
    key = key or bundle.default_key(index)
    if key not in s.attention:
        raise KeyError(f"sample {s.sample_id} has no attention map {key!r}; available: {sorted(s.attention)}")
    k = parse_key(key)
    weights = head_select(s.attention[key], head)
    has_gt = bool(s.group_time)
    fig = plt.figure(figsize=figsize)
    rows = [3.2, 1.0] + ([1.6] if has_gt else [])
    grid = fig.add_gridspec(len(rows), 2, width_ratios=[3, 1.2], height_ratios=rows, hspace=0.65, wspace=0.25)
    ax_att = fig.add_subplot(grid[0, 0])
    qlab = s.axis_labels.get(k.query, [])
    klab = s.axis_labels.get(k.key, [])
    head_txt = "mean over heads" if head is None else f"head {head}"
    layer_txt = f", layer {k.layer}" if k.kind != "cross" else ""
    plot_attention_map(weights, qlab, klab, ax_att, f"{k.direction}{layer_txt} · {head_txt}",
                       query_name=f"{k.query} (query)", key_name=f"{k.key} (key)")
    ax_bar = fig.add_subplot(grid[0, 1])
    if s.contributions:
        plot_modality_bars(s.contributions, ax_bar, "modality contribution\n(output − output without it)")
    else:
        ax_bar.set_axis_off()
        ax_bar.text(0.5, 0.5, "no modality contributions", ha="center", va="center", fontsize=8)
    ax_tok = fig.add_subplot(grid[1, :])
    if s.token_scores is not None and len(s.tokens):
        delta = f", convergence δ = {s.token_delta:+.1e}" if s.token_delta is not None else ""
        plot_token_attributions(s.tokens, s.token_scores, ax_tok, f"token attributions (LayerIntegratedGradients on the "
                                                                  f"embedding layer{delta}); red raises, blue lowers the {bundle.target}")
    else:
        ax_tok.set_axis_off()
        ax_tok.text(0.0, 0.5, "no token attributions for this sample", fontsize=8)
    if has_gt:
        modality, (groups, values, step) = next(iter(s.group_time.items()))
        plot_group_time(values, groups, step, fig.add_subplot(grid[2, :]),
                        f"{modality}: integrated gradients per feature group and time step")
    fig.suptitle(f"{s.title}\nlabel: {s.label or '—'} · prediction: {s.prediction} · model: {bundle.model_name}",
                 fontsize=10, **font_kwargs())
    return fig
