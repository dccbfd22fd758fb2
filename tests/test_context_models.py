"""The contextual LSTM, AdaMML + contextual LSTM and MCTN on small synthetic data: video batches,
masks and padding, the context never crossing a split, MCTN's source-only inference path."""
import copy

import numpy as np
import pytest
import torch

from dataset_factory import make_dataset
from msa_lib.data.splits import group_validation_split
from msa_lib.data.torch_data import (Standardizer, check_videos_within_one_split, make_loader,
                                     make_video_loader, utterance_order)
from msa_lib.models import ModelConfig, build_model, compute_loss
from msa_lib.models.context import VideoLayout
from msa_lib.models.mctn import MCTNConfig
from msa_lib.train import TrainConfig, predict, train_model

torch.set_num_threads(1)
TINY = ModelConfig(encoder_overrides={"hidden": 16, "layers": 1, "heads": 2},
                   fusion={"dim": 16, "heads": 2, "contextual_lstm": {"hidden": 8}, "adamml_context": {"hidden": 8},
                           "mctn": {"predictor_hidden": 8}})
CONTEXT_MODELS = ("contextual_lstm", "adamml_context")
MCTN_MODELS = ("mctn", "mctn_shared", "mctn_hierarchical")


@pytest.fixture(scope="module")
def videos():
    """48 utterances in 8 train and 4 test videos of uneven length, ids numbered out of order."""
    ds = make_dataset(n=48, max_len=5, n_groups=8)
    rng = np.random.default_rng(3)
    ds.ids = np.array([f"u{i}_{n}" for i, n in enumerate(rng.permutation(48))], dtype=object)
    return ds


def net(name, dims, seed=0, config=TINY):
    torch.manual_seed(seed)
    return build_model(name, dims, config, label_scheme=make_dataset(n=4).meta.labels)


def dims_of(ds):
    return {m: ds.meta.modalities[m].dim for m in ds.modalities}


def padded(batch, extra=3, seed=0):
    """The same batch with ``extra`` masked garbage steps appended to every modality."""
    g = torch.Generator().manual_seed(seed)
    b = copy.deepcopy(batch)
    for m, x in batch["x"].items():
        b["x"][m] = torch.cat([x, torch.randn(x.shape[0], extra, x.shape[2], generator=g) * 100], 1)
        b["mask"][m] = torch.cat([batch["mask"][m], torch.zeros(x.shape[0], extra, dtype=torch.bool)], 1)
    return b


def by_id(frame):
    return frame.set_index("id").sort_index()


# ---------------------------------------------------------------------------------------------- video batches
def test_video_batches_hold_whole_videos_in_utterance_order(videos):
    train = videos.get_split("train")
    loader = make_video_loader(train, batch_size=12, shuffle=True, seed=1)
    seen = []
    for batch in loader:
        ctx = batch["context"]
        assert ctx["video"].shape == ctx["position"].shape == batch["label"].shape
        for v, group in enumerate(ctx["groups"]):
            rows = np.flatnonzero(ctx["video"].numpy() == v)
            ids = [batch["ids"][i] for i in rows]
            assert ctx["position"][rows].tolist() == list(range(len(rows)))  # 0..n-1 in order
            numbers = [int(i.rsplit("_", 1)[1]) for i in ids]
            assert numbers == sorted(numbers)  # utterances in the order of their trailing number
            assert sorted(ids) == sorted(train.ids[train.group == group])  # the whole video
            seen.append(group)
    assert sorted(seen) == sorted(set(train.group))
    assert len(loader) == len(list(loader))
    again = [b["ids"] for b in make_video_loader(train, batch_size=12, shuffle=True, seed=1)]
    assert again == [b["ids"] for b in make_video_loader(train, batch_size=12, shuffle=True, seed=1)]


def test_utterance_order_uses_the_trailing_number():
    assert sorted(range(3), key=utterance_order(["v_10", "v_2", "v_1"]).__getitem__) == [2, 1, 0]
    assert utterance_order(["v", "w"]) == [(0, 0), (1, 1)]  # no number: the position


