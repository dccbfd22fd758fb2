"""PyTorch side of the dataset: per-modality standardisation (fitted on train only), a Dataset, and a
collate function that pads sequences and returns masks and lengths.

A batch is a dict::

    {"x": {modality: B x T x D float}, "mask": {modality: B x T bool (True = real step)},
     "lengths": {modality: B long}, "present": {modality: B bool},
     "label": B long (-1 unknown), "score": B float (NaN unknown),
     "ids", "language", "raw_text": lists}

NaN rows in the stored features (e.g. frames without a face) become masked steps with zeros.
A modality a sample does not have (``T = 0``) is one masked step and ``present = False``.
Video batches (:func:`make_video_loader`) hold whole videos and add ``batch["context"]``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from msa_lib.data.schema import MultimodalDataset


@dataclass
class Standardizer:
    """Per-dimension z-scoring of each modality, statistics from the training split only.

    NaN (masked) rows are ignored when fitting and stay NaN; constant dimensions keep scale 1.
    """

    modalities: Sequence[str] | None = None
    mean: dict[str, np.ndarray] = field(default_factory=dict)
    scale: dict[str, np.ndarray] = field(default_factory=dict)

    def fit(self, ds: MultimodalDataset, split: str = "train") -> "Standardizer":
        part = ds.get_split(split)
        if len(part) == 0:
            raise ValueError(f"{ds.meta.name}: no '{split}' samples to fit the standardiser on")
        for m in self.modalities or ds.modalities:
            stacked = [a for a in part.features[m] if len(a)]
            if not stacked:
                continue
            frames = np.concatenate(stacked, axis=0).astype(np.float64)
            mean = np.nanmean(frames, axis=0) if np.isfinite(frames).any() else np.zeros(frames.shape[1])
            std = np.nanstd(frames, axis=0)
            mean, std = np.nan_to_num(mean), np.nan_to_num(std)
            self.mean[m] = mean.astype(np.float32)
            self.scale[m] = np.where(std > 1e-8, std, 1.0).astype(np.float32)
        return self

    def transform(self, ds: MultimodalDataset) -> MultimodalDataset:
        out = ds.subset(np.arange(len(ds)))
        out.features = dict(ds.features)
        for m in self.mean:
            if m in ds.features:
                out.features[m] = [(a - self.mean[m]) / self.scale[m] for a in ds.features[m]]
        return out

    def fit_transform(self, ds: MultimodalDataset, split: str = "train") -> MultimodalDataset:
        return self.fit(ds, split).transform(ds)


class MultimodalTorchDataset(Dataset):
    def __init__(self, ds: MultimodalDataset, modalities: Sequence[str] | None = None, max_len: int | dict | None = None):
        self.ds = ds
        self.modalities = list(modalities or ds.modalities)
        missing = [m for m in self.modalities if m not in ds.features]
        if missing:
            raise KeyError(f"{ds.meta.name}: modality {missing} not in the dataset (has {ds.modalities})")
        self.dims = {m: ds.meta.modalities[m].dim for m in self.modalities}
        self.max_len = max_len

    def __len__(self) -> int:
        return len(self.ds)

    def _limit(self, m: str) -> int | None:
        return self.max_len.get(m) if isinstance(self.max_len, dict) else self.max_len

    def __getitem__(self, i: int) -> dict:
        ds = self.ds
        feats = {}
        for m in self.modalities:
            a = ds.features[m][i]
            limit = self._limit(m)
            if limit is not None and len(a) > limit:  # evenly subsample rather than truncate the end
                a = a[np.linspace(0, len(a) - 1, limit).round().astype(int)]
            feats[m] = a
        return {"features": feats, "label": int(ds.labels[i]), "score": float(ds.scores[i]), "id": str(ds.ids[i]),
                "language": str(ds.language[i]), "raw_text": str(ds.raw_text[i]), "dims": self.dims}


def collate(items: list[dict]) -> dict:
    dims = items[0]["dims"]
    batch = {"x": {}, "mask": {}, "lengths": {}, "present": {}}
    for m, d in dims.items():
        seqs = [it["features"][m] for it in items]
        t_max = max(1, max(len(a) for a in seqs))
        x = np.zeros((len(items), t_max, d), dtype=np.float32)
        mask = np.zeros((len(items), t_max), dtype=bool)
        for b, a in enumerate(seqs):
            if len(a):
                valid = ~np.isnan(a).any(axis=1)
                x[b, : len(a)] = np.nan_to_num(a)
                mask[b, : len(a)] = valid
        batch["x"][m] = torch.from_numpy(x)
        batch["mask"][m] = torch.from_numpy(mask)
        batch["lengths"][m] = torch.tensor([len(a) for a in seqs], dtype=torch.long)
        batch["present"][m] = torch.from_numpy(mask.any(axis=1))
    batch["label"] = torch.tensor([it["label"] for it in items], dtype=torch.long)
    batch["score"] = torch.tensor([it["score"] for it in items], dtype=torch.float32)
    for key in ("id", "language", "raw_text"):
        batch[key if key != "id" else "ids"] = [it[key] for it in items]
    return batch


def make_loader(ds: MultimodalDataset, modalities: Sequence[str] | None = None, batch_size: int = 32,
                shuffle: bool = False, seed: int = 0, max_len: int | dict | None = None, num_workers: int = 0,
                by_video: bool = False) -> DataLoader:
    """Batches of utterances (shuffled reproducibly from ``seed``); ``by_video``: video batches of about
    ``batch_size`` utterances (:func:`make_video_loader`), as a model with ``uses_video_context`` needs."""
    if by_video:
        return make_video_loader(ds, modalities, batch_size, shuffle, seed, max_len, num_workers)
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(MultimodalTorchDataset(ds, modalities, max_len), batch_size=batch_size, shuffle=shuffle,
                      collate_fn=collate, generator=generator, num_workers=num_workers)


def batch_to(batch: dict, device: torch.device) -> dict:
    out = dict(batch)
    for key in ("x", "mask", "lengths", "present"):
        out[key] = {m: t.to(device) for m, t in batch[key].items()}
    out["label"], out["score"] = batch["label"].to(device), batch["score"].to(device)
    return out


# ---------------------------------------------------------------------------------------------- video batches
# Contextual models (bc-LSTM-style) read every utterance of a video at once. A video batch is an
# ordinary batch of utterances (every key above, one row per utterance) that holds whole videos, each
# video's utterances in order, plus ``batch["context"]``:
#     {"video": N long (which video of the batch), "position": N long (place in its video),
#      "groups": the video ids, in batch order}
# A model that has no context entry treats every utterance as a video of its own.

def utterance_order(ids) -> list[tuple[int, int]]:
    """Sort key from an id's trailing number (``video_12`` -> 12), else its position."""
    keys = []
    for pos, sid in enumerate(ids):
        m = re.search(r"(\d+)$", str(sid))
        keys.append((int(m.group(1)) if m else pos, pos))
    return keys


