"""The seed paper's remaining models in notebook 03: MCTN and the contextual LSTM, alone and as the
fusion behind AdaMML's policy (models :mod:`msa_lib.models.mctn`, :mod:`msa_lib.models.context`).

The models train through :func:`msa_lib.studies.recipes.run_models` like every other model of the zoo
(video batches for the contextual ones are chosen by the trainer's loaders); this module only names
their inputs and adds the evaluations they need: MCTN scored with the source modality alone in the
test batches, how often the AdaMML + contextual LSTM policy kept each modality per test video, and the
two studies of the bc-LSTM release's protocol (its test-chosen epoch, its level-by-level training).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression

from msa_lib.core.selection import best_setting
from msa_lib.data.schema import ModalitySpec, MultimodalDataset
from msa_lib.data.torch_data import (batch_to, check_videos_within_one_split, make_loader,
                                     videos_in_spoken_order)
from msa_lib.evaluate.metrics import binary_metrics
from msa_lib.extract.text_features import mean_of_other_utterances
from msa_lib.models.mctn import MCTN
from msa_lib.models.multimodal import ModelConfig
from msa_lib.studies.recipes import RunOutput, run_models
from msa_lib.train.trainer import TrainConfig, evaluate, train_model

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


# ---------------------------------------------------------------------------------------------- two-level bc-LSTM
# The release's layers: a bidirectional recurrent layer of 100 units and a 100-d tanh dense layer per
# utterance, fed the features directly (the "mlp" encoder is the suite's nearest stand-in: every model
# of the zoo reads its inputs through an encoder); no skip path around the LSTM.
RELEASE_CONTEXT_CONFIG = ModelConfig(encoder="mlp", fusion={"contextual_lstm": {
    "hierarchical": False, "skip": False, "dim": 100, "hidden": 100}})


def contextual_states(model, ds: MultimodalDataset, modalities: Sequence[str]) -> list[np.ndarray]:
    """Per utterance of ``ds`` (in its order), a 1 x H array: the trained model's representation before
    its head (for the contextual LSTM, the dense layer after the LSTM over the utterance's video; for a
    model without video context, the utterance's own). Each split is read on its own, so the states of
    an utterance depend on its own video only."""
    device = next(model.parameters()).device
    states: dict[str, np.ndarray] = {}
    model.eval()
    with torch.no_grad():
        for split in pd.unique(ds.split):
            for batch in make_loader(ds.get_split(split), modalities, 64, by_video=True):
                fused = model(batch_to(batch, device)).fused.float().cpu().numpy()
                states.update(zip(batch["ids"], fused))
    return [states[sid][None, :].astype(np.float32) for sid in ds.ids]


@dataclass
class TwoLevelRun:
    rows: list[dict]  # run_models rows: level 1 (one per modality, or the one level1_model), then level 2
    dataset: MultimodalDataset  # ``ds`` plus the level-1 states as utterance-level modalities ``level1_<name>``


def two_level_contextual(ds: MultimodalDataset, inputs: Sequence[str], seed: int, train: TrainConfig,
                         config: ModelConfig = RELEASE_CONTEXT_CONFIG, experiment: str = "two-level",
                         level1_model: str | None = None) -> TwoLevelRun:
    """The bc-LSTM paper's hierarchical training, level by level as its release runs it: level 1 trains
    one contextual LSTM per modality; each utterance's level-1 state (:func:`contextual_states`)
    becomes a new utterance-level modality; level 2 trains a contextual LSTM on those states. Unlike the
    release, every level chooses its epoch on the validation videos (``train.monitor``), never on test.
    As in the release, the train utterances' level-1 states come from models fitted on them. Each fit is
    one :func:`~msa_lib.studies.recipes.run_models` row, its experiment ``"<experiment>, level <k>"``.

    ``level1_model`` names one zoo model that reads all ``inputs`` at level 1 instead (e.g.
    ``"mctn_shared"``); its state becomes the one modality ``level1_<model>``, so level 2 puts the video
    around that utterance-level model. Level 2 reads every state through an MLP unless ``config`` names
    another encoder for it (a state is one vector per utterance)."""
    train = replace(train, progress=False)
    out, data, level1 = RunOutput(), ds, []
    fits = [(level1_model, list(inputs))] if level1_model else [("contextual_lstm", [m]) for m in inputs]
    for model_name, model_inputs in fits:
        run_models(ds, {model_name: model_inputs}, seed, train, config, keep_models=True,
                   experiment=f"{experiment}, level 1", out=out)
        model = out.models.pop((model_name, seed))
        states = contextual_states(model, ds, model_inputs)
        name = f"level1_{level1_model or model_inputs[0]}"
        spec = ModalitySpec(states[0].shape[1], level="utterance", extractor={
            "name": f"{model_name} level 1", "input": "+".join(model_inputs), "seed": seed,
            "best_epoch": out.rows[-1]["best_epoch"]})
        data = data.with_features(name, states, spec)
        level1.append(name)
    level2_config = replace(config, encoders={**{name: "mlp" for name in level1}, **config.encoders})
    run_models(data, {"contextual_lstm": level1}, seed, train, level2_config, experiment=f"{experiment}, level 2",
               out=out)
    return TwoLevelRun(out.rows, data)


PROBE_C_GRID = (0.001, 0.01, 0.1, 1.0, 10.0)


def video_context_probe(ds: MultimodalDataset, modality: str, Cs: Sequence[float] = PROBE_C_GRID) -> list[dict]:
    """Does the rest of the video add *linear* information to an utterance's state? Two logistic
    regressions on ``modality`` (one vector per utterance, e.g. a level-1 state of
    :func:`two_level_contextual`), fitted on the train utterances: ``"utterance"`` reads the state alone,
    ``"utterance + video"`` the state next to the mean state of the other utterances of its video
    (:func:`~msa_lib.extract.text_features.mean_of_other_utterances`). ``C`` is chosen on validation
    accuracy (the smaller C on a tie); each row gives the chosen C, the validation accuracy and the test
    metrics. Binary labels only."""
    if ds.meta.labels.kind != "binary":
        raise ValueError(f"video_context_probe needs binary labels, {ds.meta.name} has {ds.meta.labels.kind!r}")
    if ds.meta.modalities[modality].level != "utterance":
        raise ValueError(f"video_context_probe reads one vector per utterance; {modality!r} is a sequence")
    check_videos_within_one_split(ds)
    own = np.concatenate([np.asarray(x, dtype=np.float64).reshape(1, -1) for x in ds.features[modality]])
    video = mean_of_other_utterances(own, videos_in_spoken_order(ds.group, ds.ids))
    inputs = {"utterance": own, "utterance + video": np.hstack([own, video])}
    labels, split = np.asarray(ds.labels).astype(int), np.asarray(ds.split)
    parts = {name: split == name for name in ("train", "valid", "test")}
    rows = []
    for name, x in inputs.items():
        fitted = {C: LogisticRegression(C=C, max_iter=5000).fit(x[parts["train"]], labels[parts["train"]]) for C in Cs}
        valid = {C: float(np.mean(m.predict(x[parts["valid"]]) == labels[parts["valid"]])) for C, m in fitted.items()}
        best = best_setting(valid)
        test = binary_metrics(labels[parts["test"]], fitted[best].predict(x[parts["test"]]))
        rows.append({"inputs": name, "C": best, "acc2_valid": valid[best], **test})
    return rows
