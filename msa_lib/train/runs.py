"""Train a model of the zoo on a feature file, keep it as a run folder, evaluate it on other files.

``msa train`` / ``msa evaluate`` (and :func:`train_run` / :func:`evaluate_run` from Python). A run
folder holds everything needed to use the model later, and nothing else:

- ``model.pt`` -- the state dict of the trained model (the seed with the best validation score);
- ``config.json`` -- format version, model name, task and class names, the training settings (the
  :class:`RunConfig` in full, every default written out), the feature spec (per modality: width,
  level, feature names, the extractor and its settings, the standardisation statistics of the train
  split) and the extraction settings the features came from;
- ``metrics.json`` -- validation and test metrics per seed, their mean ± std, the chosen seed;
- ``curves.png`` (loss and monitored metric per epoch), ``confusion.png`` (test split), and a
  generated ``MODEL_CARD.md``.

Tasks: ``regression`` (continuous scores, L1 loss, the MMSA metric set), ``binary`` (Has0: score >= 0
is positive, or binary labels), ``5class`` (SNEG..SPOS from the scores, or 5-class labels) and
``classes`` (class names taken from the labels, e.g. emotions). Splits come from the file (``dev`` /
``val`` count as validation); when a file has none, they are drawn by ``group`` (speaker / source
video) with a fixed seed, never one group in two splits.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import shutil
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from msa_lib.core.utils import get_logger, set_seed
from msa_lib.data.labels import CLASS_NAMES, LabelScheme, scores_to_classes
from msa_lib.data.run_folder import RunError, read_run_header, run_header
from msa_lib.data.schema import MultimodalDataset
from msa_lib.data.splits import assert_disjoint_groups
from msa_lib.data.torch_data import Standardizer, make_loader
from msa_lib.evaluate.metrics import confusion
from msa_lib.models.multimodal import MODEL_NAMES, ModelConfig, MultimodalModel, build_model_for
from msa_lib.train.trainer import TrainConfig, metrics_from_predictions, predict, train_model

log = get_logger("runs")

TASKS = ("regression", "binary", "5class", "classes")
VALID_NAMES = {"valid": "valid", "dev": "valid", "val": "valid", "validation": "valid", "train": "train", "test": "test"}
MONITORS = {"regression": "valid_mae", "binary": "valid_acc2", "5class": "valid_f1_macro", "classes": "valid_f1_macro"}


# ---------------------------------------------------------------------------------------------- config
@dataclass
class RunConfig:
    """What ``msa train`` does; written back in full to ``config.json`` (``--config run.json`` reads one)."""

    model: str = "early_concat"
    task: str = "regression"
    seeds: list[int] = field(default_factory=lambda: [0])
    modalities: list[str] | None = None  # None: every modality of the feature file
    split_seed: int = 0  # group-aware splits when the file has none
    valid_fraction: float = 0.15
    test_fraction: float = 0.2
    train: TrainConfig = field(default_factory=lambda: TrainConfig(max_epochs=30, patience=8))
    model_config: ModelConfig = field(default_factory=ModelConfig)

    def __post_init__(self):
        if self.task not in TASKS:
            raise RunError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.model not in MODEL_NAMES:
            raise RunError(f"unknown model {self.model!r}; the zoo has {', '.join(MODEL_NAMES)}")
        if not self.seeds:
            raise RunError("seeds: give at least one seed")
        self.seeds = [int(s) for s in self.seeds]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        return _dataclass_from_dict(cls, d, "config")


def _dataclass_from_dict(cls, d, where: str):
    """Build a (nested) config dataclass from JSON data; unknown keys are one clear error."""
    if not isinstance(d, dict):
        raise RunError(f"{where}: expected an object with the fields of {cls.__name__}, got {type(d).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - set(names))
    if unknown:
        raise RunError(f"{where}: unknown setting(s) {', '.join(unknown)} for {cls.__name__}; "
                       f"allowed: {', '.join(names)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in d.items():
        hint = hints.get(key)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            # a partial section overrides this class's own defaults for it (e.g. RunConfig's patience 8)
            f = names[key]
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else (
                f.default if f.default is not dataclasses.MISSING else None)
            base = {fl.name: getattr(default, fl.name) for fl in dataclasses.fields(default)} if default is not None else {}
            unknown_inner = sorted(set(value) - {fl.name for fl in dataclasses.fields(hint)})
            if unknown_inner:
                raise RunError(f"{where}.{key}: unknown setting(s) {', '.join(unknown_inner)} for {hint.__name__}; "
                               f"allowed: {', '.join(fl.name for fl in dataclasses.fields(hint))}")
            merged = {k: (dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v) for k, v in base.items()}
            merged.update(value)
            value = _dataclass_from_dict(hint, merged, f"{where}.{key}")
        values[key] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise RunError(f"{where}: {exc}") from None


def read_run_config(path: str | os.PathLike) -> RunConfig:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: no such config file") from None
    except json.JSONDecodeError as exc:
        raise RunError(f"{path}: not valid JSON ({exc})") from None
    return RunConfig.from_dict(data)


# ---------------------------------------------------------------------------------------------- data
def read_any_features(path: str | os.PathLike) -> MultimodalDataset:
    """The project's feature files, MMSA pickles (``.pkl``) and the seed system's folders."""
    from msa_lib.data.io import read_features
    from msa_lib.data.mmsa import read_mmsa
    from msa_lib.data.schema import FeatureFormatError
    from msa_lib.data.seed_format import read_seed

    path = Path(path)
    if not path.exists():
        raise RunError(f"{path}: no such feature file or folder")
    try:
        if path.is_dir():
            return read_seed(path)
        if path.suffix.lower() == ".pkl":
            return read_mmsa(path)
        return read_features(path)
    except FeatureFormatError as exc:
        raise RunError(str(exc)) from None


def task_dataset(ds: MultimodalDataset, task: str) -> MultimodalDataset:
    """``ds`` with the label scheme and targets of ``task`` (see the module docstring)."""
    scheme = ds.meta.labels
    out = ds.subset(np.arange(len(ds)))
    out.meta = copy.copy(ds.meta)
    has_scores = scheme.kind == "regression" and np.isfinite(np.asarray(ds.scores, float)).any()
    if task == "regression":
        if not has_scores:
            raise RunError(f"{ds.meta.name}: --task regression needs sentiment scores; this file has "
                           f"{scheme.kind} labels ({', '.join(scheme.class_names)}): use --task "
                           f"{'binary' if scheme.kind == 'binary' else 'classes'}")
        return out
    if task == "binary":
        if has_scores:
            s = np.asarray(ds.scores, float)
            out.labels = np.where(np.isfinite(s), (s >= 0).astype(int), -1)  # Has0: zero counts as positive
        elif not (scheme.kind == "binary" or (scheme.kind == "multiclass" and scheme.num_classes == 2)):
            raise RunError(f"{ds.meta.name}: --task binary needs scores or two classes; this file has "
                           f"{scheme.num_classes} classes ({', '.join(scheme.class_names)}): use --task classes")
        out.meta.labels = LabelScheme("binary", None, CLASS_NAMES[2], "0 = negative, 1 = positive")
        out.scores = np.full(len(ds), np.nan)
        return out
    if task == "5class":
        if has_scores:
            s = np.asarray(ds.scores, float)
            out.labels = np.where(np.isfinite(s), scores_to_classes(np.nan_to_num(s), 5, scheme.scale), -1)
        elif tuple(scheme.class_names) != CLASS_NAMES[5]:
            raise RunError(f"{ds.meta.name}: --task 5class needs scores or SNEG..SPOS labels; this file has "
                           f"{', '.join(scheme.class_names)}")
        out.meta.labels = LabelScheme("multiclass", None, CLASS_NAMES[5], "SNEG, WNEG, NEUT, WPOS, SPOS")
        out.scores = np.full(len(ds), np.nan)
        return out
    # classes
    if scheme.kind != "multiclass":
        raise RunError(f"{ds.meta.name}: --task classes needs class-name labels (e.g. emotions); this file has "
                       f"{scheme.kind} labels: use --task {'regression' if has_scores else 'binary'}")
    out.scores = np.full(len(ds), np.nan)
    return out


def ensure_splits(ds: MultimodalDataset, cfg: RunConfig) -> MultimodalDataset:
    """Train / valid / test from the file, or drawn by group (fixed seed) when the file has none."""
    from msa_lib.data.sources import stratified_group_assignment

    names = np.array([VALID_NAMES.get(str(s).strip().lower(), "") for s in ds.split], dtype=object)
    unknown = sorted({str(s) for s, n in zip(ds.split, names) if not n and str(s).strip()})
    if unknown:
        raise RunError(f"{ds.meta.name}: unknown split name(s) {', '.join(unknown)}; use train, dev (or valid) and test")
    out = ds.subset(np.arange(len(ds)))
    present = set(names[names != ""])
    if {"train", "valid", "test"} <= present and (names == "").sum() == 0:
        out.split = names
        _check_disjoint(out)
        return out
    fractions = {"train": 1 - cfg.valid_fraction - cfg.test_fraction, "valid": cfg.valid_fraction,
                 "test": cfg.test_fraction}
    free = names == ""
    if present and not free.all():
        # some splits given: keep them and draw the missing ones from the unassigned rows (or from train)
        free = free | (names == "train") if "train" in present and not free.any() else free
        missing = [s for s in ("train", "valid", "test") if s not in present or (s == "train" and free.any())]
        fractions = {s: fractions[s] for s in missing}
    total = sum(fractions.values())
    fractions = {k: v / total for k, v in fractions.items()}
    labels = out.labels if (out.labels >= 0).any() else np.zeros(len(out), int)
    groups = np.asarray([str(g) if str(g) else str(i) for i, g in zip(out.ids, out.group)], dtype=object)
    assigned = stratified_group_assignment(labels[free], groups[free], fractions, cfg.split_seed)
    names = names.copy()
    names[free] = assigned
    out.split = names
    _check_disjoint(out)
    return out


def _check_disjoint(ds: MultimodalDataset) -> None:
    try:
        assert_disjoint_groups(ds)
    except AssertionError as exc:
        raise RunError(f"{ds.meta.name}: {exc}; a group (speaker / video) must stay within one split") from None


# ---------------------------------------------------------------------------------------------- spec
def feature_spec(ds: MultimodalDataset, modalities: Sequence[str], std: Standardizer) -> dict:
    spec = {}
    for m in modalities:
        s = ds.meta.modalities[m]
        spec[m] = {"dim": int(s.dim), "level": s.level, "feature_names": s.feature_names, "rate_hz": s.rate_hz,
                   "extractor": s.extractor,
                   "mean": std.mean[m].tolist() if m in std.mean else None,
                   "scale": std.scale[m].tolist() if m in std.scale else None}
    return spec


def _extractor_name(extractor: dict | None) -> str | None:
    if not extractor:
        return None
    return str(extractor.get("name") or extractor.get("extractor") or extractor.get("model") or "") or None


def check_feature_spec(spec: dict, ds: MultimodalDataset, where: str) -> None:
    """One clear error naming the first mismatch between a run's features and ``ds``."""
    for m, want in spec.items():
        if m not in ds.meta.modalities:
            raise RunError(f"{where}: the model needs modality {m!r}, which {ds.meta.name} does not have "
                           f"(it has {', '.join(ds.meta.modalities) or 'none'})")
        have = ds.meta.modalities[m]
        if int(have.dim) != int(want["dim"]):
            raise RunError(f"{where}: modality {m!r} has {have.dim} dimensions in {ds.meta.name}, the model was "
                           f"trained on {want['dim']}")
        a, b = _extractor_name(want.get("extractor")), _extractor_name(have.extractor)
        if a and b and a != b:
            raise RunError(f"{where}: modality {m!r} comes from extractor {b!r} in {ds.meta.name}, the model was "
                           f"trained on {a!r} features")
        if have.level != want["level"]:
            raise RunError(f"{where}: modality {m!r} is {have.level}-level in {ds.meta.name}, the model was "
                           f"trained on {want['level']}-level features")


