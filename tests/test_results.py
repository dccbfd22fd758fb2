import numpy as np
import pandas as pd
import pytest

from msa_lib.evaluate.results import ResultsTable, format_mean_std, summarize


def test_results_table_replaces_same_key_and_summarises(tmp_path):
    table = ResultsTable("demo", folder=tmp_path)
    table.add(experiment="e", model="a", seed=0, acc2=0.80)
    table.add(experiment="e", model="a", seed=1, acc2=0.90)
    table.add(experiment="e", model="a", seed=1, acc2=0.84)  # rerun replaces
    path = table.save()
    rows = pd.read_csv(path)
    assert len(rows) == 2
    summary = pd.read_csv(tmp_path / "demo_summary.csv")
    # mean (0.80+0.84)/2 = 0.82; sample std = |0.84-0.80|/sqrt(2) = 0.028284
    assert summary.loc[0, "acc2_mean"] == pytest.approx(0.82)
    assert summary.loc[0, "acc2_std"] == pytest.approx(0.04 / 2 ** 0.5)
    assert summary.loc[0, "acc2"] == "82.0 ± 2.8"


def test_summary_single_seed_has_zero_std_and_non_percent_format():
    frame = pd.DataFrame([{"model": "m", "seed": 0, "mae": 0.5}])
    out = summarize(frame, ["model"])
    assert out.loc[0, "mae_std"] == 0 and out.loc[0, "mae"] == "0.500 ± 0.000"
    assert format_mean_std(0.5, 0.01, percent=True) == "50.0 ± 1.0"
    assert format_mean_std(float("nan"), 0.0) == ""  # a metric the group does not have


def test_accuracy_deltas_read_in_points_and_absent_metrics_stay_empty():
    frame = pd.DataFrame([{"eval_set": "mosi", "seed": 0, "mosi_delta_vs_english_only": -0.02},
                          {"eval_set": "mosi", "seed": 1, "mosi_delta_vs_english_only": -0.04},
                          {"eval_set": "zh", "seed": 0, "mosi_delta_vs_english_only": float("nan")}])
    out = summarize(frame, ["eval_set"]).set_index("eval_set")
    # mean -0.03 -> -3.0 points; sample std |(-0.02) - (-0.04)| / sqrt(2) = 0.01414 -> 1.4 points
    assert out.loc["mosi", "mosi_delta_vs_english_only"] == "-3.0 ± 1.4"
    assert out.loc["zh", "mosi_delta_vs_english_only"] == ""
    assert np.isnan(out.loc["zh", "mosi_delta_vs_english_only_mean"])


def test_missing_key_column_is_an_error(tmp_path):
    with pytest.raises(KeyError, match="seed"):
        ResultsTable("x", folder=tmp_path).add(experiment="e", model="m", acc=1.0)
