"""Stage-1 text adaptation (recipes.adapt_text_encoder) on a tiny generated dataset of e5-sized states."""
import numpy as np
import pytest
import torch

from dataset_factory import make_dataset
from msa_lib.data.schema import ModalitySpec
from msa_lib.studies import recipes
from msa_lib.train.trainer import TrainConfig

torch.set_num_threads(1)


def _states_after(layer: int):
    """A synthetic dataset whose ``text`` claims to hold e5 hidden states after ``layer``."""
    ds = make_dataset(n=16, dims={"text": 384}, nan_rows=False)
    split = ds.split.copy()
    split[:3] = "valid"
    ds.split = split
    spec = ModalitySpec(384, None, {"embedding": list(range(384))}, "sequence", None, {"hidden_layer": layer})
    return ds.with_features("text", ds.features["text"], spec)


def test_adapt_refuses_states_from_the_wrong_layer(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "cache_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="hidden_layer=11"):
        recipes.adapt_text_encoder(_states_after(8), seed=0, layers=1)


def test_adapt_top_layer_replaces_text_and_is_cached(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "cache_dir", lambda: tmp_path)
    ds = _states_after(11)
    first = recipes.adapt_text_encoder(ds, seed=0, train=TrainConfig(max_epochs=1, batch_size=8), layers=1)
    assert not first.cached
    assert [len(a) for a in first.dataset.features["text"]] == [len(a) for a in ds.features["text"]]
    assert "top 1 layers" in first.dataset.meta.modalities["text"].extractor["adapted"]
    again = recipes.adapt_text_encoder(ds, seed=0, train=TrainConfig(max_epochs=1, batch_size=8), layers=1)
    assert again.cached
    np.testing.assert_array_equal(again.dataset.features["text"][0], first.dataset.features["text"][0])
