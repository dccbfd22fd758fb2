"""The character n-gram model (Chinese text branch of the default model, co-training student): the model
rebuilt from its saved arrays scores exactly as the fitted scikit-learn model, and survives np.savez."""
import numpy as np
import pytest

from msa_lib.data.sampling import cap_splits
from msa_lib.data.sources import load_zh_reviews
from msa_lib.predict.char_ngrams import char_proba, char_vectorizer, fit_char_logreg


@pytest.fixture(scope="module")
def reviews():
    zh = load_zh_reviews()
    return zh.subset(cap_splits(zh.split, zh.labels, {"train": 150, "valid": 2, "test": 40}))


def test_saved_arrays_score_as_the_fitted_model(reviews, tmp_path):
    from sklearn.linear_model import LogisticRegression

    train, test = reviews.get_split("train"), reviews.get_split("test")
    arrays = fit_char_logreg(train.raw_text, train.labels, C=3.0)
    vectorizer = char_vectorizer()
    reference = LogisticRegression(C=3.0, max_iter=3000).fit(vectorizer.fit_transform(train.raw_text), train.labels)
    expected = reference.predict_proba(vectorizer.transform(test.raw_text))[:, 1]
    assert np.allclose(char_proba(arrays, test.raw_text), expected, atol=1e-10)
    np.savez_compressed(tmp_path / "m.npz", **arrays)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as npz:
        loaded = {k: npz[k] for k in npz.files}
    assert np.allclose(char_proba(loaded, test.raw_text), expected, atol=1e-10)
    # it learnt something: better than the majority class on held-out reviews
    assert ((char_proba(arrays, test.raw_text) >= 0.5) == test.labels).mean() > max(test.labels.mean(), 1 - test.labels.mean())


def test_unseen_characters_give_the_intercept_only():
    arrays = fit_char_logreg(["好好好", "很好很好", "差差", "太差了差"], [1, 1, 0, 0], C=1.0, min_df=1)
    p = char_proba(arrays, ["ＸＹＺ"])
    assert p[0] == pytest.approx(1 / (1 + np.exp(-arrays["char_intercept"][0])))
