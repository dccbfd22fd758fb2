"""Figures of the RAVDESS decision-fusion study (notebook 07). Each function returns a matplotlib figure."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from msa_lib.core import plots as core_plots
from msa_lib.data.sources import RAVDESS_EMOTIONS

SHORT = [e[:4] for e in RAVDESS_EMOTIONS]


def plot_confusions(matrices: dict[str, np.ndarray], class_names: Sequence[str] = SHORT):
    """Row-normalised confusion matrices in percent with each accuracy; counts summed over seeds."""
    return core_plots.plot_confusions(matrices, class_names, cols=len(matrices), annotate="percent",
                                      show_accuracy=True, panel_size=3.6)


def plot_fusion_bars(summary: pd.DataFrame, order: Sequence[str], references: dict[str, float] | None = None,
                     bars: dict[str, float] | None = None):
    """Test accuracy (mean ± std over seeds) of branches and rules on the clean scenario; dashed lines
    for reference numbers, dotted for the quality bars."""
    clean = summary[summary["scenario"] == "clean"].set_index("branch_or_rule")
    order = [o for o in order if o in clean.index]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(order) + 2), 3.8))
    colors = ["#7f7f7f" if clean.loc[o, "kind"] == "branch" else "#1f77b4" for o in order]
    ax.bar(range(len(order)), 100 * clean.loc[order, "acc_mean"], yerr=100 * clean.loc[order, "acc_std"],
           color=colors, capsize=3)
    for i, o in enumerate(order):
        ax.text(i, 100 * clean.loc[o, "acc_mean"] + 100 * clean.loc[o, "acc_std"] + 0.8,
                f"{100 * clean.loc[o, 'acc_mean']:.1f}", ha="center", fontsize=7)
    for label, value in (references or {}).items():
        ax.axhline(100 * value, ls="--", lw=0.8, color="tab:red", alpha=0.7, label=f"reference: {label}")
    for label, value in (bars or {}).items():
        ax.axhline(100 * value, ls=":", lw=1.2, color="tab:green", label=f"quality bar: {label}")
    if references or bars:
        ax.legend(fontsize=7, loc="upper left", ncol=2, framealpha=0.9)
    ax.set_xticks(range(len(order)), order, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy (%), actors 21-24")
    ax.set_ylim(0, 105)
    ax.set_title("8-class RAVDESS: branches (grey) and decision fusion (blue), mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    return fig


def plot_degradation(summary: pd.DataFrame, pair: Sequence[str], rules: Sequence[str], degradation: str = "noise",
                     xlabel: str = "feature noise (train std units)"):
    """Test accuracy vs degradation level of one branch (left: first branch degraded, right: second);
    level 0 is the clean scenario."""
    fig, axes = plt.subplots(1, len(pair), figsize=(5.2 * len(pair), 3.8), sharey=True, squeeze=False)
    clean = summary[summary["scenario"] == "clean"].set_index("branch_or_rule")
    for ax, degraded in zip(axes[0], pair):
        part = summary[(summary["degraded_branch"] == degraded) & (summary["degradation"] == degradation)]
        for name in [*pair, *rules]:
            sub = part[part["branch_or_rule"] == name].sort_values("level")
            if sub.empty or name not in clean.index:
                continue
            x = np.r_[0.0, sub["level"].to_numpy()]
            m = 100 * np.r_[clean.loc[name, "acc_mean"], sub["acc_mean"].to_numpy()]
            s = 100 * np.r_[clean.loc[name, "acc_std"], sub["acc_std"].to_numpy()]
            style = dict(ls="--", lw=1.2, color="grey" if name == degraded else "black") if name in pair else dict(lw=1.4)
            ax.plot(x, m, marker="o", ms=3, label=name, **style)
            ax.fill_between(x, m - s, m + s, alpha=0.08, color=style.get("color"))
        ax.set_title(f"{degraded} degraded ({degradation})", fontsize=9)
        ax.set_xlabel(xlabel)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (%)")
    axes[0][-1].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def plot_layer_sweep(table: pd.DataFrame, chosen: tuple[int, str] | None = None):
    """Validation accuracy (mean ± std over seeds' validation actors) per Whisper representation."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    n = int(table["layer"].max()) + 1
    for pooling, part in table.groupby("pooling"):
        part = part.sort_values("layer")
        ax.errorbar(part["layer"], 100 * part["mean"], yerr=100 * part["std"], marker="o", ms=4, capsize=3,
                    label=pooling)
    if chosen:
        row = table[(table["layer"] == chosen[0]) & (table["pooling"] == chosen[1])]
        ax.scatter(row["layer"], 100 * row["mean"], s=160, facecolors="none", edgecolors="red", label="chosen")
    ax.set_xticks(range(n), [f"block {i}" for i in range(n - 1)] + ["final\n(ln_post)"], fontsize=7)
    ax.set_ylabel("validation accuracy (%)")
    ax.set_title("Whisper-base encoder: layer and pooling (validation actors only)", fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_pr_curves(scores: dict, variants: Sequence[str], seeds: Sequence[int], names: Sequence[str] = RAVDESS_EMOTIONS,
                   threshold: float = 0.5):
    """Precision-recall curve per emotion (test rows pooled over ``seeds``) for each variant; the dot marks
    the operating point at ``threshold``."""
    from sklearn.metrics import precision_recall_curve, precision_score, recall_score

    cols = 4
    rows_n = int(np.ceil(len(names) / cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.9 * rows_n), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        for i, v in enumerate(variants):
            Y = np.concatenate([scores[(v, s)][0][:, k] for s in seeds]).astype(int)
            S = np.concatenate([scores[(v, s)][1][:, k] for s in seeds])
            p, r, _ = precision_recall_curve(Y, S)
            line, = ax.plot(r, p, lw=1.2, label=v)
            pred = (S >= threshold).astype(int)
            ax.scatter([recall_score(Y, pred, zero_division=0)], [precision_score(Y, pred, zero_division=0)],
                       color=line.get_color(), s=25, zorder=3)
        ax.axhline(Y.mean(), ls=":", color="grey", lw=0.8)
        ax.set_title(name, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        if k % cols == 0:
            ax.set_ylabel("precision")
        if k // cols == rows_n - 1:
            ax.set_xlabel("recall")
    axes[0][0].legend(fontsize=7, loc="lower left")
    fig.suptitle(f"One-vs-rest BCE detection, test actors (dots: threshold {threshold}; dotted: positive rate)", fontsize=10)
    fig.tight_layout()
    return fig
