"""Few-shot transfer: stratified, seeded samples of the target training data, and the two ways to use
them — rehearsal (all source data mixed with the target sample) and fine-tuning on the target sample
alone (which shows forgetting on the source).

:func:`stratified_sample` draws ``k`` % of every class with one permutation per class, so for a fixed
seed the sample for a smaller ``k`` is a subset of the sample for a larger ``k`` (the curves compare
nested data, not different luck of the draw).
"""
from __future__ import annotations


import numpy as np

from msa_lib.data.sampling import stratified_sample
from msa_lib.data.schema import MultimodalDataset, concat

METHODS = ("rehearsal", "target_only")


def target_sample(target: MultimodalDataset, k_percent: float, seed: int = 0, split: str = "train") -> MultimodalDataset:
    """``k_percent`` % of the target's ``split`` (stratified, seeded), as a ``train`` split."""
    part = target.get_split(split)
    idx = stratified_sample(part.labels, k_percent, seed)
    out = part.subset(idx)
    out.split = np.array(["train"] * len(out), dtype=object)
    return out


def few_shot_training_set(source: MultimodalDataset, target: MultimodalDataset, k_percent: float, seed: int = 0,
                          method: str = "rehearsal", repeat_target: int = 1) -> MultimodalDataset:
    """Training data for one few-shot run (``train`` split only).

    ``rehearsal``: the source's train split plus the target sample (repeated ``repeat_target`` times, so
    a small sample is not drowned by the source); ``target_only``: the target sample alone.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if repeat_target < 1:
        raise ValueError(f"repeat_target must be >= 1, got {repeat_target}")
    sample = target_sample(target, k_percent, seed)
    copies = []
    for r in range(repeat_target if len(sample) else 0):
        copy = sample.subset(np.arange(len(sample)))
        copy.ids = np.array([f"{i}#rep{r}" if r else i for i in sample.ids], dtype=object)
        copies.append(copy)
    if method == "target_only":
        if not copies:
            raise ValueError("target_only with k_percent = 0 has no training data")
        return concat(copies, name=f"{target.meta.name}-k{k_percent:g}")
    src = source.get_split("train")
    return concat([src, *copies], name=f"{source.meta.name}+{target.meta.name}-k{k_percent:g}")


__all__ = ["METHODS", "stratified_sample", "target_sample", "few_shot_training_set"]
