"""Label schemes: sentiment scores on [-3, 3] (MOSI/MOSEI) or [-1, 1] (SIMS), binary-only labels,
and plain multi-class labels (emotions), with the score -> class mappings every metric shares.

Class conventions (MMSA's, made explicit):
- 2 classes ("Has0"): NEG = score < 0, POS = score >= 0 (zero counts as non-negative);
- 3 classes: MOSI-style rounding after clipping to [-1, 1]; SIMS cut points -0.1 / 0.1;
- 5 classes SNEG/WNEG/NEUT/WPOS/SPOS: MOSI-style rounding after clipping to [-2, 2];
  SIMS cut points -0.7, -0.1, 0.1, 0.7 (intervals closed on the right, as in MMSA);
- 7 classes: rounding after clipping to [-3, 3] (MOSI/MOSEI only).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

CLASS_NAMES = {
    2: ("NEG", "POS"),
    3: ("NEG", "NEU", "POS"),
    5: ("SNEG", "WNEG", "NEUT", "WPOS", "SPOS"),
    7: ("SNEG", "NEG", "WNEG", "NEUT", "WPOS", "POS", "SPOS"),
}
# Right-closed interval edges on [-1, 1] for SIMS-style scores (thuiar/MMSA metricsTop).
SIMS_CUTS = {3: (-0.1, 0.1), 5: (-0.7, -0.1, 0.1, 0.7)}
SCALES = ("mosi", "sims")


@dataclass
class LabelScheme:
    """How a dataset's targets are expressed.

    kind: ``regression`` (a score, classes derived from it), ``binary`` (0 = negative,
    1 = positive, no score) or ``multiclass`` (``class_names`` index the labels).
    scale: for regression, ``mosi`` ([-3, 3]) or ``sims`` ([-1, 1]).
    """

    kind: str = "regression"
    scale: str | None = "mosi"
    class_names: tuple[str, ...] = CLASS_NAMES[2]
    description: str = ""

    def __post_init__(self):
        if self.kind not in ("regression", "binary", "multiclass"):
            raise ValueError(f"label kind must be regression, binary or multiclass, got {self.kind!r}")
        if self.kind == "regression" and self.scale not in SCALES:
            raise ValueError(f"regression scale must be one of {SCALES}, got {self.scale!r}")
        self.class_names = tuple(self.class_names)

    @property
    def score_range(self) -> tuple[float, float] | None:
        if self.kind != "regression":
            return None
        return (-3.0, 3.0) if self.scale == "mosi" else (-1.0, 1.0)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LabelScheme":
        return cls(**d)


MOSI_SCHEME = LabelScheme("regression", "mosi", CLASS_NAMES[2], "sentiment score in [-3, 3]")
SIMS_SCHEME = LabelScheme("regression", "sims", CLASS_NAMES[2], "sentiment score in [-1, 1]")
BINARY_SCHEME = LabelScheme("binary", None, CLASS_NAMES[2], "0 = negative, 1 = positive")


def clip_score(scores, scale: str) -> np.ndarray:
    lim = 3.0 if scale == "mosi" else 1.0
    return np.clip(np.asarray(scores, dtype=float), -lim, lim)


def scores_to_classes(scores, num_classes: int, scale: str = "mosi") -> np.ndarray:
    """Map scores to class indices 0..num_classes-1 (see module docstring for the conventions)."""
    s = np.asarray(scores, dtype=float)
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    if num_classes == 2:
        return (s >= 0).astype(int)
    if scale == "mosi":
        half = {3: 1, 5: 2, 7: 3}.get(num_classes)
        if half is None:
            raise ValueError(f"MOSI-style scores map to 2, 3, 5 or 7 classes, not {num_classes}")
        # np.round is round-half-to-even, exactly what MMSA's __multiclass_acc uses.
        return (np.round(np.clip(s, -half, half)) + half).astype(int)
    cuts = SIMS_CUTS.get(num_classes)
    if cuts is None:
        raise ValueError(f"SIMS-style scores map to 2, 3 or 5 classes, not {num_classes}")
    # right-closed intervals: a score equal to a cut point belongs to the lower class
    return np.searchsorted(np.asarray(cuts), np.clip(s, -1, 1), side="left").astype(int)


def class_name(index: int, num_classes: int) -> str:
    return CLASS_NAMES[num_classes][int(index)]


def rescale_score(scores, from_scale: str, to_scale: str) -> np.ndarray:
    """Linear map between the [-3, 3] and [-1, 1] scales (after clipping)."""
    s = clip_score(scores, from_scale)
    if from_scale == to_scale:
        return s
    return s / 3.0 if to_scale == "sims" else s * 3.0


@dataclass
class LabelCheck:
    """Result of validating targets against a scheme (used by readers to fail with one message)."""

    ok: bool
    problems: list[str] = field(default_factory=list)


def check_targets(scheme: LabelScheme, scores=None, labels=None) -> LabelCheck:
    problems = []
    if scores is not None and scheme.kind == "regression":
        s = np.asarray(scores, dtype=float)
        lo, hi = scheme.score_range
        known = s[~np.isnan(s)]
        bad = known[(known < lo - 1e-6) | (known > hi + 1e-6)]
        if bad.size:
            problems.append(f"{bad.size} score(s) outside [{lo}, {hi}] (e.g. {bad[0]:g})")
    if labels is not None:
        lab = np.asarray(labels)
        known = lab[lab >= 0]
        bad = known[known >= scheme.num_classes]
        if bad.size:
            problems.append(
                f"{bad.size} class label(s) outside 0..{scheme.num_classes - 1} "
                f"({', '.join(scheme.class_names)}), e.g. {bad[0]}"
            )
    return LabelCheck(not problems, problems)