def standardizer_from_spec(spec: dict) -> Standardizer:
    std = Standardizer(list(spec))
    for m, s in spec.items():
        if s.get("mean") is not None:
            std.mean[m] = np.asarray(s["mean"], np.float32)
            std.scale[m] = np.asarray(s["scale"], np.float32)
    return std


# ---------------------------------------------------------------------------------------------- metrics
def run_metrics(frame: pd.DataFrame, scheme: LabelScheme) -> dict:
    """The task's metric set on a :func:`~msa_lib.train.trainer.predict` frame (the MMSA set for
    regression; accuracy, macro and weighted F1 for classes) plus the confusion matrix."""
    out = {k: (int(v) if isinstance(v, (int, np.integer)) else float(v) if isinstance(v, (float, np.floating)) else v)
           for k, v in metrics_from_predictions(frame, scheme).items()}
    if scheme.kind == "regression":
        known = frame[np.isfinite(frame["score"].to_numpy(float))]
        truth = scores_to_classes(known["score"], 5, scheme.scale)
        pred = scores_to_classes(known["score_pred"], 5, scheme.scale)
        out["confusion_5class"] = confusion(truth, pred, 5).tolist()
        out["class_names"] = list(CLASS_NAMES[5])
    else:
        known = frame[frame["label"] >= 0]
        out["confusion"] = confusion(known["label"], known["pred"], scheme.num_classes).tolist()
        out["class_names"] = list(scheme.class_names)
    return out


