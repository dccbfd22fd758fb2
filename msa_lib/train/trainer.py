"""Training, prediction and evaluation.

:func:`fit` trains with AdamW and cosine annealing over ``max_epochs``, clips the gradient norm
(``clip_grad_norm_``, the pre-clip norm is recorded), evaluates on the validation loader every epoch,
stops early after ``patience`` epochs without improvement of ``monitor``, keeps a *copy* of the best
state dict (``copy.deepcopy``) and loads it back at the end. :func:`train_model` does the whole
thing for a registered model on a :class:`~msa_lib.data.schema.MultimodalDataset` with train and
valid splits (standardise features first: :class:`msa_lib.data.torch_data.Standardizer`).

:func:`predict` gives one row per sample; :func:`evaluate` turns it into the metrics of
:mod:`msa_lib.evaluate.metrics`:

- binary labels: ``acc2``, ``f1_macro``, ``f1_weighted`` of the 2-class head's decision;
- scores: the regression bundle (``acc2_has0``, ``acc2_non0``, ``acc3``, ``acc5``, ``mae``,
  ``pearson_r``, ...) on the predicted score, plus ``acc2`` / ``f1_macro`` / ``f1_weighted`` as aliases of
  the ``_has0`` values so every scheme shares those column names;
- multiclass labels: ``acc``, ``f1_macro``, ``f1_weighted``.
"""
from __future__ import annotations

import copy
import math
import os
import random
import time
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from msa_lib.data.labels import LabelScheme
from msa_lib.data.torch_data import batch_to, make_loader  # make_loader is part of this stage's API too
from msa_lib.evaluate.metrics import binary_metrics, classification_metrics, regression_metrics
from msa_lib.models.heads import LossConfig, compute_loss
from msa_lib.train.objectives import Objective, SupervisedObjective
from msa_lib.models.multimodal import ModelConfig, ModelOutput, MultimodalModel, build_model_for
from msa_lib.core.utils import get_logger, resolve_device, set_seed

log = get_logger("train")


class TrainingError(RuntimeError):
    """Training cannot run as configured (missing split, unknown monitor, non-finite loss, ...)."""


@dataclass
class TrainConfig:
    lr: float = 1e-4
    batch_size: int = 32
    dropout: float = 0.3  # used when the trainer builds the model (train_model)
    weight_decay: float = 1e-2
    max_epochs: int = 20
    patience: int = 10  # epochs since the best validation before stopping
    grad_clip: float | None = 1.0  # max gradient norm; None disables clipping
    seed: int | None = 0  # None: keep the caller's RNG stream (it seeded before building the model / objective)
    device: str = "auto"
    lr_schedule: str = "cosine"  # "cosine" (annealed over max_epochs) or "constant"
    eval_every: int = 1  # validate every k epochs (and after the last)
    monitor: str = "valid_loss"  # any history column, e.g. "valid_acc2", "valid_mae"; "epoch" keeps the last epoch
    mode: str | None = None  # "min" or "max"; None: "min" for losses and errors, else "max"
    min_delta: float = 0.0
    num_workers: int = 0
    eval_batch_size: int | None = None  # None: 2 x batch_size
    max_len: int | dict | None = None  # per-modality sequence cap (even subsampling), see make_loader
    progress: bool = True  # tqdm over epochs
    loss: LossConfig = field(default_factory=LossConfig)

    def monitor_mode(self) -> str:
        if self.mode is not None:
            if self.mode not in ("min", "max"):
                raise ValueError(f"mode must be 'min' or 'max', got {self.mode!r}")
            return self.mode
        return "min" if any(k in self.monitor for k in ("loss", "mae", "error")) else "max"


@dataclass
class TrainResult:
    history: pd.DataFrame  # one row per epoch: losses, metrics, lr, gradient norms, seconds
    best_epoch: int
    best_score: float
    best_state: dict  # a deep copy of the state dict at ``best_epoch``, already loaded into the model
    monitor: str
    seconds_per_epoch: float  # mean wall time of the training passes
    stopped_early: bool
    epochs_run: int
    device: str

    def best_row(self) -> dict:
        return self.history.loc[self.history["epoch"] == self.best_epoch].iloc[0].to_dict()


@dataclass
class StepStats:
    loss: float
    grad_norm: float  # total norm before clipping
    grad_norm_clipped: float  # total norm after clipping (what the optimiser used)
    output: ModelOutput | None = None
    parts: dict = field(default_factory=dict)  # named loss terms of the objective
    batch: object = None  # the batch on the model's device


