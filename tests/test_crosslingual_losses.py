"""Contrastive losses: InfoNCE against a value computed by hand, and the cross-lingual / inter-modal
objective on a small trimodal model (gradients flow, conditioning changes the representation)."""
import math

import numpy as np
import pytest
import torch

from msa_lib.train.contrastive import CrossLingualObjective, NCEConfig, info_nce, info_nce_with_candidates
from msa_lib.data.labels import BINARY_SCHEME
from msa_lib.data.torch_data import collate
from msa_lib.models import ModelConfig, build_model


def test_info_nce_equals_hand_computed_value():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # cosine: a0.p0 = 1, a0.p1 = 1/sqrt2, a1.p0 = 0, a1.p1 = 1/sqrt2
    t = 0.5
    s = 1 / math.sqrt(2)
    # row 0: -log(e^{1/t} / (e^{1/t} + e^{s/t})); row 1: -log(e^{s/t} / (e^{0} + e^{s/t}))
    row0 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + math.exp(s / t)))
    row1 = -math.log(math.exp(s / t) / (1.0 + math.exp(s / t)))
    expected_one_way = (row0 + row1) / 2
    assert float(info_nce(a, p, temperature=t, symmetric=False)) == pytest.approx(expected_one_way, rel=1e-5)
    # the other direction: columns of the similarity matrix
    col0 = -math.log(math.exp(1 / t) / (math.exp(1 / t) + 1.0))
    col1 = -math.log(math.exp(s / t) / (math.exp(s / t) + math.exp(s / t)))
    expected = 0.5 * (expected_one_way + (col0 + col1) / 2)
    assert float(info_nce(a, p, temperature=t)) == pytest.approx(expected, rel=1e-5)


def test_candidates_form_reduces_to_in_batch_nce():
    torch.manual_seed(0)
    a, p = torch.randn(5, 8), torch.randn(5, 8)
    cands = p.unsqueeze(0).expand(5, 5, 8)
    assert float(info_nce_with_candidates(a, cands, 0.2)) == pytest.approx(float(info_nce(a, p, 0.2, symmetric=False)), rel=1e-5)


def test_bad_shapes_and_settings_raise():
    with pytest.raises(ValueError):
        info_nce(torch.zeros(3, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError):
        NCEConfig(condition="smell")
    with pytest.raises(ValueError):
        NCEConfig(temperature=0)


DIMS = {"text": 6, "audio": 4, "vision": 5}


def _batch(n=6, text_only=(), seed=0):
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        feats = {m: rng.normal(size=(1, d)).astype(np.float32) for m, d in DIMS.items()}
        feats["text_tr"] = feats["text"] + 0.1 * rng.normal(size=(1, 6)).astype(np.float32)
        if i in text_only:
            feats["audio"], feats["vision"] = np.zeros((0, 4), np.float32), np.zeros((0, 5), np.float32)
        items.append({"features": feats, "label": i % 2, "score": float("nan"), "id": f"s{i}", "language": "en",
                      "raw_text": "", "dims": {**DIMS, "text_tr": 6}})
    return collate(items)


@pytest.mark.parametrize("condition", ["none", "audio", "vision", "both"])
def test_objective_runs_and_backpropagates(condition):
    torch.manual_seed(0)
    model = build_model("early_concat", DIMS, ModelConfig(encoder="mlp", modality_dropout=0.3), BINARY_SCHEME)
    cfg = NCEConfig(cross_lingual_weight=0.5, condition=condition, inter_modal_weight=0.2, translation_task_weight=1.0)
    objective = CrossLingualObjective(model, cfg)
    model.train()
    parts = objective(model, _batch(text_only=(4, 5)), BINARY_SCHEME)
    assert set(parts.parts) >= {"task", "task_tr", "nce_xl", "nce_im"}
    parts.total.backward()
    assert model.encoders["text"].net[0].weight.grad is not None
    assert objective.fused_projection[0].weight.grad is not None
    assert model.config.modality_dropout == 0.3  # restored after the NCE views


def test_conditioning_uses_the_conditioning_modality():
    torch.manual_seed(0)
    model = build_model("early_concat", DIMS, ModelConfig(encoder="mlp", dropout=0.0), BINARY_SCHEME).eval()
    batch = _batch()
    losses = {}
    for condition in ("none", "audio"):
        objective = CrossLingualObjective(model, NCEConfig(cross_lingual_weight=1.0, condition=condition))
        torch.manual_seed(1)
        objective.fused_projection.apply(lambda m: m.reset_parameters() if hasattr(m, "reset_parameters") else None)
        with torch.no_grad():
            losses[condition] = float(objective.cross_lingual_loss(model, batch))
    assert losses["none"] != pytest.approx(losses["audio"])