def _headline(scheme: LabelScheme) -> list[str]:
    if scheme.kind == "regression":
        return ["mae", "pearson_r", "acc2_has0", "acc2_non0", "acc5", "acc7"]
    return ["acc2" if scheme.kind == "binary" else "acc", "f1_macro", "f1_weighted"]


# ---------------------------------------------------------------------------------------------- train
@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    config: dict


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def train_run(features: str | os.PathLike | MultimodalDataset, out: str | os.PathLike,
              config: RunConfig | None = None, resume: bool = False, progress: bool = True) -> RunResult:
    """Train ``config.model`` for ``config.task`` on a feature file, one model per seed, and write the run
    folder ``out``. ``resume`` continues an interrupted run from its checkpoints (finished seeds are kept)."""
    cfg = copy.deepcopy(config or RunConfig())
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; give a folder for the run")
    if out.is_dir() and (out / "config.json").exists() and not resume:
        raise RunError(f"{out} already holds a run; choose another --out, or --resume to continue it")
    source = None if isinstance(features, MultimodalDataset) else Path(features)
    raw = features if isinstance(features, MultimodalDataset) else read_any_features(features)
    ds = ensure_splits(task_dataset(raw, cfg.task), cfg)
    mods = list(cfg.modalities) if cfg.modalities else list(ds.meta.modalities)
    missing = [m for m in mods if m not in ds.meta.modalities]
    if missing:
        raise RunError(f"{ds.meta.name}: no modality {', '.join(missing)} (it has {', '.join(ds.meta.modalities)})")
    for split in ("train", "valid", "test"):
        if not (ds.split == split).any():
            raise RunError(f"{ds.meta.name}: no {split} samples after splitting; label more clips or give splits")
    std = Standardizer(mods).fit(ds)
    ds_std = std.transform(ds)
    scheme = ds_std.meta.labels
    train_cfg = dataclasses.replace(cfg.train, monitor=cfg.train.monitor if cfg.train.monitor != "valid_loss"
                                    else MONITORS[cfg.task], progress=progress and cfg.train.progress)
    if cfg.task == "regression":
        train_cfg = dataclasses.replace(train_cfg, loss=dataclasses.replace(train_cfg.loss, regression="l1"))
    out.mkdir(parents=True, exist_ok=True)
    per_seed, best = [], None
    for seed in cfg.seeds:
        seed_cfg = dataclasses.replace(train_cfg, seed=seed)
        ckpt = out / "checkpoints" / f"seed{seed}.pt"
        try:
            model, result = train_model(cfg.model, ds_std, cfg.model_config, seed_cfg, mods, checkpoint=ckpt,
                                        resume=resume)
        except KeyError as exc:  # the model's roles do not match the file's modalities
            raise RunError(f"model {cfg.model!r} cannot be built on {ds.meta.name}: {exc.args[0]}; choose --modalities "
                           f"or another --model") from None
        except KeyboardInterrupt:
            raise KeyboardInterrupt(f"interrupted while training seed {seed}; the last finished epoch is kept in "
                                    f"{ckpt}: rerun the same command with --resume to continue") from None
        row = {"seed": seed, "best_epoch": int(result.best_epoch), "epochs_run": int(result.epochs_run),
               "valid": run_metrics(predict(model, _loader(ds_std, "valid", mods, seed_cfg), scheme), scheme),
               "test": run_metrics(predict(model, _loader(ds_std, "test", mods, seed_cfg), scheme), scheme)}
        per_seed.append(row)
        score = float(result.best_score)
        sign = 1 if train_cfg.monitor_mode() == "max" else -1
        if best is None or sign * score > sign * best[0]:
            best = (score, seed, copy.deepcopy(model.state_dict()), result.history, model)
    score, chosen, state, history, model = best
    metrics = {"task": cfg.task, "model": cfg.model, "monitor": train_cfg.monitor, "chosen_seed": chosen,
               "per_seed": per_seed, "summary": _summary(per_seed, scheme),
               "counts": {s: int((ds.split == s).sum()) for s in ("train", "valid", "test")}}
    config_json = {
        **run_header("network"),
        "model": cfg.model, "task": cfg.task, "label_scheme": scheme.to_dict(), "class_names": list(scheme.class_names),
        "modalities": list(model.modalities), "chosen_seed": chosen,
        "run_config": cfg.to_dict() | {"train": dataclasses.asdict(train_cfg)},
        "model_config": _model_config_dict(model, cfg.model_config),
        "features": {"spec": feature_spec(ds, model.modalities, std), "dataset": ds.meta.name,
                     "source_file": str(source) if source else None, "sha256": _sha256(source) if source else None,
                     "extraction": ds.meta.extra.get("extract_config"), "source": ds.meta.source},
    }
    torch.save(state, out / "model.pt")
    (out / "config.json").write_text(json.dumps(config_json, indent=2, default=_json_default))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=_json_default))
    _plots(out, history, metrics, scheme)
    (out / "MODEL_CARD.md").write_text(model_card(config_json, metrics))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # finished: the run folder keeps only what it needs
    return RunResult(out, metrics, config_json)


