"""Choosing a hyper-parameter (a regularisation strength ``C`` or ``alpha``) from held-out scores.

One rule everywhere a study or the default model picks a setting on validation (or on grouped
cross-validation inside train): the best score wins, and among equal scores the *smallest* setting
does, so a tie never depends on the order a grid happens to be written in. For ``C`` (inverse
strength) the smallest is the most regularised model; callers that tune a direct strength say so.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeVar

Setting = TypeVar("Setting", int, float)


def best_setting(scores: Mapping[Setting, float], *, lower_is_better: bool = False) -> Setting:
    """The setting of ``scores`` (setting -> held-out score) with the best score; the smallest setting
    among ties. ``lower_is_better`` for errors (MAE). A NaN score never wins."""
    if not scores:
        raise ValueError("best_setting needs at least one scored setting")
    sign = 1.0 if lower_is_better else -1.0

    def rank(setting):
        score = float(scores[setting])
        return (math.isnan(score), sign * score if not math.isnan(score) else 0.0, setting)

    return min(scores, key=rank)
