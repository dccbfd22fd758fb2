"""The one in-memory representation of a multimodal dataset.

Per sample: an id, a language, the raw text, a group (video, speaker or actor: what a validation split
must not cut through), a split, per-modality feature sequences (``T x D`` float32; utterance-level
vectors are ``T = 1``; rows that are NaN are *masked* time steps, e.g. frames without a face; ``T = 0``
means the modality is missing for that sample), a regression score (NaN when unknown) and a class label
(-1 when unknown). Dataset metadata names every feature dimension, the extractor settings and the label
scheme.

The layout is columnar (lists/arrays over samples) so subsets and splits are cheap.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Iterable, Sequence

import numpy as np

from msa_lib.data.labels import LabelScheme, check_targets

STANDARD_MODALITIES = ("text", "audio", "vision")
SPLITS = ("train", "valid", "test")


class FeatureFormatError(ValueError):
    """A feature file or array does not have the expected structure; the message names the source,
    the key and what was expected."""

    def __init__(self, source: str, key: str, expected: str, found: str | None = None):
        self.source, self.key, self.expected, self.found = str(source), key, expected, found
        msg = f"{source}: '{key}' — expected {expected}"
        if found is not None:
            msg += f", found {found}"
        super().__init__(msg)


@dataclass
class ModalitySpec:
    """What one modality's feature columns are."""

    dim: int
    feature_names: list[str] | None = None
    groups: dict[str, list[int]] = field(default_factory=dict)  # named column groups for attribution
    level: str = "sequence"  # "sequence" (T frames/tokens) or "utterance" (T = 1)
    rate_hz: float | None = None  # frames per second for time-based sequences
    extractor: dict = field(default_factory=dict)  # name + settings that produced the features

    def __post_init__(self):
        if self.feature_names is not None and len(self.feature_names) != self.dim:
            raise ValueError(f"{len(self.feature_names)} feature names for dim {self.dim}")
        if self.level not in ("sequence", "utterance"):
            raise ValueError(f"level must be 'sequence' or 'utterance', got {self.level!r}")

    def names(self) -> list[str]:
        return self.feature_names or [f"f{i:03d}" for i in range(self.dim)]


@dataclass
class DatasetMeta:
    name: str
    modalities: dict[str, ModalitySpec]
    labels: LabelScheme
    source: str = ""  # provenance: where the raw data came from
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["labels"] = self.labels.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "DatasetMeta":
        mods = {k: ModalitySpec(**v) for k, v in d["modalities"].items()}
        return cls(d["name"], mods, LabelScheme.from_dict(d["labels"]), d.get("source", ""), d.get("extra", {}))