def _loader(ds: MultimodalDataset, split: str, mods, cfg: TrainConfig):
    return make_loader(ds.get_split(split), mods, cfg.eval_batch_size or 2 * cfg.batch_size, max_len=cfg.max_len)


def _model_config_dict(model: MultimodalModel, requested: ModelConfig) -> dict:
    d = dataclasses.asdict(requested)
    resolved = getattr(getattr(model, "fusion", None), "config", None)
    if dataclasses.is_dataclass(resolved):
        d["fusion"] = dataclasses.asdict(resolved)  # the fusion's own settings, as built
    return d


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return str(value)


def _summary(per_seed: list[dict], scheme: LabelScheme) -> dict:
    out = {}
    for part in ("valid", "test"):
        frame = pd.DataFrame([{k: v for k, v in r[part].items() if isinstance(v, (int, float))} for r in per_seed])
        out[part] = {k: {"mean": float(frame[k].mean()), "std": float(frame[k].std(ddof=1)) if len(frame) > 1 else 0.0}
                     for k in frame.columns if k != "n"}
    return out


def _plots(out: Path, history: pd.DataFrame, metrics: dict, scheme: LabelScheme) -> None:
    from msa_lib.core.plots import plot_confusions, plt

    monitor = metrics["monitor"]
    fig, axes = plt.subplots(1, 2, figsize=(8, 3))
    for col in ("train_loss", "valid_loss"):
        if col in history:
            axes[0].plot(history["epoch"], history[col], marker="o", ms=3, label=col)
    axes[0].set_xlabel("epoch"), axes[0].set_title("loss"), axes[0].legend(fontsize=7)
    if monitor in history:
        axes[1].plot(history["epoch"], history[monitor], marker="o", ms=3)
    axes[1].set_xlabel("epoch"), axes[1].set_title(f"{monitor} (seed {metrics['chosen_seed']})")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=110)
    plt.close(fig)
    chosen = next(r for r in metrics["per_seed"] if r["seed"] == metrics["chosen_seed"])["test"]
    key = "confusion_5class" if scheme.kind == "regression" else "confusion"
    fig = plot_confusions({f"test (seed {metrics['chosen_seed']})": np.asarray(chosen[key])}, chosen["class_names"],
                          cols=1, annotate="count", show_accuracy=True, panel_size=max(3.0, 0.45 * len(chosen["class_names"])))
    fig.savefig(out / "confusion.png", dpi=110)
    plt.close(fig)


