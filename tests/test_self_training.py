"""Self-training on unlabelled Chinese reviews (issue 20): the pool never carries target labels,
class-balanced selection, stopping on agreement, and the frozen-layer advance of cached e5 states."""
import numpy as np
import pytest

from msa_lib.data.sampling import cap_splits
from msa_lib.data.sources import load_mosi
from msa_lib.data.splits import group_validation_split
from msa_lib.extract.text_features import TextFeatureConfig, add_text_features
from msa_lib.models.encoders import advance_hidden_states
from msa_lib.studies import crosslingual as xl
from msa_lib.studies import self_training as st

TINY = st.SelfTrainingConfig(fine_tuned_layers=1, shares=(0.5, 1.0), stop_change=0.0, reference_steps=4,
                             train=st.replace(st.STUDENT_TRAINING, max_epochs=2, batch_size=16, device="cpu"))


@pytest.fixture(scope="module")
def small_inputs():
    """Real MOSI utterances (a few per split, with their dictionary translations) and real reviews."""
    mosi = group_validation_split(load_mosi(), valid_fraction=0.15, seed=0)
    mosi = mosi.subset(cap_splits(mosi.split, mosi.labels, {"train": 48, "valid": 16, "test": 16}))
    cfg = xl.DataConfig(text_input="tokens", zh_max={"train": 40, "valid": 4, "test": 24})
    source, target = xl.load_source(cfg, mosi=mosi), xl.load_target(cfg)
    return st.student_inputs(source, target, TINY.input_layer)


def test_class_balanced_selection_by_hand():
    prob = np.array([0.9, 0.8, 0.6, 0.4, 0.1, 0.2])
    index, labels = st.select_confident(prob, 0.5)
    # predicted positive: 0, 1, 2 -> the 2 most confident (0, 1); predicted negative: 3, 4, 5 -> 4, 5
    assert index.tolist() == [0, 1, 4, 5] and labels.tolist() == [1, 1, 0, 0]
    index, labels = st.select_confident(prob, 1.0)
    assert index.tolist() == list(range(6)) and labels.tolist() == [1, 1, 1, 0, 0, 0]
    with pytest.raises(ValueError):
        st.SelfTrainingConfig(shares=(0.0,))


def test_advanced_states_equal_encoding_at_the_higher_layer():
    zh = xl.load_target(xl.DataConfig(text_input="tokens", zh_max={"train": 3, "valid": 1, "test": 1}))
    at10 = add_text_features(zh, TextFeatureConfig(hidden_layer=10, max_length=128, context=False, show_progress=False))
    advanced = advance_hidden_states(zh.features["text"], 8, 10)
    assert [len(a) for a in advanced] == [len(b) for b in at10.features["text"]]
    assert max(float(np.abs(a - b).max()) for a, b in zip(advanced, at10.features["text"])) < 1e-4


def test_pool_has_no_labels(small_inputs):
    _, target = small_inputs
    pool = st.unlabelled_pool(target)
    assert len(pool) == (target.split == "train").sum() and (pool.labels == -1).all()
    assert (target.labels[target.split == "train"] >= 0).all()  # the target itself is untouched


def test_self_training_never_reads_target_train_labels(small_inputs):
    """Poison every label of the Chinese train reviews: pseudo-labels, rounds and scores are unchanged."""
    source, target = small_inputs
    clean = st.run_self_training(source, target, seed=0, cfg=TINY)
    poisoned = target.subset(np.arange(len(target)))
    train = poisoned.split == "train"
    poisoned.labels = poisoned.labels.copy()
    poisoned.labels[train] = 1 - poisoned.labels[train]
    dirty = st.run_self_training(source, poisoned, seed=0, cfg=TINY)
    assert clean.selected_round == dirty.selected_round == 2  # stop_change 0: every share runs
    for r in clean.pseudo_labels:
        assert np.array_equal(clean.pseudo_labels[r][1], dirty.pseudo_labels[r][1])
    a, b = st.pd.DataFrame(clean.rows), st.pd.DataFrame(dirty.rows)
    assert np.allclose(a["acc"], b["acc"]) and np.allclose(a["auc"], b["auc"])
    assert set(a["eval_set"]) == {"mosi_test_text_only", "zh_test"} and a["selected"].sum() == 3
    diag = st.pseudo_label_accuracy(clean, target)  # reads labels, after the fact only
    assert len(diag) == 3 and diag["pseudo_label_accuracy"].between(0, 1).all()


def test_rounds_stop_on_agreement(small_inputs):
    source, target = small_inputs
    result = st.run_self_training(source, target, seed=0, cfg=st.replace(TINY, stop_change=0.99), evaluate_rounds=False)
    # a round whose pseudo-labels changed on fewer than 99 % of the pool stops the loop
    assert result.selected_round == 1 and len(result.rounds) == 2
    assert result.rounds["change_since_previous"].iloc[1] < 0.99
    assert {r["round"] for r in result.rows} == {1}


def test_fine_tuned_reference_trains_on_the_labelled_sample(small_inputs):
    _, target = small_inputs
    row = st.fine_tuned_reference(target, 50, seed=0, cfg=TINY)
    assert row["n_train"] == len(st.target_sample(target, 50, 0)) and row["n"] == 24 and 0 <= row["acc"] <= 1 and row["k_percent"] == 50


def test_rehearsal_on_the_self_trained_student(small_inputs):
    source, target = small_inputs
    cfg = st.replace(TINY, shares=(0.5,))
    rows = st.rehearsal_runs(source, target, [0], [0, 50], cfg, epochs=1)
    assert set(rows["k_percent"]) == {0, 50} and set(rows["eval_set"]) == {"mosi_test_text_only", "zh_test"}
    k50 = rows[rows["k_percent"] == 50].iloc[0]
    assert k50["n_target"] == len(st.target_sample(target, 50, 0)) and k50["repeat_target"] >= 1
    mosi = rows[rows["eval_set"] == "mosi_test_text_only"]
    assert mosi["mosi_delta_vs_english_only"].notna().all()
    # the second call reuses the cached self-trained model: same rows
    again = st.rehearsal_runs(source, target, [0], [50], cfg, epochs=1)
    assert np.allclose(rows[rows["k_percent"] == 50]["acc"], again["acc"])
