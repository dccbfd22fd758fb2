"""Attention maps, Captum attributions and the explorer on tiny models with known answers."""
import copy

import numpy as np
import pytest
import torch

from dataset_factory import make_dataset
from msa_lib.data.torch_data import make_loader
from msa_lib.models import ModelConfig, build_model
from msa_lib.explain import attention as A
from msa_lib.explain import attribution as X
from msa_lib.explain import explorer as E

torch.set_num_threads(1)
TINY = ModelConfig(encoder_overrides={"hidden": 16, "layers": 2, "heads": 2},
                   fusion={"dim": 16, "heads": 2, "mult": {"width": 8, "layers": 1}, "adamml": {"windows": 2}})



def batch_of(ds, n=8):
    return next(iter(make_loader(ds, None, batch_size=n)))


def with_gaps(batch):
    """Audio absent for samples 0 and 2, three masked garbage steps appended to every modality."""
    b = copy.deepcopy(batch)
    for i in (0, 2):
        b["present"]["audio"][i] = False
        b["mask"]["audio"][i] = False
    g = torch.Generator().manual_seed(0)
    for m, x in batch["x"].items():
        b["x"][m] = torch.cat([b["x"][m], torch.randn(x.shape[0], 3, x.shape[2], generator=g) * 50], 1)
        b["mask"][m] = torch.cat([b["mask"][m], torch.zeros(x.shape[0], 3, dtype=torch.bool)], 1)
    return b


def model(name, dims, scheme, seed=0):
    torch.manual_seed(seed)
    return build_model(name, dims, TINY, label_scheme=scheme).eval()


# ---------------------------------------------------------------------------------------------- attention
@pytest.mark.parametrize("name", ["cross_attention", "mult", "modality_attention", "early_concat"])
def test_attention_rows_sum_to_one_over_unmasked_keys(name, data, dims):
    m = model(name, dims, data.meta.labels)
    batch = with_gaps(batch_of(data))
    att, _ = A.attention_maps(m, batch)
    assert att, "the model returned no attention maps"
    for key, w in att.items():
        k = A.parse_key(key)
        qm, km = A.query_key_masks(k, batch, m.modalities)
        errors = A.row_sum_errors(w, qm, km)
        assert max(errors.values()) < 1e-5, (key, errors)
        real = qm & km.any(1, keepdim=True)
        if real.any():  # real rows really sum to one (not all zero)
            sums = (w * km[:, None, None, :]).sum(-1)
            assert torch.allclose(sums.permute(0, 2, 1)[real], torch.ones_like(sums.permute(0, 2, 1)[real]), atol=1e-5)
    if name == "cross_attention":  # the absent audio of sample 0 receives and sends nothing
        assert float(att["cross/text->audio"][0].abs().sum()) == 0.0
        assert float(att["cross/audio->text"][0].abs().sum()) == 0.0


def test_parse_key_and_directions():
    assert A.parse_key("text/layer3") == A.AttentionKey("text/layer3", "self", "text", "text", 3)
    assert A.parse_key("cross/audio->text").direction == "audio → text (cross-attention)"
    k = A.parse_key("mult/text->vision/layer1")
    assert (k.kind, k.query, k.key, k.layer) == ("mult", "text", "vision", 1)
    assert A.parse_key("mult/audio/self/layer0").kind == "mult_self"
    assert A.parse_key("modality").kind == "modality"
    groups = A.directions(["text/layer1", "text/layer0", "cross/text->audio"])
    assert [k.layer for k in groups["text self-attention"]] == [0, 1]
    with pytest.raises(A.AttentionKeyError, match="matches none"):
        A.parse_key("nonsense")


