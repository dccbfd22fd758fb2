"""Few-shot sampling (stratified, seeded, nested over k) and text-only target data through a trimodal model."""
import numpy as np
import pytest
import torch

from msa_lib.studies.fewshot import few_shot_training_set, stratified_sample
from msa_lib.data.labels import BINARY_SCHEME
from msa_lib.data.schema import DatasetMeta, ModalitySpec, MultimodalDataset, concat
from msa_lib.models import ModelConfig, build_model


def test_sampler_is_stratified():
    labels = np.array([1] * 700 + [0] * 300)
    idx = stratified_sample(labels, 10, seed=3)
    assert len(idx) == 100
    assert (labels[idx] == 1).sum() == 70 and (labels[idx] == 0).sum() == 30
    assert len(np.unique(idx)) == len(idx)
    # tiny k still draws every class; unknown labels are never drawn
    labels2 = np.array([1] * 50 + [0] * 10 + [-1] * 5)
    small = stratified_sample(labels2, 1, seed=0)
    assert set(labels2[small]) == {0, 1}
    assert (labels2[stratified_sample(labels2, 100, seed=0)] >= 0).all()


def test_sampler_is_seeded_and_nested():
    labels = np.random.default_rng(0).integers(0, 2, 500)
    assert np.array_equal(stratified_sample(labels, 5, seed=7), stratified_sample(labels, 5, seed=7))
    assert not np.array_equal(stratified_sample(labels, 5, seed=7), stratified_sample(labels, 5, seed=8))
    small, large = stratified_sample(labels, 5, seed=7), stratified_sample(labels, 50, seed=7)
    assert set(small) <= set(large)
    assert len(stratified_sample(labels, 0, seed=7)) == 0
    with pytest.raises(ValueError):
        stratified_sample(labels, 101)


def _datasets():
    rng = np.random.default_rng(0)
    n_src, n_tgt = 12, 40
    spec = lambda d: ModalitySpec(d, level="utterance")  # noqa: E731
    src_meta = DatasetMeta("src", {"text": spec(6), "audio": spec(4), "vision": spec(5)}, BINARY_SCHEME)
    src = MultimodalDataset.build(src_meta, [f"s{i}" for i in range(n_src)],
                                  {m: list(rng.normal(size=(n_src, d)).astype(np.float32)) for m, d in (("text", 6), ("audio", 4), ("vision", 5))},
                                  split=["train"] * 8 + ["valid"] * 4, labels=rng.integers(0, 2, n_src))
    tgt_meta = DatasetMeta("tgt", {"text": spec(6)}, BINARY_SCHEME)
    tgt = MultimodalDataset.build(tgt_meta, [f"t{i}" for i in range(n_tgt)], {"text": list(rng.normal(size=(n_tgt, 6)).astype(np.float32))},
                                  split=["train"] * 30 + ["test"] * 10, language="zh", labels=[1, 0] * 20)
    return src, tgt


def test_rehearsal_and_target_only_sets():
    src, tgt = _datasets()
    mixed = few_shot_training_set(src, tgt, 20, seed=0, method="rehearsal", repeat_target=2)
    assert (mixed.split == "train").all()
    assert (mixed.language == "zh").sum() == 2 * 6 and (mixed.language == "en").sum() == 8
    assert mixed.lengths("audio")[mixed.language == "zh"].max() == 0  # target rows: audio absent
    only = few_shot_training_set(src, tgt, 20, seed=0, method="target_only")
    assert len(only) == 6 and (only.language == "zh").all()
    with pytest.raises(ValueError):
        few_shot_training_set(src, tgt, 0, method="target_only")


