"""Small synthetic multimodal datasets for unit tests (never used for reported results)."""
import numpy as np

from msa_lib.data.labels import MOSI_SCHEME, scores_to_classes
from msa_lib.data.schema import DatasetMeta, ModalitySpec, MultimodalDataset

DIMS = {"text": 6, "audio": 4, "vision": 5}


def make_dataset(n=24, seed=0, dims=DIMS, max_len=7, scheme=MOSI_SCHEME, n_groups=8, nan_rows=True):
    rng = np.random.default_rng(seed)
    scores = np.round(rng.uniform(-3, 3, n), 1)
    scores[0] = 0.0
    feats = {}
    for m, d in dims.items():
        seqs = []
        for i in range(n):
            a = rng.normal(size=(int(rng.integers(1, max_len + 1)), d)).astype(np.float32)
            a[:, 0] += scores[i]  # a learnable signal
            if nan_rows and m == "vision" and len(a) > 2 and i % 3 == 0:
                a[1] = np.nan  # a masked frame (no face)
            seqs.append(a)
        feats[m] = seqs
    split = np.array(["train"] * n, dtype=object)
    split[-n // 4:] = "test"
    groups = [f"video_{i % n_groups}" for i in range(n)]
    # keep test groups disjoint from train
    groups = [g if s == "train" else f"test_{g}" for g, s in zip(groups, split)]
    meta = DatasetMeta("synthetic", {m: ModalitySpec(d, [f"{m}_{j}" for j in range(d)]) for m, d in dims.items()}, scheme)
    return MultimodalDataset.build(
        meta, [f"s{i:03d}" for i in range(n)], feats, split=split, language=["en", "zh"] * (n // 2),
        raw_text=[f"sample {i}" for i in range(n)], group=groups, scores=scores,
        labels=scores_to_classes(scores, 2, "mosi"))