def _grad_norm(parameters) -> float:
    norms = [p.grad.detach().norm(2) for p in parameters if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack(norms), 2)) if norms else 0.0


def _scheme(model, label_scheme: LabelScheme | None) -> LabelScheme:
    scheme = label_scheme or getattr(model, "label_scheme", None)
    if scheme is None:
        raise TrainingError("no label scheme: pass label_scheme= or build the model with build_model_for / label_scheme=")
    return scheme


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


# ---------------------------------------------------------------------------------------------- one step
def training_step(model, batch, optimizer: torch.optim.Optimizer, label_scheme: LabelScheme | None,
                  config: TrainConfig | None = None, objective: Objective | None = None,
                  clip_params: Sequence[torch.nn.Parameter] | None = None) -> StepStats:
    """Forward, loss (``objective``, default the supervised head loss), backward, gradient clipping
    (max-norm ``grad_clip`` over ``clip_params``, default the model's parameters), optimiser step."""
    config = config or TrainConfig()
    objective = objective if objective is not None else SupervisedObjective(config.loss)
    model.train()
    objective.train()
    batch = objective.move(batch, _device_of(model))
    optimizer.zero_grad(set_to_none=True)
    loss = objective(model, batch, label_scheme)
    if not torch.isfinite(loss.total):
        raise TrainingError(f"non-finite training loss ({float(loss.total)}); parts: {loss.parts}")
    loss.total.backward()
    candidates = clip_params if clip_params is not None else list(model.parameters())
    params = [p for p in candidates if p.grad is not None]
    if config.grad_clip is not None:
        pre = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
        post = _grad_norm(params)
    else:
        pre = post = _grad_norm(params)
    optimizer.step()
    return StepStats(float(loss.total.detach()), pre, post, getattr(loss, "output", None), dict(loss.parts), batch)