def videos_in_spoken_order(groups: Sequence[str], ids: Sequence[str]) -> list[list[int]]:
    """Row indices per video (``groups``, in order of first appearance), each video's rows sorted by
    :func:`utterance_order` -- never by row order, which in the shipped MOSI files follows the labels."""
    order = utterance_order(ids)
    members: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(str(g), []).append(i)
    return [sorted(idx, key=lambda i: order[i]) for idx in members.values()]


def check_videos_within_one_split(ds: MultimodalDataset) -> None:
    """Raise if a video (group) has utterances in more than one split: its context would carry one
    split's utterances into another's."""
    seen: dict[str, str] = {}
    for g, s in zip(ds.group, ds.split):
        if seen.setdefault(g, s) != s:
            raise ValueError(f"{ds.meta.name}: video {g!r} has utterances in both {seen[g]!r} and {s!r}; an utterance "
                             f"context must never cross a split: split by video (e.g. group_validation_split)")


class VideoBatchSampler(Sampler[list[int]]):
    """Batches of ``videos_per_batch`` whole videos (``groups``), each video's utterances in
    :func:`utterance_order`; ``shuffle`` draws the video order per epoch from ``generator``."""

    def __init__(self, groups: Sequence[str], ids: Sequence[str], videos_per_batch: int = 1, shuffle: bool = False,
                 generator: torch.Generator | None = None):
        if videos_per_batch < 1:
            raise ValueError(f"videos_per_batch must be >= 1, got {videos_per_batch}")
        self.videos = videos_in_spoken_order(groups, ids)
        self.videos_per_batch, self.shuffle, self.generator = int(videos_per_batch), shuffle, generator

    def __len__(self) -> int:
        return -(-len(self.videos) // self.videos_per_batch)

    def __iter__(self):
        n = len(self.videos)
        order = torch.randperm(n, generator=self.generator).tolist() if self.shuffle else range(n)
        order = list(order)
        for start in range(0, n, self.videos_per_batch):
            yield [i for v in order[start:start + self.videos_per_batch] for i in self.videos[v]]


class VideoTorchDataset(MultimodalTorchDataset):
    """:class:`MultimodalTorchDataset` whose items also carry their video (``group``)."""

    def __getitem__(self, i: int) -> dict:
        item = super().__getitem__(i)
        item["group"] = str(self.ds.group[i])
        return item


def collate_videos(items: list[dict]) -> dict:
    """:func:`collate` plus ``batch["context"]`` (see above); ``items`` hold whole videos, in order."""
    batch = collate(items)
    video, position, groups = [], [], []
    for it in items:
        g = it["group"]
        if not groups or groups[-1] != g:
            if g in groups:
                raise ValueError(f"video {g!r} is split inside one batch: use VideoBatchSampler / make_video_loader")
            groups.append(g)
            count = 0
        video.append(len(groups) - 1)
        position.append(count)
        count += 1
    batch["context"] = {"video": torch.tensor(video, dtype=torch.long),
                        "position": torch.tensor(position, dtype=torch.long), "groups": groups}
    return batch


def videos_per_batch_for(ds: MultimodalDataset, utterances: int) -> int:
    """How many whole videos of ``ds`` make about ``utterances`` utterances (at least one)."""
    n_videos = max(1, len(set(ds.group)))
    return max(1, int(round(utterances / (len(ds) / n_videos)))) if len(ds) else 1


def make_video_loader(ds: MultimodalDataset, modalities: Sequence[str] | None = None, batch_size: int = 32,
                      shuffle: bool = False, seed: int = 0, max_len: int | dict | None = None,
                      num_workers: int = 0) -> DataLoader:
    """Video batches of ``ds`` (whole videos, utterances in order, ``batch["context"]``) of about
    ``batch_size`` utterances each. Refuses a dataset in which a video spans several splits."""
    check_videos_within_one_split(ds)
    generator = torch.Generator().manual_seed(seed)
    sampler = VideoBatchSampler(ds.group, ds.ids, videos_per_batch_for(ds, batch_size), shuffle, generator)
    return DataLoader(VideoTorchDataset(ds, modalities, max_len), batch_sampler=sampler, collate_fn=collate_videos,
                      generator=generator, num_workers=num_workers)
