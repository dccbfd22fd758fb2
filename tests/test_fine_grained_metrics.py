"""The MMSA fine-grained metrics against values worked out by hand (including true and predicted zeros)."""
import math

import numpy as np
import pytest

from msa_lib.evaluate.metrics import (FINE_GRAINED_METRICS, confusion_5class, f1_has0, f1_macro_5class, f1_non0,
                                      fine_grained_metrics, five_class)

# Six clips: two true zeros, one predicted zero, halves and clipping at both ends.
TRUE = [-2.4, -0.6, 0.0, 0.0, 1.2, 2.8]
PRED = [-1.6, 0.4, -0.2, 0.0, 1.6, 1.4]


def test_fine_grained_metrics_on_a_hand_worked_case():
    m = fine_grained_metrics(TRUE, PRED)
    assert set(m) == set(FINE_GRAINED_METRICS)
    # Has0: signs (>= 0) agree on clips 0, 3, 4, 5 -> 4/6. Weighted F1: NEG (2 clips) P = R = 1/2,
    # POS (4 clips) P = R = 3/4 -> (2 * 1/2 + 4 * 3/4) / 6 = 2/3.
    assert m["acc2_has0"] == pytest.approx(4 / 6)
    assert m["f1_has0"] == pytest.approx(2 / 3)
    # Non0: clips 2 and 3 (true 0) dropped; (> 0) agrees on 0, 4, 5 of 0, 1, 4, 5 -> 3/4.
    # NEG: P = 1, R = 1/2, F1 = 2/3; POS: P = 2/3, R = 1, F1 = 4/5; weighted (2 + 2) -> 11/15.
    assert m["acc2_non0"] == pytest.approx(3 / 4)
    assert m["f1_non0"] == pytest.approx(11 / 15)
    # Acc-7: rounded true -2, -1, 0, 0, 1, 3 vs predicted -2, 0, 0, 0, 2, 1 -> 3/6.
    assert m["acc7"] == pytest.approx(0.5)
    # Acc-5: clipped to [-2, 2] first: -2, -1, 0, 0, 1, 2 vs -2, 0, 0, 0, 2, 1 -> 3/6.
    assert m["acc5"] == pytest.approx(0.5)
    # |errors| 0.8, 1.0, 0.2, 0, 0.4, 1.4 -> 3.8 / 6.
    assert m["mae"] == pytest.approx(3.8 / 6)
    # 5 classes true 0,1,2,2,3,4 vs pred 0,2,2,2,4,3: F1 per class 1, 0, 0.8, 0, 0 -> macro 0.36.
    assert m["f1_macro_5class"] == pytest.approx(0.36)
    assert math.isfinite(m["corr"])


def test_confusion_5class_rows_are_true_classes():
    expected = np.array([[1, 0, 0, 0, 0],
                         [0, 0, 1, 0, 0],
                         [0, 0, 2, 0, 0],
                         [0, 0, 0, 0, 1],
                         [0, 0, 0, 1, 0]])
    np.testing.assert_array_equal(confusion_5class(TRUE, PRED), expected)


def test_five_class_rounds_half_to_even_after_clipping_like_mmsa():
    # np.round: -1.5 -> -2, -0.5 -> -0, 0.5 -> 0, 1.5 -> 2; 2.6 and -2.6 clip to +-2 first.
    np.testing.assert_array_equal(five_class([-2.6, -1.5, -1.4, -0.5, 0.5, 0.6, 1.5, 2.6]), [0, 0, 1, 2, 2, 3, 4, 4])


def test_zero_labels_and_zero_predictions():
    # a predicted 0 is non-negative for Has0 but not positive for Non0
    m = fine_grained_metrics([1.0, -1.0], [0.0, -0.5])
    assert m["acc2_has0"] == pytest.approx(1.0)
    assert m["acc2_non0"] == pytest.approx(0.5)
    # a true 0 with a negative prediction: wrong for Has0, not counted for Non0
    m = fine_grained_metrics([0.0, 2.0], [-0.1, 2.0])
    assert m["acc2_has0"] == pytest.approx(0.5)
    assert m["acc2_non0"] == pytest.approx(1.0)
    assert m["f1_non0"] == pytest.approx(1.0)
    # every true score 0: the Non0 metrics are undefined, Has0 and the rest are not
    m = fine_grained_metrics([0.0, 0.0, 0.0], [0.2, -0.2, 0.0])
    assert math.isnan(m["acc2_non0"]) and math.isnan(f1_non0([0.0, 0.0, 0.0], [0.2, -0.2, 0.0]))
    assert m["acc2_has0"] == pytest.approx(2 / 3)
    assert m["acc7"] == pytest.approx(1.0)  # all round to 0
    assert m["mae"] == pytest.approx(0.4 / 3)


def test_pearson_and_f1_on_small_cases():
    # deviations (-1, 0, 1) and (-1, 1, 0): covariance 1, variances 2 and 2 -> r = 1/2
    assert fine_grained_metrics([1.0, 2.0, 3.0], [1.0, 3.0, 2.0])["corr"] == pytest.approx(0.5)
    assert fine_grained_metrics([1.0, 2.0, 3.0], [3.0, 5.0, 7.0])["corr"] == pytest.approx(1.0)
    assert math.isnan(fine_grained_metrics([1.0, 2.0, 3.0], [1.0, 1.0, 1.0])["corr"])  # constant prediction
    assert f1_has0([-1.0, 1.0], [-1.0, 1.0]) == pytest.approx(1.0)
    # one class only, every prediction right: macro over all 5 classes counts the 4 absent ones as 0
    assert f1_macro_5class([2.0, 2.0], [2.0, 1.6]) == pytest.approx(1 / 5)


def test_length_mismatch_is_one_clear_error():
    with pytest.raises(ValueError, match="2 true scores but 3 predictions"):
        fine_grained_metrics([0.0, 1.0], [0.0, 1.0, 2.0])