def test_rollout_and_importance_respect_the_mask():
    rng = np.random.default_rng(0)
    mask = np.array([True, True, True, False])
    layers = []
    for _ in range(3):
        w = rng.random((2, 4, 4)) * mask[None, None, :]
        w = w / w.sum(-1, keepdims=True)
        layers.append(w * mask[None, :, None])
    roll = A.attention_rollout(layers, mask)
    np.testing.assert_allclose(roll[mask].sum(-1), 1.0, atol=1e-6)
    assert np.all(roll[:, ~mask] == 0) and np.all(roll[~mask] == 0)
    imp = A.token_importance({f"text/layer{i}": w for i, w in enumerate(layers)}, "text", mask)
    assert imp[~mask].sum() == 0 and abs(imp.sum() - 1) < 1e-6


# ---------------------------------------------------------------------------------------------- attribution
def deaf_model(dims, scheme):
    """Early fusion whose fusion layer has zero weights on the audio vector and audio presence flag:
    the output cannot depend on audio."""
    m = model("early_concat", dims, scheme)
    lin = m.fusion.net[0]
    start = sum(m.encoders[k].out_dim for k in m.modalities[: m.modalities.index("audio")])
    width = m.encoders["audio"].out_dim
    flag = sum(m.encoders[k].out_dim for k in m.modalities) + m.modalities.index("audio")
    with torch.no_grad():
        lin.weight[:, start:start + width] = 0
        lin.weight[:, flag] = 0
    return m


def test_a_model_that_ignores_audio_gets_zero_audio_contribution(data, dims):
    m = deaf_model(dims, data.meta.labels)
    batch = batch_of(data)
    for mode in ("absent", "baseline"):
        frame = X.modality_ablation(m, batch, mode=mode)
        assert list(frame.columns[:3]) == ["sample_id", "language", "prediction"]
        assert {"text", "audio", "visual"} <= set(frame.columns)
        assert np.abs(frame["audio"]).max() < 1e-6, mode
        assert np.abs(frame["text"]).max() > 1e-4, mode  # text does matter
    ig = X.integrated_gradients(m, batch, ["text", "audio", "vision"], n_steps=16)
    assert np.abs(ig.attributions["audio"]).max() < 1e-7
    assert np.abs(ig.attributions["text"]).sum() > 1e-4


def test_trained_model_learns_to_ignore_an_uninformative_modality():
    """Label carried by text only (audio pure noise): after training, audio contributes far less."""
    from msa_lib.train.trainer import TrainConfig, fit

    ds = make_dataset(n=96, max_len=4, seed=1)
    rng = np.random.default_rng(0)
    ds.features["audio"] = [rng.normal(size=a.shape).astype(np.float32) for a in ds.features["audio"]]
    ds.features["vision"] = [rng.normal(size=a.shape).astype(np.float32) for a in ds.features["vision"]]
    dims = {m: ds.meta.modalities[m].dim for m in ds.modalities}
    cfg = copy.deepcopy(TINY)
    cfg.modality_dropout, cfg.dropout = 0.3, 0.0
    torch.manual_seed(0)
    m = build_model("early_concat", dims, cfg, label_scheme=ds.meta.labels)
    fit(m, make_loader(ds, None, 16, shuffle=True), None, TrainConfig(max_epochs=25, lr=3e-3, monitor="train_loss",
                                                                       progress=False))
    frame = X.modality_ablation_loader(m.eval(), make_loader(ds, None, 32))
    text, audio = frame["text"].abs().mean(), frame["audio"].abs().mean()
    assert audio < 0.25 * text, (text, audio)


def test_integrated_gradients_completeness_and_padding(data, dims):
    m = model("cross_attention", dims, data.meta.labels)
    batch = with_gaps(batch_of(data))
    ig = X.integrated_gradients(m, batch, ["text", "audio", "vision"], n_steps=64)
    total = sum(ig.attributions[k].reshape(len(ig.ids), -1).sum(1) for k in ig.attributions)
    gap = ig.prediction - ig.baseline_prediction
    np.testing.assert_allclose(total - gap, ig.delta, atol=1e-4)
    assert np.abs(ig.delta).max() < 0.05 * max(np.abs(gap).max(), 1e-3)
    for k in ig.attributions:  # padded steps and absent samples get nothing
        assert np.abs(ig.attributions[k][~ig.masks[k]]).max(initial=0.0) == 0.0
    assert np.abs(ig.attributions["audio"][[0, 2]]).max() == 0.0


