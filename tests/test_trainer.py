"""Trainer: early stopping and best-weight restore, gradient clipping, seeding, prediction/evaluation."""
import copy

import numpy as np
import pytest
import torch

from dataset_factory import make_dataset
from msa_lib.data.labels import BINARY_SCHEME, LabelScheme
from msa_lib.data.splits import group_validation_split
from msa_lib.data.torch_data import Standardizer
from msa_lib.models import LossConfig, ModelConfig, build_model_for
from msa_lib.train import (TrainConfig, TrainingError, evaluate, fit, make_loader, predict, train_model,
                           training_step)

torch.set_num_threads(1)
TINY = ModelConfig(encoder_overrides={"hidden": 8, "layers": 1, "heads": 2},
                   fusion={"dim": 8, "heads": 2, "mult": {"width": 8, "layers": 1}, "adamml": {"windows": 2}})
QUICK = TrainConfig(lr=3e-3, batch_size=8, max_epochs=4, patience=10, progress=False)


@pytest.fixture(scope="module")
def data():
    ds = make_dataset(n=48, max_len=4)
    return Standardizer().fit_transform(group_validation_split(ds, 0.25, seed=0))


def flipped_valid(ds):
    """Validation targets are the opposite of what the features say: the better the model fits the
    training data, the worse its validation loss, so validation stops improving early."""
    out = ds.subset(np.arange(len(ds)))
    valid = out.split == "valid"
    out.scores = out.scores.copy()
    out.scores[valid] = -out.scores[valid]
    out.labels = out.labels.copy()
    out.labels[valid] = (out.scores[valid] >= 0).astype(int)
    return out


