"""Stratified subsets: every place that draws a smaller, label-balanced part of a dataset uses these.

- :func:`stratified_sample` -- ``k`` % of every class (few-shot samples, per-split caps);
- :func:`stratified_cap` -- at most ``n`` rows, every class in proportion (``n`` given as a count);
- :func:`stratified_clip_subset` -- a few clips of every group (actor) with the classes rotating over
  the groups, so that every block of groups sees every class (smoke runs of RAVDESS).
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def stratified_sample(labels, k_percent: float, seed: int = 0, min_per_class: int = 1) -> np.ndarray:
    """Sorted indices of ``k_percent`` % of the samples of every class (labels < 0 are never drawn).

    Each class contributes ``round(k / 100 * n_class)`` samples, at least ``min_per_class`` when
    ``k > 0`` (and at most all of them). Same seed -> same sample; nested over ``k``.
    """
    labels = np.asarray(labels)
    if not 0 <= k_percent <= 100:
        raise ValueError(f"k_percent must be in [0, 100], got {k_percent}")
    if k_percent == 0:
        return np.zeros(0, dtype=int)
    rng = np.random.default_rng(seed)
    chosen = []
    for cls in np.unique(labels[labels >= 0]):
        members = np.flatnonzero(labels == cls)
        members = members[rng.permutation(len(members))]
        n = min(len(members), max(min_per_class, int(math.floor(k_percent / 100 * len(members) + 0.5))))
        chosen.append(members[:n])
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, dtype=int)


def stratified_cap(labels, n: int | None, seed: int = 0, min_per_class: int = 1) -> np.ndarray:
    """Sorted indices of about ``n`` samples (all when ``n`` is None or not smaller), each class in
    proportion (:func:`stratified_sample` at ``100 n / N`` %)."""
    labels = np.asarray(labels)
    if n is None or n >= len(labels):
        return np.arange(len(labels))
    return stratified_sample(labels, 100.0 * n / len(labels), seed, min_per_class)


def cap_splits(split, labels, caps: dict | None, seed: int = 0, min_per_class: int = 1) -> np.ndarray:
    """Sorted row indices keeping at most ``caps[s]`` rows of each split ``s`` (stratified by label)."""
    split, labels = np.asarray(split), np.asarray(labels)
    if not caps:
        return np.arange(len(split))
    keep = []
    for s in np.unique(split):
        idx = np.flatnonzero(split == s)
        keep.append(idx[stratified_cap(labels[idx], caps.get(s), seed, min_per_class)])
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=int)


def stratified_clip_subset(table: pd.DataFrame, n_per_actor: int = 2, seed: int = 0, n_classes: int | None = None,
                           group: str = "actor", label: str = "emotion") -> np.ndarray:
    """Row indices of a small subset: ``n_per_actor`` clips of every actor, the emotions rotating over
    actors so that every emotion appears in every block of ``8 / n_per_actor`` consecutive actors
    (train, validation and test all see every emotion when the subset is used for a smoke run)."""
    n_classes = n_classes or int(table[label].max()) + 1
    rng = np.random.default_rng(seed)
    rows = []
    actors = sorted(table[group].unique())
    for a_pos, actor in enumerate(actors):
        for j in range(n_per_actor):
            emotion = (a_pos * n_per_actor + j) % n_classes
            cand = np.flatnonzero((table[group].to_numpy() == actor) & (table[label].to_numpy() == emotion))
            if len(cand):
                rows.append(int(rng.choice(cand)))
    return np.array(sorted(rows))