# ---------------------------------------------------------------------------------------------- predictions
def _softmax(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().softmax(-1).cpu().numpy()


def output_rows(output: ModelOutput, batch: dict, label_scheme: LabelScheme) -> dict[str, np.ndarray]:
    """Per-sample predictions of one batch as columns (see :func:`predict`)."""
    rows = {"id": np.asarray(batch["ids"], dtype=object), "language": np.asarray(batch["language"], dtype=object),
            "label": batch["label"].cpu().numpy(), "score": batch["score"].cpu().numpy()}
    score = output.score.detach().float().cpu().numpy()
    if label_scheme.kind == "multiclass":
        prob = _softmax(output.logits["cls"])
        rows["pred"] = prob.argmax(1)
        for k, name in enumerate(label_scheme.class_names):
            rows[f"prob_{name}"] = prob[:, k]
    else:
        prob2 = _softmax(output.logits["2"])
        rows["prob_pos"] = prob2[:, 1]
        rows["pred_head"] = prob2.argmax(1)
        if label_scheme.kind == "regression":
            rows["score_pred"] = score
            rows["pred"] = (score >= 0).astype(int)  # Acc-2 from the score, as MMSA
        else:  # binary labels: the score is the 2-class log-odds
            logits = output.logits["2"].detach().float().cpu().numpy()
            rows["score_pred"] = logits[:, 1] - logits[:, 0]
            rows["pred"] = rows["pred_head"]
        for name in ("3", "5"):
            if name in output.logits:
                rows[f"pred_{name}"] = output.logits[name].detach().argmax(1).cpu().numpy()
    key = "cls" if label_scheme.kind == "multiclass" else "2"
    for m, out in output.per_modality.items():  # late fusion: each modality's own decision
        pred = out.logits[key].detach().argmax(1).cpu().numpy().astype(float)
        if out.valid is not None:
            pred[~out.valid.cpu().numpy()] = np.nan
        rows[f"pred_{m}"] = pred
    if output.gates is not None:  # AdaMML: fraction of windows each modality was used in
        usage = output.gates.detach().float().mean(1).cpu().numpy()
        for i, m in enumerate(output.modalities):
            rows[f"gate_{m}"] = usage[:, i]
    return rows


def _frame(parts: list[dict]) -> pd.DataFrame:
    if not parts:
        return pd.DataFrame()
    return pd.DataFrame({k: np.concatenate([p[k] for p in parts]) for k in parts[0]})


@torch.no_grad()
def _run(model, loader, label_scheme: LabelScheme, loss_config: LossConfig | None = None,
         return_attention: bool = False) -> tuple[pd.DataFrame, float]:
    model.eval()
    device = _device_of(model)
    parts, loss_sum, loss_n = [], 0.0, 0
    for batch in loader:
        batch = batch_to(batch, device)
        output = model(batch, return_attention=return_attention)
        if loss_config is not None:
            lp = compute_loss(output, batch, label_scheme, loss_config)
            loss_sum += float(lp.total) * max(lp.n_targets, 1)
            loss_n += max(lp.n_targets, 1)
        parts.append(output_rows(output, batch, label_scheme))
    return _frame(parts), (loss_sum / loss_n if loss_n else float("nan"))


def predict(model, loader, label_scheme: LabelScheme | None = None) -> pd.DataFrame:
    """One row per sample: ``id, language, label, score`` (targets; -1 / NaN unknown), ``score_pred``,
    ``prob_pos``, ``pred`` (2-class decision: sign of the score for score schemes, the 2-class head
    for binary labels), ``pred_head``, ``pred_3``/``pred_5`` (head argmax), ``prob_<class>`` for
    multiclass; ``pred_<modality>`` for late fusion; ``gate_<modality>`` for AdaMML."""
    frame, _ = _run(model, loader, _scheme(model, label_scheme))
    return frame


def metrics_from_predictions(frame: pd.DataFrame, label_scheme: LabelScheme) -> dict[str, float]:
    """Metrics of a :func:`predict` frame on the samples whose target is known."""
    if label_scheme.kind == "regression":
        known = frame[~frame["score"].isna()] if len(frame) else frame
        if not len(known):
            return {"n": 0}
        out = regression_metrics(known["score"], known["score_pred"], label_scheme.scale)
        out.update(acc2=out["acc2_has0"], f1_macro=out["f1_macro_has0"], f1_weighted=out["f1_weighted_has0"])
    else:
        known = frame[frame["label"] >= 0] if len(frame) else frame
        if not len(known):
            return {"n": 0}
        if label_scheme.kind == "binary":
            out = binary_metrics(known["label"], known["pred"])
        else:
            out = classification_metrics(known["label"], known["pred"], label_scheme.num_classes)
    out["n"] = int(len(known))
    return out


def evaluate(model, loader, label_scheme: LabelScheme | None = None, with_loss: bool = False,
             loss_config: LossConfig | None = None) -> dict[str, float]:
    scheme = _scheme(model, label_scheme)
    frame, loss = _run(model, loader, scheme, (loss_config or LossConfig()) if with_loss else None)
    out = metrics_from_predictions(frame, scheme)
    if with_loss:
        out["loss"] = loss
    return out


# ---------------------------------------------------------------------------------------------- fit
def param_groups(model: torch.nn.Module, lr: float) -> list[dict]:
    """Trainable parameters grouped by learning rate: a sub-module with an ``lr_scale`` attribute
    (e.g. pretrained layers being fine-tuned) trains at ``lr * lr_scale``, everything else at ``lr``."""
    scaled, seen = [], set()
    for module in model.modules():
        scale = getattr(module, "lr_scale", None)
        if scale is None or module is model:
            continue
        params = [p for p in module.parameters() if p.requires_grad and id(p) not in seen]
        seen.update(id(p) for p in params)
        if params:
            scaled.append({"params": params, "lr": lr * float(scale)})
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in seen]
    return ([{"params": rest, "lr": lr}] if rest else []) + scaled


Validator = Callable[[torch.nn.Module], dict]


def _has_monitor_source(config: TrainConfig, valid_loader, validators) -> bool:
    return not config.monitor.startswith("valid") or valid_loader is not None or bool(validators)