def test_group_time_attribution_sums():
    attr = np.arange(12, dtype=float).reshape(3, 4)  # T=3, D=4
    names, gt = X.group_time_attribution(attr, {"pitch": [0], "mfcc": [1, 2]})
    assert names == ["pitch", "mfcc", "other"]
    np.testing.assert_allclose(gt[1], attr[:, 1] + attr[:, 2])
    np.testing.assert_allclose(gt.sum(0), attr.sum(1))
    assert X.group_time_attribution(attr, None)[0] == ["all"]
    with pytest.raises(X.AttributionError, match="outside"):
        X.group_time_attribution(attr, {"bad": [7]})


def test_multiclass_target_and_missing_modality():
    from msa_lib.data.labels import LabelScheme

    scheme = LabelScheme("multiclass", None, ("a", "b", "c"))
    ds = make_dataset(n=12, max_len=4)
    ds.meta.labels = scheme
    ds.labels = np.arange(12) % 3
    ds.scores = np.full(12, np.nan)
    dims = {m: ds.meta.modalities[m].dim for m in ds.modalities}
    m = model("cross_attention", dims, scheme)
    text_only = next(iter(make_loader(ds.with_modalities(["text"]), None, batch_size=6)))
    frame = X.modality_ablation(m, text_only)
    assert list(frame.columns) == ["sample_id", "language", "prediction", "text"]
    out = m(text_only)
    np.testing.assert_allclose(frame["prediction"], out.logits["cls"].max(1).values.detach().numpy(), atol=1e-6)


def test_spearman_helpers():
    assert X.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert np.isnan(X.spearman([1, 2], [2, 1]))
    assert np.isnan(X.spearman([1, 1, 1], [1, 2, 3]))
    s = X.summarize_correlations([0.5, -0.1, float("nan")])
    assert s["n"] == 2 and s["share_positive"] == 0.5


# ---------------------------------------------------------------------------------------------- explorer
def test_explorer_bundle_figure_and_widget(data, dims, tmp_path):
    pytest.importorskip("ipywidgets")
    from msa_lib.explain.widgets import AttentionExplorer

    ds = data.subset(np.arange(6))
    for i in range(len(ds)):
        ds.extra[i] = {"tokens": [f"▁w{j}" for j in range(len(ds.features["text"][i]))]}
    m = model("cross_attention", dims, data.meta.labels)
    loader = make_loader(ds, None, batch_size=6)
    contributions = X.modality_ablation_loader(m, loader)
    bundle = E.build_bundle(m, ds, contributions=contributions)
    s = bundle.samples[0]
    assert s.axis_labels["text"][0] == "▁w0" and set(s.contributions) == {"text", "audio", "visual"}
    for key, w in s.attention.items():  # trimmed to real steps
        k = A.parse_key(key)
        assert w.shape[1:] == (len(s.axis_labels[k.query]), len(s.axis_labels[k.key]))
    path = bundle.save(tmp_path / "bundle.pkl")
    again = E.ExplanationBundle.load(path)
    assert again.samples[1].sample_id == bundle.samples[1].sample_id
    E.explorer_figure(again, 1, "text/layer1", head=0)
    explorer = AttentionExplorer(again)
    first = explorer.image.value
    explorer.sample.value = 3
    assert explorer.image.value != first
    assert "s003" in explorer.info.value
    explorer.direction.value = "text self-attention"
    explorer.layer.value = 0
    explorer.head.value = 1
    assert explorer.key == "text/layer0" and explorer.head_index == 1
    with pytest.raises(FileNotFoundError):
        E.ExplanationBundle.load(tmp_path / "missing.pkl")


