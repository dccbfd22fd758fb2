"""Fusions: one interface, any subset of modalities, samples with absent modalities.

A fusion is built from ``dims`` (modality -> encoder output width), its config and the
:class:`~msa_lib.models.heads.HeadSpec`, and maps ``{modality: EncodedModality}`` to a
:class:`FusionOutput` whose ``fused`` vector (B x ``out_dim``) feeds the shared head. A fusion that
makes its own predictions (late fusion) sets ``provides_prediction`` and fills ``prediction``.

Absent modalities (``present`` False) are masked out: attention never sees them as keys or tokens,
averages skip them, and concatenations see zeros plus an explicit presence flag.

Configs. Each fusion has its own small dataclass (``config_class``) holding only its settings, on top of
:class:`FusionConfig`, the few settings every fusion accepts (``dim``, ``heads``, ``dropout``; a fusion
that has no use for one says so in its docstring). :func:`resolve_fusion_config` makes that dataclass
from what ``ModelConfig.fusion`` carries: the dataclass itself, a plain :class:`FusionConfig` (shared
settings), or a dict of overrides (what a JSON config holds). In a dict, a key that names a registered
model holds overrides for that model only, so one config serves every model of a study:
``{"dim": 16, "mult": {"width": 8}, "adamml": {"windows": 3}}``. An unknown key is one error naming
the fusion and the keys it accepts. ``dataclasses.asdict`` of a config gives such a dict back.

Hooks, no-ops in :class:`Fusion`, so training code never asks which fusion it holds:
``on_epoch_end()`` (per-epoch schedules: AdaMML's Gumbel temperature), ``reset_state()`` (forget
counters kept over evaluation passes), ``utilization()`` (per modality, the share of the input the
fusion used; None if it does not select), ``FusionOutput.aux_loss`` (an extra loss term: AdaMML's
decision loss, MCTN's translation and cycle losses) and the classmethod ``config_for_levels``
(settings for utterance- or frame-level data). A fusion with ``uses_video_context = True`` reads the
utterances of a video together (:mod:`msa_lib.models.context`): its ``forward`` also receives
``context=batch.get("context")``, and loaders feed it video batches
(:func:`msa_lib.data.torch_data.make_video_loader`).

Fusions in modules of their own: :mod:`msa_lib.models.context` (contextual LSTM, AdaMML + contextual
LSTM) and :mod:`msa_lib.models.mctn` (MCTN), imported below and registered in the one registry.

Adding a fusion: one class and one registry entry.

1. The class, with its config (here or in any module)::

       @dataclass
       class GatedSumConfig(FusionConfig):
           temperature: float = 1.0  # only what this fusion uses

       class GatedSum(Fusion):
           config_class = GatedSumConfig

           def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
               super().__init__(dims, config, head, dropout, input_dims)  # sets self.config, self.dropout
               ...  # layers, in a fixed order; set self.out_dim
           def forward(self, encoded, return_attention=False) -> FusionOutput: ...

2. One entry in :data:`MODEL_REGISTRY` at the end of this module (``"gated_sum": ModelRecipe(GatedSum)``),
   or ``register_model("gated_sum", GatedSum)`` from another module. ``build_model("gated_sum", dims)``
   and ``train_model("gated_sum", ds)`` then work. A recipe can fix settings its name implies
   (``ModelRecipe(LateFusion, settings={"mode": "vote"})``) or make a unimodal baseline
   (``ModelRecipe(EarlyConcat, modality="audio")``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msa_lib.models.encoders import AttentionBlock, EncodedModality, last_real_index, masked_attention, masked_mean
from msa_lib.models.heads import HeadOutput, HeadSpec, PredictionHead


# ---------------------------------------------------------------------------------------------- configs
@dataclass
class FusionConfig:
    """Settings every fusion accepts; each fusion's own config derives from this one."""

    dim: int = 128  # joint width of the attention / concat / gated fusions
    heads: int = 4  # attention heads
    dropout: float | None = None  # None: the model's dropout


