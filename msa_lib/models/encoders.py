"""Per-modality encoders and the attention building blocks the fusions share.

Every encoder maps ``x`` (B x T x D) with its mask (B x T, True = real step) to an
:class:`EncodedModality`: the hidden sequence (B x T x H, padded steps zero), the mask, a masked-mean
pooled vector (B x H, zero when the modality is absent) and, on request, the self-attention weights
per layer (B x heads x T x T; padded keys get weight 0, padded query rows are zero).

Attention is written around ``nn.MultiheadAttention(need_weights=True, average_attn_weights=False)``
so weights can be returned per head; when they are not asked for, the fast fused kernel runs instead.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

# Seed sizes: text 256-d / 4 layers / 8 heads; audio and vision 128-d / 2 layers / 4 heads.
TEXT_DEFAULTS = {"hidden": 256, "layers": 4, "heads": 8}
OTHER_DEFAULTS = {"hidden": 128, "layers": 2, "heads": 4}
ENCODER_KINDS = ("transformer", "mlp", "stats", "pretrained_top")
DEFAULT_PRETRAINED_TEXT = "intfloat/multilingual-e5-small"


class ModelInputError(ValueError):
    """A batch does not match what the model was built for (names the modality and the expectation)."""


@dataclass
class EncodedModality:
    sequence: Tensor  # B x T x H, zero at padded steps
    mask: Tensor  # B x T bool, True = real step
    pooled: Tensor  # B x H, masked mean; zero for absent samples
    present: Tensor  # B bool
    inputs: Tensor | None = None  # B x T x D raw features (cheap summaries for gating policies)
    attention: dict[str, Tensor] = field(default_factory=dict)

    def __iter__(self):  # allows ``seq, mask, pooled = encoder(x, mask)``
        return iter((self.sequence, self.mask, self.pooled))


@dataclass
class EncoderConfig:
    """``hidden``/``layers``/``heads`` of None take the seed default for the modality (text-like
    names start with ``text``). ``dropout`` None takes the model's dropout."""

    kind: str = "transformer"
    hidden: int | None = None
    layers: int | None = None
    heads: int | None = None
    dropout: float | None = None
    ff_mult: int = 2  # feed-forward width = ff_mult * hidden (2 rather than 4: small datasets)
    max_len: int = 1024  # positional table size; grows on demand
    # kind "pretrained_top": the top ``layers`` layers of this pretrained text encoder, fine-tuned at
    # ``lr_scale`` x the model's learning rate (input: the frozen lower layers' cached hidden states)
    pretrained: str = DEFAULT_PRETRAINED_TEXT
    lr_scale: float = 0.5

    def __post_init__(self):
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind must be one of {ENCODER_KINDS}, got {self.kind!r}")

    def resolved(self, modality: str, dropout: float) -> "EncoderConfig":
        base = TEXT_DEFAULTS if is_text_modality(modality) else OTHER_DEFAULTS
        default_layers = {"transformer": base["layers"], "mlp": 2, "stats": 1, "pretrained_top": 4}[self.kind]
        return replace(self, hidden=self.hidden or base["hidden"],
                       layers=default_layers if self.layers is None else self.layers,
                       heads=self.heads or base["heads"],
                       dropout=dropout if self.dropout is None else self.dropout)


def is_text_modality(name: str) -> bool:
    return name.lower().startswith("text")


# ---------------------------------------------------------------------------------------------- helpers
def masked_mean(seq: Tensor, mask: Tensor) -> Tensor:
    """Mean over real steps; zero where a sample has none."""
    m = mask.unsqueeze(-1).to(seq.dtype)
    return (seq * m).sum(1) / m.sum(1).clamp_min(1.0)


def last_real_index(mask: Tensor) -> Tensor:
    """Index of the last real step per sample (0 when there is none)."""
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device).expand_as(mask)
    return ((positions * mask).amax(1) - 1).clamp_min(0)


