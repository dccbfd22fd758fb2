"""Encoders, fusions, heads and the model registry on small synthetic batches."""
import copy
import json
from dataclasses import asdict, dataclass

import pytest
import torch

from dataset_factory import make_dataset
from msa_lib.data.labels import BINARY_SCHEME, LabelScheme
from msa_lib.data.torch_data import make_loader
from msa_lib.data.schema import DatasetMeta, ModalitySpec, MultimodalDataset
from msa_lib.models import (MODEL_NAMES, MODEL_REGISTRY, EncoderConfig, Fusion, FusionConfig, FusionOutput, HeadOutput,
                            HeadSpec, LateFusion, LateFusionConfig, ModelConfig, ModelInputError, MulTConfig, build_encoder,
                            build_model, build_model_for, compute_loss, register_model)
from msa_lib.models.fusion import window_membership

torch.set_num_threads(1)
FUSION_NAMES = [n for n in MODEL_NAMES if not n.endswith("_only")]
TINY = ModelConfig(encoder_overrides={"hidden": 16, "layers": 1, "heads": 2},
                   fusion={"dim": 16, "heads": 2, "mult": {"width": 8, "layers": 1}, "adamml": {"windows": 3}})



def first_batch(ds, n=8, modalities=None):
    return next(iter(make_loader(ds, modalities, batch_size=n)))


def partial(batch):
    """Audio absent for every other sample, vision absent for sample 1."""
    b = copy.deepcopy(batch)
    b["present"]["audio"][::2] = False
    b["mask"]["audio"][::2] = False
    b["present"]["vision"][1] = False
    b["mask"]["vision"][1] = False
    return b


def padded(batch, extra=3, seed=0):
    """The same batch with ``extra`` garbage steps appended (masked) to every modality."""
    g = torch.Generator().manual_seed(seed)
    b = copy.deepcopy(batch)
    for m, x in batch["x"].items():
        junk = torch.randn(x.shape[0], extra, x.shape[2], generator=g) * 100
        b["x"][m] = torch.cat([x, junk], 1)
        b["mask"][m] = torch.cat([batch["mask"][m], torch.zeros(x.shape[0], extra, dtype=torch.bool)], 1)
    return b


def model(name, dims, scheme=None, config=TINY, seed=0):
    torch.manual_seed(seed)
    return build_model(name, dims, config, label_scheme=scheme or make_dataset(n=4).meta.labels)


