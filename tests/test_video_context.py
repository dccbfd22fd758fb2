"""Video context for utterances (``video_context_vectors``) and the kernel regression on frozen e5
vectors with that context (notebook 11): hand-computed context, spoken order (not file order), no
context across videos or splits, settings chosen without test labels, and a fit on small real data."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dataset_factory import make_dataset
from msa_lib.extract.text_features import l2_normalize, video_context_vectors
from msa_lib.studies import fine_grained as fg


def _videos_dataset():
    """Two videos listed out of spoken order (v1_10 before v1_2, as in the shipped files) and a video of
    one utterance."""
    ds = make_dataset(n=6, n_groups=3)
    ds.ids = np.array(["v1_10", "v1_2", "v1_1", "v2_1", "v2_2", "v3_1"], dtype=object)
    ds.group = np.array(["v1", "v1", "v1", "v2", "v2", "v3"], dtype=object)
    ds.split = np.array(["train"] * 6, dtype=object)
    return ds


def test_context_is_the_other_utterances_of_the_video_in_spoken_order():
    ds = _videos_dataset()
    x = np.eye(6, dtype=np.float32)  # utterance i has the unit vector e_i
    video, neighbours = video_context_vectors(ds, x)
    # v1_10 (row 0): the others of v1 are rows 1 and 2 -> mean (e1 + e2) / 2, normalised
    np.testing.assert_allclose(video[0], l2_normalize(x[1] + x[2]), atol=1e-6)
    # spoken order of v1: v1_1 (row 2), v1_2 (row 1), v1_10 (row 0)
    np.testing.assert_allclose(neighbours[1], l2_normalize(x[2] + x[0]), atol=1e-6)  # v1_2 between v1_1 and v1_10
    np.testing.assert_allclose(neighbours[2], l2_normalize(x[2] + x[1]), atol=1e-6)  # v1_1: itself stands in for "previous"
    np.testing.assert_allclose(neighbours[0], l2_normalize(x[1] + x[0]), atol=1e-6)  # v1_10: itself for "next"
    # a video of one utterance has no video context, and its neighbours are itself
    assert not video[5].any()
    np.testing.assert_allclose(neighbours[5], x[5], atol=1e-6)
    # nothing crosses a video: v2's context only holds v2's rows
    assert not video[3][:3].any() and not neighbours[3][:3].any() and not neighbours[3][5:].any()


def test_context_does_not_depend_on_the_row_order():
    ds = _videos_dataset()
    x = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    video, neighbours = video_context_vectors(ds, x)
    perm = np.array([5, 3, 0, 4, 2, 1])
    video_p, neighbours_p = video_context_vectors(ds.subset(perm), x[perm])
    np.testing.assert_allclose(video_p, video[perm], atol=1e-6)
    np.testing.assert_allclose(neighbours_p, neighbours[perm], atol=1e-6)


def test_wrong_number_of_vectors_is_one_clear_error():
    with pytest.raises(ValueError, match="vectors for"):
        video_context_vectors(_videos_dataset(), np.zeros((5, 3)))


def test_kernel_features_refuse_a_video_in_two_splits():
    ds = _videos_dataset()
    ds.split = np.array(["train", "test", "train", "train", "train", "test"], dtype=object)
    with pytest.raises(ValueError, match="both"):
        fg.KernelContextFeatures(ds)


def test_adjacent_polarity_agreement_by_hand():
    ds = _videos_dataset()
    ds.scores = np.array([1.0, 2.0, -1.0, 0.5, -0.5, 1.0])
    table = fg.adjacent_polarity_agreement(ds).set_index("order")["same_polarity"]
    # file order: v1 (+, +, -) -> 1 of 2 pairs agree; v2 (+, -) -> 0 of 1: 1 / 3
    assert table["file order"] == pytest.approx(1 / 3)
    # spoken order: v1_1 (-), v1_2 (+), v1_10 (+) -> 1 of 2; v2 as before: 1 / 3
    assert table["spoken order (id number)"] == pytest.approx(1 / 3)


SMALL_GRID = {"layers": [(12,)], "video_weight": [0.0, 0.5], "neighbour_weight": [0.5], "C": [1.0], "epsilon": [0.1],
              "gamma": [1.0]}


@pytest.fixture(scope="module")
def small_mosi_standard():
    from dataclasses import replace

    from msa_lib.extract.text_features import MOSI_TEXT

    ds = fg.prepare_mosi_standard(text=None, shipped=[], max_videos=3)
    return ds, replace(MOSI_TEXT, batch_size=64)


def test_settings_are_chosen_without_test_labels(small_mosi_standard):
    ds, text = small_mosi_standard
    chosen, table = fg.select_kernel_context(fg.KernelContextFeatures(ds, text), SMALL_GRID)
    poisoned = ds.subset(np.arange(len(ds)))
    test = poisoned.split == "test"
    poisoned.scores = poisoned.scores.copy()
    poisoned.scores[test] = -poisoned.scores[test]  # test labels flipped: the choice must not move
    chosen_p, table_p = fg.select_kernel_context(fg.KernelContextFeatures(poisoned, text), SMALL_GRID)
    assert chosen_p == chosen
    assert table_p.equals(table)
    assert table["selected"].sum() == 1 and table.loc[table["selected"], "valid_mae"].item() == table["valid_mae"].min()


def test_kernel_regression_fits_and_predicts_real_utterances(small_mosi_standard):
    ds, text = small_mosi_standard
    features = fg.KernelContextFeatures(ds, text)
    both = fg.kernel_context_predictions(features, fg.KernelContextConfig(layers=(12,)))
    assert set(both) == {"valid", "test"} and list(both["valid"]["id"]) == list(ds.get_split("valid").ids)
    pred = both["test"]
    test = ds.get_split("test")
    assert list(pred["id"]) == list(test.ids) and np.allclose(pred["score"], test.scores)
    assert np.isfinite(pred["score_pred"]).all() and pred["score_pred"].std() > 0
    row = fg.fine_grained_row(pred)
    assert set(row) >= {"acc2_non0", "acc7", "mae", "corr"}
    assert row["corr"] > 0  # frozen e5 vectors carry some sentiment of real MOSI transcripts


def test_layer_vectors_refuse_a_layer_the_encoder_does_not_have(small_mosi_standard):
    from msa_lib.extract.text_features import layer_pooled_vectors

    ds, text = small_mosi_standard
    with pytest.raises(ValueError, match="not in 0..12"):
        layer_pooled_vectors(ds, (13,), text)


def _frames(preds_valid, preds_test, valid_scores=(0.0, 1.0, 2.0), test_scores=(1.0, -1.0)):
    return {"valid": pd.DataFrame({"id": ["a", "b", "c"], "score": valid_scores, "score_pred": preds_valid}),
            "test": pd.DataFrame({"id": ["d", "e"], "score": test_scores, "score_pred": preds_test})}


def test_blend_weight_is_chosen_on_dev_by_hand():
    # first is off by +1 on every dev utterance, second by -1 -> the half-half blend is exact on dev
    first = _frames([1.0, 2.0, 3.0], [2.0, 0.0])
    second = _frames([-1.0, 0.0, 1.0], [0.0, -2.0])
    weight, test = fg.blend_on_dev(first, second)
    assert weight == 0.5
    np.testing.assert_allclose(test["score_pred"], [1.0, -1.0])
    assert list(test["id"]) == ["d", "e"] and list(test["score"]) == [1.0, -1.0]
    # the test scores play no part in the choice
    poisoned = {k: v.assign(score=-v["score"]) if k == "test" else v for k, v in first.items()}
    assert fg.blend_on_dev(poisoned, second)[0] == weight


def test_blend_refuses_frames_of_different_utterances():
    first = _frames([1.0, 2.0, 3.0], [2.0, 0.0])
    second = _frames([1.0, 2.0, 3.0], [2.0, 0.0])
    second["test"] = second["test"].assign(id=["d", "x"])
    with pytest.raises(ValueError, match="different utterances"):
        fg.blend_on_dev(first, second)


def test_bar_verdicts_by_hand():
    table = fg.bar_verdicts({"acc2_non0": 0.855, "corr": 0.79, "mae": 0.75, "acc7": 0.5}).set_index("metric")
    assert table["met"].to_dict() == {"acc2_non0": True, "corr": False, "mae": True, "acc7": True}