@dataclass
class LateFusionConfig(FusionConfig):
    """``dim`` and ``heads`` are unused (each modality's head reads its encoder output)."""

    mode: str = "avg"  # "avg" (probability average) or "vote" (majority vote)

    def __post_init__(self):
        if self.mode not in ("vote", "avg"):
            raise ValueError(f"late fusion mode must be 'vote' or 'avg', got {self.mode!r}")


@dataclass
class EarlyConcatConfig(FusionConfig):
    """``dim``: width of the hidden layer over the joined vectors; ``heads`` is unused."""


@dataclass
class ModalityAttentionConfig(FusionConfig):
    ff_mult: int = 2  # feed-forward width = ff_mult * dim
    layers: int = 1  # self-attention layers over the modality tokens


@dataclass
class CrossAttentionConfig(FusionConfig):
    ff_mult: int = 2


@dataclass
class MulTConfig(FusionConfig):
    """MulT (Tsai et al., 2019). ``dim`` is unused: the joint width follows from ``width``."""

    ff_mult: int = 2
    width: int = 32  # per-modality width inside the crossmodal transformers
    layers: int = 2  # crossmodal layers per (target, source) pair
    self_layers: int = 1  # self-attention layers on the concatenated crossmodal outputs
    pool: str = "mean"  # "mean" (masked) or "last" (last real step, as in the paper)

    def __post_init__(self):
        if self.pool not in ("mean", "last"):
            raise ValueError(f"MulT pool must be 'mean' or 'last', got {self.pool!r}")


@dataclass
class AdaMMLConfig(FusionConfig):
    """AdaMML-style gating (Panda et al., 2021). ``dim``: width of the per-window features; ``heads`` is unused."""

    windows: int = 4  # time windows per sample (1 for utterance-level data, see ``config_for_levels``)
    policy_dim: int = 32  # per-modality width of the cheap window summaries
    policy_hidden: int = 64  # GRU width of the policy over windows
    gumbel_tau: float = 5.0
    tau_decay: float = 0.965  # per epoch (``on_epoch_end``)
    min_tau: float = 0.5
    keep_bias: float = 2.0  # initial keep logit: start with every modality on
    decision_loss_weight: float = 0.1  # 0 disables the decision loss
    target_modalities: float | None = None  # expected modalities per window; None: M - 1 (at least 1)


def _field_names(config_class: type) -> list[str]:
    return [f.name for f in fields(config_class)]


def resolve_fusion_config(fusion: type["Fusion"], value: FusionConfig | Mapping | None = None, *,
                          model: str | None = None, fixed: Mapping[str, Any] | None = None) -> FusionConfig:
    """``fusion.config_class`` from ``value``: None (defaults), an instance of that class (copied), a
    plain :class:`FusionConfig` or other base class of it (its settings, the rest default), or a dict
    of overrides whose keys are fields, or registered model names holding overrides for that model only
    (applied when ``model`` is that name). ``fixed``: the settings ``model``'s name implies
    (``late_vote``: ``mode="vote"``); a value contradicting them is an error."""
    config_class = fusion.config_class
    if isinstance(value, config_class):  # a subclass of the fusion's config stays what it is
        config_class = type(value)
    allowed = _field_names(config_class)
    label = f"model {model!r} ({fusion.__name__}, config {config_class.__name__})" if model \
        else f"fusion {fusion.__name__} (config {config_class.__name__})"
    if value is None:
        values = {}
    elif isinstance(value, Mapping):
        values, sections = {}, {}
        for key, item in value.items():
            (sections if key in MODEL_REGISTRY and key not in allowed else values)[key] = item
        unknown = sorted(set(values) - set(allowed), key=str)
        if unknown:
            raise ValueError(f"{label}: unknown fusion setting(s) {', '.join(map(repr, unknown))}; allowed: "
                             f"{', '.join(allowed)} (or a registered model name holding overrides for that model)")
        for section, overrides in sections.items():
            if not isinstance(overrides, Mapping):
                raise TypeError(f"{label}: fusion settings for model {section!r} must be a dict, "
                                f"got {type(overrides).__name__}")
            MODEL_REGISTRY[section].check_settings(overrides, section)
        values.update(sections.get(model, {}))
    elif isinstance(value, config_class):
        values = {name: getattr(value, name) for name in allowed}
    elif isinstance(value, FusionConfig) and issubclass(config_class, type(value)):
        values = {name: getattr(value, name) for name in _field_names(type(value))}
    else:
        raise TypeError(f"{label} takes {config_class.__name__}, a FusionConfig of shared settings or a dict "
                        f"of overrides; got {type(value).__name__}")
    for key, setting in (fixed or {}).items():
        if key in values and values[key] != setting:
            raise ValueError(f"{label}: the model name fixes {key}={setting!r}, the config asks for {values[key]!r}")
        values[key] = setting
    return config_class(**values)