# ---------------------------------------------------------------------------------------------- forward/backward
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward_with_masks_and_partial_modalities(name, data, dims):
    batch = partial(first_batch(data))
    net = model(name, dims, data.meta.labels)
    out = net(batch)
    assert out.score.shape == (8,) and set(out.logits) == {"2", "3", "5"}
    assert all(v.shape == (8, int(k)) for k, v in out.logits.items())
    assert out.fused.shape[0] == 8 and torch.isfinite(out.fused).all()
    loss = compute_loss(out, batch, data.meta.labels)
    assert torch.isfinite(loss.total) and loss.n_targets == 8
    loss.total.backward()
    grads = [p.grad for p in net.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_padding_does_not_change_outputs(name, data, dims):
    batch = partial(first_batch(data))
    net = model(name, dims).eval()
    with torch.no_grad():
        a, b = net(batch), net(padded(batch))
    torch.testing.assert_close(a.score, b.score, atol=1e-5, rtol=0)
    for k in a.logits:
        torch.testing.assert_close(a.logits[k], b.logits[k], atol=1e-5, rtol=0)
    torch.testing.assert_close(a.fused, b.fused, atol=1e-5, rtol=0)


def _attention_masks(name, batch, modalities):
    """(query mask, key mask) for an attention entry name."""
    mask = batch["mask"]
    if name == "modality":
        present = torch.stack([batch["present"][m] for m in modalities], 1)
        return present, present
    if name.startswith("cross/") or (name.startswith("mult/") and "->" in name):
        q, k = name.split("/")[1].split("->")
        return mask[q], mask[k]
    m = name.split("/")[1] if name.startswith("mult/") else name.split("/")[0]
    return mask[m], mask[m]


@pytest.mark.parametrize("name", ["early_concat", "modality_attention", "cross_attention", "mult"])
def test_attention_rows_sum_to_one_over_real_keys(name, data, dims):
    batch = partial(first_batch(data))
    net = model(name, dims).eval()
    with torch.no_grad():
        out = net(batch, return_attention=True)
    expected_prefix = {"modality_attention": "modality", "cross_attention": "cross/", "mult": "mult/"}.get(name)
    if expected_prefix:
        assert any(k.startswith(expected_prefix) for k in out.attention)
    assert any(k.endswith("/layer0") and k.split("/")[0] in dims for k in out.attention)
    for key, w in out.attention.items():
        q_mask, k_mask = _attention_masks(key, batch, net.modalities)
        assert w.shape[0] == 8 and w.shape[2] == q_mask.shape[1] and w.shape[3] == k_mask.shape[1], key
        assert w.shape[1] == 2, key  # heads
        real_rows = q_mask & k_mask.any(1, keepdim=True)  # B x Tq: queries that have something to attend to
        sums = w.sum(-1)  # B x heads x Tq
        torch.testing.assert_close(sums.permute(0, 2, 1)[real_rows], torch.ones_like(sums.permute(0, 2, 1)[real_rows]))
        assert (sums.permute(0, 2, 1)[~real_rows] == 0).all(), key  # padded queries / no keys: zero rows
        assert (w * (~k_mask)[:, None, None, :]).abs().max() == 0, key  # padded keys get no weight


def test_no_attention_unless_asked(data, dims):
    out = model("mult", dims)(first_batch(data))
    assert out.attention == {}


# ---------------------------------------------------------------------------------------------- AdaMML
def test_adamml_gates_are_hard_and_respect_absent_modalities(data, dims):
    batch = partial(first_batch(data))
    net = model("adamml", dims)
    net.train()
    train_gates = net(batch).gates
    assert set(torch.unique(train_gates).tolist()) <= {0.0, 1.0}  # straight-through: hard in training too
    net.eval()
    net.reset_state()
    with torch.no_grad():
        out = net(batch)
    gates = out.gates
    assert gates.shape == (8, 3, 3)
    assert set(torch.unique(gates).tolist()) <= {0.0, 1.0}
    audio = net.modalities.index("audio")
    assert (gates[::2, :, audio] == 0).all()  # absent audio is never used
    assert out.aux_loss is not None and torch.isfinite(out.aux_loss)
    util = net.utilization()
    assert set(util) == set(dims) and all(0.0 <= v <= 1.0 for v in util.values())
    tau = net.fusion.tau
    net.on_epoch_end()
    assert net.fusion.tau < tau


def test_adamml_decisions_can_skip(data, dims):
    net = model("adamml", dims).eval()
    with torch.no_grad():
        net.fusion.policy_out.bias.view(-1, 2)[:, 1] = -50.0  # policy says skip everything
        out = net(first_batch(data))
    assert (out.gates == 0).all() and torch.isfinite(out.score).all()
    assert all(v == 0 for v in net.utilization().values())


def test_window_membership_is_proportional_and_padding_free():
    mask = torch.tensor([[True] * 8 + [False] * 2, [True, True, False, False, False, False, False, False, False, False],
                         [False] * 10])
    member = window_membership(mask, 4)
    assert member.shape == (3, 4, 10)
    assert member[0].sum(-1).tolist() == [2, 2, 2, 2]  # 8 real steps in 4 windows
    assert (member[1].sum(-1) >= 1).all()  # a short sequence repeats steps rather than leave windows empty
    assert member[2].sum() == 0 and member[:, :, 8:].sum() == 0


# ---------------------------------------------------------------------------------------------- absent modalities
def _text_only_dataset(n=6):
    import numpy as np

    rng = np.random.default_rng(1)
    meta = DatasetMeta("zh_text", {"text": ModalitySpec(6)}, BINARY_SCHEME)
    return MultimodalDataset.build(meta, [f"z{i}" for i in range(n)], {"text": [rng.normal(size=(3, 6)) for _ in range(n)]},
                                   language="zh", labels=[i % 2 for i in range(n)])


@pytest.mark.parametrize("name", FUSION_NAMES)
def test_text_only_batch_through_trimodal_model(name, dims):
    batch = first_batch(_text_only_dataset(), n=6)
    assert set(batch["x"]) == {"text"}
    net = model(name, dims, BINARY_SCHEME)
    out = net(batch)
    assert torch.isfinite(out.score).all() and all(torch.isfinite(v).all() for v in out.logits.values())
    loss = compute_loss(out, batch, BINARY_SCHEME)
    loss.total.backward()
    net.eval()
    with torch.no_grad():
        a = net(batch)
        b = net(padded(batch))
    torch.testing.assert_close(a.logits["2"], b.logits["2"], atol=1e-5, rtol=0)
    if name.startswith("late"):  # the decision is the text head's alone
        text_prob = a.per_modality["text"].logits["2"].softmax(-1)
        assert (a.logits["2"].argmax(1) == text_prob.argmax(1)).all()


def test_absent_modality_equals_missing_key(data, dims):
    """Marking audio absent gives the same output as not having audio in the batch at all."""
    batch = first_batch(data)
    absent = copy.deepcopy(batch)
    absent["present"]["audio"][:] = False
    absent["mask"]["audio"][:] = False
    absent["x"]["audio"] = torch.randn_like(absent["x"]["audio"]) * 50  # ignored
    missing = copy.deepcopy(batch)
    for key in ("x", "mask", "present", "lengths"):
        del missing[key]["audio"]
    for name in ("early_concat", "cross_attention", "mult", "adamml", "modality_attention"):
        net = model(name, dims).eval()
        with torch.no_grad():
            torch.testing.assert_close(net(absent).score, net(missing).score, atol=1e-5, rtol=0)


def test_modality_dropout_never_drops_everything(data, dims):
    cfg = copy.deepcopy(TINY)
    cfg.modality_dropout = 0.99
    net = model("early_concat", dims, config=cfg).train()
    batch = partial(first_batch(data))
    torch.manual_seed(0)
    _, masks, present = net._inputs(batch)
    kept = torch.stack([present[m] for m in net.modalities], 1)
    assert (kept.sum(1) >= 1).all() and kept.sum() < 3 * 8
    for m in net.modalities:  # a dropped modality is masked, and never resurrected
        assert not masks[m][~present[m]].any()
        assert not present[m][~batch["present"][m]].any()
    net.eval()
    _, _, present = net._inputs(batch)
    assert all(torch.equal(present[m], batch["present"][m] & batch["mask"][m].any(1)) for m in net.modalities)


# ---------------------------------------------------------------------------------------------- late fusion rules
class _Fixed(torch.nn.Module):
    def __init__(self, probs, score):
        super().__init__()
        self.probs, self.score = torch.tensor(probs), torch.tensor(score)

    def forward(self, pooled, valid=None):
        logits = self.probs.log()
        return HeadOutput(self.score, {"2": logits}, valid)


def _late(mode, probs, scores):
    fusion = LateFusion({"a": 2, "b": 2, "c": 2}, LateFusionConfig(mode=mode), HeadSpec(class_sets=(2,)))
    fusion.heads = torch.nn.ModuleDict({m: _Fixed(p, s) for m, p, s in zip("abc", probs, scores)})
    return fusion


def _encoded(present):
    from msa_lib.models import EncodedModality

    out = {}
    for m, p in zip("abc", present):
        p = torch.tensor(p)
        out[m] = EncodedModality(torch.zeros(len(p), 1, 2), p[:, None], torch.zeros(len(p), 2), p)
    return out


def test_late_fusion_vote_and_average():
    # sample 0: a and b say NEG weakly, c says POS strongly; sample 1: c absent, a POS / b NEG: a tie
    probs = [[[0.6, 0.4], [0.2, 0.8]], [[0.6, 0.4], [0.7, 0.3]], [[0.01, 0.99], [0.01, 0.99]]]
    scores = [[-0.5, 1.0], [-0.2, -1.5], [2.5, 3.0]]
    enc = _encoded([[True, True], [True, True], [True, False]])
    vote = _late("vote", probs, scores)(enc).prediction
    avg = _late("avg", probs, scores)(enc).prediction
    assert vote.logits["2"].argmax(1).tolist() == [0, 1]  # majority NEG; tie broken by mean prob (0.55 POS)
    assert avg.logits["2"].argmax(1).tolist() == [1, 1]  # mean prob of POS 0.597 and 0.55
    torch.testing.assert_close(avg.logits["2"].exp()[0, 1], torch.tensor((0.4 + 0.4 + 0.99) / 3))
    torch.testing.assert_close(avg.score, torch.tensor([(-0.5 - 0.2 + 2.5) / 3, (1.0 - 1.5) / 2]))
    torch.testing.assert_close(vote.score, torch.tensor([-0.2, (1.0 - 1.5) / 2]))  # median of present


# ---------------------------------------------------------------------------------------------- encoders, heads, registry
def test_encoder_seed_defaults_and_choice():
    text = build_encoder("text", 384)
    audio = build_encoder("audio", 74)
    assert text.out_dim == 256 and len(text.layers) == 4 and text.layers[0].attn.num_heads == 8
    assert audio.out_dim == 128 and len(audio.layers) == 2 and audio.layers[0].attn.num_heads == 4
    assert text.layers[0].drop.p == 0.3
    mlp = build_encoder("text_cnn", 100, "mlp")
    assert type(mlp).__name__ == "MLPEncoder" and mlp.out_dim == 256
    custom = build_encoder("vision", 35, EncoderConfig(hidden=32, layers=0))
    x, mask = torch.randn(2, 5, 35), torch.ones(2, 5, dtype=torch.bool)
    seq, m, pooled = custom(x, mask)
    assert seq.shape == (2, 5, 32) and pooled.shape == (2, 32) and m is mask


def test_stats_encoder_pools_mean_and_std_of_real_frames_only():
    enc = build_encoder("audio", 3, EncoderConfig(kind="stats", hidden=4, dropout=0.0)).eval()
    x = torch.tensor([[[1.0, 2.0, 0.0], [3.0, 2.0, 4.0], [99.0, 99.0, 99.0]]])  # last frame is padding
    mask = torch.tensor([[True, True, False]])
    out = enc(x, mask)
    # by hand: mean (2, 2, 2), population std (1, 0, 2) of the two real frames
    expected = enc.net(torch.tensor([[2.0, 2.0, 2.0, 1.0, 0.0, 2.0]]))
    assert torch.allclose(out.pooled, expected, atol=1e-3)
    assert out.sequence.shape == (1, 1, 4) and out.present.tolist() == [True]
    absent = enc(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.bool))
    assert absent.pooled.abs().sum() == 0 and absent.present.tolist() == [False]