def fit(model, train_loader, valid_loader=None, config: TrainConfig | None = None,
        label_scheme: LabelScheme | None = None,
        callbacks: Iterable[Callable[[int, torch.nn.Module, dict], None]] = (),
        objective: Objective | None = None, validators: Sequence[Validator] = (),
        checkpoint: str | os.PathLike | None = None, resume: bool = False) -> TrainResult:
    """Train ``model`` on ``objective`` (default: the supervised loss of the model's head).

    The one training loop of the library: AdamW over the model's (and the objective's) parameters,
    cosine annealing (or a constant rate), gradient clipping, validation every ``eval_every`` epochs,
    early stopping on ``config.monitor`` and a deep copy of the best state dict, loaded back at the end.

    ``validators`` are extra ``model -> {column: value}`` functions run at every validation (e.g. the
    cross-lingual study's text-only accuracy); their columns can be monitored. ``monitor="epoch"``
    keeps the last epoch (no validation data). ``callbacks(epoch, model, history_row)`` run after
    every epoch. ``label_scheme`` may be None for objectives whose outputs are not sentiment heads
    (then no train / valid metrics are derived from predictions).

    ``checkpoint``: a file rewritten (atomically) after every epoch with everything needed to continue
    exactly where training stopped -- weights, optimiser and schedule, the best state so far, history,
    and the random number generators (global and the train loader's). ``resume=True`` continues from
    it when it exists: an interrupted run (Ctrl-C) resumed this way ends with the same weights as an
    uninterrupted one."""
    config = config or TrainConfig()
    objective = objective if objective is not None else SupervisedObjective(config.loss)
    scheme = label_scheme or getattr(model, "label_scheme", None)
    if scheme is None and isinstance(objective, SupervisedObjective):
        raise TrainingError("no label scheme: pass label_scheme= or build the model with build_model_for / label_scheme=")
    if config.seed is not None:
        set_seed(config.seed)
    device = resolve_device(config.device)
    model.to(device)
    objective.to(device)
    if not _has_monitor_source(config, valid_loader, validators):
        raise TrainingError(f"monitor {config.monitor!r} needs a validation loader or validators")
    if config.eval_every < 1:
        raise TrainingError(f"eval_every must be >= 1, got {config.eval_every}")
    mode = config.monitor_mode()
    better = (lambda a, b: a < b - config.min_delta) if mode == "min" else (lambda a, b: a > b + config.min_delta)
    groups = param_groups(model, config.lr) + objective.param_groups(config.lr)
    optimizer = torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
    if config.lr_schedule == "cosine":
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, config.max_epochs))
    elif config.lr_schedule == "constant":
        scheduler = None
    else:
        raise TrainingError(f"lr_schedule must be 'cosine' or 'constant', got {config.lr_schedule!r}")
    clip_params = [p for p in model.parameters() if p.requires_grad] + objective.trainable_parameters()
    history, best_state, best_score, best_epoch, stopped = [], None, math.nan, -1, False
    start_epoch = 0
    if resume and checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, model, objective, optimizer, scheduler, train_loader)
        history, best_state, best_score, best_epoch = state["history"], state["best_state"], state["best_score"], state["best_epoch"]
        stopped, start_epoch = state["stopped"], state["epoch"] + 1
        log.info("resuming %s from epoch %d (%s)", getattr(model, "name", "model"), start_epoch, checkpoint)
    bar = tqdm(range(start_epoch, 0 if stopped else config.max_epochs), desc=getattr(model, "name", "train"),
               disable=not config.progress or None, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        losses, norms, parts, loss_parts = [], [], [], {}
        for batch in train_loader:
            stats = training_step(model, batch, optimizer, scheme, config, objective, clip_params)
            losses.append(stats.loss)
            norms.append(stats.grad_norm)
            for k, v in stats.parts.items():
                loss_parts[k] = loss_parts.get(k, 0.0) + v
            if scheme is not None and isinstance(stats.output, ModelOutput):
                parts.append(output_rows(stats.output, stats.batch, scheme))
        if not losses:
            raise TrainingError("the training loader is empty")
        if scheduler is not None:
            scheduler.step()
        if hasattr(model, "on_epoch_end"):
            model.on_epoch_end()
        t_train = time.perf_counter() - t0
        # train metrics come from the training passes themselves (dropout on): cheap, slightly pessimistic
        row = {"epoch": epoch, "lr": lr, "train_loss": float(np.mean(losses)),
               **{f"train_loss_{k}": v / len(losses) for k, v in loss_parts.items()},
               **({f"train_{k}": v for k, v in metrics_from_predictions(_frame(parts), scheme).items() if k != "n"}
                  if parts else {}),
               "grad_norm_mean": float(np.mean(norms)), "grad_norm_max": float(np.max(norms))}
        t1 = time.perf_counter()
        validate = (epoch + 1) % config.eval_every == 0 or epoch == config.max_epochs - 1
        if validate and valid_loader is not None:
            frame, vloss = _run(model, valid_loader, scheme, config.loss)
            row["valid_loss"] = vloss
            row.update({f"valid_{k}": v for k, v in metrics_from_predictions(frame, scheme).items() if k != "n"})
        if validate and validators:
            model.eval()
            objective.eval()
            with torch.no_grad():
                for validator in validators:
                    row.update(validator(model))
        row["seconds_train"], row["seconds_valid"] = t_train, time.perf_counter() - t1
        history.append(row)
        if validate or config.monitor == "epoch":
            if config.monitor not in row:
                raise TrainingError(f"monitor {config.monitor!r} is not recorded; available: {sorted(row)}")
            score = float(row[config.monitor])
            if best_state is None or (math.isfinite(score) and (not math.isfinite(best_score) or better(score, best_score))):
                best_state, best_score, best_epoch = copy.deepcopy(model.state_dict()), score, epoch
            elif epoch - best_epoch >= config.patience:
                stopped = True
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", **{config.monitor: f"{score:.4f}"})
        if checkpoint is not None:
            save_checkpoint(checkpoint, model, objective, optimizer, scheduler, train_loader, epoch=epoch,
                            history=history, best_state=best_state, best_score=best_score, best_epoch=best_epoch,
                            stopped=stopped)
        for callback in callbacks:
            callback(epoch, model, row)
        if stopped:
            break
    model.load_state_dict(best_state)
    frame = pd.DataFrame(history)
    return TrainResult(frame, best_epoch, best_score, best_state, config.monitor,
                       float(frame["seconds_train"].mean()), stopped, len(history), str(device))


def _loader_generator(loader) -> torch.Generator | None:
    return getattr(loader, "generator", None)


def save_checkpoint(path, model, objective, optimizer, scheduler, train_loader, **progress) -> None:
    """Everything :func:`fit` needs to continue after ``progress["epoch"]`` (written to a temporary file,
    then renamed, so an interruption never leaves a half-written checkpoint)."""
    generator = _loader_generator(train_loader)
    state = {"model": model.state_dict(), "objective": objective.state_dict(), "optimizer": optimizer.state_dict(),
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                     "loader": generator.get_state() if generator is not None else None},
             **progress}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, model, objective, optimizer, scheduler, train_loader) -> dict:
    """Restore a :func:`save_checkpoint` file into the live objects; returns the progress entries."""
    try:
        state = torch.load(path, map_location=_device_of(model), weights_only=False)  # our own file
        model.load_state_dict(state["model"])
        objective.load_state_dict(state["objective"])
        optimizer.load_state_dict(state["optimizer"])
    except Exception as exc:  # noqa: BLE001 - any damage means the same thing to the user
        raise TrainingError(f"{path}: not a usable checkpoint of this model ({type(exc).__name__}: {exc}); "
                            f"delete it to start afresh") from None
    if scheduler is not None and state.get("scheduler") is not None:
        scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    generator = _loader_generator(train_loader)
    if generator is not None and rng.get("loader") is not None:
        generator.set_state(rng["loader"])
    return state