# ---------------------------------------------------------------------------------------------- tokens (real e5)
@pytest.mark.slow
def test_token_attributions_on_the_embedding_layer():
    """LayerIntegratedGradients through e5's embeddings: the frozen lower layers reproduce the cached
    features, special/prefix tokens get exactly zero, and the convergence delta is small."""
    from msa_lib.data.labels import BINARY_SCHEME
    from msa_lib.extract.text import TextEncoder, TextEncoderConfig
    from msa_lib.data.schema import DatasetMeta, ModalitySpec, MultimodalDataset
    from msa_lib.models.encoders import EncoderConfig

    try:
        enc = TextEncoder(TextEncoderConfig(hidden_layer=11, content_tokens_only=False, max_length=32, show_progress=False))
    except Exception as exc:  # noqa: BLE001 - the bundled e5 copy is part of the environment
        pytest.skip(f"multilingual-e5-small not available: {exc}")
    texts = ["what a wonderful film", "我不想嫁给李茶", "it was boring"]
    seqs, toks = enc.encode_tokens(texts)
    meta = DatasetMeta("t", {"text": ModalitySpec(enc.dim, level="sequence", extractor=enc.settings())}, BINARY_SCHEME)
    ds = MultimodalDataset.build(meta, ["a", "b", "c"], {"text": seqs}, split="test", language=["en", "zh", "en"],
                                 raw_text=texts, labels=[1, 0, 0], extra=[{"tokens": t} for t in toks])
    cfg = ModelConfig(dropout=0.0, encoders={"text": EncoderConfig(kind="pretrained_top", layers=1)})
    torch.manual_seed(0)
    m = build_model("text_only", {"text": enc.dim}, cfg, label_scheme=BINARY_SCHEME).eval()
    attributor = X.TokenAttributor(m, enc.settings(), n_steps=32)
    batch = next(iter(make_loader(ds, None, batch_size=3)))
    tok = attributor.tokenize(texts)
    hidden = attributor.hidden_states(tok["input_ids"], tok["attention"]).detach()
    assert torch.allclose(hidden, batch["x"]["text"], atol=1e-4)
    results = attributor.attribute(batch)
    for r, t in zip(results, toks):
        assert r.tokens == t
        assert np.all(r.scores[~r.content] == 0.0)  # <s>, </s>, "query:" are the same in the baseline
        assert r.content.sum() >= 3
        gap = r.prediction - r.baseline_prediction
        assert abs(r.scores.sum() - gap - r.delta) < 1e-4
        assert abs(r.delta) < 0.1 * abs(gap) + 1e-3, (r.delta, gap)
    zh_tokens, _ = results[1].content_tokens()
    assert "".join(zh_tokens).replace("▁", "") == texts[1]
    frame = X.token_frame(results)
    assert list(frame.columns) == ["sample_id", "language", "position", "token", "attribution"]
    with pytest.raises(X.AttributionError, match="pretrained_top"):
        X.TokenAttributor(model("early_concat", {"text": enc.dim}, BINARY_SCHEME), enc.settings())


# ---------------------------------------------------------------------------------------------- report tables
def test_contribution_summary_and_by_class_match_hand_computed_values():
    import pandas as pd

    contrib = pd.DataFrame({"sample_id": list("abcd"), "text": [2.0, -1.0, 0.5, -3.0],
                            "audio": [1.0, 0.5, -1.0, 0.0], "label": [1, 1, 0, 0]})
    base = contrib.assign(text=[1.0, 2.0, 3.0, 4.0], audio=[4.0, 3.0, 2.0, 1.0])
    table = X.contribution_summary(contrib, ["text", "audio"], base)
    assert table.loc["text", "mean |contribution|"] == pytest.approx(6.5 / 4)
    assert table.loc["audio", "mean contribution (POS label)"] == pytest.approx(0.75)
    assert table.loc["text", "mean contribution (NEG label)"] == pytest.approx(-1.25)
    # |text| is the largest in a, b, d; |audio| in c
    assert table["share of samples where it is the largest"].tolist() == [0.75, 0.25]
    # audio ranks 4 3 1 2 against 4 3 2 1: rho = 1 - 6 * 2 / (4 * 15)
    assert table.loc["audio", "ρ(absent, zero-baseline ablation)"] == pytest.approx(0.8)
    assert "ρ(absent, zero-baseline ablation)" not in X.contribution_summary(contrib, ["text", "audio"]).columns
    by_class = X.contribution_by_class(contrib, ["text", "audio"], ["NEG", "POS"])
    assert list(by_class.index) == ["NEG", "POS", "all"]
    assert by_class.loc["POS", "text"] == pytest.approx(1.5) and by_class.loc["NEG", "audio"] == pytest.approx(0.5)
    assert by_class.loc["all", "audio"] == pytest.approx(0.625)