def test_per_modality_encoder_by_name(dims):
    cfg = copy.deepcopy(TINY)
    cfg.encoders = {"audio": "mlp"}
    net = build_model("early_concat", dims, cfg)
    assert type(net.encoders["audio"]).__name__ == "MLPEncoder"
    assert type(net.encoders["text"]).__name__ == "SequenceTransformerEncoder"


def test_multiclass_head():
    scheme = LabelScheme("multiclass", None, ("neutral", "calm", "happy", "sad"))
    ds = make_dataset(n=8, scheme=BINARY_SCHEME)
    ds.meta.labels = scheme
    ds.labels[:] = [0, 1, 2, 3, 0, 1, -1, 3]
    net = build_model("late_avg", {m: ds.meta.modalities[m].dim for m in ds.modalities}, TINY, label_scheme=scheme)
    batch = first_batch(ds)
    out = net(batch)
    assert set(out.logits) == {"cls"} and out.logits["cls"].shape == (8, 4)
    loss = compute_loss(out, batch, scheme)
    assert loss.n_targets == 7
    loss.total.backward()


def test_unknown_targets_are_ignored(data, dims):
    batch = first_batch(data)
    batch["score"][:] = float("nan")
    batch["label"][:] = -1
    net = model("early_concat", dims)
    loss = compute_loss(net(batch), batch, data.meta.labels)
    assert float(loss.total.detach()) == 0.0 and loss.n_targets == 0
    loss.total.backward()  # still a valid graph


