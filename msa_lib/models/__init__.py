"""Models: per-modality encoders + a fusion + a prediction head (see ``multimodal``)."""
from msa_lib.models.encoders import (EncodedModality, EncoderConfig, MLPEncoder, ModelInputError, SequenceTransformerEncoder,
                       build_encoder)
from msa_lib.models.fusion import (FUSIONS, AdaMMLGate, CrossAttention, EarlyConcat, Fusion, FusionConfig, FusionOutput,
                     LateFusion, ModalityAttention, MulT, gate_usage)
from msa_lib.models.heads import HeadOutput, HeadSpec, LossConfig, PredictionHead, compute_loss, head_spec_for
from msa_lib.models.multimodal import (MODEL_NAMES, MODEL_REGISTRY, ModelConfig, ModelOutput, ModelRecipe, MultimodalModel,
                         build_model, build_model_for, dataset_dims, register_model, resolve_modality)

__all__ = [
    "EncodedModality", "EncoderConfig", "MLPEncoder", "ModelInputError", "SequenceTransformerEncoder", "build_encoder",
    "FUSIONS", "AdaMMLGate", "CrossAttention", "EarlyConcat", "Fusion", "FusionConfig", "FusionOutput", "LateFusion",
    "ModalityAttention", "MulT", "gate_usage",
    "HeadOutput", "HeadSpec", "LossConfig", "PredictionHead", "compute_loss", "head_spec_for",
    "MODEL_NAMES", "MODEL_REGISTRY", "ModelConfig", "ModelOutput", "ModelRecipe", "MultimodalModel", "build_model",
    "build_model_for", "dataset_dims", "register_model", "resolve_modality",
]
