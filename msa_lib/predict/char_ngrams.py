"""A bag of character n-grams for Chinese text: TF-IDF character 1-3-grams -> logistic regression.

Chinese needs no word segmentation this way, and the characters are a view of a review that a frozen
multilingual sentence encoder only partly keeps: on ChnSentiCorp this linear model alone scores above a
linear model on multilingual-e5-small vectors (notebook 12's reference). Used by the co-training student
(:mod:`msa_lib.studies.co_training`) and by the default model's Chinese text branch, which stores the fitted
model as plain arrays (:func:`fit_char_logreg`) and rebuilds the vectoriser from them (:func:`char_proba`).
It lives in ``predict`` (not ``models``, whose package imports torch) so that ``msa predict`` stays
torch-free; scikit-learn is imported only when a Chinese text is scored.
"""
from __future__ import annotations

import numpy as np

NGRAM_RANGE = (1, 3)
MIN_DF = 2  # an n-gram must occur in two training texts


def char_vectorizer(ngram_range=NGRAM_RANGE, min_df: int = MIN_DF, vocabulary=None):
    """scikit-learn's TF-IDF vectoriser over character n-grams (sublinear term frequency)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    return TfidfVectorizer(analyzer="char", ngram_range=tuple(ngram_range), min_df=min_df, sublinear_tf=True,
                           vocabulary=vocabulary)


def fit_char_logreg(texts, labels, C: float, ngram_range=NGRAM_RANGE, min_df: int = MIN_DF, seed: int = 0) -> dict:
    """Fit vectoriser + logistic regression on ``texts``; returns the model as arrays (``char_terms``,
    ``char_idf``, ``char_coef``, ``char_intercept``, ``char_ngram_range``), ready for ``np.savez``."""
    from sklearn.linear_model import LogisticRegression

    vectorizer = char_vectorizer(ngram_range, min_df)
    X = vectorizer.fit_transform(np.asarray(texts, dtype=object))
    model = LogisticRegression(C=C, max_iter=3000, random_state=seed).fit(X, np.asarray(labels, int))
    terms = np.array(sorted(vectorizer.vocabulary_, key=vectorizer.vocabulary_.get))
    return {"char_terms": terms, "char_idf": vectorizer.idf_.astype(np.float64),
            "char_coef": model.coef_.ravel().astype(np.float64), "char_intercept": model.intercept_.astype(np.float64),
            "char_ngram_range": np.asarray(ngram_range, dtype=np.int64)}


_VECTORIZERS: dict = {}  # id of a terms array -> (the array, its rebuilt vectoriser)


def _rebuilt(arrays: dict):
    terms = arrays["char_terms"]
    cached = _VECTORIZERS.get(id(terms))
    if cached is not None and cached[0] is terms:
        return cached[1]
    vectorizer = char_vectorizer(tuple(int(n) for n in arrays["char_ngram_range"]), 1,
                                 {str(t): i for i, t in enumerate(terms)})
    vectorizer.idf_ = np.asarray(arrays["char_idf"], np.float64)
    _VECTORIZERS[id(terms)] = (terms, vectorizer)
    return vectorizer


def char_proba(arrays: dict, texts) -> np.ndarray:
    """P(positive) per text of a model written by :func:`fit_char_logreg`."""
    X = _rebuilt(arrays).transform(np.asarray(texts, dtype=object))
    z = X @ np.asarray(arrays["char_coef"], np.float64) + float(np.asarray(arrays["char_intercept"]).ravel()[0])
    return 1.0 / (1.0 + np.exp(-z))