# ---------------------------------------------------------------------------------------------- interface
@dataclass
class FusionOutput:
    fused: Tensor  # B x out_dim
    attention: dict[str, Tensor] = field(default_factory=dict)
    per_modality: dict[str, HeadOutput] = field(default_factory=dict)
    prediction: HeadOutput | None = None
    gates: Tensor | None = None  # B x windows x M
    aux_loss: Tensor | None = None  # added to the training loss (``LossConfig.aux_weight``)


def presence(encoded: dict[str, EncodedModality], modalities: list[str]) -> Tensor:
    """B x M bool."""
    return torch.stack([encoded[m].present for m in modalities], dim=1)


def join_with_presence(vectors: list[Tensor], present: Tensor) -> Tensor:
    """Concatenate per-modality vectors (absent ones zeroed) followed by the presence flags."""
    p = present.to(vectors[0].dtype)
    return torch.cat([v * p[:, i:i + 1] for i, v in enumerate(vectors)] + [p], dim=1)


class Fusion(nn.Module):
    """Base class: ``dims`` are the encoder output widths, ``input_dims`` the raw feature widths
    (default ``dims``); ``config`` anything :func:`resolve_fusion_config` takes."""

    provides_prediction = False
    uses_video_context = False  # True: forward(..., context=...) over whole videos (see the module docstring)
    config_class: type[FusionConfig] = FusionConfig

    def __init__(self, dims: dict[str, int], config: FusionConfig | Mapping | None = None, head: HeadSpec | None = None,
                 dropout: float = 0.3, input_dims: dict[str, int] | None = None):
        super().__init__()
        if not dims:
            raise ValueError(f"{type(self).__name__} needs at least one modality")
        self.modalities = list(dims)
        self.dims = dict(dims)
        self.input_dims = dict(input_dims or dims)
        self.config = resolve_fusion_config(type(self), config)
        self.head_spec = head or HeadSpec()
        self.dropout = dropout if self.config.dropout is None else self.config.dropout
        self.out_dim = 0

    def forward(self, encoded: dict[str, EncodedModality], return_attention: bool = False) -> FusionOutput:
        raise NotImplementedError

    # hooks (see the module docstring)
    @classmethod
    def config_for_levels(cls, config: FusionConfig, levels: dict[str, str]) -> FusionConfig:
        """The config to use on data whose modalities have these levels (``utterance`` / ``frame`` ...)."""
        return config

    def on_epoch_end(self) -> None:
        """Called once after every training epoch."""

    def reset_state(self) -> None:
        """Forget whatever is counted across forward passes."""

    def utilization(self, reset: bool = False) -> dict[str, float] | None:
        """Per modality, the share of the input the fusion used in evaluation passes; None if it does not select."""
        return None