def test_text_only_batch_through_trimodal_model():
    src, tgt = _datasets()
    both = concat([src, tgt])
    model = build_model("early_concat", {"text": 6, "audio": 4, "vision": 5}, ModelConfig(encoder="mlp", modality_dropout=0.5),
                        BINARY_SCHEME)
    from msa_lib.data.torch_data import make_loader

    batch = next(iter(make_loader(both.subset(both.language == "zh"), ["text", "audio", "vision"], batch_size=8)))
    assert not batch["present"]["audio"].any() and batch["present"]["text"].all()
    for mode in (model.train, model.eval):
        mode()
        out = model(batch)
        assert out.logits["2"].shape == (8, 2) and torch.isfinite(out.logits["2"]).all()
    # a batch without the audio/vision keys at all works too
    text_only = {k: ({"text": v["text"]} if isinstance(v, dict) else v) for k, v in batch.items()}
    model.eval()
    assert torch.allclose(model(text_only).logits["2"], model(batch).logits["2"], atol=1e-6)


def test_few_shot_continues_at_scaled_learning_rate(monkeypatch):
    from msa_lib.studies import crosslingual as xl

    src, tgt = _datasets()
    src.split = np.array(["train"] * 6 + ["valid"] * 3 + ["test"] * 3, dtype=object)
    tgt = xl.with_absent(tgt, src)
    base = xl.ExperimentConfig().with_training(lr=2e-3, batch_size=4, max_epochs=1)
    model = xl.build_crosslingual_model(src, base)
    source_fit = xl.FitResult(model, xl.CrossLingualObjective(model, base.nce), None, 0, 0.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []
    real_fit = xl.fit_crosslingual
    monkeypatch.setattr(xl, "fit_crosslingual", lambda *a, **k: seen.append(a[3].train.lr) or real_fit(*a, **k))
    rows = xl.run_few_shot(source_fit, src, tgt, 20, 0, "rehearsal", base, epochs=1, lr_scale=0.25)
    assert seen == [pytest.approx(5e-4)]
    assert {r["eval_set"] for r in rows} >= {"mosi_test", "zh_test"}  # scored on both languages
    # the source model itself is left untouched (training ran on a copy)
    assert all(torch.equal(before[k], v) for k, v in source_fit.model.state_dict().items())
    with pytest.raises(ValueError, match="lr_scale"):
        xl.run_few_shot(source_fit, src, tgt, 20, 0, "rehearsal", base, epochs=1, lr_scale=0)


@pytest.mark.parametrize("fusion", ["mctn_hierarchical", "contextual_lstm", "adamml_context"])
def test_seed_paper_models_as_the_cross_lingual_source_model(monkeypatch, fusion):
    """Notebook 04's zoo rows: the contextual models train and score on video batches (MOSI videos as
    context, each Chinese review a video of its own); MCTN trains without modality dropout and
    predicts the text-only reviews from its source alone; both languages get scored."""
    from msa_lib.studies import crosslingual as xl

    src, tgt = _datasets()
    src.group = np.array([f"video_{i // 3}" for i in range(len(src))], dtype=object)  # 4 videos of 3 utterances
    src.split = np.array(["train"] * 6 + ["valid"] * 3 + ["test"] * 3, dtype=object)
    tgt = xl.with_absent(tgt, src)
    base = xl.ExperimentConfig().with_training(lr=2e-3, batch_size=4, max_epochs=1)
    cfg = xl.zoo_config(base, fusion)
    assert cfg.fusion == fusion and cfg.modality_dropout == (0.0 if fusion.startswith("mctn") else base.modality_dropout)
    with pytest.raises(ValueError):
        xl.zoo_config(base, "no_such_model")
    by_video = []
    real_loader = xl.make_loader
    monkeypatch.setattr(xl, "make_loader", lambda *a, **k: by_video.append(k["by_video"]) or real_loader(*a, **k))
    rows, fit = xl.run_zero_shot(f"source_only_{fusion}", xl.NCEConfig(), src, tgt, 0, cfg)
    assert set(by_video) == {fit.model.uses_video_context} and fit.model.fusion.__class__.__name__ != "EarlyConcat"
    assert {r["eval_set"] for r in rows} >= {"mosi_test", "zh_test"}
    assert all(0.0 <= r["acc"] <= 1.0 for r in rows)
