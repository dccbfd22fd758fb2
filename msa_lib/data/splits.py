"""Validation splits taken out of *train* by group (video, speaker or actor) — never from test."""
from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from msa_lib.data.schema import MultimodalDataset


def group_validation_split(ds: MultimodalDataset, valid_fraction: float = 0.15, seed: int = 0,
                           replace_existing: bool = False) -> MultimodalDataset:
    """Move whole groups of the train split to ``valid`` (label-stratified where labels exist).

    A dataset that already has a validation split is returned unchanged unless ``replace_existing``
    (then its valid samples return to train first). Test samples are never touched.
    """
    if not 0 < valid_fraction < 1:
        raise ValueError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    split = ds.split.copy()
    if (split == "valid").any():
        if not replace_existing:
            return ds
        split[split == "valid"] = "train"
    train_idx = np.flatnonzero(split == "train")
    groups = ds.group[train_idx]
    n_groups = len(np.unique(groups))
    if n_groups < 2:
        raise ValueError(f"{ds.meta.name}: a group-aware validation split needs at least 2 train groups, found {n_groups}")
    labels = ds.labels[train_idx]
    if (labels < 0).all():  # regression-only: stratify on the sign of the score
        labels = np.where(np.isnan(ds.scores[train_idx]), 0, ds.scores[train_idx] >= 0).astype(int)
    n_splits = int(np.clip(round(1 / valid_fraction), 2, n_groups))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    _, valid_pos = next(folds.split(np.zeros(len(train_idx)), labels, groups))
    split[train_idx[valid_pos]] = "valid"
    out = ds.subset(np.arange(len(ds)))
    out.split = split
    return out


def assert_disjoint_groups(ds: MultimodalDataset) -> None:
    """Raise if any group (video/speaker/actor) appears in more than one split."""
    seen: dict[str, str] = {}
    for g, s in zip(ds.group, ds.split):
        if seen.setdefault(g, s) != s:
            raise AssertionError(f"group {g!r} appears in both {seen[g]} and {s}")