def masked_attention(attn: nn.MultiheadAttention, query: Tensor, key: Tensor, key_mask: Tensor,
                     query_mask: Tensor | None = None, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
    """Multi-head attention that ignores padded keys and survives samples without any real key.

    Samples with no real key (an absent modality) get a zero output and zero weights instead of the
    NaN a fully masked softmax gives. Weights: B x heads x Tq x Tk with zero rows at padded queries.
    """
    has_key = key_mask.any(1)
    ignore = ~key_mask
    if not bool(has_key.all()):
        ignore = ignore.clone()
        ignore[~has_key, 0] = False  # attend to a dummy key, output zeroed below
    out, weights = attn(query, key, key, key_padding_mask=ignore, need_weights=need_weights,
                        average_attn_weights=False)
    out = out * has_key[:, None, None].to(out.dtype)
    if weights is not None:
        keep = has_key[:, None, None, None].to(weights.dtype)
        if query_mask is not None:
            keep = keep * query_mask[:, None, :, None].to(weights.dtype)
        weights = weights * keep
    return out, weights


class SinusoidalPositionalEncoding(nn.Module):
    def __init__(self, dim: int, max_len: int = 1024):
        super().__init__()
        self.dim = dim
        self.register_buffer("table", self._table(max_len), persistent=False)

    def _table(self, length: int) -> Tensor:
        pos = torch.arange(length, dtype=torch.float32)[:, None]
        div = torch.exp(torch.arange(0, self.dim, 2, dtype=torch.float32) * (-math.log(10000.0) / self.dim))
        table = torch.zeros(length, self.dim)
        table[:, 0::2] = torch.sin(pos * div)
        table[:, 1::2] = torch.cos(pos * div)[:, : self.dim // 2]
        return table

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[1] > self.table.shape[0]:
            self.table = self._table(2 * x.shape[1]).to(self.table.device)
        return x + self.table[: x.shape[1]].to(x.dtype)


class AttentionBlock(nn.Module):
    """Pre-norm transformer layer: (cross-)attention then feed-forward, each with a residual.

    Self-attention when ``context`` is None; otherwise ``x`` queries ``context`` (crossmodal
    attention as in MulT: the context is normalised too). Padded query steps are zeroed on output.
    """

    def __init__(self, dim: int, heads: int, dropout: float = 0.1, ff_mult: int = 2, context_dim: int | None = None):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(context_dim) if context_dim else None
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True,
                                          kdim=context_dim, vdim=context_dim)
        self.norm_ff = nn.LayerNorm(dim)
        self.ff = nn.Sequential(nn.Linear(dim, ff_mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, context: Tensor | None = None, context_mask: Tensor | None = None,
                need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        q = self.norm_q(x)
        if context is None:
            kv, kv_mask = q, mask
        else:
            kv = self.norm_kv(context) if self.norm_kv is not None else context
            kv_mask = context_mask
        out, weights = masked_attention(self.attn, q, kv, kv_mask, mask, need_weights)
        x = x + self.drop(out)
        x = x + self.drop(self.ff(self.norm_ff(x)))
        return x * mask.unsqueeze(-1).to(x.dtype), weights


# ---------------------------------------------------------------------------------------------- encoders
def run_layers(layers, h: Tensor, mask: Tensor, name: str, return_attention: bool) -> tuple[Tensor, dict[str, Tensor]]:
    """Apply self-attention ``layers`` in turn; with ``return_attention`` also collect each layer's
    weights under ``"{name}/layer{i}"`` (the key format :mod:`msa_lib.explain.attention` parses)."""
    attention = {}
    for i, layer in enumerate(layers):
        h, w = layer(h, mask, need_weights=return_attention)
        if return_attention:
            attention[f"{name}/layer{i}"] = w
    return h, attention


class SequenceTransformerEncoder(nn.Module):
    """Linear projection + sinusoidal positions + ``layers`` pre-norm transformer layers with
    key-padding masks + masked mean pooling. ``layers = 0`` gives a projection-only encoder."""

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 2, heads: int = 4, dropout: float = 0.3,
                 ff_mult: int = 2, max_len: int = 1024, name: str = "x"):
        super().__init__()
        self.name, self.in_dim, self.out_dim = name, in_dim, hidden
        self.proj = nn.Linear(in_dim, hidden)
        self.pos = SinusoidalPositionalEncoding(hidden, max_len)
        self.drop = nn.Dropout(dropout)
        self.layers = nn.ModuleList(AttentionBlock(hidden, heads, dropout, ff_mult) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: Tensor, mask: Tensor, return_attention: bool = False) -> EncodedModality:
        h, attention = run_layers(self.layers, self.drop(self.pos(self.proj(x))), mask, self.name, return_attention)
        h = self.norm(h) * mask.unsqueeze(-1).to(h.dtype)
        return EncodedModality(h, mask, masked_mean(h, mask), mask.any(1), x, attention)


def mlp_blocks(width: int, hidden: int, layers: int, dropout: float) -> list[nn.Module]:
    """``max(1, layers)`` x (Linear -> LayerNorm -> GELU -> Dropout), from ``width`` to ``hidden``."""
    blocks = []
    for _ in range(max(1, layers)):
        blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout)]
        width = hidden
    return blocks


