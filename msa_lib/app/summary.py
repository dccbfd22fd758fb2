"""Render the result tables of a run into Markdown: ``reports/SUMMARY.md`` and the block between
``<!-- results:start -->`` and ``<!-- results:end -->`` in README.md. Numbers are copied from the
CSV/JSON files the notebooks and benchmarks wrote — nothing is typed by hand."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from msa_lib.core.paths import PROJECT_ROOT, project_path

# (summary CSV, title, key columns, metric columns shown) — metrics are the "mean ± std" text columns
SECTIONS = (
    ("mosi_unimodal_summary.csv", "Unimodal baselines (notebook 02)", None, ("acc2", "f1_macro", "f1_weighted")),
    ("zh_unimodal_summary.csv", "Chinese reviews, text only (notebook 02)", None, ("acc2", "f1_macro")),
    ("mosi_fusion_summary.csv", "CMU-MOSI fusion comparison, test (notebook 03)", ("model",),
     ("acc2", "f1_macro", "f1_weighted")),
    ("mosi_bclstm_cross_fitted_summary.csv", "CMU-MOSI (`mosi_bclstm`), test: the contextual models on text + "
     "openSMILE audio, with notebook 03's stage-1 text states and with cross-fitted ones (notebook 11)",
     ("experiment", "model"), ("acc2", "f1_macro", "f1_weighted")),
    ("mosi_bclstm_two_level_summary.csv", "CMU-MOSI (`mosi_bclstm`), test: the contextual LSTM trained level by "
     "level as the bc-LSTM release does (one per modality, then one over their states; epochs chosen on "
     "validation), and over the states of MCTN-shared, the best non-contextual model (notebook 11)",
     ("experiment", "inputs"), ("acc2", "f1_macro", "f1_weighted")),
    ("mosi_bclstm_context_probe_summary.csv", "CMU-MOSI (`mosi_bclstm`), test: is there video context to use? "
     "Logistic regression on an utterance's vector alone and beside the mean vector of the other utterances of "
     "its video, C chosen on validation (notebook 11)", ("features", "inputs"), ("acc2_valid", "acc2", "f1_macro")),
    ("mosi_ablation_summary.csv", "CMU-MOSI modality ablation, early fusion (notebook 03)", None, ("acc2", "f1_macro")),
    ("cross_lingual_summary.csv", "Cross-lingual transfer English -> Chinese (notebook 04; acc_best_threshold "
     "picks the threshold on the test labels: a ceiling for prior correction, not a result)", None,
     ("acc", "f1_macro", "auc", "acc_best_threshold")),
    ("self_training_selected_summary.csv", "Self-training on unlabelled Chinese reviews, zero-shot (notebook 04; "
     "the English-only student and each seed's selected round; prior em: the test prior estimated by EM from "
     "the unlabelled test reviews)", ("model", "eval_set", "prior"), ("acc", "f1_macro", "auc", "round")),
    ("self_training_summary.csv", "Self-training, every round (notebook 04; prior as trained; a seed that stopped "
     "early has no later rows)", ("setting", "round", "eval_set"), ("acc", "f1_macro", "auc", "acc_best_threshold")),
    ("zh_fine_tuned_reference_summary.csv", "The same student fine-tuned on k % of the labelled Chinese reviews "
     "(notebook 04, supervised reference)", ("method", "k_percent"), ("acc", "f1_macro", "auc", "n_train")),
    ("few_shot_summary.csv", "Few-shot rehearsal (notebook 05)", ("method", "k_percent", "eval_set"),
     ("acc", "f1_macro")),
    ("few_shot_self_trained_summary.csv", "Few-shot rehearsal on the self-trained student (notebook 05)",
     ("method", "k_percent", "eval_set"), ("acc", "f1_macro", "mosi_delta_vs_english_only")),
    ("zh_co_training_summary.csv", "Co-training a Chinese character n-gram student on the cross-lingual teacher's "
     "pseudo-labels (notebook 12; k = 0: zero-shot, prior estimated by EM without labels; k > 0: rehearsal teacher, "
     "prior from the labelled sample; acc_best_threshold picks the cut on the test labels: a diagnostic)",
     ("setting", "k_percent", "scorer"), ("acc", "f1_macro", "auc", "acc_best_threshold", "prior")),
    ("mosi_standard_blend_summary.csv", "CMU-MOSI standard split (`mosi_standard`), test: the fine-tuned e5 text "
     "model and its blend with the SVR on frozen e5 vectors with video context (notebook 11; 5 seeds, blend weight "
     "chosen on dev)", ("experiment",), ("acc2_has0", "acc2_non0", "acc5", "acc7", "mae", "corr", "svr_weight")),
    ("ravdess_decision_fusion_summary.csv", "RAVDESS decision fusion, actors 21-24 held out, clean inputs "
     "(notebook 07)", ("branch_or_rule", "kind"), ("acc", "f1_macro")),
    ("face_eval_summary.csv", "Faces, subject-independent: CK+ 5 folds by subject, MEAD leave one speaker out "
     "(notebook 10; logistic-regression rows, the RBF-SVM rows are in the CSV; the ± is over the test folds, not "
     "seeds)", ("dataset", "representation", "classifier", "n_folds"),
     ("acc_expression", "bacc_valence", "auc_valence")),
)


# rows shown per summary file (the full tables stay in reports/results/)
ROW_FILTERS = {"ravdess_decision_fusion_summary.csv": {"scenario": "clean"},
               "cross_lingual_summary.csv": {"prior": "source"},
               "self_training_summary.csv": {"prior": "source"},
               "face_eval_summary.csv": {"classifier": "logreg"}}
# benchmark files written without a "headline": the top-level keys to show
FALLBACK_HEADLINES = {"predict": ("clip_seconds", "cold_s", "warm_s", "target_warm_s", "meets_target")}


def markdown_cell(value) -> str:
    """An empty CSV cell reads back as NaN: show it empty."""
    return "" if isinstance(value, float) and value != value else str(value)


def markdown_table(frame: pd.DataFrame) -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(markdown_cell(row[c]) for c in cols) + " |")
    return "\n".join(lines)


def section(path: Path, title: str, keys, metrics) -> str | None:
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    for column, value in ROW_FILTERS.get(path.name, {}).items():  # keep README tables readable
        if column in frame.columns:
            frame = frame[frame[column] == value]
    shown = [m for m in metrics if m in frame.columns]
    keys = list(keys) if keys else [c for c in frame.columns
                                    if not pd.api.types.is_numeric_dtype(frame[c]) and c not in shown
                                    and not frame[c].astype(str).str.contains("±").any() and not c.endswith(("_mean", "_std"))]
    cols = keys + (["n_seeds"] if "n_seeds" in frame.columns else []) + shown
    return f"### {title}\n\nFrom `{path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path}`" \
           f" (mean ± std over seeds, %).\n\n{markdown_table(frame[cols])}\n"


def benchmark_section(folder: Path) -> str | None:
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        headline = data.get("headline") or {f"{path.stem}: {k}": data[k] for k in FALLBACK_HEADLINES.get(path.stem, ())
                                             if k in data}
        for key, value in headline.items():
            rows.append({"benchmark": path.stem, "measure": key, "value": value})
    if not rows:
        return None
    return "### Benchmarks (`reports/benchmarks/*.json`)\n\n" + markdown_table(pd.DataFrame(rows)) + "\n"


def build(reports_dir: str | os.PathLike = "reports") -> str:
    reports = project_path(reports_dir)
    parts = [section(reports / "results" / name, title, keys, metrics) for name, title, keys, metrics in SECTIONS]
    parts.append(benchmark_section(reports / "benchmarks"))
    body = "\n".join(p for p in parts if p)
    return body or "_No results yet: run `bash run_all.sh`._\n"


def replace_block(path: str | os.PathLike, name: str, body: str) -> bool:
    """Replace the text between ``<!-- {name}:start -->`` and ``<!-- {name}:end -->`` in ``path``."""
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{start}\n{body}{end}{tail}")
    return True


def write(reports_dir: str | os.PathLike = "reports", readme: str | os.PathLike | None = "README.md") -> Path:
    body = build(reports_dir)
    out = project_path(reports_dir) / "SUMMARY.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("# Results of the last full run\n\nGenerated by `python -m msa_lib.app.summary` "
                   "(the last step of `run_all.sh`).\n\n" + body)
    if readme is not None:
        replace_block(project_path(readme), "results", f"{body}\n")
    return out


if __name__ == "__main__":
    print(write())
