import pickle

import numpy as np
import pytest
from dataset_factory import make_dataset

from msa_lib.data.splits import group_validation_split
from msa_lib.data.io import read_features, write_features
from msa_lib.data.mmsa import read_mmsa, write_mmsa
from msa_lib.data.schema import FeatureFormatError, ModalitySpec, concat
from msa_lib.data.seed_format import read_seed, write_seed


def _same(a, b, atol=0.0):
    """Same samples (matched by id, files may group them by split) with the same features."""
    assert sorted(a.ids) == sorted(b.ids)
    where = {sid: j for j, sid in enumerate(b.ids)}
    for m in a.features:
        for i, sid in enumerate(a.ids):
            x, y = a.features[m][i], b.features[m][where[sid]]
            np.testing.assert_allclose(np.nan_to_num(x), np.nan_to_num(y), atol=atol)
            assert a.split[i] == b.split[where[sid]] and a.language[i] == b.language[where[sid]]


def test_native_round_trip_keeps_everything(tmp_path):
    ds = group_validation_split(make_dataset(), 0.25)
    ds.failures.append({"clip": "bad.mp4", "stage": "media", "error": "no video stream"})
    ds.extra[0] = {"transcript_source": "asr", "language_probability": 0.97}
    path = write_features(ds, tmp_path / "f.npz")
    back = read_features(path)
    _same(ds, back)
    assert list(back.split) == list(ds.split) and list(back.language) == list(ds.language)
    np.testing.assert_allclose(back.scores, ds.scores)
    assert back.meta.modalities["audio"].feature_names == ds.meta.modalities["audio"].feature_names
    assert np.isnan(back.features["vision"][0][1]).all()  # masked frames survive
    assert back.failures == ds.failures
    assert back.extra[0] == {"transcript_source": "asr", "language_probability": 0.97} and back.extra[1] == {}


def test_mmsa_round_trip_and_layout(tmp_path):
    ds = group_validation_split(make_dataset(nan_rows=False), 0.25)
    path = write_mmsa(ds, tmp_path / "unaligned.pkl")
    raw = pickle.load(open(path, "rb"))
    assert set(raw) == {"train", "valid", "test"}
    part = raw["train"]
    for key in ("raw_text", "text", "audio", "vision", "audio_lengths", "vision_lengths",
                "regression_labels", "classification_labels", "id"):
        assert key in part
    assert part["audio"].ndim == 3 and all("$_$" in i for i in part["id"])
    back = read_mmsa(path, "mosi")
    order = {i: k for k, i in enumerate(back.ids)}
    for i, sid in enumerate(ds.ids):
        mmsa_id = [x for x in back.ids if x.endswith("$_$" + sid.split("_")[-1]) or x.endswith(sid)]
        assert mmsa_id, sid
        j = order[mmsa_id[0]]
        for m in ("audio", "vision"):
            np.testing.assert_allclose(back.features[m][j], ds.features[m][i], atol=1e-6)
        assert back.scores[j] == pytest.approx(ds.scores[i])


def test_seed_round_trip(tmp_path):
    ds = group_validation_split(make_dataset(nan_rows=False), 0.25)
    folder = write_seed(ds, tmp_path / "seed")
    assert (folder / "train_data.pkl").exists() and (folder / "metadata.pkl").exists()
    back = read_seed(folder)
    _same(ds, back, atol=1e-6)


def test_mmsa_missing_key_names_file_and_key(tmp_path):
    ds = group_validation_split(make_dataset(nan_rows=False), 0.25)
    path = write_mmsa(ds, tmp_path / "x.pkl")
    raw = pickle.load(open(path, "rb"))
    del raw["valid"]["vision"]
    pickle.dump(raw, open(path, "wb"))
    with pytest.raises(FeatureFormatError, match=r"x\.pkl: 'valid\.vision' — expected present"):
        read_mmsa(path)


def test_mmsa_wrong_dims_between_splits(tmp_path):
    ds = group_validation_split(make_dataset(nan_rows=False), 0.25)
    path = write_mmsa(ds, tmp_path / "x.pkl")
    raw = pickle.load(open(path, "rb"))
    raw["test"]["audio"] = raw["test"]["audio"][:, :, :3]
    pickle.dump(raw, open(path, "wb"))
    with pytest.raises(FeatureFormatError, match="test.<dims>"):
        read_mmsa(path)


def test_label_out_of_range_is_one_clear_error(tmp_path):
    ds = group_validation_split(make_dataset(nan_rows=False), 0.25)
    path = write_mmsa(ds, tmp_path / "x.pkl")
    raw = pickle.load(open(path, "rb"))
    raw["train"]["regression_labels"][0] = 7.0
    pickle.dump(raw, open(path, "wb"))
    with pytest.raises(FeatureFormatError, match=r"outside \[-3.0, 3.0\]"):
        read_mmsa(path)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.npz"):
        read_features(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not an archive")
    with pytest.raises(FeatureFormatError, match="neither an .npz"):
        read_features(bad)
    other = tmp_path / "other.pkl"
    pickle.dump({"train": {}}, open(other, "wb"))
    with pytest.raises(FeatureFormatError, match="trust=True"):  # a pickle is not opened by default
        read_features(other)
    with pytest.raises(FeatureFormatError, match="msa_lib feature file"):
        read_features(other, trust=True)
    foreign = tmp_path / "foreign.npz"
    np.savez(foreign, x=np.zeros(3))
    with pytest.raises(FeatureFormatError, match="'metadata.json' — expected present"):
        read_features(foreign)


def test_old_pickle_feature_file_opens_only_when_trusted(tmp_path):
    ds = make_dataset(n=6)
    old = tmp_path / "old.pkl"
    payload = {"format": "msa_lib.data", "version": 1, "meta": ds.meta.to_dict(), "failures": [],
               "samples": {"id": ds.ids.astype(str), "split": ds.split.astype(str), "language": ds.language.astype(str),
                           "raw_text": ds.raw_text.astype(str), "group": ds.group.astype(str), "scores": ds.scores,
                           "labels": ds.labels, "features": ds.features, "extra": list(ds.extra)}}
    pickle.dump(payload, open(old, "wb"))
    back = read_features(old, trust=True)
    converted = read_features(write_features(back, tmp_path / "new.npz"))
    _same(ds, converted)


def test_feature_file_needs_the_npz_suffix(tmp_path):
    with pytest.raises(ValueError, match=r"name it f\.npz"):
        write_features(make_dataset(n=4), tmp_path / "f.pkl")


def test_wrong_feature_shape_is_rejected():
    ds = make_dataset()
    with pytest.raises(FeatureFormatError, match=r"T x 3 array"):
        ds.with_features("extra", [np.zeros((2, 4))] * len(ds), ModalitySpec(3))


def test_concat_fills_missing_modality_with_empty_sequences():
    a = make_dataset(n=8)
    b = make_dataset(n=8, seed=1).with_modalities(["text"])
    b.ids = np.array([f"b{i}" for i in range(8)], dtype=object)
    both = concat([a, b])
    assert len(both) == 16 and both.features["audio"][-1].shape == (0, 4)