class MLPEncoder(nn.Module):
    """Per-step MLP for utterance-level vectors (T = 1) or any sequence, then masked mean pooling."""

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 2, dropout: float = 0.3, name: str = "x", **_):
        super().__init__()
        self.name, self.in_dim, self.out_dim = name, in_dim, hidden
        self.net = nn.Sequential(*mlp_blocks(in_dim, hidden, layers, dropout))

    def forward(self, x: Tensor, mask: Tensor, return_attention: bool = False) -> EncodedModality:
        h = self.net(x) * mask.unsqueeze(-1).to(x.dtype)
        return EncodedModality(h, mask, masked_mean(h, mask), mask.any(1), x, {})


class StatsPoolEncoder(nn.Module):
    """Statistics pooling (masked mean and standard deviation of each input dimension over time, as in
    x-vector speaker / speech-emotion models), then an MLP. How a frame sequence varies, not only its
    average, carries paralinguistic cues (the per-frame MLP's mean pooling drops it). The output
    sequence is the one pooled step: use it with heads and late fusions, not with attention over time."""

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 1, dropout: float = 0.3, name: str = "x", **_):
        super().__init__()
        self.name, self.in_dim, self.out_dim = name, in_dim, hidden
        self.net = nn.Sequential(nn.Dropout(dropout), *mlp_blocks(2 * in_dim, hidden, layers, dropout))

    def forward(self, x: Tensor, mask: Tensor, return_attention: bool = False) -> EncodedModality:
        mean = masked_mean(x, mask)
        var = masked_mean((x - mean.unsqueeze(1)) ** 2, mask)
        pooled = self.net(torch.cat([mean, var.clamp_min(1e-8).sqrt()], dim=-1))
        present = mask.any(1)
        pooled = pooled * present.unsqueeze(-1).to(pooled.dtype)  # an absent modality stays zero
        return EncodedModality(pooled.unsqueeze(1), present.unsqueeze(1), pooled, present, x, {})