def train_model(name: str, ds, model_config: ModelConfig | None = None, train_config: TrainConfig | None = None,
                modalities: Sequence[str] | None = None, checkpoint: str | os.PathLike | None = None,
                resume: bool = False, callbacks: Iterable[Callable] = ()) -> tuple[MultimodalModel, TrainResult]:
    """Build a registered model for ``ds`` (seeded) and fit it on its train split, validating on
    its valid split (make one with :func:`msa_lib.data.splits.group_validation_split`); ``checkpoint``
    / ``resume`` / ``callbacks`` as in :func:`fit`."""
    config = train_config or TrainConfig()
    for split in ("train", "valid"):
        if not (ds.split == split).any():
            raise TrainingError(f"{ds.meta.name}: no '{split}' samples"
                                + (" (make a validation split with group_validation_split)" if split == "valid" else ""))
    model_config = copy.deepcopy(model_config) if model_config is not None else ModelConfig(dropout=config.dropout)
    if config.seed is not None:
        set_seed(config.seed)
    model = build_model_for(name, ds, model_config, modalities)
    mods, by_video = model.modalities, model.uses_video_context
    train_loader = make_loader(ds.get_split("train"), mods, config.batch_size, shuffle=True, seed=config.seed or 0,
                               max_len=config.max_len, num_workers=config.num_workers, by_video=by_video)
    valid_loader = make_loader(ds.get_split("valid"), mods, config.eval_batch_size or 2 * config.batch_size,
                               max_len=config.max_len, num_workers=config.num_workers, by_video=by_video)
    result = fit(model, train_loader, valid_loader, config, ds.meta.labels, callbacks=callbacks,
                 checkpoint=checkpoint, resume=resume)
    model.reset_state()  # e.g. AdaMML's utilisation counters: validation passes do not count towards test use
    return model, result
