"""The seed paper's remaining models in notebook 03: MCTN and the contextual LSTM, alone and as the
fusion behind AdaMML's policy (models :mod:`msa_lib.models.mctn`, :mod:`msa_lib.models.context`).

The models train through :func:`msa_lib.studies.recipes.run_models` like every other model of the zoo
(video batches for the contextual ones are chosen by the trainer's loaders); this module only names
their inputs and adds the evaluations they need: MCTN scored with the source modality alone in the
test batches, and how often the AdaMML + contextual LSTM policy kept each modality per test video.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import numpy as np
import pandas as pd

from msa_lib.data.schema import MultimodalDataset
from msa_lib.models.mctn import MCTN
from msa_lib.models.multimodal import ModelConfig
from msa_lib.train.trainer import TrainConfig, evaluate, make_loader, train_model

CONTEXT_MODEL_NAMES = ("mctn", "mctn_shared", "mctn_hierarchical", "contextual_lstm", "adamml_context")
VIDEO_CONTEXT_MODELS = ("contextual_lstm", "adamml_context")  # the ones that read the other utterances of the video
# the features of the bc-LSTM paper (as shipped with its release): text-CNN, openSMILE, 3D-CNN
BCLSTM_SHIPPED_INPUTS = ("text_cnn", "audio", "vision")
# Inputs on mosi_bclstm with the project's own text (the adapted e5 tokens). The contextual models read
# every utterance of the video themselves, so they take no pooled-neighbour ``text_context``; MCTN
# translates text into audio (and, hierarchically, on into vision).
MOSI_CONTEXT_INPUTS: dict[str, tuple[str, ...]] = {
    "mctn": ("text", "audio"), "mctn_shared": ("text", "audio"), "mctn_hierarchical": ("text", "audio", "vision"),
    "contextual_lstm": ("text", "audio", "vision"), "adamml_context": ("text", "audio", "vision"),
}
# With cross-fitted text states (recipes.cross_fitted_adaptation): text and the label-free openSMILE audio.
# The shipped 3D-CNN vectors were trained with the labels of these very train videos (the blind spot that
# cross-fitting removes from the text), so the cross-fitted comparison leaves them out.
CROSS_FITTED_CONTEXT_INPUTS = ("text", "audio")
# on mosi_standard the label-free inputs only (text, openSMILE audio; the guard refuses the 3D-CNN
# video), so hierarchical MCTN, which translates on into vision, has no clean run there
STANDARD_CONTEXT_INPUTS: dict[str, tuple[str, ...]] = {
    name: tuple(m for m in inputs if m != "vision") for name, inputs in MOSI_CONTEXT_INPUTS.items()
    if name != "mctn_hierarchical"}


def source_only_metrics(name: str, model, ds: MultimodalDataset, split: str = "test") -> dict:
    """For an MCTN model: its metrics on ``split`` when the batches carry the source modality only
    (columns ``acc2_source_only``, ``f1_macro_source_only``); {} for any other model. Suits
    ``run_models(after_fit=...)``."""
    if not isinstance(getattr(model, "fusion", None), MCTN):
        return {}
    source = model.fusion.config.source
    metrics = evaluate(model, make_loader(ds.get_split(split), [source], 64), ds.meta.labels)
    return {f"{k}_source_only": v for k, v in metrics.items() if k in ("acc2", "f1_macro", "f1_weighted", "mae")}


def utilisation_per_video(predictions: pd.DataFrame, ds: MultimodalDataset) -> pd.DataFrame:
    """Per (model, seed, video): the share of the video's utterances in which the policy kept each
    modality (the ``gate_<modality>`` columns of :func:`~msa_lib.train.trainer.predict`, averaged)."""
    gates = [c for c in predictions.columns if c.startswith("gate_") and predictions[c].notna().any()]
    if not gates:
        raise KeyError("no gate_<modality> columns: these predictions come from a model without a policy")
    video = dict(zip(ds.ids, ds.group))
    frame = predictions.assign(video=predictions["id"].map(video))
    if frame["video"].isna().any():
        raise KeyError(f"{frame.loc[frame['video'].isna(), 'id'].iloc[0]!r}: prediction id not in {ds.meta.name}")
    keys = [k for k in ("model", "seed", "video") if k in frame]
    return frame.groupby(keys, sort=False)[gates].mean().reset_index()


def epoch_chosen_on_test(ds: MultimodalDataset, name: str, inputs: Sequence[str], seed: int,
                         config: ModelConfig | None = None, epochs: int = 40, lr: float = 1e-3) -> dict:
    """A diagnostic, **not a result**: the protocol of the bc-LSTM release's ``run.py``, which trains on
    every train video and reports the best test accuracy over its epochs. Here ``name`` trains on train +
    valid, is scored on the test videos after every epoch, and the best of those scores is returned
    (``acc2_best_test_epoch``) beside the last epoch's (``acc2_last_epoch``). It measures how far a
    published number can rest on choosing the epoch on test; no model is kept, nothing else reads it."""
    split = np.where(ds.split == "test", "valid", "train").astype(object)  # "valid" = the test videos
    data = replace(ds, split=split)
    train = TrainConfig(max_epochs=epochs, patience=epochs, lr=lr, lr_schedule="constant", monitor="valid_acc2",
                        seed=seed, progress=False)
    _, result = train_model(name, data, config, train, modalities=list(inputs))
    acc = result.history["valid_acc2"].to_numpy()
    return {"model": name, "seed": seed, "inputs": "+".join(inputs), "epochs": epochs, "lr": lr,
            "acc2_best_test_epoch": float(acc.max()), "best_test_epoch": int(acc.argmax()),
            "acc2_last_epoch": float(acc[-1]), "selection": "epoch chosen on test accuracy (invalid; diagnostic)"}
