"""Decision-level fusion rules on hand-made probability tables, the confidence weighting formula,
the stacker's fitting rows, the BCE one-vs-rest head and the RAVDESS actor split.

Expected outputs are worked out by hand in the comments (two branches, three classes)."""
from __future__ import annotations

import inspect

import numpy as np
import pandas as pd
import pytest

from msa_lib.models import decision_fusion as rules
from msa_lib.models.decision_fusion import (
    AccuracyWeightedRule,
    AverageRule,
    ConfidenceWeightedRule,
    FusionInputError,
    RuleBasedCombiner,
    StackingRule,
)

# branch A and branch B, three rows, three classes
P_A = np.array([[0.6, 0.3, 0.1],
                [0.2, 0.2, 0.6],
                [0.5, 0.4, 0.1]])
P_B = np.array([[0.2, 0.7, 0.1],
                [0.1, 0.8, 0.1],
                [0.9, 0.05, 0.05]])


def test_average():
    # row 0: (0.6+0.2)/2, (0.3+0.7)/2, (0.1+0.1)/2 = 0.4, 0.5, 0.1
    # row 1: 0.15, 0.5, 0.35 ; row 2: 0.7, 0.225, 0.075
    expected = [[0.4, 0.5, 0.1], [0.15, 0.5, 0.35], [0.7, 0.225, 0.075]]
    np.testing.assert_allclose(rules.average([P_A, P_B]), expected)
    np.testing.assert_allclose(AverageRule().fit([P_A, P_B], [0, 1, 2]).fuse([P_A, P_B]), expected)


def test_accuracy_weighted_from_validation():
    # validation: A right on 3 of 4 rows (acc 0.75), B right on 1 of 4 (acc 0.25)
    val_a = np.array([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8], [0.8, 0.1, 0.1]])
    val_b = np.array([[0.8, 0.1, 0.1], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]])
    y_val = np.array([0, 1, 2, 2])
    rule = AccuracyWeightedRule().fit([val_a, val_b], y_val)
    # weights = 0.75 / (0.75 + 0.25), 0.25 / 1.0 = 0.75, 0.25
    np.testing.assert_allclose(rule.weights_, [0.75, 0.25])
    # row 0: 0.75*[0.6,0.3,0.1] + 0.25*[0.2,0.7,0.1] = [0.45+0.05, 0.225+0.175, 0.075+0.025] = [0.5, 0.4, 0.1]
    np.testing.assert_allclose(rule.fuse([P_A, P_B])[0], [0.5, 0.4, 0.1])
    # above chance (K = 3): max(0.75 - 1/3, 0) = 0.4167, max(0.25 - 1/3, 0) = 0 -> weights 1, 0 -> branch A
    above = AccuracyWeightedRule("above", above_chance=True).fit([val_a, val_b], y_val)
    np.testing.assert_allclose(above.weights_, [1.0, 0.0])
    np.testing.assert_allclose(above.fuse([P_A, P_B]), P_A)


def test_weights_edge_cases():
    np.testing.assert_allclose(rules.accuracy_weights([0.1, 0.2], chance=0.5), [0.5, 0.5])  # all below chance
    np.testing.assert_allclose(rules.weighted_average([P_A, P_B], [0, 0]), rules.average([P_A, P_B]))
    with pytest.raises(FusionInputError):
        rules.weighted_average([P_A, P_B], [1.0])


