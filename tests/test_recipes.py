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


def _videos_with_valid(layer: int):
    """As :func:`_states_after`, with whole videos in valid (a video never spans two splits)."""
    ds = make_dataset(n=32, dims={"text": 384}, nan_rows=False)
    split = ds.split.copy()
    split[np.isin(ds.group, ["video_0", "video_1"])] = "valid"
    ds.split = split
    spec = ModalitySpec(384, None, {"embedding": list(range(384))}, "sequence", None, {"hidden_layer": layer})
    return ds.with_features("text", ds.features["text"], spec)


def test_cross_fitted_states_come_from_models_that_never_saw_the_utterance(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "cache_dir", lambda: tmp_path)
    fits = []  # (ids the fit trained on, ids of its states) per stage-1 fit
    real = recipes.adapt_text_encoder

    def recording(ds, *args, **kwargs):
        out = real(ds, *args, **kwargs)
        fits.append((set(ds.ids[ds.split == "train"]), out))
        return out

    monkeypatch.setattr(recipes, "adapt_text_encoder", recording)
    ds = _videos_with_valid(11)
    result = recipes.cross_fitted_adaptation(ds, seed=0, train=TrainConfig(max_epochs=1, batch_size=8), folds=3, layers=1)
    full_trained, full = fits[0]
    assert full_trained == set(ds.ids[ds.split == "train"])
    assert len(fits) == 4 and len(result.folds) == 3 and result.folds["utterances"].sum() == (ds.split == "train").sum()
    states = result.dataset.features["text"]
    for i, sid in enumerate(ds.ids):
        if ds.split[i] != "train":  # valid and test: the full model's states, which never trained on them
            np.testing.assert_array_equal(states[i], full.dataset.features["text"][i])
            continue
        # exactly one fold model did not train on this utterance's video, and its states are the ones kept
        (trained, fold), = [(t, f) for t, f in fits[1:] if sid not in t]
        assert not set(ds.ids[ds.group == ds.group[i]]) & trained
        np.testing.assert_array_equal(states[i], fold.dataset.features["text"][list(fold.dataset.ids).index(sid)])
        assert not np.array_equal(states[i], full.dataset.features["text"][i])
    assert "out of fold" in result.dataset.meta.modalities["text"].extractor["cross_fitted"]


def test_cross_fitting_refuses_impossible_folds(tmp_path, monkeypatch):
    monkeypatch.setattr(recipes, "cache_dir", lambda: tmp_path)
    with pytest.raises(ValueError, match="folds"):
        recipes.cross_fitted_adaptation(_videos_with_valid(11), seed=0, train=TrainConfig(max_epochs=1, batch_size=8),
                                        folds=50, layers=1)
