"""Robustness to corrupted and missing modalities (MultiBench-style curves).

For each modality in turn, Gaussian noise of increasing standard deviation is added to its test
features (real steps of samples that have the modality; the features are standardised, so the std is
in units of the feature scale), and, separately, the modality is removed (``present`` False, all steps
masked). Every other modality is left clean. The result is a tidy table, one row per condition.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
import torch

from msa_lib.data.labels import LabelScheme
from msa_lib.data.torch_data import batch_to, make_loader
from msa_lib.train.trainer import _scheme, metrics_from_predictions, output_rows

DEFAULT_NOISE_LEVELS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)


def perturb_batch(batch: dict, modality: str, noise_std: float | None = None, remove: bool = False,
                  generator: torch.Generator | None = None) -> dict:
    """A copy of ``batch`` with ``modality`` noised (``noise_std``) or removed; other modalities untouched."""
    out = dict(batch)
    for key in ("x", "mask", "present", "lengths"):
        out[key] = dict(batch[key])
    if modality not in batch["x"]:
        raise KeyError(f"modality {modality!r} not in the batch (has {list(batch['x'])})")
    x, mask = batch["x"][modality], batch["mask"][modality]
    if remove:
        out["x"][modality] = torch.zeros_like(x)
        out["mask"][modality] = torch.zeros_like(mask)
        out["present"][modality] = torch.zeros_like(batch["present"][modality])
    elif noise_std:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype) if generator is not None else torch.randn_like(x)
        out["x"][modality] = x + noise_std * noise.to(x.device) * mask[..., None].to(x.dtype)
    return out


@torch.no_grad()
def _evaluate_condition(model, loader, scheme, modality=None, noise_std=None, remove=False, seed=0) -> dict:
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed)
    parts = []
    for batch in loader:
        if modality is not None:
            batch = perturb_batch(batch, modality, noise_std, remove, generator)
        output = model(batch_to(batch, device))
        parts.append(output_rows(output, batch, scheme))
    frame = pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})
    return metrics_from_predictions(frame, scheme)


def robustness_curves(model, ds, modalities: Sequence[str] | None = None,
                      noise_levels: Sequence[float] = DEFAULT_NOISE_LEVELS, label_scheme: LabelScheme | None = None,
                      batch_size: int = 64, seed: int = 0, repeats: int = 1) -> pd.DataFrame:
    """Metrics under noise on one modality at a time and with each modality removed.

    ``ds`` is the (standardised) evaluation set, e.g. ``data.get_split("test")``. Columns:
    ``modality``, ``condition`` ("clean", "noise", "removed"), ``noise_std`` (float; NaN for
    removed), ``level`` (the noise std, or the string "removed"), ``repeat`` and the metrics of
    :func:`msa_lib.train.trainer.evaluate`. ``repeats`` draws different noise for each repeat.
    """
    scheme = _scheme(model, label_scheme)
    modalities = [m for m in (modalities or model.modalities)]
    missing = [m for m in modalities if m not in ds.features]
    if missing:
        raise KeyError(f"{ds.meta.name}: modality {missing} not in the dataset (has {ds.modalities})")
    loader = make_loader(ds, [m for m in model.modalities if m in ds.features], batch_size,
                         by_video=getattr(model, "uses_video_context", False))
    rows = [{"modality": "none", "condition": "clean", "noise_std": 0.0, "level": 0.0, "repeat": 0,
             **_evaluate_condition(model, loader, scheme)}]
    for m in modalities:
        for r in range(repeats):
            for std in noise_levels:
                metrics = _evaluate_condition(model, loader, scheme, m, float(std), seed=seed + 1000 * r)
                rows.append({"modality": m, "condition": "noise", "noise_std": float(std), "level": float(std),
                             "repeat": r, **metrics})
        rows.append({"modality": m, "condition": "removed", "noise_std": float("nan"), "level": "removed",
                     "repeat": 0, **_evaluate_condition(model, loader, scheme, m, remove=True)})
    return pd.DataFrame(rows)


def plot_robustness(frame: pd.DataFrame, metric: str = "acc2", ax=None, title: str | None = None):
    """Metric vs noise std, one line per modality (mean over repeats and over any extra grouping
    such as seeds), with the modality-removed value as a dashed horizontal line of the same colour."""
    from msa_lib.core.plots import plt  # headless backend unless Jupyter set one

    if metric not in frame.columns:
        raise KeyError(f"metric {metric!r} not in the robustness table (columns: {list(frame.columns)})")
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
    else:
        fig = ax.figure
    noise = frame[frame["condition"] == "noise"]
    for i, (m, part) in enumerate(noise.groupby("modality", sort=False)):
        curve = part.groupby("noise_std")[metric].agg(["mean", "std"]).reset_index()
        colour = f"C{i}"
        ax.plot(curve["noise_std"], curve["mean"], marker="o", color=colour, label=f"noise on {m}")
        if curve["std"].notna().any():
            ax.fill_between(curve["noise_std"], curve["mean"] - curve["std"].fillna(0),
                            curve["mean"] + curve["std"].fillna(0), color=colour, alpha=0.15)
        removed = frame[(frame["condition"] == "removed") & (frame["modality"] == m)][metric]
        if len(removed):
            ax.axhline(float(removed.mean()), color=colour, linestyle="--", linewidth=1, label=f"{m} removed")
    clean = frame[frame["condition"] == "clean"][metric]
    if len(clean):
        ax.axhline(float(clean.mean()), color="black", linestyle=":", linewidth=1, label="clean")
    ax.set_xlabel("Gaussian noise std (standardised feature units)")
    ax.set_ylabel(metric)
    if title:
        ax.set_title(title)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
