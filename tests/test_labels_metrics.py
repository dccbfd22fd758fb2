"""Metrics against hand-computed cases (the arithmetic is in the comments)."""
import numpy as np
import pytest

from msa_lib.data.labels import MOSI_SCHEME, LabelScheme, check_targets, scores_to_classes
from msa_lib.evaluate import metrics as M

TRUE = np.array([-2.4, -0.4, 0.0, 0.6, 1.6, 2.8])
PRED = np.array([-1.2, 0.3, -0.2, 0.0, 2.2, 1.4])


def test_acc2_has0_counts_zero_as_non_negative():
    # true>=0: F F T T T T ; pred>=0: F T F T T T -> agree at 0,3,4,5 -> 4/6
    assert M.acc2_has0(TRUE, PRED) == pytest.approx(4 / 6)


def test_acc2_non0_drops_true_zeros_and_maps_both_sides_alike():
    # drop index 2; true>0: F F T T T ; pred>0: F T F T T (pred 0.0 is not positive) -> 3/5
    assert M.acc2_non0(TRUE, PRED) == pytest.approx(3 / 5)


def test_acc3_acc5_acc7_mosi_rounding_after_clipping():
    # acc3: true [-1,0,0,1,1,1] pred [-1,0,0,0,1,1] -> 5/6
    assert M.acc3(TRUE, PRED) == pytest.approx(5 / 6)
    # acc5: true [-2,0,0,1,2,2] pred [-1,0,0,0,2,1] -> 3/6
    assert M.acc5(TRUE, PRED) == pytest.approx(3 / 6)
    # acc7: true [-2,0,0,1,2,3] pred [-1,0,0,0,2,1] -> 3/6
    assert M.acc7(TRUE, PRED) == pytest.approx(3 / 6)


def test_mae_and_pearson():
    # |-1.2|+|0.7|+|0.2|+|0.6|+|0.6|+|1.4| = 4.7 -> /6
    assert M.mae(TRUE, PRED) == pytest.approx(4.7 / 6)
    # deviations [-1,0,1] and [-1,1,0]: cov 1, variances 2 and 2 -> r = 0.5
    assert M.pearson_r([1, 2, 3], [1, 3, 2]) == pytest.approx(0.5)
    assert np.isnan(M.pearson_r([1, 2, 3], [1, 1, 1]))


def test_f1_macro_vs_weighted():
    # class 0: P=1 R=2/3 F1=0.8 ; class 1: P=1/2 R=1 F1=2/3 (supports 3 and 1)
    t, p = [0, 0, 0, 1], [0, 0, 1, 1]
    assert M.f1_macro(t, p) == pytest.approx((0.8 + 2 / 3) / 2)
    assert M.f1_weighted(t, p) == pytest.approx((3 * 0.8 + 2 / 3) / 4)
    np.testing.assert_array_equal(M.confusion(t, p, 2), [[2, 1], [0, 1]])


def test_sims_cut_points_are_right_closed():
    s = [-0.8, -0.7, -0.4, -0.1, 0.0, 0.1, 0.5, 0.7, 0.9]
    np.testing.assert_array_equal(scores_to_classes(s, 5, "sims"), [0, 0, 1, 1, 2, 2, 3, 3, 4])
    np.testing.assert_array_equal(scores_to_classes([-0.1, 0.0, 0.1, 0.2], 3, "sims"), [0, 1, 1, 2])
    np.testing.assert_array_equal(scores_to_classes([-0.01, 0.0, 0.5], 2, "sims"), [0, 1, 1])


def test_mosi_five_classes_and_names():
    # clip to [-2,2] then round: -3->-2 (SNEG), -0.6->-1 (WNEG), 0.4->0 (NEUT), 1.5->2 (SPOS, half to even)
    np.testing.assert_array_equal(scores_to_classes([-3, -0.6, 0.4, 1.5, 0.6], 5, "mosi"), [0, 1, 2, 4, 3])
    assert M.class_names(5) == ("SNEG", "WNEG", "NEUT", "WPOS", "SPOS")


def test_regression_metrics_bundle_names():
    out = M.regression_metrics(TRUE, PRED, "mosi")
    assert out["acc2_has0"] == pytest.approx(4 / 6) and out["acc2_non0"] == pytest.approx(3 / 5)
    assert {"f1_weighted_has0", "f1_macro_has0", "acc3", "acc5", "acc7", "mae", "pearson_r"} <= set(out)
    assert "acc7" not in M.regression_metrics([0.1, -0.2], [0.3, 0.1], "sims")


def test_label_checks_report_out_of_range():
    bad = check_targets(MOSI_SCHEME, scores=[0.5, 3.5])
    assert not bad.ok and "outside [-3.0, 3.0]" in bad.problems[0]
    emo = LabelScheme("multiclass", None, ("a", "b", "c"))
    assert not check_targets(emo, labels=[0, 3]).ok
    assert check_targets(emo, labels=[-1, 2]).ok  # -1 = unknown


def test_binary_metrics():
    out = M.binary_metrics([0, 1, 1, 1], [0, 1, 0, 1])
    assert out["acc2"] == pytest.approx(0.75)


def test_roc_auc_and_best_threshold_accuracy_hand_computed():
    labels = [0, 0, 1, 0, 1, 1]
    scores = [0.1, 0.4, 0.35, 0.5, 0.8, 0.9]
    # positives ranked above negatives: 0.9 > 3 negatives, 0.8 > 3, 0.35 > 1 (0.1) -> 7 of 9 pairs
    assert M.roc_auc(labels, scores) == pytest.approx(7 / 9)
    # calling the top 2 positive (threshold 0.8) gets 2 positives + 3 negatives right: 5 of 6;
    # calling everything negative gets 3 of 6, the top 3 (>= 0.5) 4 of 6
    assert M.best_threshold_accuracy(labels, scores) == pytest.approx(5 / 6)
    # a constant score can only be all-positive or all-negative: the larger class
    assert M.best_threshold_accuracy([1, 1, 0], [0.3, 0.3, 0.3]) == pytest.approx(2 / 3)
    assert np.isnan(M.roc_auc([1, 1], [0.2, 0.4]))
