"""The one training loop takes objectives and validators (cross-lingual NCE, the RAVDESS BCE head, ...)."""
import numpy as np
import pytest
import torch
from torch import nn

from msa_lib.models.heads import LossParts
from msa_lib.train.objectives import Objective
from msa_lib.train.trainer import TrainConfig, TrainingError, fit


class SquaredError(Objective):
    """A tiny regression objective on ``(x, y)`` tensor batches, with a trainable scale of its own."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def move(self, batch, device):
        return tuple(t.to(device) for t in batch)

    def forward(self, model, batch, label_scheme=None):
        x, y = batch
        loss = ((self.scale * model(x).squeeze(-1) - y) ** 2).mean()
        return LossParts(loss, {"mse": float(loss.detach())}, len(y))


def _batches(seed=0, n=64):
    rng = np.random.default_rng(seed)
    x = torch.as_tensor(rng.normal(size=(n, 3)), dtype=torch.float32)
    y = x @ torch.tensor([1.0, -2.0, 0.5])
    return [(x[i:i + 16], y[i:i + 16]) for i in range(0, n, 16)]


def test_custom_objective_trains_its_own_parameters_and_records_its_parts():
    torch.manual_seed(0)
    model, objective = nn.Linear(3, 1), SquaredError()
    result = fit(model, _batches(), None, TrainConfig(lr=5e-2, max_epochs=30, monitor="train_loss", progress=False),
                 objective=objective)
    history = result.history
    assert history["train_loss"].iloc[-1] < 0.2 * history["train_loss"].iloc[0]
    assert "train_loss_mse" in history and float(objective.scale.detach()) != 1.0  # the objective's parameter was optimised


def test_validators_are_monitored_in_eval_mode_every_k_epochs():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(3, 1))
    held_out = _batches(seed=1, n=32)
    modes = []

    def validator(m):
        modes.append(m.training)
        x, y = held_out[0]
        return {"valid_mse": float(((m(x).squeeze(-1) - y) ** 2).mean())}

    cfg = TrainConfig(lr=5e-2, max_epochs=10, eval_every=3, monitor="valid_mse", patience=100, progress=False)
    result = fit(model, _batches(), None, cfg, objective=SquaredError(), validators=[validator])
    assert modes == [False] * 4  # epochs 3, 6, 9 and the last one, never with dropout on
    validated = result.history.dropna(subset=["valid_mse"])["epoch"].tolist()
    assert validated == [2, 5, 8, 9] and result.best_epoch in validated


def test_monitor_epoch_keeps_the_last_epoch_and_seed_none_keeps_the_callers_stream():
    def run():
        torch.manual_seed(7)
        model = nn.Sequential(nn.Dropout(0.3), nn.Linear(3, 1))
        fit(model, _batches(), None, TrainConfig(lr=1e-2, max_epochs=3, monitor="epoch", seed=None, progress=False),
            objective=SquaredError())
        return model[1].weight.detach().clone()

    torch.manual_seed(7)
    first = run()
    assert torch.equal(first, run())  # same caller seed -> same result


def test_a_valid_monitor_without_validation_data_is_one_clear_error():
    with pytest.raises(TrainingError, match="validation"):
        fit(nn.Linear(3, 1), _batches(), None, TrainConfig(monitor="valid_mse", progress=False), objective=SquaredError())
    with pytest.raises(TrainingError, match="lr_schedule"):
        fit(nn.Linear(3, 1), _batches(), None, TrainConfig(monitor="epoch", lr_schedule="step", progress=False),
            objective=SquaredError())


def test_an_interrupted_run_resumed_from_its_checkpoint_ends_bit_identical(tmp_path):
    from dataset_factory import make_dataset

    from msa_lib.data.splits import group_validation_split
    from msa_lib.data.torch_data import Standardizer
    from msa_lib.models import ModelConfig
    from msa_lib.train.trainer import train_model

    ds = Standardizer().fit_transform(group_validation_split(make_dataset(n=40, max_len=4), 0.25, seed=0))
    tiny = ModelConfig(encoder_overrides={"hidden": 8, "layers": 1, "heads": 2}, fusion={"dim": 8, "heads": 2})
    cfg = TrainConfig(lr=3e-3, batch_size=8, max_epochs=5, patience=10, progress=False, seed=3)
    reference, _ = train_model("early_concat", ds, tiny, cfg)

    def stop_after_two(epoch, model, row):
        if epoch == 1:
            raise KeyboardInterrupt

    ckpt = tmp_path / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        train_model("early_concat", ds, tiny, cfg, checkpoint=ckpt, callbacks=[stop_after_two])
    assert ckpt.is_file()
    resumed, result = train_model("early_concat", ds, tiny, cfg, checkpoint=ckpt, resume=True)
    assert result.epochs_run == 5 and len(result.history) == 5
    a, b = reference.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(TrainingError, match="not a usable checkpoint"):
        train_model("early_concat", ds, tiny, cfg, checkpoint=ckpt, resume=True)
