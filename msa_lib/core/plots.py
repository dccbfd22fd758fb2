"""Figure helpers shared by the notebooks (the notebooks call these; they hold no plotting logic)."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use(os.environ.get("MPLBACKEND", "Agg"))  # headless by default; Jupyter sets its own backend
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from msa_lib.core.paths import project_path  # noqa: E402


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


def plot_metric_bars(summary: pd.DataFrame, metric: str = "acc2", label_col: str = "model",
                     reference: dict[str, float] | None = None, title: str = ""):
    """Bars of ``<metric>_mean`` with ``<metric>_std`` error bars (fractions shown as %), optional
    horizontal reference lines (e.g. the majority class)."""
    fig, ax = plt.subplots(figsize=(max(5, 0.65 * len(summary) + 2), 3.6))
    mean, std = 100 * summary[f"{metric}_mean"], 100 * summary[f"{metric}_std"]
    ax.bar(summary[label_col].astype(str), mean, yerr=std, capsize=3, color="tab:blue", alpha=0.85)
    for name, value in (reference or {}).items():
        ax.axhline(100 * value, ls="--", lw=1, color="grey")
        ax.text(len(summary) - 0.5, 100 * value, f" {name}", va="bottom", ha="right", fontsize=8, color="grey")
    low = max(0.0, float((mean - std).min()) - 8)
    ax.set_ylim(low, min(100.0, float((mean + std).max()) + 4))
    ax.set_ylabel(f"{metric} (%)")
    ax.set_title(title)
    ax.tick_params(axis="x", rotation=35)
    fig.tight_layout()
    return fig


def plot_learning_curves(histories: pd.DataFrame, metrics=("train_loss", "valid_loss", "valid_acc2")):
    """Per model: the mean over seeds of each history column against the epoch."""
    metrics = [m for m in metrics if m in histories.columns]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.3 * len(metrics), 3.3), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for name, part in histories.groupby("model", sort=False):
            curve = part.groupby("epoch")[metric].mean()
            ax.plot(curve.index, curve.values, label=name, lw=1.4)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_confusions(matrices: dict[str, np.ndarray], class_names=("NEG", "POS"), cols: int = 5,
                    annotate: str = "count", show_accuracy: bool = False, panel_size: float = 2.4):
    """Row-normalised confusion matrices (recall per true class), one panel per model. Cells show the
    counts (``annotate="count"``) or the row percentages (``"percent"``); ``show_accuracy`` adds the
    accuracy of each matrix to its title."""
    if annotate not in ("count", "percent"):
        raise ValueError(f"annotate must be 'count' or 'percent', got {annotate!r}")
    n = len(matrices)
    rows = int(np.ceil(n / cols))
    fig, axes = plt.subplots(rows, min(cols, n), figsize=(panel_size * min(cols, n), panel_size * rows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    rotate = 60 if max(len(str(c)) for c in class_names) > 3 else 0
    for ax, (name, cm) in zip(axes.flat, matrices.items()):
        cm = np.asarray(cm)
        norm = cm / np.clip(cm.sum(axis=1, keepdims=True), 1, None)
        ax.imshow(norm, vmin=0, vmax=1, cmap="Blues")
        for (i, j), v in np.ndenumerate(cm):
            label = f"{int(v)}" if annotate == "count" else f"{100 * norm[i, j]:.0f}"
            ax.text(j, i, label, ha="center", va="center", fontsize=7 if len(cm) > 4 else 8,
                    color="white" if norm[i, j] > 0.5 else "black")
        ax.set_xticks(range(len(class_names)), class_names, fontsize=7, rotation=rotate)
        ax.set_yticks(range(len(class_names)), class_names, fontsize=7)
        title = name if not show_accuracy else f"{name}\nacc {100 * np.trace(cm) / max(cm.sum(), 1):.1f} %"
        ax.set_title(title, fontsize=8)
    fig.supxlabel("predicted", fontsize=8)
    fig.supylabel("true", fontsize=8)
    fig.tight_layout()
    return fig


def plot_gate_usage(predictions: pd.DataFrame):
    """Histogram of the per-sample share of windows in which the AdaMML policy kept each modality."""
    cols = [c for c in predictions.columns if c.startswith("gate_")]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for col in cols:
        ax.hist(predictions[col].dropna(), bins=np.linspace(0, 1, 11), alpha=0.55, label=col[5:])
    ax.set_xlabel("share of windows kept (per test sample)")
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
