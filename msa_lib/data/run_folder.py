"""The run folder: the one on-disk format of a trained model (``msa train`` and the default model).

``config.json`` says ``format: msa-run``, its ``format_version`` and its ``kind``:

- ``network``: a model of the zoo trained by ``msa train`` (``model.pt`` = state dict, see
  :mod:`msa_lib.train.runs`);
- ``branch_fusion``: the default model of ``msa predict``, one linear model per modality (``text.npz``,
  ``audio.npz``, ``face.npz``) fused at decision level (see :mod:`msa_lib.predict.train_default`).

Both also hold ``metrics.json`` and ``MODEL_CARD.md`` and record the extraction settings, so
``msa predict --model DIR`` reads any of them through :func:`read_run_header` and one prediction loop.
This module reads JSON only (no torch): ``msa predict`` start-up stays fast.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

RUN_FORMAT_NAME = "msa-run"
RUN_FORMAT = 1  # bump when config.json changes incompatibly
RUN_KIND_FILES = {
    "network": ("model.pt", "config.json", "metrics.json"),
    "branch_fusion": ("config.json", "metrics.json", "text.npz", "audio.npz", "face.npz"),
}


class RunError(ValueError):
    """A run folder, its config or a feature file cannot be used as asked (one clear message)."""


class ModelNotFound(RunError, FileNotFoundError):
    """No trained model at the path (or one from an older, unreadable layout)."""


def run_header(kind: str) -> dict:
    """The keys every run folder's ``config.json`` starts with."""
    from msa_lib import __version__

    if kind not in RUN_KIND_FILES:
        raise ValueError(f"run kind must be one of {', '.join(RUN_KIND_FILES)}, got {kind!r}")
    return {"format": RUN_FORMAT_NAME, "format_version": RUN_FORMAT, "kind": kind, "msa_lib_version": __version__}


def read_run_header(run_dir: str | os.PathLike, kind: str | None = None) -> dict:
    """``config.json`` of a run folder, after checking that the folder is complete for its kind and
    not newer than this msa_lib; ``kind`` (when given) must match. Every problem is one :class:`RunError`."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ModelNotFound(f"{run_dir}: no such model folder (train one with `msa train`, or the default model "
                            f"with `msa train-default`)")
    cfg_file = run_dir / "config.json"
    if not cfg_file.is_file():
        raise ModelNotFound(f"{run_dir}: no trained model here (config.json missing); train one with `msa train`, "
                            f"or the default model with `msa train-default`")
    try:
        config = json.loads(cfg_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{cfg_file}: corrupt ({exc}); retrain or restore the file") from None
    if not isinstance(config, dict) or config.get("format") != RUN_FORMAT_NAME:
        raise ModelNotFound(f"{cfg_file}: not an msa run folder (an older default model layout?); retrain it with "
                            f"`msa train-default` or `msa train`")
    version = config.get("format_version")
    if not isinstance(version, int) or version > RUN_FORMAT:
        raise RunError(f"{run_dir}: run format {version} is newer than this msa_lib understands ({RUN_FORMAT}); "
                       f"update msa_lib (pip install -U) to use it")
    found = config.get("kind", "network")  # format 1 runs written before kinds existed are networks
    if found not in RUN_KIND_FILES:
        raise RunError(f"{cfg_file}: unknown run kind {found!r} (this msa_lib knows {', '.join(RUN_KIND_FILES)})")
    if kind is not None and found != kind:
        raise RunError(f"{run_dir}: a {found} run, expected a {kind} run")
    missing = [f for f in RUN_KIND_FILES[found] if not (run_dir / f).is_file()]
    if missing:
        raise RunError(f"{run_dir}: not a complete run folder (missing {', '.join(missing)}); retrain or restore it")
    config["kind"] = found
    return config


__all__ = ["ModelNotFound", "RUN_FORMAT", "RUN_FORMAT_NAME", "RUN_KIND_FILES", "RunError", "read_run_header",
           "run_header"]
