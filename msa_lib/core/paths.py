"""Where paths point.

Two kinds of path, two helpers:

- :func:`project_path` — the project's own locations (configs, shipped data, reports, caches): relative
  paths resolve against the project root, wherever the process runs (notebooks run in ``notebooks/``).
- :func:`user_path` — a path a user typed (a CLI argument, a path handed to a reader or writer such as
  ``read_features`` or ``--out``): relative paths resolve against the current folder, where the user
  stands, never against the install folder. :func:`input_path` is the reading variant: the current
  folder first; a relative path found only inside the project (``data/clips/manifest.csv`` as the
  notebooks name it) is the project's file.

Paths *inside* a manifest resolve against the manifest's folder (``data.sources.read_clip_manifest``).
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DATA_DIR = PROJECT_ROOT / "data"
FEATURES_DIR = DATA_DIR / "features"
REPORTS_DIR = PROJECT_ROOT / "reports"
RESULTS_DIR = REPORTS_DIR / "results"
FIGURES_DIR = REPORTS_DIR / "figures"
BENCHMARKS_DIR = REPORTS_DIR / "benchmarks"
MODELS_DIR = PROJECT_ROOT / "models"


def cache_dir() -> Path:
    """Where rebuilt model weights and per-clip extraction caches live (``MSA_CACHE_DIR`` overrides)."""
    root = Path(os.environ.get("MSA_CACHE_DIR", PROJECT_ROOT / ".cache"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def project_path(path: str | os.PathLike) -> Path:
    """Resolve ``path`` relative to the project root unless it is absolute."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else PROJECT_ROOT / p


def user_path(path: str | os.PathLike) -> Path:
    """A path the user typed, made absolute against the current folder (``~`` expanded). Use it for
    every path a user names, above all the ones written to: nothing lands in the install folder
    because of a relative path."""
    return Path(os.path.abspath(Path(path).expanduser()))


def input_path(path: str | os.PathLike) -> Path:
    """A file or folder to read: :func:`user_path` when it exists there (or the path is absolute);
    otherwise, when the relative path names something inside the project (a shipped file such as
    ``data/clips/manifest.csv``, as notebooks and studies name them), the project's copy. Else the
    :func:`user_path`, so a "not found" message names the folder the user stands in."""
    here = user_path(path)
    if here.exists() or Path(path).expanduser().is_absolute():
        return here
    inside = PROJECT_ROOT / Path(path).expanduser()
    return inside if inside.exists() else here


def ensure_dir(path: str | os.PathLike) -> Path:
    p = project_path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p
