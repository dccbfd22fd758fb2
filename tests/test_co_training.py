"""Co-training a Chinese character n-gram student on a cross-lingual teacher (issue 20): prior-matched
pseudo-labels by hand, gold labels of a few-shot sample win, the run never reads the pool's labels, and
bad inputs fail with one clear error."""
import numpy as np
import pandas as pd
import pytest

from msa_lib.data.sampling import cap_splits
from msa_lib.data.sources import load_mosi, load_zh_reviews
from msa_lib.data.splits import group_validation_split
from msa_lib.studies import co_training as ct
from msa_lib.studies import crosslingual as xl

TINY = ct.CoTrainingConfig(Cs=(1.0, 10.0), cv_folds=3)


def test_prior_matched_threshold_and_pseudo_labels_by_hand():
    prob = np.array([0.9, 0.8, 0.7, 0.6, 0.3, 0.1, 0.2, 0.05])
    # prior 0.75: the top 6 of 8 are positive (0.9 ... 0.2); the cut is the 25 % quantile
    assert ct.prior_matched_threshold(prob, 0.75) == pytest.approx(np.quantile(prob, 0.25))
    index, labels = ct.confident_pseudo_labels(prob, 0.75, 0.5)
    # positives 0, 1, 2, 3, 4, 6 -> the 3 farthest from the cut (0.175): 0, 1, 2; negatives 5, 7 -> 7
    assert index.tolist() == [0, 1, 2, 7] and labels.tolist() == [1, 1, 1, 0]
    index, labels = ct.confident_pseudo_labels(prob, 0.75, 1.0)
    assert index.tolist() == list(range(8)) and labels.tolist() == [1, 1, 1, 1, 1, 0, 1, 0]


def test_tied_scores_still_give_both_classes():
    index, labels = ct.confident_pseudo_labels(np.full(10, 0.5), 0.7, 1.0)
    assert labels.sum() == 7 and len(index) == 10
    _, labels = ct.confident_pseudo_labels(np.full(10, 0.5), 0.99, 1.0)
    assert labels.sum() == 9  # at least one review per class


@pytest.mark.parametrize("prior", [0.0, 1.0, -0.2, float("nan")])
def test_prior_out_of_range_is_one_clear_error(prior):
    with pytest.raises(ValueError, match="prior"):
        ct.prior_matched_threshold(np.array([0.2, 0.8]), prior)


def test_config_and_student_reject_bad_settings():
    with pytest.raises(ValueError, match="share"):
        ct.CoTrainingConfig(share=0.0)
    with pytest.raises(ValueError, match="teacher_weight"):
        ct.CoTrainingConfig(teacher_weight=1.5)
    with pytest.raises(ValueError, match="two classes"):
        ct.CharNgramStudent(TINY).fit(["好", "很好", "不错", "差"], [1, 1, 1, 0])


@pytest.fixture(scope="module")
def reviews():
    zh = load_zh_reviews()
    return zh.subset(cap_splits(zh.split, zh.labels, {"train": 120, "valid": 2, "test": 60}))


def test_student_learns_real_reviews_and_picks_c_by_cross_validation(reviews):
    train, test = reviews.get_split("train"), reviews.get_split("test")
    student = ct.CharNgramStudent(TINY).fit(train.raw_text, train.labels)
    assert student.C in TINY.Cs and set(student.cv_accuracy) == set(TINY.Cs)
    prob = student.predict_proba(test.raw_text)
    assert prob.shape == (len(test),) and ((prob >= 0.5) == test.labels).mean() > 0.6


def test_gold_labels_of_the_sample_win_and_are_always_kept(reviews):
    pool, test = reviews.get_split("train"), reviews.get_split("test")
    rng = np.random.default_rng(0)
    teacher = np.where(pool.labels == 1, 0.7, 0.3) + rng.normal(0, 0.1, len(pool))
    least_confident = int(np.argmin(np.abs(teacher - np.median(teacher))))
    labelled = {pool.ids[least_confident]: 1 - int(teacher[least_confident] >= np.median(teacher))}
    result = ct.co_train(pool.ids, pool.raw_text, teacher, test.ids, test.raw_text, np.full(len(test), 0.5),
                         0.5, TINY, labelled=labelled)
    gold = result.student_labels[result.student_labels["origin"] == "gold"]
    assert gold["id"].tolist() == list(labelled) and gold["label"].tolist() == list(labelled.values())
    assert result.n_pseudo == len(result.student_labels) == round(0.5 * len(pool)) + 1
    rows = pd.DataFrame(ct.evaluation_rows(result, dict(zip(test.ids, test.labels))))
    assert rows["scorer"].tolist() == ["teacher (p >= 0.5)", "teacher (prior-matched cut)", "student (prior-matched cut)",
                                       "co-trained (prior-matched cut)"]
    # the constant test teacher: at 0.5 every review is positive, so accuracy = the positive share
    assert rows["acc"].iloc[0] == pytest.approx(test.labels.mean())


