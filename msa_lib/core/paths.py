"""Project-relative locations. Every path in configs resolves against these, never against the CWD."""
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


def ensure_dir(path: str | os.PathLike) -> Path:
    p = project_path(path)
    p.mkdir(parents=True, exist_ok=True)
    return p