def test_registry_and_modality_resolution():
    dims = {"text_cnn": 100, "audio": 73, "vision": 100}
    assert build_model("text_only", dims, TINY).modalities == ["text_cnn"]
    assert build_model("visual_only", dims, TINY).modalities == ["vision"]
    assert build_model("mult", dims, TINY).modalities == list(dims)
    cfg = copy.deepcopy(TINY)
    cfg.text_key = "text_e5"
    assert build_model("text_only", {**dims, "text_e5": 384}, cfg).modalities == ["text_e5"]
    with pytest.raises(KeyError, match="unknown model"):
        build_model("transformer_xl", dims)
    with pytest.raises(KeyError, match="no 'audio'"):
        build_model("audio_only", {"text": 4})


def test_build_model_for_uses_mlp_on_utterance_level(data):
    ds = copy.copy(data)
    ds.meta = copy.deepcopy(data.meta)
    for spec in ds.meta.modalities.values():
        spec.level = "utterance"
    net = build_model_for("adamml", ds, TINY)
    assert all(type(e).__name__ == "MLPEncoder" for e in net.encoders.values())
    assert net.fusion.windows == 1 and net.label_scheme == data.meta.labels


def test_wrong_feature_width_is_one_clear_error(data, dims):
    net = model("early_concat", {**dims, "audio": 9})
    with pytest.raises(ModelInputError, match="audio"):
        net(first_batch(data))