def _fmt(stats: dict, key: str, pct: bool) -> str:
    if key not in stats:
        return "-"
    m, s = stats[key]["mean"], stats[key]["std"]
    return f"{100 * m:.1f} ± {100 * s:.1f} %" if pct else f"{m:.3f} ± {s:.3f}"


def model_card(config: dict, metrics: dict) -> str:
    scheme = LabelScheme.from_dict(config["label_scheme"])
    keys = _headline(scheme)
    pct = {k: not k.startswith(("mae", "pearson")) for k in keys}
    rows = "\n".join(f"| {k} | {_fmt(metrics['summary']['valid'], k, pct[k])} | {_fmt(metrics['summary']['test'], k, pct[k])} |"
                     for k in keys)
    spec = config["features"]["spec"]
    mods = "\n".join(f"- `{m}`: {s['dim']} dims, {s['level']}-level, extractor "
                     f"`{_extractor_name(s.get('extractor')) or 'unknown (not produced by msa extract)'}`"
                     for m, s in spec.items())
    counts = metrics["counts"]
    return f"""# Model card: `{config['model']}` for `{config['task']}`

Generated by `msa train` (msa_lib {config['msa_lib_version']}); every number below is read from `metrics.json`.

- Data: `{config['features']['dataset']}` ({config['features']['source_file'] or 'in-memory dataset'}),
  {counts['train']} train / {counts['valid']} validation / {counts['test']} test samples, no group in two splits.
- Classes: {', '.join(config['class_names']) if scheme.kind != 'regression' else f"continuous score on the {scheme.scale} scale"}.
- Seeds: {', '.join(str(r['seed']) for r in metrics['per_seed'])}; the saved model is seed {metrics['chosen_seed']}
  (best `{metrics['monitor']}` on the validation split).

## Inputs

{mods}

## Results (mean ± std over seeds)

| metric | validation | test |
|---|---|---|
{rows}

The test split was never used for training or model selection. `confusion.png` shows the test confusion
matrix of the saved model, `curves.png` its training curves.
"""