def test_context_never_crosses_a_split(videos):
    ds = group_validation_split(videos, 0.25, seed=0)
    check_videos_within_one_split(ds)
    for split in ("train", "valid", "test"):
        part = ds.get_split(split)
        for batch in make_video_loader(part, batch_size=16):
            assert set(batch["ids"]) <= set(part.ids)  # a loader of one split holds that split only
    leaky = ds.subset(np.arange(len(ds)))
    leaky.split = ds.split.copy()
    first_train_video = ds.group[ds.split == "train"][0]
    leaky.split[np.flatnonzero(ds.group == first_train_video)[0]] = "test"  # one utterance of a train video in test
    with pytest.raises(ValueError, match="context must never cross a split"):
        make_video_loader(leaky)
    with pytest.raises(ValueError, match="context must never cross a split"):
        check_videos_within_one_split(leaky)


@pytest.mark.parametrize("name", CONTEXT_MODELS)
def test_training_never_sees_test_utterances(name, videos):
    """Test features changed beyond recognition leave a trained contextual model exactly as it was."""
    ds = Standardizer().fit_transform(group_validation_split(videos, 0.25, seed=0))
    quick = TrainConfig(lr=3e-3, batch_size=12, max_epochs=2, patience=5, progress=False)
    altered = ds.subset(np.arange(len(ds)))
    altered.features = {m: [a * 50 + 7 if s == "test" else a for a, s in zip(seqs, ds.split)]
                        for m, seqs in ds.features.items()}
    states = []
    for data in (ds, altered):
        model, _ = train_model(name, data, copy.deepcopy(TINY), quick)
        states.append(model.state_dict())
    assert all(torch.equal(v, states[1][k]) for k, v in states[0].items())


# ---------------------------------------------------------------------------------------------- contextual models
@pytest.mark.parametrize("name", CONTEXT_MODELS)
def test_forward_backward_on_video_batches_with_masks(name, videos):
    batch = next(iter(make_video_loader(videos.get_split("train"), batch_size=16)))
    batch["present"]["audio"][::2] = False
    batch["mask"]["audio"][::2] = False
    model = net(name, dims_of(videos))
    out = model(batch)
    n = len(batch["ids"])
    assert out.score.shape == (n,) and out.fused.shape[0] == n and torch.isfinite(out.fused).all()
    loss = compute_loss(out, batch, videos.meta.labels)
    assert torch.isfinite(loss.total) and loss.n_targets == n
    loss.total.backward()
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    assert grads and all(torch.isfinite(g).all() for g in grads.values())
    assert any(k.startswith("fusion.context.lstm") and g.abs().sum() > 0 for k, g in grads.items())


