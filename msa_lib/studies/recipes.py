"""The experiment recipes the notebooks share: how the default datasets are prepared and how a
model is trained over several seeds. Notebooks call these and plot; they hold no training logic.

CMU-MOSI text path (two stages, so ten models x five seeds train in minutes on a CPU):

1. ``text``: multilingual-e5-small hidden states after layer 8 of 12 (cached once, see
   :mod:`msa_lib.extract.text_features`), plus ``text_context`` (pooled vectors of the previous and
   next utterance of the same video, bc-LSTM-style context, text only).
2. :func:`adapt_text_encoder`: per seed, the top 4 e5 layers are fine-tuned as a text-only model on
   MOSI train (early stopping on the validation *videos*); the adapted token states then replace
   ``text`` and every unimodal/fusion model trains on them with its own encoder. Test data never
   influences either stage.
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import torch

from msa_lib.data.sources import load_mosi, load_zh_reviews
from msa_lib.data.sampling import cap_splits
from msa_lib.data.splits import group_validation_split
from msa_lib.data.torch_data import Standardizer, make_loader
from msa_lib.evaluate.metrics import confusion
from msa_lib.data.schema import ModalitySpec, MultimodalDataset
from msa_lib.extract.text_features import MOSI_TEXT, ZH_TEXT, TextFeatureConfig, add_text_features
from msa_lib.models.encoders import EncoderConfig
from msa_lib.models.multimodal import MODEL_REGISTRY, ModelConfig
from msa_lib.core.paths import cache_dir
from msa_lib.core.utils import get_logger, set_seed
from msa_lib.train.trainer import TrainConfig, evaluate, predict, train_model

log = get_logger("recipes")

MOSI_TRIMODAL = ("text", "text_context", "audio", "vision")
MOSI_UNIMODAL_INPUTS = {"text": ("text", "text_context"), "audio": ("audio",), "vision": ("vision",)}
# which inputs each registered model sees on MOSI: a unimodal baseline its modality's, every fusion the
# "trimodal" inputs (text with its context, audio, vision)
MOSI_MODEL_INPUTS: dict[str, tuple[str, ...]] = {
    name: MOSI_UNIMODAL_INPUTS[recipe.modality] if recipe.modality else MOSI_TRIMODAL
    for name, recipe in MODEL_REGISTRY.items()}


def prepare_mosi(text: TextFeatureConfig | None = MOSI_TEXT, split_seed: int = 0,
                 valid_fraction: float = 0.15, max_videos: int | None = None) -> MultimodalDataset:
    """MOSI with e5 text features, a validation split of whole train videos, and audio/vision/text-CNN
    standardised with train statistics. ``max_videos`` keeps that many videos per split (smoke runs)."""
    ds = load_mosi()
    if max_videos is not None:
        keep = np.zeros(len(ds), bool)
        for split in ("train", "test"):
            videos = sorted(set(ds.group[ds.split == split]))[:max_videos]
            keep |= (ds.split == split) & np.isin(ds.group, videos)
        ds = ds.subset(keep)
    if text is not None:
        ds = add_text_features(ds, text)
    ds = group_validation_split(ds, valid_fraction, seed=split_seed)
    return Standardizer(modalities=[m for m in ("audio", "vision", "text_cnn") if m in ds.features]).fit_transform(ds)


def prepare_zh_reviews(text: TextFeatureConfig | None = ZH_TEXT, max_train: int | None = None,
                       max_eval: int | None = None, seed: int = 0) -> MultimodalDataset:
    """The Chinese reviews with e5 text features; ``max_*`` take stratified subsets (smoke runs)."""
    ds = load_zh_reviews()
    ds = ds.subset(cap_splits(ds.split, ds.labels, {"train": max_train, "valid": max_eval, "test": max_eval}, seed))
    return add_text_features(ds, text) if text is not None else ds


# Text encoder over token states that already went through the fine-tuned top e5 layers (stage 1):
# one more 128-d layer is enough there and keeps five seeds of ten models within minutes on 2 cores
# (the seed's 256-d / 4-layer encoder costs about 8x more per epoch for no gain on adapted states).
ADAPTED_TEXT_ENCODER = EncoderConfig(kind="transformer", hidden=128, layers=1, heads=4)


def model_config(text_kind: str = "transformer", dropout: float = 0.3, text_key: str = "text",
                 text_encoder: EncoderConfig | None = None, **overrides) -> ModelConfig:
    """Encoders: ``text`` as ``text_kind`` (``pretrained_top`` fine-tunes e5's top layers; the default
    ``transformer`` is the seed's 256-d / 4-layer encoder) or as ``text_encoder`` when given, context
    vectors through an MLP."""
    encoders = {"text": text_encoder or EncoderConfig(kind=text_kind), "text_context": "mlp"}
    return ModelConfig(dropout=dropout, encoders=encoders, text_key=text_key, **overrides)


@dataclass
class AdaptedText:
    dataset: MultimodalDataset
    history: pd.DataFrame
    best_epoch: int
    metrics: dict  # the text-only stage-1 model on test (reported, never used for selection)
    state_dict: dict  # the stage-1 text-only model's weights (rebuild with a pretrained_top encoder of the same layers)
    cached: bool = False

    def result_row(self) -> dict:
        """The stage-1 model's test metrics and best epoch, as a results-table row."""
        return {**{k: v for k, v in self.metrics.items() if k != "n"}, "best_epoch": self.best_epoch}


def adapt_text_encoder(ds: MultimodalDataset, seed: int, train: TrainConfig | None = None,
                       modality: str = "text", layers: int = 4) -> AdaptedText:
    """Stage 1: fine-tune the top ``layers`` e5 layers on ``ds``'s train split as a text-only model (early
    stopping on valid), then replace ``modality`` with the adapted token states of every sample. ``ds``
    must hold the states *below* those layers (``hidden_layer = 12 - layers``; 0, the embedding output,
    fine-tunes all 12; the model builder refuses any other layer). Cached on disk per (data, split,
    settings, seed), so notebooks share one adaptation."""
    train = replace(train or TrainConfig(max_epochs=6, patience=2), seed=seed, progress=False)
    key = _adapt_key(ds, modality, train)
    path = cache_dir() / "adapted" / f"{ds.meta.name}-{modality}-seed{seed}-{key}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=False)
        return AdaptedText(ds.with_features(modality, saved["sequences"], saved["spec"]), saved["history"],
                           saved["best_epoch"], saved["metrics"], saved["state_dict"], cached=True)
    config = model_config(text_encoder=EncoderConfig(kind="pretrained_top", layers=layers))
    model, result = train_model("text_only", ds, config, train, modalities=[modality])
    metrics = evaluate(model, make_loader(ds.get_split("test"), [modality], 64), ds.meta.labels)
    encoder = model.encoders[modality]
    encoder.eval()
    device = next(encoder.parameters()).device
    adapted = []
    with torch.no_grad():
        for batch in make_loader(ds, [modality], 64):
            x, mask = batch["x"][modality].to(device), batch["mask"][modality].to(device)
            seq = encoder(x, mask).sequence.cpu().numpy()
            for b, n in enumerate(batch["lengths"][modality].tolist()):
                adapted.append(seq[b, :n].astype(np.float32))
    spec = ds.meta.modalities[modality]
    new_spec = ModalitySpec(encoder.out_dim, None, {"embedding": list(range(encoder.out_dim))}, spec.level, spec.rate_hz,
                            {**spec.extractor, "adapted": f"top {len(encoder.layers)} layers fine-tuned on "
                                                          f"{ds.meta.name} train, seed {seed}, best epoch {result.best_epoch}"})
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save({"sequences": adapted, "spec": new_spec, "history": result.history, "best_epoch": result.best_epoch,
                "metrics": metrics, "state_dict": state}, tmp)
    tmp.replace(path)
    return AdaptedText(ds.with_features(modality, adapted, new_spec), result.history, result.best_epoch, metrics, state)


@dataclass
class CrossFittedText:
    dataset: MultimodalDataset  # train: out-of-fold adapted states; valid and test: the full stage-1 model's
    folds: pd.DataFrame  # per fold: its videos, utterances, and the fold model's metrics on them (a diagnostic)
    full: AdaptedText  # the stage-1 model on every train video (as adapt_text_encoder gives it)


def cross_fitted_adaptation(ds: MultimodalDataset, seed: int, train: TrainConfig | None = None, folds: int = 5,
                            modality: str = "text", layers: int = 4) -> CrossFittedText:
    """Stage 1 with out-of-fold states for the train split (stacking's cross-fitting). A model trained on
    top of :func:`adapt_text_encoder`'s states sees train utterances the encoder was fine-tuned on with
    their labels: they separate far better than valid or test ones, so the second stage can learn to
    trust text too much while its validation (other videos, which the encoder did not see) warns late. Here the train videos are cut into ``folds`` groups; each group's states come from a
    stage-1 model fine-tuned on the other groups (early stopping on valid), so no train utterance carries
    states from a model that saw its label. Valid and test keep the states of the stage-1 model fine-tuned
    on every train video, which never saw them. Every fit is cached like :func:`adapt_text_encoder`."""
    from sklearn.model_selection import GroupKFold

    train_rows = np.flatnonzero(ds.split == "train")
    n_videos = len(np.unique(ds.group[train_rows]))
    if not 2 <= folds <= n_videos:
        raise ValueError(f"{ds.meta.name}: {folds} folds for {n_videos} train videos (need 2 <= folds <= videos)")
    full = adapt_text_encoder(ds, seed, train, modality, layers)
    states = list(full.dataset.features[modality])
    rows = []
    for k, (_, held) in enumerate(GroupKFold(folds).split(train_rows, groups=ds.group[train_rows])):
        held = train_rows[held]
        # the held-out videos play "test" for this fit (scored, never trained on); the real test is left out
        split = ds.split.copy()
        split[held] = "test"
        keep = ds.split != "test"
        fold = adapt_text_encoder(replace(ds, split=split).subset(keep), seed, train, modality, layers)
        position = {sid: i for i, sid in enumerate(fold.dataset.ids)}
        for i in held:
            states[i] = fold.dataset.features[modality][position[ds.ids[i]]]
        rows.append({"fold": k, "videos": len(np.unique(ds.group[held])), "utterances": len(held),
                     "best_epoch": fold.best_epoch, **{f"held_out_{m}": v for m, v in fold.metrics.items() if m != "n"}})
    spec = full.dataset.meta.modalities[modality]
    spec = replace(spec, extractor={**spec.extractor, "cross_fitted": f"train states out of fold ({folds} folds of "
                                                                       f"train videos), seed {seed}"})
    return CrossFittedText(full.dataset.with_features(modality, states, spec), pd.DataFrame(rows), full)


def _adapt_key(ds: MultimodalDataset, modality: str, train: TrainConfig) -> str:
    h = hashlib.sha256()
    h.update(json.dumps({k: str(v) for k, v in asdict(train).items() if k not in ("progress", "device", "num_workers")},
                        sort_keys=True).encode())
    h.update(json.dumps(ds.meta.modalities[modality].extractor, sort_keys=True, default=str).encode())
    for sid, split in zip(ds.ids, ds.split):
        h.update(f"{sid}:{split};".encode())
    return h.hexdigest()[:12]


@dataclass
class RunOutput:
    rows: list[dict] = field(default_factory=list)  # one per (model, seed): metrics + timing
    predictions: list[pd.DataFrame] = field(default_factory=list)
    histories: list[pd.DataFrame] = field(default_factory=list)
    models: dict = field(default_factory=dict)  # (name, seed) -> trained model, when kept

    def table(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows)


def run_models(ds: MultimodalDataset, models: dict[str, Sequence[str]], seed: int,
               train: TrainConfig | None = None, config: ModelConfig | None = None, keep_models: bool = False,
               experiment: str = "", out: RunOutput | None = None,
               after_fit: Callable[[str, torch.nn.Module, MultimodalDataset], dict] | None = None) -> RunOutput:
    """Train each named model (with its inputs) for one seed; evaluate on test; collect rows,
    per-sample predictions and training curves. ``after_fit`` may add columns (e.g. robustness)."""
    out = out or RunOutput()
    train = replace(train or TrainConfig(), seed=seed)
    for name, inputs in models.items():
        set_seed(seed)
        start = time.perf_counter()
        model, result = train_model(name, ds, copy.deepcopy(config or model_config()), train, modalities=list(inputs))
        test = ds.get_split("test")
        loader = make_loader(test, model.modalities, 64, by_video=model.uses_video_context)
        metrics = evaluate(model, loader, ds.meta.labels)
        pred = predict(model, loader, ds.meta.labels)
        row = {"experiment": experiment, "model": name, "seed": seed, "inputs": "+".join(inputs),
               **{k: v for k, v in metrics.items() if k != "n"}, "best_epoch": result.best_epoch,
               "epochs_run": result.epochs_run, "seconds_per_epoch": result.seconds_per_epoch,
               "train_seconds": time.perf_counter() - start}
        if after_fit is not None:
            row.update(after_fit(name, model, ds))
        out.rows.append(row)
        out.predictions.append(pred.assign(model=name, seed=seed))
        out.histories.append(result.history.assign(model=name, seed=seed))
        if keep_models:
            out.models[(name, seed)] = model
        log.info("%s seed %d: %s", name, seed, {k: round(v, 4) for k, v in metrics.items() if isinstance(v, float)})
    return out


def confusion_by_model(predictions: pd.DataFrame, num_classes: int = 2) -> dict[str, np.ndarray]:
    """Confusion matrices summed over seeds, per model (rows: true, columns: predicted)."""
    return {name: sum(confusion(p["label"], p["pred"], num_classes) for _, p in part.groupby("seed"))
            for name, part in predictions.groupby("model", sort=False)}


def linear_baselines(ds: MultimodalDataset, feature_sets: dict[str, Sequence[str]],
                     cs: Sequence[float] = (0.001, 0.01, 0.1, 1.0)) -> pd.DataFrame:
    """Reference rows: the majority class of train, and scikit-learn logistic regression on the
    mean-pooled features of each feature set (C chosen on the validation split, then scored on test)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from msa_lib.core.selection import best_setting
    from msa_lib.evaluate.metrics import binary_metrics

    def matrix(part, mods):
        return np.hstack([np.stack([np.nan_to_num(np.nanmean(a, axis=0)) if len(a) else np.zeros(a.shape[1])
                                    for a in part.features[m]]) for m in mods])

    train, valid, test = (ds.get_split(s) for s in ("train", "valid", "test"))
    majority = int(np.bincount(train.labels[train.labels >= 0]).argmax())
    rows = [{"model": "majority class", **binary_metrics(test.labels, np.full(len(test), majority))}]
    for name, mods in feature_sets.items():
        xtr, xva, xte = (matrix(p, mods) for p in (train, valid, test))
        best = best_setting({c: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
                             .fit(xtr, train.labels).score(xva, valid.labels) for c in cs})
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=best, max_iter=3000)).fit(xtr, train.labels)
        rows.append({"model": f"logistic regression: {name} (C={best:g})", **binary_metrics(test.labels, clf.predict(xte))})
    return pd.DataFrame(rows)