@dataclass
class MultimodalDataset:
    meta: DatasetMeta
    ids: np.ndarray
    split: np.ndarray
    language: np.ndarray
    raw_text: np.ndarray
    group: np.ndarray
    features: dict[str, list[np.ndarray]]
    scores: np.ndarray
    labels: np.ndarray
    failures: list[dict] = field(default_factory=list)  # clips that could not be processed, and why
    extra: np.ndarray | None = None  # per-sample dicts (transcript source, language probability, ...)

    def __post_init__(self):
        if self.extra is None:
            self.extra = np.array([{} for _ in range(len(self.ids))], dtype=object)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        meta: DatasetMeta,
        ids: Sequence[str],
        features: dict[str, Sequence[np.ndarray]],
        *,
        split: Sequence[str] | str = "train",
        language: Sequence[str] | str = "en",
        raw_text: Sequence[str] | None = None,
        group: Sequence[str] | None = None,
        scores: Sequence[float] | None = None,
        labels: Sequence[int] | None = None,
        failures: list[dict] | None = None,
        extra: Sequence[dict] | None = None,
        source: str = "<memory>",
    ) -> "MultimodalDataset":
        n = len(ids)

        def column(values, default, dtype=object):
            if values is None:
                values = default
            if isinstance(values, str) or np.isscalar(values):
                return np.array([values] * n, dtype=dtype)
            return np.asarray(list(values), dtype=dtype)

        feats = {m: [_as_2d(a, source, m, i) for i, a in enumerate(seq)] for m, seq in features.items()}
        ds = cls(
            meta=meta,
            ids=column(list(map(str, ids)), None),
            split=column(split, "train"),
            language=column(language, "en"),
            raw_text=column(raw_text, ""),
            group=column(group, list(map(str, ids))),
            features=feats,
            scores=column(scores, np.nan, float),
            labels=column(labels, -1, int),
            failures=list(failures or []),
            extra=_dict_column(extra, n),
        )
        ds.validate(source)
        return ds

    # ------------------------------------------------------------------ checks
    def validate(self, source: str = "<memory>") -> "MultimodalDataset":
        n = len(self.ids)
        for name in ("split", "language", "raw_text", "group", "scores", "labels", "extra"):
            if len(getattr(self, name)) != n:
                raise FeatureFormatError(source, name, f"{n} entries (one per id)", f"{len(getattr(self, name))}")
        bad_split = set(self.split) - set(SPLITS)
        if bad_split:
            raise FeatureFormatError(source, "split", f"values in {SPLITS}", f"{sorted(bad_split)}")
        if len(set(self.ids)) != n:
            raise FeatureFormatError(source, "ids", "unique sample ids", "duplicates")
        for m, seqs in self.features.items():
            spec = self.meta.modalities.get(m)
            if spec is None:
                raise FeatureFormatError(source, f"meta.modalities.{m}", "a ModalitySpec for every modality", "none")
            if len(seqs) != n:
                raise FeatureFormatError(source, m, f"{n} sequences", f"{len(seqs)}")
            for i, a in enumerate(seqs):
                if a.ndim != 2 or a.shape[1] != spec.dim:
                    raise FeatureFormatError(
                        source, f"{m}[{self.ids[i]}]", f"a T x {spec.dim} array", f"shape {a.shape}"
                    )
                if np.isinf(a).any():
                    raise FeatureFormatError(source, f"{m}[{self.ids[i]}]", "finite values (NaN rows mark masked steps)", "inf")
        check = check_targets(self.meta.labels, self.scores, self.labels)
        if not check.ok:
            raise FeatureFormatError(source, "labels", f"targets valid for {self.meta.labels.kind} labels", "; ".join(check.problems))
        return self

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.ids)

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    def subset(self, index) -> "MultimodalDataset":
        """Rows selected by a boolean mask or integer indices (features are shared, not copied)."""
        idx = np.arange(len(self))[np.asarray(index)] if np.asarray(index).dtype == bool else np.asarray(index, int)
        return MultimodalDataset(
            meta=self.meta,
            ids=self.ids[idx],
            split=self.split[idx],
            language=self.language[idx],
            raw_text=self.raw_text[idx],
            group=self.group[idx],
            features={m: [seqs[i] for i in idx] for m, seqs in self.features.items()},
            scores=self.scores[idx],
            labels=self.labels[idx],
            failures=self.failures,
            extra=self.extra[idx],
        )

    def get_split(self, name: str) -> "MultimodalDataset":
        return self.subset(self.split == name)

    def with_modalities(self, keep: Iterable[str]) -> "MultimodalDataset":
        keep = list(keep)
        missing = [m for m in keep if m not in self.features]
        if missing:
            raise KeyError(f"{self.meta.name}: no modality {missing}; available: {self.modalities}")
        meta = DatasetMeta(self.meta.name, {m: self.meta.modalities[m] for m in keep}, self.meta.labels,
                           self.meta.source, dict(self.meta.extra))
        return MultimodalDataset(meta, self.ids, self.split, self.language, self.raw_text, self.group,
                                 {m: self.features[m] for m in keep}, self.scores, self.labels, self.failures,
                                 self.extra)

    def with_features(self, modality: str, sequences: Sequence[np.ndarray], spec: ModalitySpec) -> "MultimodalDataset":
        """A copy with one modality added or replaced (e.g. text features from a new encoder)."""
        meta = DatasetMeta(self.meta.name, {**self.meta.modalities, modality: spec}, self.meta.labels,
                           self.meta.source, dict(self.meta.extra))
        feats = {**self.features, modality: [_as_2d(a, "<with_features>", modality, i) for i, a in enumerate(sequences)]}
        out = MultimodalDataset(meta, self.ids, self.split, self.language, self.raw_text, self.group, feats,
                                self.scores, self.labels, self.failures, self.extra)
        return out.validate("<with_features>")

    def lengths(self, modality: str) -> np.ndarray:
        return np.array([a.shape[0] for a in self.features[modality]], dtype=int)

    def summary(self) -> "pandas.DataFrame":  # noqa: F821
        """Sizes and label distribution per split and language."""
        import pandas as pd

        names = self.meta.labels.class_names
        frame = pd.DataFrame({"split": self.split, "language": self.language,
                              "label": [names[i] if 0 <= i < len(names) else "unknown" for i in self.labels]})
        table = frame.groupby(["split", "language", "label"]).size().unstack("label", fill_value=0)
        table.insert(0, "n", table.sum(axis=1))
        order = {s: i for i, s in enumerate(SPLITS)}
        return table.sort_index(key=lambda idx: idx.map(order) if idx.name == "split" else idx)


def concat(datasets: Sequence[MultimodalDataset], name: str | None = None) -> MultimodalDataset:
    """Stack datasets that share modality specs and label scheme (ids must stay unique)."""
    first = datasets[0]
    for ds in datasets[1:]:
        if ds.meta.labels != first.meta.labels:
            raise ValueError(f"cannot concat {first.meta.name} and {ds.meta.name}: different label schemes")
        for m, spec in ds.meta.modalities.items():
            if m in first.meta.modalities and first.meta.modalities[m].dim != spec.dim:
                raise ValueError(f"cannot concat: modality {m} has dim {first.meta.modalities[m].dim} vs {spec.dim}")
    mods = {}
    for ds in datasets:
        for m, spec in ds.meta.modalities.items():
            mods.setdefault(m, spec)
    features = {}
    for m, spec in mods.items():
        features[m] = [a for ds in datasets for a in (ds.features[m] if m in ds.features
                                                      else [np.zeros((0, spec.dim), np.float32)] * len(ds))]
    meta = DatasetMeta(name or "+".join(ds.meta.name for ds in datasets), mods, first.meta.labels,
                       "; ".join(ds.meta.source for ds in datasets if ds.meta.source), {})
    cat = lambda attr: np.concatenate([getattr(ds, attr) for ds in datasets])  # noqa: E731
    out = MultimodalDataset(meta, cat("ids"), cat("split"), cat("language"), cat("raw_text"), cat("group"),
                            features, cat("scores"), cat("labels"), [f for ds in datasets for f in ds.failures],
                            cat("extra"))
    return out.validate("<concat>")


def _dict_column(values, n: int) -> np.ndarray:
    out = np.empty(n, dtype=object)
    for i in range(n):
        out[i] = dict(values[i]) if values is not None and values[i] is not None else {}
    return out


def _as_2d(a, source, modality, i) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float32)
    if arr.ndim == 1:  # an utterance-level vector is a sequence of length one
        arr = arr[None, :]
    if arr.ndim != 2:
        raise FeatureFormatError(source, f"{modality}[{i}]", "a T x D array or a D vector", f"shape {arr.shape}")
    return arr
