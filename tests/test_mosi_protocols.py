"""The two MOSI protocols on the shipped data: counts, video-disjoint splits, fine labels, the leakage
guard (refuses label-trained shipped vectors on mosi_standard, the override marks them), and the
regression head training and predicting on a small real subset."""
import numpy as np
import pandas as pd
import pytest
import torch

from msa_lib.core.paths import DATA_DIR
from msa_lib.data.protocols import (PROTOCOLS, SHIPPED_ALLOWED, SHIPPED_LABEL_TRAINED, LabelTrainedFeatureError,
                                    check_features_allowed, label_trained_marker, load_protocol, read_fine_labels)
from msa_lib.data.schema import FeatureFormatError
from msa_lib.data.splits import assert_disjoint_groups
from msa_lib.evaluate.metrics import FINE_GRAINED_METRICS

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def standard():
    return load_protocol("mosi_standard")


@pytest.fixture(scope="module")
def bclstm():
    return load_protocol("mosi_bclstm")


def test_mosi_standard_counts_and_video_disjoint_splits(standard):
    fine = read_fine_labels()
    expected = {"train": 1281, "valid": 229, "test": 685}  # the CMU standard split of label_fine.csv
    assert {s: int((standard.split == s).sum()) for s in expected} == expected
    assert {s: len(set(standard.group[standard.split == s])) for s in expected} == {"train": 52, "valid": 10, "test": 31}
    assert_disjoint_groups(standard)
    assert len(standard) == len(set(fine["id"]) & set(standard.ids))
    dropped = standard.meta.extra["dropped_no_fine_label"]
    assert len(standard) + len(dropped) == 2199 and not set(dropped) & set(standard.ids)
    assert standard.meta.labels.kind == "regression" and standard.meta.extra["protocol"] == "mosi_standard"


def test_mosi_standard_scores_are_the_fine_labels(standard, bclstm):
    fine = read_fine_labels().set_index("id")
    np.testing.assert_allclose(standard.scores, fine.loc[standard.ids, "label"].to_numpy(float))
    assert np.abs(standard.scores).max() <= 3
    np.testing.assert_array_equal(standard.labels, (standard.scores >= 0).astype(int))
    # binarised at >= 0 they agree with the shipped binary labels of the same clips
    binary = pd.Series(bclstm.labels, index=bclstm.ids).loc[standard.ids].to_numpy()
    np.testing.assert_array_equal(standard.labels, binary)
    assert standard.modalities == list(SHIPPED_ALLOWED)


def test_mosi_bclstm_is_the_shipped_split(bclstm):
    assert {s: int((bclstm.split == s).sum()) for s in ("train", "test")} == {"train": 1447, "test": 752}
    assert_disjoint_groups(bclstm)
    assert bclstm.meta.labels.kind == "binary" and bclstm.meta.extra["protocol"] == "mosi_bclstm"


def test_standard_test_videos_overlap_bclstm_train(standard, bclstm):
    where = dict(zip(bclstm.group, bclstm.split))
    test_videos = set(standard.group[standard.split == "test"])
    assert sum(where[v] == "train" for v in test_videos) == 24  # why label-trained vectors leak


def test_guard_refuses_label_trained_vectors_with_one_error():
    assert set(SHIPPED_LABEL_TRAINED) == {"text_cnn", "vision"}
    with pytest.raises(LabelTrainedFeatureError, match="refuses the shipped vision") as err:
        load_protocol("mosi_standard", shipped=["audio", "vision"])
    assert "allow_label_trained_features=True" in str(err.value)
    with pytest.raises(LabelTrainedFeatureError, match="text_cnn"):
        load_protocol("mosi_standard", shipped=["text_cnn"])


def test_override_keeps_and_marks_them(standard):
    ds = load_protocol("mosi_standard", shipped=["audio", "vision"], allow_label_trained_features=True)
    assert ds.modalities == ["audio", "vision"] and ds.meta.extra["label_trained_features"] == ["vision"]
    with pytest.raises(LabelTrainedFeatureError):
        check_features_allowed(ds, ["text", "vision"])
    used = check_features_allowed(ds, ["text", "audio", "vision"], allow_label_trained_features=True)
    assert label_trained_marker(used) == "vision" and label_trained_marker([]) == ""
    assert check_features_allowed(standard, ["text", "text_context", "audio"]) == []


def test_guard_does_not_apply_to_the_bclstm_protocol(bclstm):
    assert check_features_allowed(bclstm, ["text_cnn", "vision"]) == []


def test_unknown_protocol_and_feature_fail_clearly():
    assert PROTOCOLS == ("mosi_bclstm", "mosi_standard")
    with pytest.raises(KeyError, match="unknown protocol"):
        load_protocol("mosi_random")
    with pytest.raises(KeyError, match="no shipped MOSI feature"):
        load_protocol("mosi_standard", shipped=["covarep"])


def test_bad_fine_label_file_names_row(tmp_path):
    (tmp_path / "label_fine.csv").write_text("id,text,label,mode\nv_1,good,1.5,train\nv_2,bad,4.2,test\n")
    with pytest.raises(FeatureFormatError, match=r"label \(row 3\).*\[-3, 3\]"):
        read_fine_labels(tmp_path)
    (tmp_path / "label_fine.csv").write_text("id,text,label,mode\nv_1,a,1.5,train\nv_2,b,-1,test\n")
    with pytest.raises(FeatureFormatError, match="every video in one split"):
        read_fine_labels(tmp_path)
    assert (DATA_DIR / "mosi" / "label_fine.csv.gz").exists()


def test_regression_heads_train_and_predict_on_real_data(standard):
    """Unimodal and fusion models with the regression head on a small real subset (three videos per
    split: e5 text states and sentence vectors, shipped audio): finite scores, every fine-grained metric."""
    from dataclasses import replace

    from msa_lib.extract.text_features import MOSI_TEXT
    from msa_lib.studies.fine_grained import prepare_mosi_standard, run_fine_grained, standard_model_inputs
    from msa_lib.studies.recipes import ADAPTED_TEXT_ENCODER, model_config
    from msa_lib.train.trainer import TrainConfig

    ds = prepare_mosi_standard(text=replace(MOSI_TEXT, batch_size=64), max_videos=3)
    assert set(ds.split) == {"train", "valid", "test"} and "audio" in ds.modalities
    models = standard_model_inputs(["text_only", "audio_only", "late_avg", "early_concat", "mult", "adamml"])
    out = run_fine_grained(ds, models, seed=0, train=TrainConfig(max_epochs=2, batch_size=16, progress=False),
                           config=model_config(text_encoder=ADAPTED_TEXT_ENCODER))
    table = pd.DataFrame(out.rows)
    assert list(table["model"]) == list(models)
    assert set(FINE_GRAINED_METRICS) <= set(table.columns) and "f1_macro_5class_head" in table
    assert (table["label_trained_features"] == "").all() and (table["protocol"] == "mosi_standard").all()
    for pred in out.predictions:
        assert len(pred) == int((ds.split == "test").sum()) and np.isfinite(pred["score_pred"]).all()
    assert table[["acc2_has0", "mae", "acc7"]].notna().all().all()
    with pytest.raises(LabelTrainedFeatureError):
        run_fine_grained(ds, {"visual_only": ["vision"]}, seed=0)