# ---------------------------------------------------------------------------------------------- late
class LateFusion(Fusion):
    """One head per modality; the decision is the majority vote of the per-modality class decisions
    (``vote``, ties broken by the mean probability; score = median) or the average of their
    probabilities (``avg``; score = mean), over the modalities a sample has. Trained with the sum
    of the per-modality losses."""

    provides_prediction = True
    config_class = LateFusionConfig

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        self.mode = self.config.mode
        self.heads = nn.ModuleDict({m: PredictionHead(d, self.head_spec, self.dropout) for m, d in dims.items()})
        self.out_dim = sum(dims.values())

    def forward(self, encoded, return_attention=False):
        present = presence(encoded, self.modalities)
        weight = present.to(encoded[self.modalities[0]].pooled.dtype)  # B x M
        count = weight.sum(1, keepdim=True).clamp_min(1.0)
        per_mod = {m: self.heads[m](encoded[m].pooled, valid=encoded[m].present) for m in self.modalities}
        logits = {}
        for name in per_mod[self.modalities[0]].logits:
            probs = torch.stack([per_mod[m].logits[name].softmax(-1) for m in self.modalities], 1)  # B x M x K
            mean_prob = (probs * weight[..., None]).sum(1) / count
            if self.mode == "avg":
                combined = mean_prob
            else:
                votes = F.one_hot(probs.argmax(-1), probs.shape[-1]).to(probs.dtype) * weight[..., None]
                combined = (votes.sum(1) + 1e-3 * mean_prob) / (count + 1e-3)  # tiny term breaks ties
            logits[name] = combined.clamp_min(1e-8).log()
        scores = torch.stack([per_mod[m].score for m in self.modalities], 1)  # B x M
        if self.mode == "avg":
            score = (scores * weight).sum(1) / count.squeeze(1)
        else:  # the median agrees in sign with the majority of the per-modality scores
            score = torch.nanquantile(scores.masked_fill(~present, float("nan")), 0.5, dim=1).nan_to_num(0.0)
        fused = torch.cat([encoded[m].pooled * weight[:, i:i + 1] for i, m in enumerate(self.modalities)], 1)
        return FusionOutput(fused, per_modality=per_mod, prediction=HeadOutput(score, logits))


# ---------------------------------------------------------------------------------------------- early
class EarlyConcat(Fusion):
    """Concatenated pooled vectors (plus presence flags) through one hidden layer."""

    config_class = EarlyConcatConfig

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        self.net = nn.Sequential(nn.Linear(sum(dims.values()) + len(dims), self.config.dim), nn.GELU(),
                                 nn.Dropout(self.dropout))
        self.out_dim = self.config.dim

    def forward(self, encoded, return_attention=False):
        present = presence(encoded, self.modalities)
        joined = join_with_presence([encoded[m].pooled for m in self.modalities], present)
        return FusionOutput(self.net(joined))


# ---------------------------------------------------------------------------------------------- modality attention
class ModalityAttention(Fusion):
    """Multi-head self-attention over one token per modality (pooled vector projected to a common
    width plus a learned modality embedding); absent modalities are masked keys; masked mean out."""

    config_class = ModalityAttentionConfig

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        d = self.config.dim
        self.proj = nn.ModuleDict({m: nn.Linear(k, d) for m, k in dims.items()})
        self.modality_embedding = nn.Parameter(torch.randn(len(dims), d) * 0.02)
        self.layers = nn.ModuleList(AttentionBlock(d, self.config.heads, self.dropout, self.config.ff_mult)
                                    for _ in range(max(1, self.config.layers)))
        self.norm = nn.LayerNorm(d)
        self.out_dim = d

    def forward(self, encoded, return_attention=False):
        present = presence(encoded, self.modalities)
        tokens = torch.stack([self.proj[m](encoded[m].pooled) for m in self.modalities], 1) + self.modality_embedding
        tokens = tokens * present[..., None].to(tokens.dtype)
        attention = {}
        for i, layer in enumerate(self.layers):
            tokens, w = layer(tokens, present, need_weights=return_attention)
            if return_attention:
                attention["modality" if len(self.layers) == 1 else f"modality/layer{i}"] = w
        return FusionOutput(masked_mean(self.norm(tokens), present), attention)