# ---------------------------------------------------------------------------------------------- load / evaluate
@dataclass
class TrainedRun:
    """A loaded run folder: the model (eval mode), its config and the standardiser of its features."""

    run_dir: Path
    config: dict
    model: MultimodalModel
    standardizer: Standardizer

    @property
    def scheme(self) -> LabelScheme:
        return LabelScheme.from_dict(self.config["label_scheme"])

    @property
    def spec(self) -> dict:
        return self.config["features"]["spec"]

    @classmethod
    def load(cls, run_dir: str | os.PathLike, device: str = "cpu") -> "TrainedRun":
        run_dir = Path(run_dir)
        config = read_run_header(run_dir, kind="network")
        scheme = LabelScheme.from_dict(config["label_scheme"])
        spec = config["features"]["spec"]
        # the fusion's settings were written as built (its own config dataclass): read back as overrides
        model_cfg = _dataclass_from_dict(ModelConfig, config["model_config"], "model_config")
        shell = _shell_dataset(spec, scheme)
        try:
            set_seed(0)
            model = build_model_for(config["model"], shell, model_cfg, config["modalities"])
        except (ValueError, TypeError, KeyError) as exc:
            raise RunError(f"{run_dir}: the config does not build a model ({exc})") from None
        try:
            state = torch.load(run_dir / "model.pt", map_location=device, weights_only=True)
            model.load_state_dict(state)
        except Exception as exc:  # noqa: BLE001 - a damaged weight file, whatever the exception
            raise RunError(f"{run_dir / 'model.pt'}: not the weights of this model ({type(exc).__name__}); "
                           f"retrain or restore the file") from None
        model.to(device).eval()
        return cls(run_dir, config, model, standardizer_from_spec(spec))

    def predict_dataset(self, ds: MultimodalDataset, batch_size: int = 64) -> pd.DataFrame:
        check_feature_spec(self.spec, ds, str(self.run_dir))
        prepared = self.standardizer.transform(ds)
        prepared.meta = dataclasses.replace(prepared.meta, labels=self.scheme)
        loader = make_loader(prepared, self.config["modalities"], batch_size)
        return predict(self.model, loader, self.scheme)