def test_confidence_weighting_formula():
    # confidence = probability of each branch's own predicted label
    # row 0: c_A = 0.6, c_B = 0.7 -> w = 0.6/1.3, 0.7/1.3 = 0.461538, 0.538462
    # row 1: c_A = 0.6, c_B = 0.8 -> w = 0.6/1.4, 0.8/1.4 = 0.428571, 0.571429
    # row 2: c_A = 0.5, c_B = 0.9 -> w = 0.5/1.4, 0.9/1.4 = 0.357143, 0.642857
    w = rules.confidence_weights([P_A, P_B])
    np.testing.assert_allclose(w, [[0.6 / 1.3, 0.7 / 1.3], [0.6 / 1.4, 0.8 / 1.4], [0.5 / 1.4, 0.9 / 1.4]])
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    fused = rules.confidence_weighted([P_A, P_B])
    # row 0: [(0.6*0.6 + 0.7*0.2)/1.3, (0.6*0.3 + 0.7*0.7)/1.3, 0.1] = [0.5/1.3, 0.67/1.3, 0.1]
    np.testing.assert_allclose(fused[0], [0.5 / 1.3, 0.67 / 1.3, 0.1])
    # row 1: [(0.12 + 0.08)/1.4, (0.12 + 0.64)/1.4, (0.36 + 0.08)/1.4] = [0.142857, 0.542857, 0.314286]
    np.testing.assert_allclose(fused[1], [0.2 / 1.4, 0.76 / 1.4, 0.44 / 1.4])
    np.testing.assert_allclose(ConfidenceWeightedRule().fuse([P_A, P_B]), fused)
    # equal confidences -> plain average
    q = np.array([[0.7, 0.2, 0.1]])
    np.testing.assert_allclose(rules.confidence_weighted([q, q[:, ::-1]]), rules.average([q, q[:, ::-1]]))


def test_rule_based():
    # trusted = A, threshold 0.65:
    # row 0: A says 0 (0.6), B says 1 (0.7): disagree, A below 0.65 -> most confident = B -> P_B[0]
    # row 1: A says 2 (0.6), B says 1 (0.8): disagree, A below 0.65 -> B -> P_B[1]
    # row 2: both say 0 -> agreement -> average = [0.7, 0.225, 0.075]
    out = rules.rule_based([P_A, P_B], trusted=0, threshold=0.65)
    np.testing.assert_allclose(out, [P_B[0], P_B[1], [0.7, 0.225, 0.075]])
    # threshold 0.5: A (0.6 >= 0.5) is followed on rows 0 and 1
    out = rules.rule_based([P_A, P_B], trusted=0, threshold=0.5)
    np.testing.assert_allclose(out, [P_A[0], P_A[1], [0.7, 0.225, 0.075]])
    np.testing.assert_array_equal(out.argmax(axis=1), [0, 2, 0])


def test_rule_based_combiner_fits_on_validation():
    # validation rows where A is right whenever the branches disagree: A becomes trusted, and the
    # lowest threshold (always follow A on disagreement) already gives 100 %
    val_a = np.array([[0.55, 0.45, 0.0], [0.0, 0.55, 0.45], [0.9, 0.1, 0.0]])
    val_b = np.array([[0.1, 0.9, 0.0], [0.0, 0.1, 0.9], [0.9, 0.1, 0.0]])
    comb = RuleBasedCombiner().fit([val_a, val_b], np.array([0, 1, 0]))
    assert comb.trusted_ == 0 and comb.threshold_ == 0.0
    np.testing.assert_array_equal(comb.fuse([val_a, val_b]).argmax(axis=1), [0, 1, 0])


def test_flatten_keeps_argmax():
    # alpha 0.5, K = 3: 0.5 * [0.6, 0.3, 0.1] + 0.5/3 = [0.4667, 0.3167, 0.2167]
    np.testing.assert_allclose(rules.flatten_probs(P_A, 0.5)[0], [0.3 + 1 / 6, 0.15 + 1 / 6, 0.05 + 1 / 6])
    np.testing.assert_array_equal(rules.flatten_probs(P_A, 0.9).argmax(1), P_A.argmax(1))


def test_temperature_scaling():
    # T = 2 on [0.8, 0.2]: softmax(log p / 2) ∝ [sqrt(0.8), sqrt(0.2)] = [2, 1] * sqrt(0.2) -> [2/3, 1/3]
    np.testing.assert_allclose(rules.apply_temperature(np.array([[0.8, 0.2]]), 2.0), [[2 / 3, 1 / 3]])
    np.testing.assert_allclose(rules.apply_temperature(P_A, 1.0), P_A)
    # 90 %-sure predictions that are right half of the time: the fitted T softens them (T > 1),
    # and the argmax never moves
    p = np.tile([[0.9, 0.1]], (20, 1))
    labels = np.array([0, 1] * 10)
    t = rules.fit_temperature(p, labels)
    # the optimum is T -> inf (p -> 0.5); the search stops at its upper bound of 20
    assert t > 5 and np.allclose(rules.apply_temperature(p, t)[:, 0], 0.5, atol=0.05)
    np.testing.assert_array_equal(rules.apply_temperature(P_B, 0.3).argmax(1), P_B.argmax(1))