# ---------------------------------------------------------------------------------------------- cross attention
class CrossAttention(Fusion):
    """Bidirectional cross-attention: every modality's sequence queries each other modality's
    sequence (the results averaged over the other modalities the sample has), a feed-forward block
    follows, each sequence is mean-pooled and the pooled vectors are joined."""

    config_class = CrossAttentionConfig

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        c = self.config
        d = c.dim
        self.proj = nn.ModuleDict({m: nn.Linear(k, d) for m, k in dims.items()})
        self.norm = nn.ModuleDict({m: nn.LayerNorm(d) for m in dims})
        self.attn = nn.ModuleDict({self._pair(q, k): nn.MultiheadAttention(d, c.heads, dropout=self.dropout, batch_first=True)
                                   for q in dims for k in dims if q != k})
        self.norm_ff = nn.ModuleDict({m: nn.LayerNorm(d) for m in dims})
        self.ff = nn.ModuleDict({m: nn.Sequential(nn.Linear(d, c.ff_mult * d), nn.GELU(), nn.Dropout(self.dropout),
                                                  nn.Linear(c.ff_mult * d, d)) for m in dims})
        self.drop = nn.Dropout(self.dropout)
        self.join = nn.Sequential(nn.Linear(len(dims) * d + len(dims), d), nn.GELU(), nn.Dropout(self.dropout))
        self.out_dim = d

    @staticmethod
    def _pair(q: str, k: str) -> str:
        return f"{q}__to__{k}"  # ModuleDict keys cannot contain '.'

    def forward(self, encoded, return_attention=False):
        present = presence(encoded, self.modalities)
        x = {m: self.proj[m](encoded[m].sequence) * encoded[m].mask[..., None] for m in self.modalities}
        normed = {m: self.norm[m](x[m]) for m in self.modalities}
        attention, pooled = {}, []
        for q in self.modalities:
            q_mask = encoded[q].mask
            total = torch.zeros_like(x[q])
            sources = torch.zeros(q_mask.shape[0], device=q_mask.device, dtype=x[q].dtype)
            for k in self.modalities:
                if k == q:
                    continue
                out, w = masked_attention(self.attn[self._pair(q, k)], normed[q], normed[k], encoded[k].mask,
                                          q_mask, return_attention)
                total = total + out
                sources = sources + encoded[k].present.to(x[q].dtype)
                if return_attention:
                    attention[f"cross/{q}->{k}"] = w
            h = x[q] + self.drop(total / sources.clamp_min(1.0)[:, None, None])
            h = h + self.drop(self.ff[q](self.norm_ff[q](h)))
            pooled.append(masked_mean(h, q_mask))
        return FusionOutput(self.join(join_with_presence(pooled, present)), attention)


# ---------------------------------------------------------------------------------------------- MulT
class MulT(Fusion):
    """Crossmodal transformer (Tsai et al., 2019): for each target modality and each other (source)
    modality, ``layers`` crossmodal attention layers in which the target sequence queries the
    source sequence; the outputs for one target are concatenated along features, pass
    ``self_layers`` self-attention layers, are pooled (mean or last real step), and the target
    vectors are joined and refined by a residual block. A source a sample lacks contributes nothing."""

    config_class = MulTConfig

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        c = self.config
        d = c.width
        self.proj = nn.ModuleDict({m: nn.Linear(k, d) for m, k in dims.items()})
        self.cross = nn.ModuleDict({
            CrossAttention._pair(t, s): nn.ModuleList(AttentionBlock(d, c.heads, self.dropout, c.ff_mult, context_dim=d)
                                                      for _ in range(c.layers))
            for t in dims for s in dims if t != s})
        self.mem_dim = d * max(1, len(dims) - 1)
        self.mem = nn.ModuleDict({t: nn.ModuleList(AttentionBlock(self.mem_dim, c.heads, self.dropout, c.ff_mult)
                                                   for _ in range(c.self_layers)) for t in dims})
        self.mem_norm = nn.ModuleDict({t: nn.LayerNorm(self.mem_dim) for t in dims})
        combined = self.mem_dim * len(dims) + len(dims)
        self.proj1, self.proj2 = nn.Linear(combined, combined), nn.Linear(combined, combined)
        self.drop = nn.Dropout(self.dropout)
        self.out_dim = combined

    def forward(self, encoded, return_attention=False):
        present = presence(encoded, self.modalities)
        x = {m: self.proj[m](encoded[m].sequence) * encoded[m].mask[..., None] for m in self.modalities}
        attention, pooled = {}, []
        for t in self.modalities:
            t_mask = encoded[t].mask
            parts = []
            for s in self.modalities:
                if s == t:
                    continue
                h = x[t]
                for i, layer in enumerate(self.cross[CrossAttention._pair(t, s)]):
                    h, w = layer(h, t_mask, context=x[s], context_mask=encoded[s].mask, need_weights=return_attention)
                    if return_attention:
                        attention[f"mult/{t}->{s}/layer{i}"] = w
                parts.append(h)
            h = torch.cat(parts, -1) if parts else x[t]
            for i, layer in enumerate(self.mem[t]):
                h, w = layer(h, t_mask, need_weights=return_attention)
                if return_attention:
                    attention[f"mult/{t}/self/layer{i}"] = w
            h = self.mem_norm[t](h)
            if self.config.pool == "last":
                v = h[torch.arange(h.shape[0], device=h.device), last_real_index(t_mask)]
                v = v * t_mask.any(1, keepdim=True).to(v.dtype)
            else:
                v = masked_mean(h, t_mask)
            pooled.append(v)
        joined = join_with_presence(pooled, present)
        fused = joined + self.proj2(self.drop(F.relu(self.proj1(joined))))
        return FusionOutput(fused, attention)


