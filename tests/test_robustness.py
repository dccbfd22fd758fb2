"""Robustness curves: noise on one modality at a time and modality removal."""
import numpy as np
import pandas as pd
import pytest
import torch

from dataset_factory import make_dataset
from msa_lib.data.splits import group_validation_split
from msa_lib.data.torch_data import Standardizer, make_loader
from msa_lib.models import FusionConfig, ModelConfig
from msa_lib.train import TrainConfig, evaluate, perturb_batch, plot_robustness, robustness_curves, train_model

torch.set_num_threads(1)
TINY = ModelConfig(encoder_overrides={"hidden": 8, "layers": 1, "heads": 2}, fusion=FusionConfig(dim=8, heads=2))


@pytest.fixture(scope="module")
def trained():
    ds = Standardizer().fit_transform(group_validation_split(make_dataset(n=48, max_len=4), 0.25))
    model, _ = train_model("early_concat", ds, TINY, TrainConfig(lr=3e-3, batch_size=8, max_epochs=3, progress=False))
    return model, ds


def test_perturb_batch_touches_only_the_chosen_modality():
    ds = make_dataset(n=8, max_len=5)
    batch = next(iter(make_loader(ds, batch_size=8)))
    g = torch.Generator().manual_seed(0)
    noisy = perturb_batch(batch, "audio", noise_std=2.0, generator=g)
    diff = noisy["x"]["audio"] - batch["x"]["audio"]
    mask = batch["mask"]["audio"]
    assert (diff[~mask] == 0).all()  # padded steps stay padding
    assert 1.5 < float(diff[mask].std()) < 2.5
    for m in ("text", "vision"):
        assert noisy["x"][m] is batch["x"][m]
    removed = perturb_batch(batch, "vision", remove=True)
    assert not removed["present"]["vision"].any() and not removed["mask"]["vision"].any()
    assert batch["present"]["vision"].all()  # the original batch is not modified
    with pytest.raises(KeyError, match="gaze"):
        perturb_batch(batch, "gaze", 1.0)


def test_robustness_table(trained):
    model, ds = trained
    test = ds.get_split("test")
    levels = (0.0, 1.0, 8.0)
    table = robustness_curves(model, test, noise_levels=levels, seed=3)
    assert len(table) == 1 + 3 * (len(levels) + 1)
    assert {"modality", "condition", "noise_std", "level", "acc2", "f1_macro", "f1_weighted"} <= set(table.columns)
    assert set(table["condition"]) == {"clean", "noise", "removed"}
    clean = table[table["condition"] == "clean"].iloc[0]
    assert clean["acc2"] == pytest.approx(evaluate(model, make_loader(test, model.modalities, 64))["acc2"])
    zero = table[(table["condition"] == "noise") & (table["noise_std"] == 0.0)]
    assert (zero["acc2"] == clean["acc2"]).all()
    removed = table[table["condition"] == "removed"]
    assert removed["noise_std"].isna().all() and (removed["level"] == "removed").all()
    again = robustness_curves(model, test, noise_levels=levels, seed=3)
    pd.testing.assert_frame_equal(table, again)  # seeded noise: repeatable

    fig = plot_robustness(table, "acc2", title="synthetic")
    assert len(fig.axes[0].lines) >= 3 + 3 + 1
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_chosen_modalities_only(trained):
    model, ds = trained
    test = ds.get_split("test")
    table = robustness_curves(model, test, modalities=["text"], noise_levels=(0.0, 100.0))
    assert list(table["modality"].unique()) == ["none", "text"]
    assert np.isfinite(table["acc2"]).all()
    with pytest.raises(KeyError, match="gaze"):
        robustness_curves(model, test, modalities=["gaze"])
