"""Interpretability: attention weights, Captum attributions, their comparison, and the attention explorer.

- :mod:`.attention` — named attention maps of a model, row-sum checks, attention-based importance
  (received attention, rollout);
- :mod:`.attribution` — ``FeatureAblation`` per modality, ``IntegratedGradients`` on feature
  sequences (per named feature group and time step), ``LayerIntegratedGradients`` on the text
  encoder's embedding layer (token attributions with the convergence delta), rank correlations;
- :mod:`.plots` — pure plotting functions; :mod:`.explorer` — precomputed explanation bundles and the
  explorer figure; :mod:`.widgets` — the ipywidgets explorer around it;
- :mod:`.setups` — the MOSI and RAVDESS setups that notebook 06 explains.
"""
from msa_lib.explain.attention import (AttentionKey, AttentionKeyError, attention_maps, attention_received, attention_rollout,
                        directions, head_select, parse_key, query_key_masks, row_sum_errors, token_importance)
from msa_lib.explain.attribution import (AttributionError, SequenceAttribution, TokenAttribution, TokenAttributor, group_time_attribution,
                          group_totals, integrated_gradients, modality_ablation, modality_ablation_loader,
                          prediction_target, spearman, summarize_correlations, token_frame)
from msa_lib.explain.explorer import ExplainedSample, ExplanationBundle, build_bundle, explorer_figure

__all__ = [
    "AttentionKey", "AttentionKeyError", "attention_maps", "attention_received", "attention_rollout", "directions",
    "head_select", "parse_key", "query_key_masks", "row_sum_errors", "token_importance",
    "AttributionError", "SequenceAttribution", "TokenAttribution", "TokenAttributor", "group_time_attribution",
    "group_totals", "integrated_gradients", "modality_ablation", "modality_ablation_loader", "prediction_target",
    "spearman", "summarize_correlations", "token_frame",
    "ExplainedSample", "ExplanationBundle", "build_bundle", "explorer_figure",
]