# ---------------------------------------------------------------------------------------------- AdaMML
def window_membership(mask: Tensor, windows: int) -> Tensor:
    """B x W x T float: which real steps belong to each of ``windows`` windows.

    Windows split each sample's own length (up to its last real step) proportionally, so padding
    never moves them; a sequence shorter than ``windows`` repeats steps so no window is empty
    unless the modality is absent (or the window covers only masked steps).
    """
    b, t = mask.shape
    length = torch.where(mask.any(1), last_real_index(mask) + 1, torch.zeros_like(mask[:, 0], dtype=torch.long))
    w = torch.arange(windows, device=mask.device)
    start = (w[None, :] * length[:, None]) // windows
    end = torch.maximum(((w[None, :] + 1) * length[:, None]) // windows, start + 1)
    steps = torch.arange(t, device=mask.device)[None, None, :]
    member = (steps >= start[..., None]) & (steps < end[..., None]) & mask[:, None, :]
    return member.to(torch.float32)


def window_means(values: Tensor, member: Tensor) -> tuple[Tensor, Tensor]:
    """(B x W x D window means, B x W availability)."""
    member = member.to(values.dtype)
    count = member.sum(-1)
    return torch.einsum("bwt,btd->bwd", member, values) / count.clamp_min(1.0)[..., None], count > 0


class AdaMMLGate(Fusion):
    """AdaMML-style adaptive modality selection (Panda et al., 2021), for feature sequences.

    Each modality's sequence is cut into ``windows`` windows proportional to its length. A small
    policy network (per-modality linear maps of the window means of the *raw* features, a GRU over
    windows) gives per-window, per-modality keep/skip logits; decisions are Gumbel-softmax samples,
    straight-through hard in training, hard argmax in evaluation. The fused vector is the average of
    the kept (window, modality) projections of the encoder outputs. The decision loss pushes the
    expected number of modalities used per window towards ``target_modalities``.
    ``utilization()`` reports, per modality, the fraction of available windows kept in evaluation
    (counted since the last ``reset_state()``). The policy reads the raw features, hence ``input_dims``.
    """

    config_class = AdaMMLConfig

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        c = self.config
        self.windows = max(1, int(c.windows))
        self.tau = float(c.gumbel_tau)
        m = len(dims)
        self.summary = nn.ModuleDict({k: nn.Linear(self.input_dims[k], c.policy_dim) for k in dims})
        self.policy_rnn = nn.GRU(m * c.policy_dim + m, c.policy_hidden, batch_first=True)
        self.policy_out = nn.Linear(c.policy_hidden, 2 * m)
        with torch.no_grad():  # start by keeping every modality so the fusion learns before the policy prunes
            self.policy_out.bias.view(m, 2)[:, 1] = c.keep_bias
            self.policy_out.bias.view(m, 2)[:, 0] = 0.0
        self.feature = nn.ModuleDict({k: nn.Sequential(nn.Linear(h, c.dim), nn.GELU(), nn.Dropout(self.dropout))
                                      for k, h in dims.items()})
        self.norm = nn.LayerNorm(c.dim)
        self.target = c.target_modalities if c.target_modalities is not None else max(1.0, m - 1.0)
        self.register_buffer("kept_windows", torch.zeros(m, dtype=torch.float64), persistent=False)
        self.register_buffer("available_windows", torch.zeros(m, dtype=torch.float64), persistent=False)
        self.out_dim = c.dim

    @classmethod
    def config_for_levels(cls, config, levels):
        """One window when every modality is utterance-level (there is no time axis to cut)."""
        if levels and all(level == "utterance" for level in levels.values()):
            return replace(config, windows=1)
        return config

    def on_epoch_end(self) -> None:
        self.tau = max(self.config.min_tau, self.tau * self.config.tau_decay)

    def forward(self, encoded, return_attention=False):
        summaries, features, available = [], [], []
        for k in self.modalities:
            enc = encoded[k]
            member = window_membership(enc.mask, self.windows)
            raw = enc.inputs if enc.inputs is not None else enc.sequence
            raw_mean, avail = window_means(raw, member)
            avail = avail & enc.present[:, None]
            summaries.append(F.relu(self.summary[k](raw_mean)) * avail[..., None])
            feat_mean, _ = window_means(enc.sequence, member)
            features.append(self.feature[k](feat_mean))
            available.append(avail)
        avail = torch.stack(available, -1)  # B x W x M
        avail_f = avail.to(features[0].dtype)
        policy_in = torch.cat(summaries + [avail_f], -1)
        h, _ = self.policy_rnn(policy_in)
        logits = self.policy_out(h).view(*avail.shape, 2)  # [..., 1] = keep
        gates = self.decide(logits, avail_f)
        feats = torch.stack(features, 2)  # B x W x M x d
        fused = (feats * gates[..., None]).sum((1, 2)) / gates.sum((1, 2)).clamp_min(1.0)[:, None]
        fused = self.norm(fused)
        return FusionOutput(fused, gates=gates, aux_loss=self.decision_loss(logits, avail_f))

    # The policy's decisions, shared with AdaMMLContext: ``logits`` ... x M x 2, ``avail_f`` ... x M.
    def decide(self, logits: Tensor, avail_f: Tensor) -> Tensor:
        """Hard keep (1) / skip (0) gates: straight-through Gumbel-softmax samples in training, the
        argmax in evaluation (where the kept share is also counted for ``utilization()``)."""
        if self.training:
            keep = F.gumbel_softmax(logits, tau=self.tau, hard=True)[..., 1]
        else:
            keep = (logits[..., 1] > logits[..., 0]).to(logits.dtype)
        gates = keep * avail_f  # a modality that is not there cannot be used
        if not self.training:
            with torch.no_grad():
                self.kept_windows += gates.reshape(-1, gates.shape[-1]).sum(0).double()
                self.available_windows += avail_f.reshape(-1, avail_f.shape[-1]).sum(0).double()
        return gates

    def decision_loss(self, logits: Tensor, avail_f: Tensor) -> Tensor | None:
        """weight x (expected modalities kept - target)^2, over the windows that have any modality."""
        if self.config.decision_loss_weight <= 0:
            return None
        with_data = avail_f.sum(-1) > 0
        if not with_data.any():
            return None
        used = (logits.softmax(-1)[..., 1] * avail_f).sum(-1)[with_data].mean()
        target = avail_f.sum(-1).clamp(max=self.target)[with_data].mean()
        return self.config.decision_loss_weight * (used - target) ** 2

    def utilization(self, reset: bool = False) -> dict[str, float]:
        """Fraction of available windows in which each modality was kept (evaluation passes since
        the last reset)."""
        frac = (self.kept_windows / self.available_windows.clamp_min(1.0)).tolist()
        out = {m: (f if self.available_windows[i] > 0 else float("nan")) for i, (m, f) in enumerate(zip(self.modalities, frac))}
        if reset:
            self.reset_utilization()
        return out

    def reset_utilization(self) -> None:
        self.kept_windows.zero_()
        self.available_windows.zero_()

    def reset_state(self) -> None:
        self.reset_utilization()


# ---------------------------------------------------------------------------------------------- registry
# fusions of their own modules (they import the classes above, so they come in here, not at the top)
from msa_lib.models.context import AdaMMLContext, ContextualLSTM  # noqa: E402
from msa_lib.models.mctn import MCTN  # noqa: E402


@dataclass(frozen=True)
class ModelRecipe:
    """A named model: a fusion class, the settings its name fixes, and for unimodal baselines the one
    modality it keeps (``text`` resolves through ``ModelConfig.text_key``; ``visual`` means ``vision``)."""

    fusion: type[Fusion]
    modality: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if not (isinstance(self.fusion, type) and issubclass(self.fusion, Fusion)):
            raise TypeError(f"ModelRecipe.fusion must be a Fusion subclass, got {self.fusion!r}")
        self.check_settings(self.settings)

    def check_settings(self, settings: Mapping[str, Any], model: str | None = None) -> None:
        allowed = _field_names(self.fusion.config_class)
        unknown = sorted(set(settings) - set(allowed), key=str)
        if unknown:
            where = f"model {model!r} ({self.fusion.__name__})" if model else self.fusion.__name__
            raise ValueError(f"{where}: unknown fusion setting(s) {', '.join(map(repr, unknown))}; "
                             f"allowed: {', '.join(allowed)}")

    def config(self, value: FusionConfig | Mapping | None = None, model: str | None = None) -> FusionConfig:
        """This model's fusion config from what ``ModelConfig.fusion`` holds (see :func:`resolve_fusion_config`)."""
        return resolve_fusion_config(self.fusion, value, model=model, fixed=self.settings)


# name -> recipe; adding a fusion: one entry here (or ``register_model``)
MODEL_REGISTRY: dict[str, ModelRecipe] = {
    "text_only": ModelRecipe(EarlyConcat, "text"),
    "audio_only": ModelRecipe(EarlyConcat, "audio"),
    "visual_only": ModelRecipe(EarlyConcat, "vision"),
    "late_vote": ModelRecipe(LateFusion, settings={"mode": "vote"}),
    "late_avg": ModelRecipe(LateFusion, settings={"mode": "avg"}),
    "early_concat": ModelRecipe(EarlyConcat),
    "modality_attention": ModelRecipe(ModalityAttention),
    "cross_attention": ModelRecipe(CrossAttention),
    "mult": ModelRecipe(MulT),
    "adamml": ModelRecipe(AdaMMLGate),
    "mctn": ModelRecipe(MCTN, settings={"trimodal": "none", "shared_encoder": False}),
    "mctn_shared": ModelRecipe(MCTN, settings={"trimodal": "none", "shared_encoder": True}),
    "mctn_hierarchical": ModelRecipe(MCTN, settings={"trimodal": "hierarchical"}),
    "contextual_lstm": ModelRecipe(ContextualLSTM),
    "adamml_context": ModelRecipe(AdaMMLContext),
}
MODEL_NAMES = tuple(MODEL_REGISTRY)  # the built-in models, in the notebooks' order


def register_model(name: str, fusion: type[Fusion], modality: str | None = None, **settings) -> ModelRecipe:
    """Make ``fusion`` buildable as model ``name`` (``settings``: config fields the name fixes;
    ``modality``: a unimodal baseline). A name is registered once."""
    if name in MODEL_REGISTRY:
        raise ValueError(f"model {name!r} is already registered (as {MODEL_REGISTRY[name]})")
    MODEL_REGISTRY[name] = recipe = ModelRecipe(fusion, modality, dict(settings))
    return recipe


def model_recipe(name: str) -> ModelRecipe:
    if name not in MODEL_REGISTRY:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODEL_REGISTRY)}")
    return MODEL_REGISTRY[name]


def gate_usage(gates: Tensor) -> Tensor:
    """Per-sample fraction of windows each modality was kept in (B x M) from B x W x M gates."""
    return gates.float().mean(1)

