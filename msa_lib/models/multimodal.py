"""Encoders + fusion + head composed into one model, and the registry of named models.

``model(batch) -> ModelOutput``; ``model(batch, return_attention=True)`` also fills
``output.attention``:

- ``"{m}/layer{i}"``: encoder self-attention, B x heads x T x T;
- ``"cross/{q}->{k}"``: cross-attention fusion, B x heads x Tq x Tk;
- ``"mult/{t}->{s}/layer{i}"`` and ``"mult/{t}/self/layer{i}"``: MulT;
- ``"modality"``: modality-attention fusion, B x heads x M x M.

Padded keys get weight 0 (rows sum to 1 over real keys), padded query rows and samples without any
real key are all-zero. Modalities are arbitrary names; a model is built from ``dims`` (name -> feature
width). A modality missing from a batch, or absent for some samples (``batch["present"][m]`` False),
is masked out.

Named models come from the one registry, :data:`~msa_lib.models.fusion.MODEL_REGISTRY` (re-exported
here; how to add a fusion: :mod:`msa_lib.models.fusion`).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from msa_lib.data.labels import LabelScheme
from msa_lib.models.encoders import (EncodedModality, EncoderConfig, ModelInputError, PretrainedTopEncoder, build_encoder,
                       is_text_modality)
from msa_lib.models.fusion import (MODEL_NAMES, MODEL_REGISTRY, Fusion, FusionConfig, ModelRecipe,  # noqa: F401 (the registry, re-exported)
                                   model_recipe, register_model, resolve_fusion_config)
from msa_lib.models.heads import HeadOutput, HeadSpec, PredictionHead, head_spec_for

if TYPE_CHECKING:
    from msa_lib.data.schema import MultimodalDataset


@dataclass
class ModelConfig:
    dropout: float = 0.3
    encoder: str = "transformer"  # default encoder kind: "transformer" or "mlp"
    encoders: dict = field(default_factory=dict)  # per modality: kind name, EncoderConfig or its fields as a dict
    encoder_overrides: dict = field(default_factory=dict)  # applied to every encoder, e.g. {"hidden": 64}
    # the fusion's settings: its config dataclass, a FusionConfig of shared settings, or a dict of overrides
    # (keys naming a registered model hold that model's own); a built model holds the resolved dataclass
    fusion: FusionConfig | dict = field(default_factory=dict)
    head: HeadSpec = field(default_factory=HeadSpec)
    modality_dropout: float = 0.0  # training only: drop whole modalities per sample (never all)
    text_key: str | None = None  # which modality the unimodal "text_only" model uses (None: guess)

    def __post_init__(self):
        if isinstance(self.head, Mapping):  # e.g. read back from ``dataclasses.asdict`` / JSON
            self.head = HeadSpec(**self.head)
        if not isinstance(self.fusion, (FusionConfig, Mapping)):
            raise TypeError(f"ModelConfig.fusion must be a fusion config or a dict of overrides, "
                            f"got {type(self.fusion).__name__}")


@dataclass
class ModelOutput:
    score: Tensor  # B
    logits: dict[str, Tensor]  # {"2", "3", "5"} or {"cls"} -> B x K
    fused: Tensor  # B x H
    per_modality: dict[str, HeadOutput] = field(default_factory=dict)
    attention: dict[str, Tensor] = field(default_factory=dict)
    gates: Tensor | None = None  # B x windows x M (order: ``modalities``)
    aux_loss: Tensor | None = None
    train_per_modality: bool = False  # late fusion: the loss is the sum of per-modality losses
    modalities: list[str] = field(default_factory=list)


class MultimodalModel(nn.Module):
    """``fusion``: a registered model name (its fusion class and the settings the name fixes; a unimodal
    recipe's modality is applied by :func:`build_model`, not here) or a :class:`Fusion` subclass."""

    def __init__(self, dims: dict[str, int], fusion: str | type[Fusion] = "early_concat",
                 config: ModelConfig | None = None, name: str | None = None,
                 label_scheme: LabelScheme | None = None):
        super().__init__()
        if not dims:
            raise ValueError("a model needs at least one modality (dims is empty)")
        bad = [m for m in dims if "." in m or not m]
        if bad:
            raise ValueError(f"modality names cannot be empty or contain '.': {bad}")
        self.config = config = copy.deepcopy(config) if config is not None else ModelConfig()
        self.modalities = list(dims)
        self.dims = dict(dims)
        self.name = name or (fusion if isinstance(fusion, str) else fusion.__name__)
        self.label_scheme = label_scheme
        self.encoders = nn.ModuleDict({
            m: build_encoder(m, d, config.encoders.get(m, config.encoder), config.dropout, config.encoder_overrides)
            for m, d in dims.items()})
        enc_dims = {m: self.encoders[m].out_dim for m in self.modalities}
        if isinstance(fusion, str):
            recipe = model_recipe(fusion)
            config.fusion, fusion_cls = recipe.config(config.fusion, fusion), recipe.fusion
        else:
            config.fusion = resolve_fusion_config(fusion, config.fusion, model=self.name)
            fusion_cls = fusion
        self.fusion = fusion_cls(enc_dims, config.fusion, config.head, config.dropout, input_dims=self.dims)
        self.head = None if self.fusion.provides_prediction else PredictionHead(self.fusion.out_dim, config.head, config.dropout)

    # ------------------------------------------------------------------ inputs
    def _inputs(self, batch: dict) -> tuple[dict, dict, dict]:
        xs, masks, present = {}, {}, {}
        ref = next((t for t in batch.get("x", {}).values()), None)
        if ref is None:
            raise ModelInputError("batch has no features under 'x'")
        size, device = ref.shape[0], ref.device
        for m in self.modalities:
            if m in batch["x"]:
                x = batch["x"][m]
                if x.dim() != 3 or x.shape[-1] != self.dims[m]:
                    raise ModelInputError(f"modality '{m}': expected B x T x {self.dims[m]} features, got shape {tuple(x.shape)}")
                mask = batch["mask"][m].to(device).bool()
                p = batch.get("present", {}).get(m)
                p = mask.any(1) if p is None else p.to(device).bool() & mask.any(1)
                xs[m], masks[m], present[m] = x, mask & p[:, None], p
            else:  # e.g. text-only data through a trimodal model
                xs[m] = torch.zeros(size, 1, self.dims[m], device=device)
                masks[m] = torch.zeros(size, 1, dtype=torch.bool, device=device)
                present[m] = torch.zeros(size, dtype=torch.bool, device=device)
        if self.training and self.config.modality_dropout > 0 and len(self.modalities) > 1:
            masks, present = self._drop_modalities(masks, present)
        return xs, masks, present

    def _drop_modalities(self, masks: dict, present: dict) -> tuple[dict, dict]:
        had = torch.stack([present[m] for m in self.modalities], 1)  # B x M
        keep = had & (torch.rand(had.shape, device=had.device) >= self.config.modality_dropout)
        lost_all = had.any(1) & ~keep.any(1)
        if lost_all.any():  # restore one modality the sample had, chosen at random
            pick = (torch.rand(had.shape, device=had.device) * had).argmax(1)
            keep[lost_all, pick[lost_all]] = True
        new_present = {m: keep[:, i] for i, m in enumerate(self.modalities)}
        return {m: masks[m] & new_present[m][:, None] for m in self.modalities}, new_present

    # ------------------------------------------------------------------ forward
    def encode(self, batch: dict, return_attention: bool = False) -> dict[str, EncodedModality]:
        xs, masks, present = self._inputs(batch)
        encoded = {}
        for m in self.modalities:
            enc = self.encoders[m]
            if not present[m].any():  # nothing to encode: skip the work, hand the fusion zeros
                b = xs[m].shape[0]
                zeros = xs[m].new_zeros(b, masks[m].shape[1], enc.out_dim)
                encoded[m] = EncodedModality(zeros, masks[m], zeros[:, 0], present[m], xs[m], {})
                continue
            e = enc(xs[m], masks[m], return_attention=return_attention)
            e.present = present[m]
            encoded[m] = e
        return encoded

    def forward(self, batch: dict, return_attention: bool = False) -> ModelOutput:
        encoded = self.encode(batch, return_attention)
        fused = self.fuse(encoded, batch, return_attention)
        pred = fused.prediction if fused.prediction is not None else self.head(fused.fused)
        attention = {}
        if return_attention:
            for m in self.modalities:
                attention.update(encoded[m].attention)
            attention.update(fused.attention)
        return ModelOutput(pred.score, pred.logits, fused.fused, fused.per_modality, attention, fused.gates,
                           fused.aux_loss, self.fusion.provides_prediction, list(self.modalities))

    def fuse(self, encoded: dict, batch: dict, return_attention: bool = False):
        """The fusion over ``encoded`` modalities, with the batch's video context when the fusion reads it."""
        video = {"context": batch.get("context")} if self.fusion.uses_video_context else {}
        return self.fusion(encoded, return_attention=return_attention, **video)

    @property
    def uses_video_context(self) -> bool:
        """True when the fusion reads whole videos: feed it video batches (``make_loader(by_video=True)``)."""
        return self.fusion.uses_video_context

    def on_epoch_end(self) -> None:
        """Per-epoch schedules inside submodules (e.g. the Gumbel temperature of AdaMML); call after each epoch."""
        for module in self.modules():
            if module is not self and hasattr(module, "on_epoch_end"):
                module.on_epoch_end()

    def reset_state(self) -> None:
        """Forget what submodules count over forward passes (e.g. AdaMML's utilisation), so that the
        next evaluation counts alone."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_state"):
                module.reset_state()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def utilization(self, reset: bool = False) -> dict[str, float] | None:
        """The fusion's per-modality share of the input used (None: the fusion does not select)."""
        return self.fusion.utilization(reset)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, modalities={self.modalities}"


# ---------------------------------------------------------------------------------------------- building
def resolve_modality(role: str, dims: dict[str, int], text_key: str | None = None) -> str:
    """The modality key a unimodal model uses: ``text`` -> ``text_key`` or the text-like key;
    ``visual``/``vision`` -> ``vision``; otherwise the name itself."""
    if role == "text":
        if text_key:
            candidates = [text_key]
        else:
            candidates = ["text"] + [m for m in dims if is_text_modality(m)]
    elif role in ("visual", "vision"):
        candidates = ["vision", "visual"]
    else:
        candidates = [role]
    for c in candidates:
        if c in dims:
            return c
    # a feature file from msa extract names its modalities by representation (audio_whisper, vision_face):
    # a single modality of that family fills the role
    family = [m for m in dims if any(m.startswith(c + "_") for c in candidates)]
    if len(family) == 1:
        return family[0]
    raise KeyError(f"no '{role}' modality among {list(dims)}" + (f" (text_key={text_key!r})" if text_key else ""))


def build_model(name: str, dims: dict[str, int], config: ModelConfig | None = None,
                label_scheme: LabelScheme | None = None) -> MultimodalModel:
    """A registered model (see ``MODEL_NAMES``) for modalities ``dims``; unimodal names keep only
    their modality, fusions use every modality in ``dims``."""
    recipe = model_recipe(name)
    config = copy.deepcopy(config) if config is not None else ModelConfig()
    if label_scheme is not None:
        config.head = replace(head_spec_for(label_scheme), hidden=config.head.hidden)
    if recipe.modality is not None:
        m = resolve_modality(recipe.modality, dims, config.text_key)
        dims = {m: dims[m]}
    return MultimodalModel(dict(dims), name, config, name=name, label_scheme=label_scheme)


def dataset_dims(ds: "MultimodalDataset", modalities=None) -> dict[str, int]:
    mods = list(modalities or ds.modalities)
    return {m: ds.meta.modalities[m].dim for m in mods}


def build_model_for(name: str, ds: "MultimodalDataset", config: ModelConfig | None = None,
                    modalities=None) -> MultimodalModel:
    """:func:`build_model` with the dims, head and label scheme of ``ds``; utterance-level
    modalities get an MLP encoder unless ``config.encoders`` names one, and the fusion adapts its
    settings to the levels (``Fusion.config_for_levels``: AdaMML uses one window when every modality
    is utterance-level)."""
    recipe = model_recipe(name)
    config = copy.deepcopy(config) if config is not None else ModelConfig()
    dims = dataset_dims(ds, modalities)
    levels = {m: ds.meta.modalities[m].level for m in dims}
    for m, level in levels.items():
        if level == "utterance" and m not in config.encoders:
            config.encoders[m] = EncoderConfig(kind="mlp")
    config.fusion = recipe.fusion.config_for_levels(recipe.config(config.fusion, name), levels)
    model = build_model(name, dims, config, label_scheme=ds.meta.labels)
    for m, encoder in model.encoders.items():
        if isinstance(encoder, PretrainedTopEncoder):
            _check_input_layer(ds, m, encoder)
    return model


def _check_input_layer(ds: "MultimodalDataset", modality: str, encoder: PretrainedTopEncoder) -> None:
    """A pretrained_top encoder continues from the hidden state below its first layer; states cached
    from any other layer would train without an error but on the wrong input."""
    below = ds.meta.modalities[modality].extractor.get("hidden_layer")
    if below != encoder.first_layer:
        total = encoder.first_layer + len(encoder.layers)
        raise ModelInputError(f"{ds.meta.name}.{modality}: fine-tuning the top {len(encoder.layers)} of {total} layers "
                              f"needs the states after layer {encoder.first_layer} "
                              f"(TextFeatureConfig(hidden_layer={encoder.first_layer})), the data holds hidden_layer={below}")