# ---------------------------------------------------------------------------------------------- fusion configs
def _same_model(a, b, batch):
    assert list(a.state_dict()) == list(b.state_dict())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    a.eval(), b.eval()
    with torch.no_grad():
        assert torch.equal(a(batch).score, b(batch).score) and torch.equal(a(batch).fused, b(batch).fused)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_config_instance_dict_and_json_round_trip_build_the_same_model(name, data, dims):
    batch = partial(first_batch(data))
    net = model(name, dims)  # from TINY's dict of overrides
    resolved = net.config.fusion
    assert type(resolved) is MODEL_REGISTRY[name].fusion.config_class
    as_instance = copy.deepcopy(TINY)
    as_instance.fusion = copy.deepcopy(resolved)
    from_json = ModelConfig(**json.loads(json.dumps(asdict(net.config))))
    assert isinstance(from_json.head, HeadSpec) and from_json.fusion == asdict(resolved)
    for cfg in (as_instance, from_json):
        _same_model(net, model(name, dims, config=cfg), batch)


def test_shared_fusion_config_applies_to_every_fusion(dims):
    for name in MODEL_NAMES:
        cfg = ModelConfig(encoder_overrides=TINY.encoder_overrides, fusion=FusionConfig(dim=8, heads=2, dropout=0.0))
        net = build_model(name, dims, cfg)
        assert (net.config.fusion.dim, net.config.fusion.heads, net.fusion.dropout) == (8, 2, 0.0)
    mult = build_model("mult", dims, TINY)
    assert (mult.config.fusion.width, mult.config.fusion.layers, mult.config.fusion.dim) == (8, 1, 16)
    assert build_model("adamml", dims, TINY).fusion.windows == 3