class _BertLayerWithWeights(nn.Module):
    """One post-norm BERT layer built from a pretrained ``BertLayer``'s own sub-modules, computing the
    masked attention itself so the per-head weights can be returned (transformers 5 layers do not
    return them) and padded keys get exactly zero weight."""

    def __init__(self, layer: nn.Module, heads: int, act: str):
        super().__init__()
        att = layer.attention
        self.query, self.key, self.value = att.self.query, att.self.key, att.self.value
        self.att_out, self.att_norm = att.output.dense, att.output.LayerNorm
        self.ff_in, self.ff_out, self.ff_norm = layer.intermediate.dense, layer.output.dense, layer.output.LayerNorm
        self.heads = heads
        self.att_drop = nn.Dropout(att.self.dropout.p)
        self.drop = nn.Dropout(att.output.dropout.p)
        self.act = {"gelu": nn.GELU(), "relu": nn.ReLU(), "gelu_new": nn.GELU(approximate="tanh")}.get(act, nn.GELU())

    def forward(self, h: Tensor, mask: Tensor, need_weights: bool = False):
        b, t, d = h.shape
        split = lambda x: x.view(b, t, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.query(h)), split(self.key(h)), split(self.value(h))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        scores = scores.masked_fill(~mask[:, None, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # a sample with no real step: all zero
        weights = weights * mask[:, None, :, None].to(weights.dtype)  # padded query rows are zero
        ctx = (self.att_drop(weights) @ v).transpose(1, 2).reshape(b, t, d)
        h = self.att_norm(self.drop(self.att_out(ctx)) + h)
        h = self.ff_norm(self.drop(self.ff_out(self.act(self.ff_in(h)))) + h)
        return h, (weights if need_weights else None)


def _pretrained_text_model(model_id: str) -> nn.Module:
    """Load each pretrained text model once per process (every model build copies its top layers)."""
    from msa_lib.core.cache import shared
    from msa_lib.extract.text_loading import load_text_model

    return shared(("models.pretrained-text", model_id), lambda: load_text_model(model_id, device="cpu").model.eval())


def pretrained_layers(pretrained: str, start: int, stop: int) -> nn.ModuleList:
    """Copies of layers ``start + 1 .. stop`` (1-based; ``bert.encoder.layer[start:stop]``) of a
    pretrained text encoder, as masked layers that can also return their attention weights."""
    import copy

    bert = _pretrained_text_model(pretrained)
    cfg = bert.config
    return nn.ModuleList(_BertLayerWithWeights(copy.deepcopy(l), cfg.num_attention_heads, cfg.hidden_act)
                         for l in bert.encoder.layer[start:stop])


@torch.no_grad()
def advance_hidden_states(sequences, from_layer: int, to_layer: int, pretrained: str = "intfloat/multilingual-e5-small",
                          batch_size: int = 64) -> list:
    """Run cached hidden states (one ``T x D`` array per text, after layer ``from_layer``) through the
    frozen layers up to ``to_layer``: the input a ``pretrained_top`` encoder of ``12 - to_layer``
    layers needs, without encoding the texts again. Batches are cut from length-sorted texts, so
    little time goes to padding."""
    import numpy as np

    if not 0 <= from_layer <= to_layer:
        raise ValueError(f"need 0 <= from_layer <= to_layer, got {from_layer}, {to_layer}")
    sequences = list(sequences)
    if from_layer == to_layer:
        return sequences
    layers = pretrained_layers(pretrained, from_layer, to_layer).eval()
    width = _pretrained_text_model(pretrained).config.hidden_size
    out = [None] * len(sequences)
    order = np.argsort([len(s) for s in sequences], kind="stable")
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        lengths = [len(sequences[i]) for i in idx]
        x = torch.zeros(len(idx), max(max(lengths), 1), width)
        for b, i in enumerate(idx):
            x[b, :lengths[b]] = torch.as_tensor(sequences[i])
        mask = torch.arange(x.shape[1])[None, :] < torch.as_tensor(lengths)[:, None]
        h, _ = run_layers(layers, x, mask, "advance", False)
        for b, i in enumerate(idx):
            out[i] = h[b, :lengths[b]].numpy().astype(np.float32)
    return out


class PretrainedTopEncoder(nn.Module):
    """The top ``layers`` layers of a pretrained text encoder (default multilingual-e5-small),
    fine-tuned inside the model. Its input is the hidden state of the frozen lower layers, cached once
    per dataset (``TextEncoderConfig(hidden_layer=12 - layers, content_tokens_only=False)``, see
    :func:`msa_lib.extract.text_features.add_text_features`): fine-tuning 4 of 12 layers on cached
    states costs about a third of full fine-tuning on CPU and keeps the lower layers' multilingual
    alignment intact. ``lr_scale`` lowers these layers' learning rate relative to the new layers."""

    def __init__(self, in_dim: int, layers: int = 4, dropout: float = 0.3, pretrained: str = DEFAULT_PRETRAINED_TEXT,
                 lr_scale: float = 0.5, name: str = "text"):
        super().__init__()
        cfg = _pretrained_text_model(pretrained).config
        if in_dim != cfg.hidden_size:
            raise ModelInputError(f"{name}: a pretrained_top encoder of {pretrained} takes {cfg.hidden_size}-d hidden "
                                  f"states, the data has {in_dim}-d features")
        if not 1 <= layers <= cfg.num_hidden_layers:
            raise ValueError(f"pretrained_top layers must be in 1..{cfg.num_hidden_layers}, got {layers}")
        self.layers = pretrained_layers(pretrained, cfg.num_hidden_layers - layers, cfg.num_hidden_layers)
        self.name, self.in_dim, self.out_dim, self.lr_scale = name, in_dim, cfg.hidden_size, lr_scale
        self.pretrained, self.first_layer = pretrained, cfg.num_hidden_layers - layers
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor, mask: Tensor, return_attention: bool = False) -> EncodedModality:
        h, attention = run_layers(self.layers, x, mask, self.name, return_attention)
        h = self.drop(h) * mask.unsqueeze(-1).to(h.dtype)
        return EncodedModality(h, mask, masked_mean(h, mask), mask.any(1), x, attention)


def build_encoder(modality: str, in_dim: int, config: EncoderConfig | str | dict | None = None,
                  dropout: float = 0.3, overrides: dict | None = None) -> nn.Module:
    """An encoder by name (``transformer`` / ``mlp`` / ``stats``) or config, with the seed defaults filled in."""
    if config is None or isinstance(config, str):
        config = EncoderConfig(kind=config or "transformer")
    elif isinstance(config, dict):
        config = EncoderConfig(**config)
    if overrides:
        config = replace(config, **overrides)
    cfg = config.resolved(modality, dropout)
    if cfg.kind == "pretrained_top":
        return PretrainedTopEncoder(in_dim, cfg.layers, cfg.dropout, cfg.pretrained, cfg.lr_scale, name=modality)
    if cfg.kind == "mlp":
        return MLPEncoder(in_dim, cfg.hidden, cfg.layers, cfg.dropout, name=modality)
    if cfg.kind == "stats":
        return StatsPoolEncoder(in_dim, cfg.hidden, cfg.layers, cfg.dropout, name=modality)
    return SequenceTransformerEncoder(in_dim, cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, cfg.ff_mult,
                                      cfg.max_len, name=modality)
