"""The shipped real datasets load with the documented counts and splits."""
import numpy as np
import pytest

from msa_lib.data.sources import (load_mosi, load_ravdess_au_mfcc, load_zh_reviews, parse_label, parse_ravdess_name,
                                  ravdess_recordings, read_clip_manifest)
from msa_lib.data.splits import assert_disjoint_groups, group_validation_split
from msa_lib.data.schema import FeatureFormatError


def test_mosi_counts_and_speaker_independent_split():
    ds = load_mosi()
    assert (ds.split == "train").sum() == 1447 and (ds.split == "test").sum() == 752
    assert len(set(ds.group[ds.split == "train"])) == 62 and len(set(ds.group[ds.split == "test"])) == 31
    assert {m: ds.meta.modalities[m].dim for m in ds.modalities} == {"text_cnn": 100, "audio": 73, "vision": 100}
    assert ds.raw_text[0] and set(np.unique(ds.labels)) == {0, 1}
    assert_disjoint_groups(group_validation_split(ds))


def test_zh_reviews_split_is_fixed_stratified_and_duplicate_safe():
    a, b = load_zh_reviews(), load_zh_reviews()
    assert list(a.split) == list(b.split)
    assert len(a) > 7000 and set(a.language) == {"zh"}
    pos = {s: a.labels[a.split == s].mean() for s in ("train", "valid", "test")}
    assert max(pos.values()) - min(pos.values()) < 0.01
    assert_disjoint_groups(a)


def test_ravdess_au_mfcc_actor_split():
    ds = load_ravdess_au_mfcc()
    assert len(ds) == 1440 and ds.meta.modalities["vision"].dim == 35 and ds.meta.modalities["audio"].dim == 259
    test_actors = set(ds.group[ds.split == "test"])
    assert test_actors == {"actor_21", "actor_22", "actor_23", "actor_24"}
    assert_disjoint_groups(group_validation_split(ds, 0.2))


def test_ravdess_recordings_and_name_parsing():
    rec = ravdess_recordings()
    assert len(rec) == 1440 and rec["emotion"].nunique() == 8
    info = parse_ravdess_name("03-01-05-02-01-02-22.opus")
    assert info["emotion_name"] == "angry" and info["actor"] == 22 and info["split"] == "test"
    with pytest.raises(ValueError, match="not a RAVDESS file name"):
        parse_ravdess_name("clip.opus")


def test_manifest_labels_and_paths():
    man = read_clip_manifest("data/clips/manifest.csv")
    assert len(man) == 4 and set(man["language"]) == {"zh", "en"}
    assert all(p.endswith(".mp4") for p in man["path"])
    assert list(man["label"]) == [-1.0, -1.0, -1.0, -1.0]  # "0 (neg; binary)" is negative, not neutral
    assert parse_label("0.6 (Positive)") == 0.6 and parse_label("Neutral") == 0.0


def test_manifest_class_labels_and_bad_split_names_row(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("path,label,split,group\na.mp4,happy,train,actor_1\nb.mp4,neutral,dev,actor_2\n")
    man = read_clip_manifest(path)  # a label that is no number or polarity word: all labels are class names
    assert list(man["label_class"]) == ["happy", "neutral"] and man["label"].isna().all()
    assert list(man["split"]) == ["train", "valid"] and list(man["group"]) == ["actor_1", "actor_2"]
    path.write_text("path,label,split\na.mp4,0.5,holdout\n")
    with pytest.raises(FeatureFormatError, match=r"split \(row 2\)"):
        read_clip_manifest(path)