def test_bad_fusion_settings_are_one_clear_error(dims):
    with pytest.raises(ValueError, match=r"model 'mult' \(MulT.*'mult_dim'.*allowed: dim, heads, dropout, ff_mult, width"):
        build_model("mult", dims, ModelConfig(fusion={"mult_dim": 8}))
    with pytest.raises(ValueError, match=r"'early_concat'.*'windows'.*allowed: dim, heads, dropout"):
        build_model("early_concat", dims, ModelConfig(fusion={"windows": 2}))
    with pytest.raises(ValueError, match=r"model 'mult'.*'widht'"):  # a typo in another model's section
        build_model("early_concat", dims, ModelConfig(fusion={"mult": {"widht": 8}}))
    with pytest.raises(TypeError, match="takes EarlyConcatConfig"):
        build_model("early_concat", dims, ModelConfig(fusion=MulTConfig()))
    with pytest.raises(ValueError, match="fixes mode='vote'"):
        build_model("late_vote", dims, ModelConfig(fusion={"mode": "avg"}))
    with pytest.raises(ValueError, match="pool must be"):
        MulTConfig(pool="max")
    with pytest.raises(TypeError, match="ModelConfig.fusion"):
        ModelConfig(fusion=3)


@dataclass
class _GatedSumConfig(FusionConfig):
    decay: float = 0.5


class _GatedSum(Fusion):
    """A fusion written outside the library: gated sum of projections, with a counter and a schedule."""

    config_class = _GatedSumConfig

    def __init__(self, dims, config=None, head=None, dropout=0.3, input_dims=None):
        super().__init__(dims, config, head, dropout, input_dims)
        self.proj = torch.nn.ModuleDict({m: torch.nn.Linear(d, self.config.dim) for m, d in dims.items()})
        self.out_dim, self.scale, self.passes = self.config.dim, 1.0, 0

    def forward(self, encoded, return_attention=False):
        self.passes += 1
        fused = sum(self.proj[m](e.pooled) * e.present[:, None] for m, e in encoded.items()) * self.scale
        return FusionOutput(fused, aux_loss=fused.pow(2).mean())

    def on_epoch_end(self):
        self.scale *= self.config.decay

    def reset_state(self):
        self.passes = 0


def test_a_new_fusion_is_one_class_and_one_registry_entry(data, dims):
    register_model("gated_sum", _GatedSum)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_model("gated_sum", _GatedSum)
        cfg = copy.deepcopy(TINY)
        cfg.fusion = {**cfg.fusion, "gated_sum": {"decay": 0.25}}
        net = build_model_for("gated_sum", data, cfg)
        assert net.config.fusion == _GatedSumConfig(dim=16, heads=2, decay=0.25)
        batch = first_batch(data)
        loss = compute_loss(net(batch), batch, data.meta.labels)
        assert "aux" in loss.parts  # the generic extra loss term
        loss.total.backward()
        net.on_epoch_end()
        assert net.fusion.scale == 0.25 and net.fusion.passes == 1
        net.reset_state()
        assert net.fusion.passes == 0 and net.utilization() is None
    finally:
        del MODEL_REGISTRY["gated_sum"]


def test_generic_hooks_reset_adamml_counters(data, dims):
    net = model("adamml", dims).eval()
    with torch.no_grad():
        net(first_batch(data))
    assert net.fusion.available_windows.sum() > 0
    net.reset_state()
    assert net.fusion.available_windows.sum() == 0 and net.fusion.kept_windows.sum() == 0
    assert all(model(name, dims).utilization() is None for name in MODEL_NAMES if name not in ("adamml", "adamml_context"))
