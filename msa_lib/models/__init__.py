"""Models: per-modality encoders + a fusion + a prediction head (see ``multimodal``; adding a fusion: ``fusion``)."""
from msa_lib.models.encoders import (EncodedModality, EncoderConfig, MLPEncoder, ModelInputError, SequenceTransformerEncoder,
                       build_encoder)
from msa_lib.models.fusion import (MODEL_NAMES, MODEL_REGISTRY, AdaMMLConfig, AdaMMLGate, CrossAttention,
                                   CrossAttentionConfig, EarlyConcat, EarlyConcatConfig, Fusion, FusionConfig, FusionOutput,
                                   LateFusion, LateFusionConfig, ModalityAttention, ModalityAttentionConfig, ModelRecipe,
                                   MulT, MulTConfig, gate_usage, model_recipe, register_model, resolve_fusion_config)
from msa_lib.models.context import AdaMMLContext, AdaMMLContextConfig, ContextualLSTM, ContextualLSTMConfig
from msa_lib.models.mctn import MCTN, MCTNConfig
from msa_lib.models.heads import HeadOutput, HeadSpec, LossConfig, PredictionHead, compute_loss, head_spec_for
from msa_lib.models.multimodal import (ModelConfig, ModelOutput, MultimodalModel, build_model, build_model_for, dataset_dims,
                                       resolve_modality)

__all__ = [
    "EncodedModality", "EncoderConfig", "MLPEncoder", "ModelInputError", "SequenceTransformerEncoder", "build_encoder",
    "MODEL_NAMES", "MODEL_REGISTRY", "ModelRecipe", "model_recipe", "register_model", "resolve_fusion_config",
    "Fusion", "FusionConfig", "FusionOutput", "gate_usage",
    "LateFusion", "LateFusionConfig", "EarlyConcat", "EarlyConcatConfig", "ModalityAttention", "ModalityAttentionConfig",
    "CrossAttention", "CrossAttentionConfig", "MulT", "MulTConfig", "AdaMMLGate", "AdaMMLConfig",
    "ContextualLSTM", "ContextualLSTMConfig", "AdaMMLContext", "AdaMMLContextConfig", "MCTN", "MCTNConfig",
    "HeadOutput", "HeadSpec", "LossConfig", "PredictionHead", "compute_loss", "head_spec_for",
    "ModelConfig", "ModelOutput", "MultimodalModel", "build_model", "build_model_for", "dataset_dims", "resolve_modality",
]
