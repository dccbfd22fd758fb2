"""Notebook 08: the own-model workflow end to end on real recordings, through the command line.

RAVDESS speech recordings (raw audio) -> ``msa extract`` (a manifest with label = emotion, group =
actor, split = train for actors 1-20 and test for actors 21-24) -> ``msa train --task classes`` ->
``msa evaluate`` on the test actors -> ``msa predict --model`` on held-out recordings. Every step is
the ``msa`` command a researcher would type (run here as subprocesses), so the notebook shows exactly
what the command line gives; :func:`api_check` repeats the training through the Python API
(:func:`msa_lib.train.runs.train_run`) to show both give the same numbers for the same seed.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import pandas as pd

from msa_lib.core.paths import PROJECT_ROOT, project_path
from msa_lib.data.sampling import stratified_clip_subset
from msa_lib.data.sources import RAVDESS_TEST_ACTORS, ravdess_recordings

# RAVDESS's two lexically matched statements (the file name's statement field)
STATEMENTS = {1: "Kids are talking by the door.", 2: "Dogs are sitting by the door."}


def ravdess_manifest(path: str | Path, per_actor: int | None = None, seed: int = 0) -> pd.DataFrame:
    """Write the ``msa extract`` manifest of the shipped RAVDESS speech recordings: ``path, label`` (emotion
    name), ``split`` (train: actors 1-20, test: actors 21-24), ``group`` (the actor), ``language`` (en) and
    ``transcript`` (the spoken statement). ``per_actor``: a few recordings of every actor (smoke runs)."""
    table = ravdess_recordings().sort_values("path").reset_index(drop=True)
    if per_actor:
        table = table.iloc[stratified_clip_subset(table, n_per_actor=per_actor, seed=seed)].reset_index(drop=True)
    manifest = pd.DataFrame({
        "path": table["path"],
        "label": table["emotion_name"],
        "split": ["test" if a in RAVDESS_TEST_ACTORS else "train" for a in table["actor"]],
        "group": [f"actor_{a:02d}" for a in table["actor"]],
        "language": "en",
        "transcript": [STATEMENTS[s] for s in table["statement"]],
    })
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest.to_csv(path, index=False)
    return manifest


def msa(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``msa ARGS...`` (the installed command's module) from the project root; prints the command."""
    cmd = [sys.executable, "-m", "msa_lib.app.cli", *map(str, args)]
    print("$ msa " + " ".join(map(str, args)), flush=True)
    done = subprocess.run(cmd, cwd=PROJECT_ROOT, capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"msa {' '.join(map(str, args))} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


# Training settings notebook 08 compares on the validation actors (RunConfig fields; lr 1e-4 is the
# msa train default, tuned for the transformer encoders on MOSI).
SETTINGS_CANDIDATES: dict[str, dict] = {
    "mlp, lr 1e-4": {"model_config": {"encoder": "mlp"}, "train": {"lr": 1e-4}},
    "mlp, lr 1e-3": {"model_config": {"encoder": "mlp"}, "train": {"lr": 1e-3}},
    "stats, lr 1e-4": {"model_config": {"encoder": "stats"}, "train": {"lr": 1e-4}},
    "stats, lr 1e-3": {"model_config": {"encoder": "stats"}, "train": {"lr": 1e-3}},
}


def run_settings(settings: dict, epochs: int, patience: int = 10) -> dict:
    """A ``--config`` file's content: ``settings`` with the epoch budget (``msa train --epochs`` also sets it)."""
    train = {"max_epochs": int(epochs), "patience": int(patience), **settings.get("train", {})}
    return {**settings, "train": train}


def choose_settings_on_validation(features: str | Path, work: str | Path, model: str, epochs: int,
                                  candidates: dict[str, dict] | None = None, seed: int = 0) -> pd.DataFrame:
    """Train each candidate (one seed) with ``msa train`` and rank them by validation macro F1 (the
    run's own monitor), then accuracy. Only the validation actors are read; the test split is not."""
    rows = []
    for name, settings in (candidates or SETTINGS_CANDIDATES).items():
        slug = "".join(c if c.isalnum() else "_" for c in name)
        config, out = Path(work) / f"select_{slug}.json", Path(work) / "select" / slug
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(run_settings(settings, epochs)))
        if out.exists():
            import shutil

            shutil.rmtree(out)
        msa("train", features, "--model", model, "--task", "classes", "--seeds", seed, "--epochs", epochs,
            "--config", config, "--out", out)
        run = json.loads((out / "metrics.json").read_text())["per_seed"][0]
        rows.append({"settings": name, "valid acc": run["valid"]["acc"], "valid macro F1": run["valid"]["f1_macro"],
                     "best epoch": run["best_epoch"]})
    return pd.DataFrame(rows).sort_values(["valid macro F1", "valid acc"], ascending=False).reset_index(drop=True)


def decision_fusion_reference(reports_dir: str | Path, branch: str = "audio_whisper") -> str | None:
    """Notebook 07's clean test accuracy of one RAVDESS branch (same test actors), as its ``mean ± std``
    text from ``results/ravdess_decision_fusion_summary.csv``; None when notebook 07 has not run."""
    path = project_path(reports_dir) / "results" / "ravdess_decision_fusion_summary.csv"
    if not path.exists():
        return None
    summary = pd.read_csv(path)
    row = summary[(summary["branch_or_rule"] == branch) & (summary["scenario"] == "clean")]
    return f"{row['acc'].iloc[0]} %" if len(row) else None


def held_out_recordings(manifest: pd.DataFrame, n: int = 4) -> list[str]:
    """A few test-actor recordings (never seen in training), one per emotion in turn."""
    test = manifest[manifest["split"] == "test"]
    picks = test.groupby("label", sort=True).head(1).head(n)
    return picks["path"].tolist()


def predictions_table(results: Sequence[dict]) -> pd.DataFrame:
    """The per-clip output of ``msa predict --model ... --json`` as a table."""
    rows = []
    for r in results:
        row = {"clip": Path(r["clip"]).name, "status": r.get("status"), "prediction": r.get("label"),
               "p(prediction)": r.get("confidence")}
        rows.append(row)
    return pd.DataFrame(rows)


def api_check(features: str | Path, run_dir: str | Path, out: str | Path) -> dict:
    """Train again through the Python API with the run's own config and compare the test metrics."""
    from msa_lib.train.runs import RunConfig, train_run

    config = json.loads((Path(run_dir) / "config.json").read_text())
    cfg = RunConfig.from_dict(config["run_config"])
    api = train_run(features, out, cfg, progress=False)
    cli_metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
    return {"cli": cli_metrics["summary"]["test"], "api": api.metrics["summary"]["test"]}
