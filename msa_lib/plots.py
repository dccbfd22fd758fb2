"""Figure helpers shared by the notebooks (the notebooks call these; they hold no plotting logic)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless by default; Jupyter sets its own backend
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from .paths import project_path  # noqa: E402


def figures_dir(reports_dir: str | os.PathLike = "reports") -> Path:
    p = project_path(reports_dir) / "figures"
    p.mkdir(parents=True, exist_ok=True)
    return p


def results_dir(reports_dir: str | os.PathLike = "reports") -> Path:
    p = project_path(reports_dir) / "results"
    p.mkdir(parents=True, exist_ok=True)
    return p


def save_figure(fig, name: str, reports_dir: str | os.PathLike = "reports", dpi: int = 120) -> Path:
    path = figures_dir(reports_dir) / (name if name.endswith(".png") else f"{name}.png")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot_label_distribution(tables: dict[str, pd.DataFrame]):
    """One bar panel per dataset: label counts per split (and language) from ``MultimodalDataset.summary()``."""
    fig, axes = plt.subplots(1, len(tables), figsize=(4.2 * len(tables), 3.6), squeeze=False)
    for ax, (name, table) in zip(axes[0], tables.items()):
        counts = table.drop(columns="n")
        counts.index = [" / ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in counts.index]
        counts.plot.bar(ax=ax, stacked=True, width=0.75, colormap="tab10", legend=len(counts.columns) <= 8)
        ax.set_title(name)
        ax.set_xlabel("split / language")
        ax.set_ylabel("samples")
        ax.tick_params(axis="x", rotation=30)
        if ax.get_legend():
            ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_histograms(values: dict[str, np.ndarray], xlabel: str, bins: int = 30):
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for name, v in values.items():
        ax.hist(v, bins=bins, alpha=0.6, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count")
    ax.legend()
    fig.tight_layout()
    return fig