@pytest.mark.parametrize("name", CONTEXT_MODELS)
def test_padding_and_batch_company_do_not_change_outputs(name, videos):
    """Padded steps inside utterances, shorter videos padded to the longest one, and which other videos
    share the batch: none of them changes any utterance's output."""
    train = videos.get_split("train")
    model = net(name, dims_of(videos)).eval()
    with torch.no_grad():
        together = predict(model, make_video_loader(train, batch_size=100))  # all videos in one batch
        alone = predict(model, make_video_loader(train, batch_size=1))  # one video per batch
        batch = next(iter(make_video_loader(train, batch_size=100)))
        a, b = model(batch), model(padded(batch))
    assert len(together) == len(alone) == len(train)
    np.testing.assert_allclose(by_id(together)["prob_pos"], by_id(alone)["prob_pos"], atol=1e-5)
    torch.testing.assert_close(a.score, b.score, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.fused, b.fused, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", CONTEXT_MODELS)
def test_the_context_is_the_video(name, videos):
    """Changing one utterance changes the outputs of its video's other utterances, not other videos'."""
    train = videos.get_split("train")
    model = net(name, dims_of(videos)).eval()
    batch = next(iter(make_video_loader(train, batch_size=100)))
    changed = copy.deepcopy(batch)
    video = batch["context"]["video"]
    target = int(torch.nonzero((video == 0) & (batch["context"]["position"] == 0))[0, 0])
    for m in changed["x"]:
        changed["x"][m][target] = changed["x"][m][target] + 5.0
    with torch.no_grad():
        a, b = model(batch).fused, model(changed).fused
    same_video = (video == 0)
    same_video[target] = False
    assert (a[same_video] - b[same_video]).abs().max() > 1e-4  # the neighbours see the change
    torch.testing.assert_close(a[video != 0], b[video != 0], atol=1e-6, rtol=0)  # other videos do not
    plain = next(iter(make_loader(train, batch_size=8)))  # no video structure: each utterance alone
    with torch.no_grad():
        assert torch.isfinite(model(plain).score).all()


def test_video_layout_scatter_gather_round_trip():
    ctx = {"video": torch.tensor([0, 0, 0, 1, 2, 2]), "position": torch.tensor([0, 1, 2, 0, 0, 1])}
    layout = VideoLayout.of(ctx, 6, torch.device("cpu"))
    x = torch.arange(12.0).view(6, 2)
    seq = layout.scatter(x)
    assert seq.shape == (3, 3, 2) and layout.lengths.tolist() == [3, 1, 2]
    assert (seq[1, 1:] == 0).all() and torch.equal(layout.gather(seq), x)
    with pytest.raises(ValueError, match="positions"):
        VideoLayout.of({"video": torch.tensor([0, 0]), "position": torch.tensor([0, 2])}, 2, torch.device("cpu"))


def test_adamml_context_gating_is_hard_and_counts_utilisation(videos):
    batch = next(iter(make_video_loader(videos.get_split("train"), batch_size=16)))
    batch["present"]["audio"][::2] = False
    batch["mask"]["audio"][::2] = False
    model = net("adamml_context", dims_of(videos))
    model.train()
    assert set(torch.unique(model(batch).gates).tolist()) <= {0.0, 1.0}  # straight-through: hard in training
    model.eval()
    model.reset_state()
    with torch.no_grad():
        out = model(batch)
    n = len(batch["ids"])
    assert out.gates.shape == (n, 1, 3) and set(torch.unique(out.gates).tolist()) <= {0.0, 1.0}
    audio = model.modalities.index("audio")
    assert (out.gates[::2, :, audio] == 0).all()  # an absent modality is never used
    util = model.utilization()
    assert set(util) == set(model.modalities) and all(0.0 <= v <= 1.0 for v in util.values())
    assert out.aux_loss is not None and torch.isfinite(out.aux_loss)
    with torch.no_grad():
        model.fusion.policy_out.bias.view(-1, 2)[:, 1] = -50.0  # the policy skips everything
        skipped = model(batch)
    assert (skipped.gates == 0).all() and torch.isfinite(skipped.score).all()


def test_adamml_context_decision_target_is_a_parameter(videos):
    batch = next(iter(make_video_loader(videos.get_split("train"), batch_size=16)))
    losses = {}
    for target in (1.0, 3.0):
        cfg = copy.deepcopy(TINY)
        cfg.fusion["adamml_context"] = {"hidden": 8, "target_modalities": target, "decision_loss_weight": 1.0}
        model = net("adamml_context", dims_of(videos), config=cfg).eval()
        assert model.fusion.target == target
        with torch.no_grad():
            losses[target] = float(model(batch).aux_loss)
    # the policy starts by keeping every modality (keep_bias): far from 1 kept, close to all 3
    assert losses[1.0] > losses[3.0]


# ---------------------------------------------------------------------------------------------- MCTN
@pytest.mark.parametrize("name", MCTN_MODELS)
def test_mctn_predicts_from_the_source_alone(name, videos):
    dims = dims_of(videos)
    model = net(name, dims).eval()
    batch = next(iter(make_loader(videos, batch_size=12)))
    without = copy.deepcopy(batch)
    for key in ("x", "mask", "present", "lengths"):  # the target modalities are not in the batch at all
        del without[key]["audio"], without[key]["vision"]
    noisy = copy.deepcopy(batch)
    noisy["x"]["audio"] = torch.randn_like(noisy["x"]["audio"]) * 100
    noisy["x"]["vision"] = torch.randn_like(noisy["x"]["vision"]) * 100
    with torch.no_grad():
        full, source_only, changed = model(batch), model(without), model(noisy)
    for other in (source_only, changed):
        torch.testing.assert_close(full.score, other.score, atol=1e-6, rtol=0)
        torch.testing.assert_close(full.logits["2"], other.logits["2"], atol=1e-6, rtol=0)
    assert full.aux_loss is not None and source_only.aux_loss is None  # nothing to translate into


@pytest.mark.parametrize("name", MCTN_MODELS)
def test_mctn_losses_train_the_translation_and_the_cycle(name, videos):
    dims = dims_of(videos)
    model = net(name, dims).train()
    batch = next(iter(make_loader(videos, batch_size=12)))
    batch["present"]["audio"][::3] = False  # translation losses only where the target is there
    batch["mask"]["audio"][::3] = False
    out = model(batch)
    loss = compute_loss(out, batch, videos.meta.labels)
    assert "aux" in loss.parts and loss.parts["aux"] > 0
    loss.total.backward()
    used = {k for k, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    for part in ("fusion.encoder.", "fusion.to_target.", "fusion.to_source.", "fusion.predictor.", "encoders.text."):
        assert any(k.startswith(part) for k in used), part
    assert any(k.startswith("fusion.cycle_encoder.") for k in used) == (name != "mctn_shared")
    assert any(k.startswith("fusion.to_second.") for k in used) == (name == "mctn_hierarchical")


def test_mctn_weights_and_variants():
    assert MCTNConfig().weights() == (0.5, 0.5)
    assert MCTNConfig(trimodal="hierarchical").weights() == (0.3, 0.3)
    assert MCTNConfig(translation_weight=0.1, cycle_weight=0.0).weights() == (0.1, 0.0)
    with pytest.raises(ValueError, match="trimodal must be"):
        MCTNConfig(trimodal="parallel")
    dims = {"text": 6, "audio": 4}
    with pytest.raises(ValueError, match="missing \\['vision'\\]"):
        net("mctn_hierarchical", dims)
    assert net("mctn_shared", dims).fusion.cycle_encoder is None
    assert net("mctn", dims).fusion.cycle_encoder is not None


def test_mctn_padding_does_not_change_outputs(videos):
    model = net("mctn_hierarchical", dims_of(videos)).eval()
    batch = next(iter(make_loader(videos, batch_size=12)))
    with torch.no_grad():
        a, b = model(batch), model(padded(batch))
    torch.testing.assert_close(a.score, b.score, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.aux_loss, b.aux_loss, atol=1e-5, rtol=1e-5)  # masked steps never enter the losses


# ---------------------------------------------------------------------------------------------- release protocol
def test_epoch_chosen_on_test_trains_on_train_and_valid_and_scores_test_each_epoch(videos, monkeypatch):
    """The bc-LSTM release's selection rule, as a diagnostic: every non-test utterance trains, the test
    utterances are the ones scored after every epoch, and the best of those scores is returned."""
    from msa_lib.studies import context_models

    ds = Standardizer().fit_transform(group_validation_split(videos, 0.25, seed=0))
    seen = {}
    real = context_models.train_model

    def recording(name, data, *args, **kwargs):
        seen["train"], seen["valid"] = set(data.ids[data.split == "train"]), set(data.ids[data.split == "valid"])
        model, result = real(name, data, *args, **kwargs)
        seen["history"] = result.history
        return model, result

    monkeypatch.setattr(context_models, "train_model", recording)
    row = context_models.epoch_chosen_on_test(ds, "contextual_lstm", ("text", "audio"), 0, copy.deepcopy(TINY), epochs=3)
    assert seen["train"] == set(ds.ids[ds.split != "test"]) and seen["valid"] == set(ds.ids[ds.split == "test"])
    per_epoch = seen["history"]["valid_acc2"].to_numpy()
    assert len(per_epoch) == 3  # no early stop: every epoch is scored
    assert row["acc2_best_test_epoch"] == per_epoch.max() and row["acc2_last_epoch"] == per_epoch[-1]
    assert row["best_test_epoch"] == int(per_epoch.argmax()) and "invalid" in row["selection"]


# ---------------------------------------------------------------------------------------------- two-level training
def test_contextual_states_stay_within_the_video(videos):
    """Level-1 states: one 1 x H row per utterance in dataset order, and changing one video's features
    changes the states of that video's utterances only."""
    from msa_lib.studies.context_models import contextual_states

    ds = Standardizer().fit_transform(group_validation_split(videos, 0.25, seed=0))
    model = net("contextual_lstm", dims_of(ds))
    states = contextual_states(model, ds, ["text", "audio"])
    assert len(states) == len(ds) and all(s.shape == (1, model.fusion.out_dim) for s in states)
    video = ds.group[ds.split == "test"][0]
    changed = copy.deepcopy(ds)
    for i in np.flatnonzero(ds.group == video):
        changed.features["audio"][i] = changed.features["audio"][i] + 5.0
    after = contextual_states(model, changed, ["text", "audio"])
    moved = np.array([not np.allclose(a, b, atol=1e-6) for a, b in zip(states, after)])
    assert moved.any() and set(ds.group[moved]) == {video}


@pytest.fixture
def recorded_fits(monkeypatch):
    """Every fit of ``recipes.run_models`` as (model name, inputs, monitored metric, first input's encoder)."""
    from msa_lib.studies import recipes

    fits = []
    real = recipes.train_model

    def recording(name, data, config, train, modalities):
        model, result = real(name, data, config, train, modalities=modalities)
        fits.append((name, list(modalities), train.monitor, type(model.encoders[modalities[0]])))
        return model, result

    monkeypatch.setattr(recipes, "train_model", recording)
    return fits


def test_two_level_training_feeds_level_one_states_to_level_two(videos, recorded_fits):
    """Level 1: one contextual LSTM per modality; level 2 reads their states as utterance-level inputs;
    every fit trains on train and chooses on valid, the test utterances are only scored."""
    from msa_lib.studies import context_models

    ds = Standardizer().fit_transform(group_validation_split(videos, 0.25, seed=0))
    run = context_models.two_level_contextual(ds, ("text", "audio"), 0, TrainConfig(max_epochs=2, patience=2),
                                              copy.deepcopy(TINY), experiment="tiny")
    assert [(inputs, monitor) for _, inputs, monitor, _ in recorded_fits] == [
        (["text"], "valid_loss"), (["audio"], "valid_loss"), (["level1_text", "level1_audio"], "valid_loss")]
    assert [(r["experiment"], r["inputs"]) for r in run.rows] == [
        ("tiny, level 1", "text"), ("tiny, level 1", "audio"), ("tiny, level 2", "level1_text+level1_audio")]
    for m in ("level1_text", "level1_audio"):
        assert run.dataset.meta.modalities[m].level == "utterance" and run.dataset.lengths(m).max() == 1
    assert all(0.0 <= r["acc2"] <= 1.0 for r in run.rows)


def test_two_level_training_on_one_utterance_level_model(videos, recorded_fits):
    """``level1_model``: one zoo model (MCTN-shared) reads every input at level 1; level 2 reads its state,
    through an MLP although the config's default encoder is the transformer."""
    from msa_lib.models.encoders import MLPEncoder
    from msa_lib.studies import context_models

    ds = Standardizer().fit_transform(group_validation_split(videos, 0.25, seed=0))
    config = copy.deepcopy(TINY)
    assert config.encoder == "transformer"
    run = context_models.two_level_contextual(ds, ("text", "audio"), 0, TrainConfig(max_epochs=2, patience=2),
                                              config, experiment="tiny", level1_model="mctn_shared")
    assert [(name, inputs) for name, inputs, _, _ in recorded_fits] == [
        ("mctn_shared", ["text", "audio"]), ("contextual_lstm", ["level1_mctn_shared"])]
    assert recorded_fits[1][3] is MLPEncoder
    assert [(r["experiment"], r["inputs"]) for r in run.rows] == [
        ("tiny, level 1", "text+audio"), ("tiny, level 2", "level1_mctn_shared")]
    spec = run.dataset.meta.modalities["level1_mctn_shared"]
    assert spec.level == "utterance" and run.dataset.lengths("level1_mctn_shared").max() == 1
    assert spec.extractor["input"] == "text+audio"


# ---------------------------------------------------------------------------------------------- video-context probe
def test_mean_of_other_utterances_by_hand():
    from msa_lib.extract.text_features import mean_of_other_utterances

    x = np.array([[1.0, 10.0], [3.0, 30.0], [7.0, 70.0], [5.0, 50.0]])
    out = mean_of_other_utterances(x, [[0, 1, 3], [2]])  # videos a = rows 0, 1, 3 and b = row 2
    # video a = rows 0, 1, 3: each row gets the mean of the other two; video b has one utterance: zeros
    np.testing.assert_allclose(out, [[4.0, 40.0], [3.0, 30.0], [0.0, 0.0], [2.0, 20.0]])


def _video_sentiment_dataset(n_videos=60, per_video=6, seed=0):
    """Binary labels shared by every utterance of a video; each utterance's one-vector state is the
    label's sign buried in noise, so the other utterances of the video say more than the utterance."""
    from msa_lib.data.labels import BINARY_SCHEME
    from msa_lib.data.schema import DatasetMeta, ModalitySpec, MultimodalDataset

    rng = np.random.default_rng(seed)
    video_label = rng.integers(0, 2, n_videos)
    labels = np.repeat(video_label, per_video)
    group = np.repeat([f"v{v}" for v in range(n_videos)], per_video)
    quarter = n_videos // 4
    split_of_video = np.array(["train"] * (2 * quarter) + ["valid"] * quarter + ["test"] * (n_videos - 3 * quarter))
    states = [np.array([[2.0 * y - 1.0 + 2.5 * rng.standard_normal(), rng.standard_normal()]], np.float32) for y in labels]
    meta = DatasetMeta("video sentiment", {"state": ModalitySpec(2, level="utterance")}, BINARY_SCHEME)
    return MultimodalDataset.build(meta, [f"{g}_{i}" for i, g in enumerate(group)], {"state": states},
                                   split=np.repeat(split_of_video, per_video), group=group, labels=labels)


def test_video_context_probe_finds_context_that_is_there_and_refuses_bad_input(videos):
    from msa_lib.studies.context_models import PROBE_C_GRID, video_context_probe

    rows = {r["inputs"]: r for r in video_context_probe(_video_sentiment_dataset(), "state")}
    assert set(rows) == {"utterance", "utterance + video"}
    for row in rows.values():
        assert row["C"] in PROBE_C_GRID and 0 <= row["acc2_valid"] <= 1 and {"acc2", "f1_macro"} <= set(row)
    assert rows["utterance + video"]["acc2"] > rows["utterance"]["acc2"] + 0.1  # the video decides the label here
    with pytest.raises(ValueError, match="binary"):
        video_context_probe(videos, "text")  # MOSI-scale regression labels
    binary = _video_sentiment_dataset()
    binary.meta.modalities["state"].level = "sequence"
    with pytest.raises(ValueError, match="one vector per utterance"):
        video_context_probe(binary, "state")