def state_equal(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_early_stopping_restores_a_copy_of_the_best_weights(data):
    ds = flipped_valid(data)
    cfg = TrainConfig(lr=1e-2, batch_size=8, max_epochs=30, patience=3, progress=False)
    final = {}
    model = build_model_for("early_concat", ds, TINY)
    loaders = (make_loader(ds.get_split("train"), model.modalities, 8, shuffle=True),
               make_loader(ds.get_split("valid"), model.modalities, 16))
    result = fit(model, *loaders, cfg, callbacks=[lambda e, m, row: final.update(state=copy.deepcopy(m.state_dict()),
                                                                                  epoch=e)])
    assert result.stopped_early and result.epochs_run < cfg.max_epochs
    assert result.epochs_run == result.best_epoch + cfg.patience + 1
    assert final["epoch"] == result.epochs_run - 1
    hist = result.history
    assert len(hist) == result.epochs_run and {"train_loss", "valid_loss", "valid_acc2", "lr"} <= set(hist.columns)
    assert hist["valid_loss"].iloc[result.best_epoch] == hist["valid_loss"].min() == result.best_score
    # the model now holds the best state, which is not the final one
    assert state_equal(model.state_dict(), result.best_state)
    assert not state_equal(final["state"], result.best_state)
    # the snapshot is a copy: it shares no memory with the live parameters and survives their change
    live = model.state_dict()
    assert all(live[k].data_ptr() != v.data_ptr() for k, v in result.best_state.items())
    before = copy.deepcopy(result.best_state)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert state_equal(result.best_state, before)
    # cosine annealing: the learning rate decreases over the epochs
    assert hist["lr"].is_monotonic_decreasing and hist["lr"].iloc[0] == cfg.lr


def test_monitor_accuracy_and_unknown_monitor(data):
    _, result = train_model("early_concat", data, TINY, TrainConfig(**{**QUICK.__dict__, "monitor": "valid_acc2"}))
    assert result.monitor == "valid_acc2"
    assert result.best_score == result.history["valid_acc2"].max()
    with pytest.raises(TrainingError, match="not recorded"):
        train_model("early_concat", data, TINY, TrainConfig(**{**QUICK.__dict__, "monitor": "valid_bleu"}))


def test_gradient_clipping_bounds_the_norm(data):
    model = build_model_for("early_concat", data, TINY)
    batch = next(iter(make_loader(data.get_split("train"), model.modalities, 8)))
    batch["score"] = batch["score"] * 0 + 1e4  # a squared error this large makes a huge gradient
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the step leaves gradients to inspect
    stats = training_step(model, batch, opt, data.meta.labels, TrainConfig(grad_clip=1.0, loss=LossConfig("mse")))
    assert stats.grad_norm > 10.0
    assert stats.grad_norm_clipped <= 1.0 + 1e-4
    grads = [p.grad.norm() for p in model.parameters() if p.grad is not None]
    assert float(torch.stack(grads).norm()) <= 1.0 + 1e-4  # what the optimiser actually saw
    unclipped = training_step(model, batch, opt, data.meta.labels, TrainConfig(grad_clip=None, loss=LossConfig("mse")))
    assert unclipped.grad_norm_clipped == pytest.approx(unclipped.grad_norm) and unclipped.grad_norm > 10.0


def test_history_records_pre_clip_gradient_norms(data):
    _, result = train_model("late_avg", data, TINY, QUICK)
    assert (result.history["grad_norm_max"] > 0).all()
    assert result.seconds_per_epoch > 0 and result.device == "cpu"


@pytest.mark.parametrize("name", ["mult", "adamml"])
def test_same_seed_same_result(data, name):
    runs = [train_model(name, data, TINY, TrainConfig(**{**QUICK.__dict__, "max_epochs": 2, "seed": s}))
            for s in (7, 7, 8)]
    (m1, r1), (m2, r2), (m3, r3) = runs
    cols = ["train_loss", "valid_loss"]
    np.testing.assert_array_equal(r1.history[cols].to_numpy(), r2.history[cols].to_numpy())
    assert state_equal(m1.state_dict(), m2.state_dict())
    assert not state_equal(m1.state_dict(), m3.state_dict())
    loader = make_loader(data.get_split("test"), m1.modalities, 16)
    assert predict(m1, loader).equals(predict(m2, loader))


def test_predict_and_evaluate_regression(data):
    model, _ = train_model("late_vote", data, TINY, QUICK)
    loader = make_loader(data.get_split("test"), model.modalities, 5)
    frame = predict(model, loader)
    assert len(frame) == (data.split == "test").sum()
    assert {"id", "language", "label", "score", "score_pred", "prob_pos", "pred", "pred_3", "pred_5",
            "pred_text", "pred_audio", "pred_vision"} <= set(frame.columns)
    assert ((frame["pred"] == (frame["score_pred"] >= 0)).all())
    metrics = evaluate(model, loader)
    assert {"acc2", "acc2_has0", "acc2_non0", "f1_macro", "f1_weighted", "mae", "acc5", "n"} <= set(metrics)
    assert metrics["acc2"] == metrics["acc2_has0"] and 0 <= metrics["acc2"] <= 1


def test_binary_and_multiclass_schemes():
    binary = make_dataset(n=32, max_len=3, scheme=BINARY_SCHEME)
    binary.scores[:] = np.nan  # binary labels only
    binary = group_validation_split(binary, 0.25)
    model, result = train_model("adamml", binary, TINY, QUICK)
    assert "valid_acc2" in result.history and "valid_mae" not in result.history
    frame = predict(model, make_loader(binary.get_split("test"), model.modalities, 8))
    assert ((frame["prob_pos"] >= 0.5) == (frame["pred"] == 1)).all()
    assert {"gate_text", "gate_audio", "gate_vision"} <= set(frame.columns)
    assert set(evaluate(model, make_loader(binary.get_split("test"), model.modalities, 8))) == {"acc2", "f1_macro", "f1_weighted", "balanced_acc", "n"}

    emotions = make_dataset(n=32, max_len=3, scheme=BINARY_SCHEME)
    emotions.meta.labels = LabelScheme("multiclass", None, ("neutral", "happy", "sad"))
    emotions.labels = np.arange(32) % 3
    emotions.scores[:] = np.nan
    emotions = group_validation_split(emotions, 0.25)
    model, result = train_model("text_only", emotions, TINY, QUICK)
    frame = predict(model, make_loader(emotions.get_split("test"), model.modalities, 8))
    assert {"prob_neutral", "prob_happy", "prob_sad", "pred"} <= set(frame.columns)
    assert "valid_acc" in result.history


def test_missing_validation_split_is_one_clear_error():
    ds = make_dataset(n=16)
    with pytest.raises(TrainingError, match="group_validation_split"):
        train_model("early_concat", ds, TINY, QUICK)


def test_monitor_mode():
    assert TrainConfig(monitor="valid_loss").monitor_mode() == "min"
    assert TrainConfig(monitor="valid_mae").monitor_mode() == "min"
    assert TrainConfig(monitor="valid_acc2").monitor_mode() == "max"
    assert TrainConfig(monitor="valid_acc2", mode="min").monitor_mode() == "min"