def test_stacker_picks_C_by_grouped_cv():
    rng = np.random.default_rng(0)
    y = np.tile(np.arange(3), 40)
    p0 = np.eye(3)[y] * 0.5 + 0.5 / 3
    p1 = rng.dirichlet(np.ones(3), size=120)
    groups = np.repeat(np.arange(6), 20)  # six "actors"
    rule = StackingRule(C_grid=(0.01, 1.0)).fit([p0, p1], y, groups)
    assert rule.C_ in (0.01, 1.0) and rule.cv_acc_ > 0.9 and rule.n_fit_rows_ == 120


def test_bad_tables_raise_one_clear_error():
    with pytest.raises(FusionInputError, match="sums to"):
        rules.average([P_A, P_B * 2])
    with pytest.raises(FusionInputError, match="shaped like"):
        rules.average([P_A, P_B[:2]])


def test_stacker_never_sees_test_rows():
    rng = np.random.default_rng(0)
    y_val = np.tile(np.arange(3), 20)
    val = [np.eye(3)[y_val] * 0.6 + 0.4 / 3, rng.dirichlet(np.ones(3), size=60)]
    test_a = [rng.dirichlet(np.ones(3), size=25) for _ in range(2)]
    test_b = [rng.dirichlet(np.ones(3), size=25) for _ in range(2)]
    # fuse_all takes no test labels at all
    assert "labels" not in " ".join(p for p in inspect.signature(rules.fuse_all).parameters if p.startswith("eval"))
    r1, r2 = StackingRule(), StackingRule()
    out1 = rules.fuse_all([r1], val, y_val, test_a)["stacking"]
    rules.fuse_all([r2], val, y_val, test_b)
    assert r1.n_fit_rows_ == r2.n_fit_rows_ == 60  # the validation rows only
    np.testing.assert_allclose(r1.model_.coef_, r2.model_.coef_)  # other test rows: same stacker
    assert out1.shape == (25, 3)
    np.testing.assert_allclose(out1.sum(axis=1), 1.0)
    # the stacker learns that branch 0 is informative
    assert np.mean(r1.fuse(val).argmax(1) == y_val) > 0.9


def test_default_rules_and_unfitted_errors():
    names = [r.name for r in rules.default_rules()]
    assert names == ["average", "accuracy_weighted", "accuracy_weighted_above_chance", "confidence_weighted",
                     "rule_based", "stacking"]
    with pytest.raises(RuntimeError, match="fit"):
        StackingRule().fuse([P_A, P_B])


# --------------------------------------------------------------------------------- BCE detection
def test_pos_weight_and_bce_head():
    from msa_lib.studies.decision.binary import (BinaryHeadConfig, detection_metrics, one_hot, pos_weights,
                                         predict_scores, train_one_vs_rest)

    # 10 rows: class 0 twice, class 1 eight times, class 2 never -> 8/2 = 4, 2/8 = 0.25, 1 (no positives)
    Y = one_hot(np.array([0, 0] + [1] * 8), 3)
    np.testing.assert_allclose(pos_weights(Y), [4.0, 0.25, 1.0])
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    X = rng.normal(size=(300, 5)) + 2.0 * one_hot(y, 3) @ rng.normal(size=(3, 5))
    Yh = one_hot(y, 3)
    for weighting in (False, True):
        model, hist = train_one_vs_rest(X[:200], Yh[:200], X[200:], Yh[200:],
                                        BinaryHeadConfig(max_epochs=60, lr=0.05, class_weighting=weighting))
        scores = predict_scores(model, X[200:])
        table = detection_metrics(Yh[200:], scores, ["a", "b", "c"])
        assert table["ap"].mean() > 0.7 and len(hist) > 0
        assert set(table.columns) >= {"emotion", "ap", "f1", "precision", "recall"}


