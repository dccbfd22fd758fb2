"""Execute the numbered notebooks headlessly with papermill, in order, stopping at the first failure.

Every notebook has a ``parameters`` cell with at least ``smoke`` and ``reports_dir``; the full run
writes to ``reports/`` (executed copies in ``reports/notebooks/``), a smoke run uses the small
settings in :data:`SMOKE_PARAMETERS` and writes elsewhere so it never overwrites committed reports.

The kernels' own output (their log lines such as "Kernel is running over TCP without encryption" or
"KeyboardInterrupt caught in kernel" at shut-down, and anything native code writes to the process's
stdout/stderr) goes to ``cache_dir()/kernel_logs/<notebook>.log`` instead of the terminal; what the
cells print is in the executed notebook as always. Papermill's progress bar is drawn only on a terminal.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from msa_lib.core.paths import PROJECT_ROOT, cache_dir, project_path

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
    "08_own_model",
    "09_mosi_standard",
    "10_faces",
    "11_mosi_video_context",
    "12_zh_co_training",
)
# Notebooks 04 and 05 in smoke runs: a stratified MOSI subset (the cold e5 encoding of all of MOSI and its
# translations was most of their time) and one short self-training run, shared by both through its cache.
SMOKE_MOSI = {"train": 400, "valid": 80, "test": 160}
# Self-training settings shared by notebooks 04 (which self-trains) and 05 (which rehearses on the result)
SMOKE_SELF_TRAINING = {"self_training_layers": 1, "self_training_shares": [0.5], "student_epochs": 1, "self_training_pool": None}
# Small settings that exercise every code path of a notebook in well under a minute or two.
SMOKE_PARAMETERS: dict[str, dict] = {
    "00_data": {},
    "01_extraction": {"asr_backends": ["faster-whisper"], "fps": 2.0},
    "02_unimodal": {"seeds": [0], "max_epochs": 1, "finetune_epochs": 1, "mosi_videos": 4, "full_finetune_seeds": [0], "zh_seeds": [0],
                    "zh_max_train": 100, "zh_max_eval": 50},
    "03_fusion": {"seeds": [0], "max_epochs": 1, "finetune_epochs": 1, "mosi_videos": 4, "noise_levels": [0.0, 1.0],
                  "standard_seeds": [0], "standard_finetune_epochs": 1},
    "04_nce": {"seeds": [0], "max_epochs": 1, "zh_eval_max": 200, "zh_train_max": 300, "mosi_max": SMOKE_MOSI,
               "settings": ["source_only", "nce_xl_both", "nce_all"], "zoo_settings": ["source_only"], "whisper_clips": False,
               **SMOKE_SELF_TRAINING, "self_training_seeds": [0], "reference_k_percents": [5], "reference_seeds": [0], "reference_steps": 8},
    "05_fewshot": {"seeds": [0], "max_epochs": 1, "fewshot_epochs": 1, "k_percents": [0, 5], "zh_eval_max": 200,
                   "zh_train_max": 300, "mosi_max": SMOKE_MOSI, **SMOKE_SELF_TRAINING, "adapted_seeds": [0], "adapted_k_percents": [5],
                   "adapted_epochs": 1},
    "06_interpretability": {"max_epochs": 1, "ravdess_epochs": 2, "n_explain": 4, "ig_steps": 4,
                            "mosi_per_split": {"train": 64, "valid": 16, "test": 16}, "ravdess_per_actor": 2},
    "07_decision_fusion": {"seeds": [0], "max_clips": 48, "max_epochs": 5, "whisper_window_seconds": 5.0,
                           "whisper_poolings": ["mean"], "noise_levels": [1.0], "flatten_levels": [0.8]},
    "08_own_model": {"per_actor": 1, "seeds": "0", "epochs": 2, "audio_features": "prosody", "reextract": True,
                     "work_dir": ".cache/smoke_own_model"},
    "09_mosi_standard": {"seeds": [0], "max_epochs": 1, "finetune_epochs": 1, "mosi_videos": 3, "vision_seeds": [0],
                         "vision_fusion_seeds": []},
    "10_faces": {"max_ckplus_subjects": 15, "mead_fps": 2.0, "representations": ["blendshapes", "fer_probs"],
                 "classifiers": ["logreg"], "ckplus_folds": 3},
    "11_mosi_video_context": {"mosi_videos": 4, "grid": {"layers": [[12]], "video_weight": [0.0, 0.5], "neighbour_weight": [0.5],
                                                         "C": [1.0], "epsilon": [0.1], "gamma": [1.0]},
                              "stage1_seeds": [0], "finetune_epochs": 1, "bclstm_seeds": [0], "bclstm_folds": 2,
                              "bclstm_finetune_epochs": 1, "bclstm_max_epochs": 1, "release_protocol_seeds": [0],
                              "release_protocol_epochs": 2, "two_level_seeds": [0], "two_level_epochs": 1},
    "12_zh_co_training": {"seeds": [0], "max_epochs": 1, "teacher_settings": ["source_only"], "k_percents": [0, 5],
                          "fewshot_epochs": 1, "reference_k_percents": [5, 100], "zh_eval_max": 200, "zh_train_max": 300,
                          "mosi_max": SMOKE_MOSI},
}
SMOKE_REPORTS_DIR = ".cache/smoke_reports"


class NotebookFailed(RuntimeError):
    pass


def kernel_log_path(name: str) -> Path:
    folder = cache_dir() / "kernel_logs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.log"


def quiet_kernel_manager(log_path: Path):
    """A kernel manager class whose kernel process writes its stdout/stderr to ``log_path`` and runs
    with progress bars off (nobody watches a papermill kernel's terminal)."""
    from jupyter_client.manager import AsyncKernelManager

    class QuietKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            env = dict(kw.get("env") or {})
            env.setdefault("TQDM_DISABLE", "1")
            kw["env"] = env
            with open(log_path, "ab") as log:  # the child keeps its own copy of the descriptor
                kw.setdefault("stdout", log)
                kw.setdefault("stderr", log)
                return await super()._async_launch_kernel(kernel_cmd, **kw)

    return QuietKernelManager


def execute_notebook(source: Path, target: Path, parameters: dict, log_path: Path,
                     kernel_name: str = "python3", cwd: Path = NOTEBOOK_DIR) -> None:
    """Run one notebook with papermill; the kernel's own chatter goes to ``log_path``."""
    import papermill as pm

    with open(log_path, "ab") as log:
        log.write(f"\n==== {source.name} {time.strftime('%Y-%m-%d %H:%M:%S')} ====\n".encode())
    pm.execute_notebook(str(source), str(target), parameters=parameters, kernel_name=kernel_name,
                        cwd=str(cwd), progress_bar=sys.stderr.isatty(), log_output=False,
                        kernel_manager_class=quiet_kernel_manager(log_path))


def run_notebooks(names=None, smoke: bool = False, reports_dir: str | Path | None = None,
                  kernel_name: str = "python3", extra_parameters: dict | None = None) -> list[Path]:
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
        log_path = kernel_log_path(name)
        try:
            execute_notebook(source, target, params, log_path, kernel_name=kernel_name)
        except Exception as exc:  # papermill raises PapermillExecutionError with the cell's traceback
            raise NotebookFailed(f"notebook {name} failed (executed copy with the error: {target}; "
                                 f"kernel log: {log_path}):\n{exc}") from exc
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
