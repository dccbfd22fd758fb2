"""Execute the numbered notebooks headlessly with papermill, in order, stopping at the first failure.

Every notebook has a ``parameters`` cell with at least ``smoke`` and ``reports_dir``; the full run
writes to ``reports/`` (executed copies in ``reports/notebooks/``), a smoke run uses the small
settings in :data:`SMOKE_PARAMETERS` and writes elsewhere so it never overwrites committed reports.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from msa_lib.core.paths import PROJECT_ROOT, project_path

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
NOTEBOOKS = (
    "00_data",
    "01_extraction",
    "02_unimodal",
    "03_fusion",
    "04_nce",
    "05_fewshot",
    "06_interpretability",
    "07_decision_fusion",
)
# Small settings that exercise every code path of a notebook in well under a minute or two.
SMOKE_PARAMETERS: dict[str, dict] = {
    "00_data": {},
    "01_extraction": {"asr_backends": ["faster-whisper"], "fps": 2.0},
    "02_unimodal": {"seeds": [0], "max_epochs": 1, "finetune_epochs": 1, "mosi_videos": 4, "full_finetune_seeds": [0], "zh_seeds": [0],
                    "zh_max_train": 100, "zh_max_eval": 50},
    "03_fusion": {"seeds": [0], "max_epochs": 1, "finetune_epochs": 1, "mosi_videos": 4, "noise_levels": [0.0, 1.0]},
    "04_nce": {"seeds": [0], "max_epochs": 1, "zh_eval_max": 200, "zh_train_max": 300,
               "settings": ["source_only", "nce_xl_both", "nce_all"], "whisper_clips": False},
    "05_fewshot": {"seeds": [0], "max_epochs": 1, "fewshot_epochs": 1, "k_percents": [0, 5], "zh_eval_max": 200,
                   "zh_train_max": 300},
    "06_interpretability": {"max_epochs": 1, "ravdess_epochs": 2, "n_explain": 4, "ig_steps": 4,
                            "mosi_per_split": {"train": 64, "valid": 16, "test": 16}, "ravdess_per_actor": 2},
    "07_decision_fusion": {"seeds": [0], "max_clips": 48, "max_epochs": 5, "whisper_window_seconds": 5.0,
                           "whisper_poolings": ["mean"], "noise_levels": [1.0], "flatten_levels": [0.8]},
}
SMOKE_REPORTS_DIR = ".cache/smoke_reports"


class NotebookFailed(RuntimeError):
    pass


def run_notebooks(names=None, smoke: bool = False, reports_dir: str | Path | None = None,
                  kernel_name: str = "python3", extra_parameters: dict | None = None) -> list[Path]:
    import papermill as pm

    names = list(names or NOTEBOOKS)
    unknown = [n for n in names if n not in NOTEBOOKS]
    if unknown:
        raise ValueError(f"unknown notebook(s) {unknown}; choose from {NOTEBOOKS}")
    reports = project_path(reports_dir or (SMOKE_REPORTS_DIR if smoke else "reports"))
    out_dir = reports / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    executed = []
    for name in names:
        params = {"smoke": smoke, "reports_dir": str(reports)}
        if smoke:
            params.update(SMOKE_PARAMETERS.get(name, {}))
        params.update((extra_parameters or {}).get(name, {}))
        source, target = NOTEBOOK_DIR / f"{name}.ipynb", out_dir / f"{name}.ipynb"
        start = time.time()
        print(f"[run] {name} ({'smoke' if smoke else 'full'}) ...", flush=True)
        try:
            pm.execute_notebook(str(source), str(target), parameters=params, kernel_name=kernel_name,
                                cwd=str(NOTEBOOK_DIR), progress_bar=False, log_output=False)
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
            raise NotebookFailed(f"notebook {name} failed (executed copy with the error: {target}):\n{exc}") from exc
        print(f"[ok]  {name} in {time.time() - start:.0f} s -> {target}", flush=True)
        executed.append(target)
    return executed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Run the numbered notebooks with papermill.")
    parser.add_argument("names", nargs="*", help=f"notebooks to run (default: all of {', '.join(NOTEBOOKS)})")
    parser.add_argument("--smoke", action="store_true", help="small parameters, reports under .cache/smoke_reports")
    parser.add_argument("--reports-dir", default=None)
    args = parser.parse_args(argv)
    try:
        run_notebooks(args.names or None, smoke=args.smoke, reports_dir=args.reports_dir)
    except NotebookFailed as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
