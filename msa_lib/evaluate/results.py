"""Result tables: one row per (experiment, model, seed) in ``reports/results/<name>.csv`` and a
``<name>_summary.csv`` with mean ± std over seeds."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from msa_lib.core.paths import RESULTS_DIR, project_path


class ResultsTable:
    """Collect rows, write the CSV, summarise over seeds.

    ``key`` columns identify a row; adding a row with the same key replaces the old one, so a rerun
    of one model never duplicates rows.
    """

    def __init__(self, name: str, key: tuple[str, ...] = ("experiment", "model", "seed"),
                 folder: str | os.PathLike = RESULTS_DIR):
        self.name, self.key = name, tuple(key)
        self.path = project_path(folder) / f"{name}.csv"
        self.rows: list[dict] = []

    def add(self, **row) -> dict:
        missing = [k for k in self.key if k not in row]
        if missing:
            raise KeyError(f"results row for {self.name} lacks key column(s) {missing}")
        self.rows = [r for r in self.rows if any(r.get(k) != row[k] for k in self.key)]
        self.rows.append(row)
        return row

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)

    def save(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        frame = self.frame()
        frame.to_csv(self.path, index=False)
        group_cols = [k for k in self.key if k != "seed"]
        if "seed" in frame.columns and len(frame):
            summarize(frame, group_cols).to_csv(self.path.with_name(f"{self.name}_summary.csv"), index=False)
        return self.path


def summarize(frame: pd.DataFrame, by: list[str], metrics: list[str] | None = None, seed_col: str = "seed") -> pd.DataFrame:
    """Mean, std (ddof=1; 0 for one seed) and ``mean ± std`` text per group for every numeric metric."""
    if metrics is None:
        metrics = [c for c in frame.columns if c not in by and c != seed_col and pd.api.types.is_numeric_dtype(frame[c])]
    rows = []
    for keys, part in frame.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        row = dict(zip(by, keys))
        row["n_seeds"] = part[seed_col].nunique() if seed_col in part else len(part)
        for m in metrics:
            vals = part[m].astype(float).to_numpy()
            finite = vals[np.isfinite(vals)]
            mean = float(finite.mean()) if len(finite) else float("nan")
            std = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
            row[f"{m}_mean"], row[f"{m}_std"] = mean, std
            row[m] = format_mean_std(mean, std, percent=m.startswith(PERCENT_PREFIXES))
        rows.append(row)
    return pd.DataFrame(rows)


# shown x 100; "mosi_delta*" columns are differences of accuracies, so they read in points
PERCENT_PREFIXES = ("acc", "f1", "precision", "recall", "auc", "mosi_delta")


def format_mean_std(mean: float, std: float, percent: bool = False, digits: int = 1) -> str:
    """``percent``: ``0.8512, 0.0041`` -> ``85.1 ± 0.4``; otherwise 3 decimals. A metric a group does not
    have (mean NaN, e.g. the MOSI delta on a Chinese-test row) is an empty cell, not ``nan ± 0.000``."""
    if not np.isfinite(mean):
        return ""
    if percent:
        return f"{100 * mean:.{digits}f} ± {100 * std:.{digits}f}"
    return f"{mean:.3f} ± {std:.3f}"
