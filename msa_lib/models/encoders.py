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
ENCODER_KINDS = ("transformer", "mlp")


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

    def __post_init__(self):
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind must be one of {ENCODER_KINDS}, got {self.kind!r}")

    def resolved(self, modality: str, dropout: float) -> "EncoderConfig":
        base = TEXT_DEFAULTS if is_text_modality(modality) else OTHER_DEFAULTS
        default_layers = base["layers"] if self.kind == "transformer" else 2  # an MLP needs no depth
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
        h = self.drop(self.pos(self.proj(x)))
        attention = {}
        for i, layer in enumerate(self.layers):
            h, w = layer(h, mask, need_weights=return_attention)
            if return_attention:
                attention[f"{self.name}/layer{i}"] = w
        h = self.norm(h) * mask.unsqueeze(-1).to(h.dtype)
        return EncodedModality(h, mask, masked_mean(h, mask), mask.any(1), x, attention)


class MLPEncoder(nn.Module):
    """Per-step MLP for utterance-level vectors (T = 1) or any sequence, then masked mean pooling."""

    def __init__(self, in_dim: int, hidden: int = 128, layers: int = 2, dropout: float = 0.3, name: str = "x", **_):
        super().__init__()
        self.name, self.in_dim, self.out_dim = name, in_dim, hidden
        blocks, width = [], in_dim
        for _ in range(max(1, layers)):
            blocks += [nn.Linear(width, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Dropout(dropout)]
            width = hidden
        self.net = nn.Sequential(*blocks)

    def forward(self, x: Tensor, mask: Tensor, return_attention: bool = False) -> EncodedModality:
        h = self.net(x) * mask.unsqueeze(-1).to(x.dtype)
        return EncodedModality(h, mask, masked_mean(h, mask), mask.any(1), x, {})


def build_encoder(modality: str, in_dim: int, config: EncoderConfig | str | dict | None = None,
                  dropout: float = 0.3, overrides: dict | None = None) -> nn.Module:
    """An encoder by name (``transformer`` / ``mlp``) or config, with the seed defaults filled in."""
    if config is None or isinstance(config, str):
        config = EncoderConfig(kind=config or "transformer")
    elif isinstance(config, dict):
        config = EncoderConfig(**config)
    if overrides:
        config = replace(config, **overrides)
    cfg = config.resolved(modality, dropout)
    if cfg.kind == "mlp":
        return MLPEncoder(in_dim, cfg.hidden, cfg.layers, cfg.dropout, name=modality)
    return SequenceTransformerEncoder(in_dim, cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, cfg.ff_mult,
                                      cfg.max_len, name=modality)
