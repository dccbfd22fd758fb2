import numpy as np
import torch
from dataset_factory import make_dataset

from msa_lib.data.splits import assert_disjoint_groups, group_validation_split
from msa_lib.data.torch_data import MultimodalTorchDataset, Standardizer, collate, make_loader


def test_collate_pads_and_masks():
    ds = make_dataset()
    batch = next(iter(make_loader(ds, batch_size=6)))
    for m in ("text", "audio", "vision"):
        x, mask, lengths = batch["x"][m], batch["mask"][m], batch["lengths"][m]
        assert x.shape[:2] == mask.shape and x.shape[0] == 6
        for b in range(6):
            n = int(lengths[b])
            assert not mask[b, n:].any()
            assert (x[b, n:] == 0).all()
    # NaN vision rows (frames without a face) are masked and zero-filled, never NaN
    assert not torch.isnan(batch["x"]["vision"]).any()
    masked = [i for i in range(6) if np.isnan(ds.features["vision"][i]).any()]
    assert masked and all(not batch["mask"]["vision"][i, 1] and batch["mask"]["vision"][i, 0] for i in masked)


def test_missing_modality_is_absent_not_zero_vector():
    ds = make_dataset(n=8)
    ds.features["audio"][2] = np.zeros((0, 4), np.float32)
    batch = collate([MultimodalTorchDataset(ds)[i] for i in range(4)])
    assert not batch["present"]["audio"][2] and batch["present"]["audio"][1]


def test_standardizer_uses_train_only_and_ignores_nan():
    ds = make_dataset(n=40)
    ds.features["text"] = [a + (100.0 if s == "test" else 0.0) for a, s in zip(ds.features["text"], ds.split)]
    std = Standardizer().fit(ds)
    train_frames = np.concatenate([a for a, s in zip(ds.features["text"], ds.split) if s == "train"])
    np.testing.assert_allclose(std.mean["text"], train_frames.mean(0), rtol=1e-5)
    out = std.transform(ds)
    test_frames = np.concatenate([a for a, s in zip(out.features["text"], out.split) if s == "test"])
    assert test_frames.mean() > 10  # test statistics did not leak into the fit
    assert np.isfinite(std.mean["vision"]).all()
    masked = [i for i, a in enumerate(ds.features["vision"]) if np.isnan(a).any()]
    assert masked and all(np.isnan(out.features["vision"][i][1]).all() for i in masked)  # masked rows stay masked


def test_group_split_never_takes_test_and_keeps_groups_whole():
    ds = make_dataset(n=48, n_groups=12)
    out = group_validation_split(ds, 0.25, seed=3)
    assert (out.split == "valid").any()
    assert list(out.split[ds.split == "test"]) == list(ds.split[ds.split == "test"])
    assert_disjoint_groups(out)
    again = group_validation_split(ds, 0.25, seed=3)
    assert list(again.split) == list(out.split)  # seeded