def _to_run_classes(ds: MultimodalDataset, want: list[str]) -> MultimodalDataset:
    """Re-index a file's class labels into the run's class order (a file may hold fewer classes);
    a class the model never saw is one clear error."""
    have = list(ds.meta.labels.class_names)
    present = sorted({have[i] for i in np.unique(ds.labels[ds.labels >= 0])})
    unknown = [c for c in present if c not in want]
    if unknown:
        raise RunError(f"{ds.meta.name}: class(es) {', '.join(unknown)} unknown to the model, which knows "
                       f"{', '.join(want)}")
    out = ds.subset(np.arange(len(ds)))
    out.meta = dataclasses.replace(ds.meta, labels=LabelScheme("multiclass", None, tuple(want), ds.meta.labels.description))
    out.labels = np.array([want.index(have[i]) if i >= 0 else -1 for i in ds.labels], dtype=int)
    return out


def _shell_dataset(spec: dict, scheme: LabelScheme) -> MultimodalDataset:
    """An empty dataset with the run's modalities: enough for ``build_model_for`` to size the model."""
    from msa_lib.data.schema import DatasetMeta, ModalitySpec

    mods = {m: ModalitySpec(int(s["dim"]), s.get("feature_names"), level=s.get("level", "sequence"),
                            rate_hz=s.get("rate_hz"), extractor=s.get("extractor") or {}) for m, s in spec.items()}
    feats = {m: [np.zeros((1, int(s["dim"])), np.float32)] for m, s in spec.items()}
    meta = DatasetMeta("run", mods, scheme)
    return MultimodalDataset.build(meta, ["shell"], feats, split=["train"], labels=[0],
                                   scores=[0.0] if scheme.kind == "regression" else None)


def evaluate_run(run_dir: str | os.PathLike, features: str | os.PathLike | MultimodalDataset,
                 split: str | None = None) -> dict:
    """The run's task metrics on a feature file: all its labelled samples, or one ``split`` (for a file
    without splits, the split the run drew from it)."""
    run = TrainedRun.load(run_dir)
    raw = features if isinstance(features, MultimodalDataset) else read_any_features(features)
    ds = task_dataset(raw, run.config["task"])
    if run.config["task"] == "classes":
        ds = _to_run_classes(ds, list(run.config["class_names"]))
    if split is not None:
        # a file without valid / test splits gets the run's group-aware draw (same settings, same seed)
        ds = ensure_splits(ds, RunConfig.from_dict(run.config["run_config"]))
        ds = ds.get_split(split)
        if not len(ds):
            raise RunError(f"{raw.meta.name}: no {split!r} samples")
    frame = run.predict_dataset(ds)
    return {"n": int(len(frame)), "dataset": raw.meta.name, "split": split or "all", **run_metrics(frame, run.scheme)}


__all__ = ["RunConfig", "RunError", "RunResult", "TrainedRun", "TASKS", "train_run", "evaluate_run", "read_run_config",
           "read_any_features", "task_dataset", "ensure_splits", "run_metrics", "model_card"]