# ----------------------------------------------------------------------------------- RAVDESS split
@pytest.fixture(scope="module")
def branches():
    from msa_lib.studies.decision.emotion import load_ravdess_branches

    try:
        return load_ravdess_branches()
    except FileNotFoundError as exc:
        pytest.skip(f"RAVDESS data not shipped here: {exc}")


def test_join_is_one_to_one(branches):
    rep = branches.join_report
    assert rep["one_to_one"] and rep["n_matched"] == rep["n_recordings"] == rep["n_au_rows"] == 1440
    assert rep["au_modality_codes"] == ["01"] and rep["recording_modality_codes"] == ["03"]
    assert all(k == "-".join(s.split("-")[2:]) for k, s in zip(branches.table["key"], branches.au.ids))


def test_join_rejects_duplicates():
    from msa_lib.data.sources import ravdess_clip_key
    from msa_lib.studies.decision.emotion import RavdessJoinError, join_recordings_to_aus

    assert ravdess_clip_key("03-01-05-02-01-01-12") == "05-02-01-01-12"
    with pytest.raises(ValueError, match="RAVDESS"):
        ravdess_clip_key("not-a-ravdess-name")
    rec = pd.DataFrame({"stem": ["03-01-01-01-01-01-01", "03-01-01-01-01-01-01"], "emotion": [0, 0]})

    class FakeAU:
        ids = np.array(["01-01-01-01-01-01-01"])
        labels = np.array([0])

    with pytest.raises(RavdessJoinError, match="more than once"):
        join_recordings_to_aus(rec, FakeAU())


def test_actor_split_never_shares_an_actor(branches):
    from msa_lib.studies.decision.emotion import seed_splits, split_actors

    valid_sets = []
    for seed in range(5):
        split = seed_splits(branches.au, seed)
        actors = split_actors(split, branches.actors)
        assert actors["test"] == [21, 22, 23, 24]
        assert not set(actors["train"]) & set(actors["valid"])
        assert not (set(actors["train"]) | set(actors["valid"])) & set(actors["test"])
        assert len(actors["valid"]) >= 2 and set(actors["train"]) | set(actors["valid"]) == set(range(1, 21))
        valid_sets.append(tuple(actors["valid"]))
    assert len(set(valid_sets)) > 1  # seeds change the validation actors


def test_smoke_subset_covers_actors_and_emotions(branches):
    from msa_lib.studies.decision.emotion import stratified_clip_subset

    rows = stratified_clip_subset(branches.table, n_per_actor=2, seed=0)
    sub = branches.table.iloc[rows]
    assert len(rows) == 48 and sub["actor"].nunique() == 24 and sub["emotion"].nunique() == 8
    assert sub[sub["split"] == "test"]["emotion"].nunique() == 8


def test_branch_never_uses_test_labels():
    from msa_lib.studies.decision.emotion import BranchConfig, fit_branch

    rng = np.random.default_rng(1)
    y = np.tile(np.arange(8), 30)
    X = rng.normal(size=(240, 6)) + np.eye(8)[y][:, :6] * 2
    split = np.array(["train"] * 160 + ["valid"] * 40 + ["test"] * 40)
    cfg = BranchConfig(("logreg", "svm"), {"logreg": (0.1, 1.0), "svm": (1.0,)})
    a = fit_branch("x", X, y, split, cfg, seed=0)
    y_scrambled = y.copy()
    y_scrambled[split == "test"] = rng.permutation(y_scrambled[split == "test"])
    b = fit_branch("x", X, y_scrambled, split, cfg, seed=0)
    assert (a.kind, a.C) == (b.kind, b.C) and set(a.valid_scores) == {("logreg", 0.1), ("logreg", 1.0), ("svm", 1.0)}
    np.testing.assert_allclose(a.proba, b.proba)
    np.testing.assert_allclose(a.proba.sum(axis=1), 1.0)