def test_loader_helpers_concatenate_batches_in_order(data, dims):
    m = model("cross_attention", dims, data.meta.labels)
    loader = make_loader(data, None, batch_size=5)
    parts = X.integrated_gradients_loader(m, loader, ["audio", "vision"], n_steps=8)
    ids = [i for p in parts for i in p.ids]
    assert ids == list(data.ids) and len(parts) == -(-len(data) // 5)
    sums = X.modality_sums(parts, ["audio", "vision"])
    assert list(sums.columns) == ["sample_id", "audio", "visual"] and sums["sample_id"].tolist() == ids
    np.testing.assert_allclose(sums["audio"].iloc[:5], parts[0].attributions["audio"].reshape(5, -1).sum(1), rtol=1e-6)
    rel = X.relative_deltas(parts)
    gap = np.concatenate([p.prediction - p.baseline_prediction for p in parts])
    np.testing.assert_allclose(rel * np.maximum(np.abs(gap), 1e-6), np.abs(np.concatenate([p.delta for p in parts])))
    totals = X.group_totals(parts, "audio", {"first": [0]})
    assert totals["sample_id"].tolist() == ids and set(totals.columns) == {"sample_id", "first", "other"}
    by_sample = X.group_time_by_sample(parts, "audio", {"first": [0]}, 0.04)
    names, values, step = by_sample[ids[0]]["audio"]
    assert names == ["first", "other"] and step == 0.04 and values.shape[1] == parts[0].masks["audio"][0].sum()
    contrib = X.with_predictions(X.modality_ablation_loader(m, loader), m, loader)
    assert contrib["sample_id"].tolist() == ids
    np.testing.assert_array_equal(contrib["label"], data.labels)
    assert set(contrib["predicted"].unique()) <= {0, 1}


def test_frame_attention_agreement_pairs_samples_by_id():
    from types import SimpleNamespace

    attr = np.zeros((2, 4, 2), np.float32)
    attr[0, :, 0] = [1, 2, 3, 4]  # sample "a": |IG| per frame rises
    attr[1, :, 0] = [4, 3, 2, 1]  # sample "b": falls
    parts = [X.SequenceAttribution(["a", "b"], {"audio": attr}, {"audio": np.ones((2, 4), bool)},
                                   np.zeros(2), np.zeros(2), np.zeros(2))]
    rising = np.tile(np.array([0.1, 0.2, 0.3, 0.4]), (1, 3, 1))  # heads x Tq x Tk: frame 3 receives most
    samples = [SimpleNamespace(sample_id="b", attention={"cross/text->audio": rising}),
               SimpleNamespace(sample_id="a", attention={"cross/text->audio": rising}),
               SimpleNamespace(sample_id="c", attention={})]  # no map: skipped
    rho = X.frame_attention_agreement(samples, parts, "cross/text->audio", "audio")
    assert rho == pytest.approx([-1.0, 1.0])
    orphan = [SimpleNamespace(sample_id="d", attention={"cross/text->audio": rising})]  # map, but no IG
    with pytest.raises(X.AttributionError, match="no integrated gradients"):
        X.frame_attention_agreement(orphan, parts, "cross/text->audio", "audio")