def test_bad_inputs_fail_clearly(reviews):
    pool, test = reviews.get_split("train"), reviews.get_split("test")
    p = np.linspace(0, 1, len(pool))
    with pytest.raises(ValueError, match="not in the pool"):
        ct.co_train(pool.ids, pool.raw_text, p, test.ids, test.raw_text, np.zeros(len(test)), 0.5, TINY,
                    labelled={"no_such_review": 1})
    with pytest.raises(ValueError, match="one entry per review"):
        ct.co_train(pool.ids, pool.raw_text, p[:-1], test.ids, test.raw_text, np.zeros(len(test)), 0.5, TINY)


def test_evaluation_rows_by_hand():
    test = pd.DataFrame({"id": ["a", "b", "c", "d"], "teacher": [0.9, 0.6, 0.4, 0.45],
                         "student": [0.8, 0.2, 0.3, 0.9], "combined": [0.85, 0.4, 0.35, 0.675]})
    result = ct.CoTrainingResult(prior=0.5, teacher_cut=0.42, student_cut=0.5, combined_cut=0.5, n_pseudo=4,
                                 student_C=1.0, test=test, student_labels=pd.DataFrame(columns=["id", "label", "origin"]))
    rows = {r["scorer"]: r for r in ct.evaluation_rows(result, {"a": 1, "b": 0, "c": 0, "d": 1})}
    assert rows["teacher (p >= 0.5)"]["acc"] == pytest.approx(0.5)  # a, b positive: a right, b wrong, c right, d wrong
    assert rows["teacher (prior-matched cut)"]["acc"] == pytest.approx(0.75)  # cut 0.42: d right now, b still wrong
    assert rows["co-trained (prior-matched cut)"]["acc"] == pytest.approx(1.0)
    assert rows["co-trained (prior-matched cut)"]["auc"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def cross_lingual_inputs():
    """A one-epoch teacher on real MOSI utterances and real reviews (frozen e5 sentence vectors)."""
    mosi = group_validation_split(load_mosi(), valid_fraction=0.15, seed=0)
    mosi = mosi.subset(cap_splits(mosi.split, mosi.labels, {"train": 64, "valid": 16, "test": 16}))
    cfg = xl.DataConfig(zh_max={"train": 60, "valid": 2, "test": 30})
    source, target, _ = xl.prepare(xl.load_source(cfg, mosi=mosi), xl.load_target(cfg), cfg)
    base = xl.ExperimentConfig().with_training(max_epochs=2, device="cpu")
    _, fit = xl.run_zero_shot("source_only", xl.nce_settings()["source_only"], source, target, 0, base)
    return fit, source, target, base


def test_co_training_never_reads_the_pool_labels(cross_lingual_inputs):
    """Poison every Chinese train label: the zero-shot rows are unchanged (only the after-the-fact
    pseudo-label diagnostic reads them)."""
    fit, source, target, base = cross_lingual_inputs
    clean = pd.DataFrame(ct.zero_shot_co_training(fit, source, target, base, 0, TINY))
    poisoned = target.subset(np.arange(len(target)))
    train = poisoned.split == "train"
    poisoned.labels = poisoned.labels.copy()
    poisoned.labels[train] = 1 - poisoned.labels[train]
    dirty = pd.DataFrame(ct.zero_shot_co_training(fit, source, poisoned, base, 0, TINY))
    metrics = ["acc", "f1_macro", "auc", "prior", "n_pseudo", "student_C"]
    assert np.allclose(clean[metrics].to_numpy(float), dirty[metrics].to_numpy(float))
    assert np.allclose(clean["pseudo_label_accuracy"], 1 - dirty["pseudo_label_accuracy"])
    assert (clean["prior_from"] == "em").all() and clean["prior"].between(*ct.PRIOR_RANGE).all()


def test_few_shot_co_training_uses_the_sample_prior(cross_lingual_inputs):
    from msa_lib.studies.fewshot import target_sample

    fit, source, target, base = cross_lingual_inputs
    rows = pd.DataFrame(ct.few_shot_co_training(fit, source, target, 20, 0, base, epochs=1, co_cfg=TINY))
    sample = target_sample(target, 20, 0)
    assert (rows["k_percent"] == 20).all() and (rows["prior_from"] == "labelled sample").all()
    assert rows["prior"].iloc[0] == pytest.approx(sample.labels.mean())
    assert len(rows) == 4 and rows["acc"].between(0, 1).all()
