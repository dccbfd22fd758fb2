"""Every numbered notebook runs end to end under papermill with its small (smoke) parameters, writes
its result tables, and is stored without outputs (executed copies live in ``reports/``)."""
from __future__ import annotations

import json

import pytest

from msa_lib.app.notebook_runner import NOTEBOOK_DIR, NOTEBOOKS, SMOKE_PARAMETERS, run_notebooks

pytestmark = pytest.mark.slow

# result tables each notebook must write (the full run's names; checked on the smoke run)
EXPECTED_RESULTS = {
    "00_data": ["data_summary.csv"],
    "02_unimodal": ["mosi_unimodal.csv", "zh_unimodal.csv"],
    "03_fusion": ["mosi_fusion.csv", "mosi_context_models.csv", "mosi_standard_context_models.csv"],
    "04_nce": ["cross_lingual.csv", "self_training.csv", "self_training_selected_summary.csv", "self_training_rounds.csv",
               "zh_fine_tuned_reference.csv"],
    "05_fewshot": ["few_shot.csv", "few_shot_self_trained.csv"],
    "06_interpretability": ["modality_attribution.csv"],
    "07_decision_fusion": ["ravdess_decision_fusion.csv"],
    "09_mosi_standard": ["mosi_standard.csv", "mosi_standard_summary.csv"],
    "10_faces": ["face_eval.csv", "face_eval_summary.csv", "face_missed.csv"],
    "11_mosi_video_context": ["mosi_standard_kernel.csv", "mosi_standard_kernel_selection.csv"],
    "12_zh_co_training": ["zh_co_training.csv", "zh_co_training_summary.csv", "zh_char_ngram_reference.csv"],
}
REQUIRED_COLUMNS = {
    "mosi_fusion.csv": {"model", "seed", "acc2", "f1_macro", "f1_weighted"},
    "mosi_context_models.csv": {"experiment", "model", "seed", "acc2", "f1_macro", "acc2_source_only"},
    "cross_lingual.csv": {"setting", "seed", "eval_set", "acc", "f1_macro"},
    "few_shot.csv": {"method", "k_percent", "seed", "eval_set", "acc", "f1_macro"},
    "self_training.csv": {"setting", "seed", "round", "eval_set", "prior", "acc", "auc", "selected"},
    "self_training_rounds.csv": {"seed", "round", "share", "change_since_previous", "pseudo_label_accuracy"},
    "zh_fine_tuned_reference.csv": {"method", "k_percent", "seed", "acc", "n_train"},
    "few_shot_self_trained.csv": {"method", "k_percent", "seed", "eval_set", "acc", "mosi_delta_vs_english_only"},
    "modality_attribution.csv": {"sample_id", "language", "text", "audio", "visual"},
    "ravdess_decision_fusion.csv": {"branch_or_rule", "scenario", "seed", "acc", "f1_macro"},
    "mosi_standard.csv": {"model", "seed", "acc2_has0", "f1_has0", "acc2_non0", "f1_non0", "acc5", "acc7", "mae", "corr",
                          "f1_macro_5class", "label_trained_features"},
    "mosi_standard_kernel.csv": {"model", "experiment", "seed", "acc2_has0", "acc2_non0", "acc7", "mae", "corr",
                                 "f1_macro_5class"},
    "zh_co_training.csv": {"setting", "k_percent", "seed", "scorer", "acc", "f1_macro", "auc", "prior", "n_pseudo"},
    "face_eval.csv": {"dataset", "representation", "classifier", "fold", "acc_expression", "bacc_valence", "auc_valence"},
}


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_stored_without_outputs_and_has_parameters(name):
    nb = json.loads((NOTEBOOK_DIR / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), name
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name}: exactly one cell tagged 'parameters'"
    source = "".join(tagged[0]["source"])
    for key in ("smoke", "reports_dir", *SMOKE_PARAMETERS.get(name, {})):
        assert f"{key} =" in source, f"{name}: smoke parameter {key!r} is not in the parameters cell"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_in_smoke_mode(name, tmp_path):
    import pandas as pd

    run_notebooks([name], smoke=True, reports_dir=tmp_path)
    executed = json.loads((tmp_path / "notebooks" / f"{name}.ipynb").read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    for table in EXPECTED_RESULTS.get(name, []):
        path = tmp_path / "results" / table
        assert path.exists(), f"{name} did not write {table}"
        frame = pd.read_csv(path)
        assert len(frame) > 0
        missing = REQUIRED_COLUMNS.get(table, set()) - set(frame.columns)
        assert not missing, f"{table} lacks columns {missing}"
