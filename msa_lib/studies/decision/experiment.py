"""The RAVDESS decision-fusion study of notebook 07: per seed, fit the branches, fuse their class
probabilities with every rule, clean and with one branch degraded; the Whisper layer/pooling sweep on
validation actors; and the one-vs-rest BCE detection study. Everything returns tidy tables.

Protocol (every seed): test = actors 21-24; validation actors taken out of train by group (the seed
picks them, see :func:`~msa_lib.studies.decision.emotion.seed_splits`); branch hyper-parameters, the fusion
rules' weights / thresholds and the temperatures are fitted on validation predictions, the stacker on
out-of-fold train predictions plus validation predictions (actor-grouped); the test rows are predicted
once per scenario and never used for any choice.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from msa_lib.data.sources import RAVDESS_EMOTIONS
from msa_lib.evaluate.metrics import classification_metrics
from msa_lib.data.schema import MultimodalDataset
from msa_lib.studies.decision.emotion import (N_CLASSES, BranchConfig, BranchResult, feature_noise, fit_branch, full_proba,
                      out_of_fold_models, seed_splits, split_actors)
from msa_lib.models.decision_fusion import StackingRule, apply_temperature, default_rules, fit_temperature, flatten_probs, fuse_all
from msa_lib.extract.whisper_layers import POOLINGS, layer_matrix

RESULT_COLUMNS = ["branch_or_rule", "kind", "scenario", "degraded_branch", "degradation", "level", "seed",
                  "acc", "f1_macro", "valid_acc", "valid_actors", "detail"]


@dataclass
class FusionStudyConfig:
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    valid_fraction: float = 0.2  # of the 20 train actors -> 4 validation actors
    fusion_pair: tuple[str, str] = ("audio", "visual_au")  # the two branches the rules fuse
    noise_levels: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # feature noise, in train standard deviations
    flatten_levels: tuple[float, ...] = (0.5, 0.8, 0.95)  # probabilities blended towards uniform
    extra_fusions: dict[str, tuple[str, ...]] = field(default_factory=dict)  # name -> branches (clean only)
    oof_folds: int = 4  # actor-grouped folds of the train rows for the stacker's out-of-fold predictions


def _metrics(y: np.ndarray, proba: np.ndarray) -> dict:
    m = classification_metrics(y, proba.argmax(axis=1), N_CLASSES)
    return {"acc": m["acc"], "f1_macro": m["f1_macro"]}


def _row(name, kind, scenario, seed, y_test, p_test, valid_acc, valid_actors, degraded="", degradation="",
         level=0.0, detail=None) -> dict:
    return {"branch_or_rule": name, "kind": kind, "scenario": scenario, "degraded_branch": degraded,
            "degradation": degradation, "level": float(level), "seed": seed, **_metrics(y_test, p_test),
            "valid_acc": valid_acc, "valid_actors": " ".join(map(str, valid_actors)),
            "detail": json.dumps(detail or {})}


@dataclass
class SeedOutcome:
    rows: list[dict]
    branches: dict[str, BranchResult]
    split: np.ndarray
    test_predictions: dict[str, np.ndarray]  # clean scenario: name -> predicted labels of the test rows


def _fuse_rows(names: Sequence[str], probs: dict[str, np.ndarray], y, split, actors, seed, scenario, valid_actors,
               calibrated: bool, prefix: str = "", degraded: str = "", degradation: str = "",
               level: float = 0.0) -> tuple[list[dict], dict]:
    """Fit every rule on the validation rows (the stacker on out-of-fold train + validation rows,
    actor-grouped) and score it on the test rows. ``probs[name]`` covers every row: out-of-fold
    predictions on train rows, the branch model's predictions on validation and test rows.
    ``calibrated``: each branch is first temperature-scaled on its validation predictions."""
    va, te, stack = split == "valid", split == "test", split != "test"
    temps = {}
    if calibrated:
        temps = {m: fit_temperature(probs[m][va], y[va]) for m in names}
        probs = {m: apply_temperature(probs[m], temps[m]) for m in names}
    rules = default_rules(seed)
    fused = fuse_all(rules, [probs[m][va] for m in names], y[va], [probs[m][te] for m in names],
                     stack_probs=[probs[m][stack] for m in names], stack_labels=y[stack], stack_groups=actors[stack])
    rows, preds = [], {}
    for rule in rules:
        name = f"{prefix}{'cal:' if calibrated else ''}{rule.name}"
        if isinstance(rule, StackingRule):
            valid_acc = rule.cv_acc_  # actor-grouped cross-validated accuracy on its fitting rows
        else:
            valid_acc = float(np.mean(rule.fuse([probs[m][va] for m in names]).argmax(1) == y[va]))
        detail = {"branches": list(names), **rule.describe()}
        if calibrated:
            detail["temperatures"] = {m: round(t, 4) for m, t in temps.items()}
        rows.append(_row(name, "fusion", scenario, seed, y[te], fused[rule.name], valid_acc, valid_actors,
                         degraded, degradation, level, detail))
        preds[name] = fused[rule.name].argmax(1)
    return rows, preds


def run_fusion_seed(features: dict[str, np.ndarray], branch_configs: dict[str, BranchConfig], y: np.ndarray,
                    au: MultimodalDataset, actors: np.ndarray, seed: int, cfg: FusionStudyConfig) -> SeedOutcome:
    """One seed: split, fit every branch (classifier and C chosen on validation), out-of-fold models
    for the stacker, then fuse the pair with every rule (raw and temperature-calibrated), clean and
    with one branch degraded. ``features[name]`` is the N x D matrix of branch ``name``."""
    split = seed_splits(au, seed, cfg.valid_fraction)
    va, te, tr = split == "valid", split == "test", split == "train"
    valid_actors = split_actors(split, actors)["valid"]
    branches = {name: fit_branch(name, X, y, split, branch_configs[name], seed) for name, X in features.items()}
    pair = list(cfg.fusion_pair)
    fused_names = sorted(set(pair).union(*cfg.extra_fusions.values()))
    oof = {m: out_of_fold_models(branches[m], features[m], y, split, actors, cfg.oof_folds, seed) for m in fused_names}

    def branch_probs(m: str, X: np.ndarray | None = None) -> np.ndarray:
        """Out-of-fold on train rows, the branch model elsewhere (``X``: degraded inputs)."""
        X = features[m] if X is None else X
        P = branches[m].proba.copy() if X is features[m] else full_proba(branches[m].model, X)
        for rows, model in oof[m]:
            P[rows] = full_proba(model, X[rows])
        return P

    clean_probs = {m: branch_probs(m) for m in fused_names}
    rows, preds = [], {}
    common = dict(valid_actors=valid_actors)
    for name, r in branches.items():
        rows.append(_row(name, "branch", "clean", seed, y[te], r.proba[te], r.accuracy(y, va), valid_actors,
                         detail={"classifier": r.kind, "C": r.C}))
        preds[name] = r.proba[te].argmax(1)
    for calibrated in (False, True):
        fr, fp = _fuse_rows(pair, clean_probs, y, split, actors, seed, "clean", calibrated=calibrated, **common)
        rows += fr
        preds.update(fp)
    for fusion_name, names in cfg.extra_fusions.items():
        fr, fp = _fuse_rows(list(names), clean_probs, y, split, actors, seed, "clean", calibrated=True,
                            prefix=f"{fusion_name}:", **common)
        rows += fr
        preds.update(fp)

    # --- one branch degraded on every row it predicts (a persistently worse sensor after training: the
    # weights, thresholds, temperatures and the stacker are refitted on the degraded predictions)
    for degraded in pair:
        other = [b for b in pair if b != degraded][0]
        levels = [("noise", s) for s in cfg.noise_levels] + [("flatten", a) for a in cfg.flatten_levels]
        for degradation, level in levels:
            if degradation == "noise":
                X = features[degraded]
                proba = branch_probs(degraded, feature_noise(X, level, X[tr], seed=seed * 1000 + int(level * 100)))
            else:
                proba = flatten_probs(clean_probs[degraded], level)
            scenario = f"{degraded}_{degradation}_{level:g}"
            kw = dict(degraded=degraded, degradation=degradation, level=level)
            rows.append(_row(degraded, "branch", scenario, seed, y[te], proba[te],
                             float(np.mean(proba[va].argmax(1) == y[va])), valid_actors, **kw))
            rows.append(_row(other, "branch", scenario, seed, y[te], branches[other].proba[te],
                             branches[other].accuracy(y, va), valid_actors, **kw))
            probs = {degraded: proba, other: clean_probs[other]}
            for calibrated in (False, True):
                fr, _ = _fuse_rows(pair, probs, y, split, actors, seed, scenario, calibrated=calibrated, **common, **kw)
                rows += fr
    return SeedOutcome(rows, branches, split, preds)


def run_fusion_study(features, branch_configs, y, au, actors, cfg: FusionStudyConfig, progress: bool = True):
    """All seeds: ``(results DataFrame with RESULT_COLUMNS, {seed: SeedOutcome})``."""
    outcomes = {}
    for seed in tqdm(cfg.seeds, desc="seeds", disable=not progress):
        outcomes[seed] = run_fusion_seed(features, branch_configs, y, au, actors, seed, cfg)
    frame = pd.DataFrame([r for o in outcomes.values() for r in o.rows])[RESULT_COLUMNS]
    return frame, outcomes


def summarize_results(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (branch_or_rule, scenario)."""
    from msa_lib.evaluate.results import summarize

    keys = ["branch_or_rule", "kind", "scenario", "degraded_branch", "degradation", "level"]
    return summarize(frame, keys, metrics=["acc", "f1_macro", "valid_acc"])


def confusion_from_outcomes(outcomes: dict[int, SeedOutcome], y: np.ndarray, name: str) -> np.ndarray:
    """Test confusion matrix of ``name`` (clean scenario) summed over seeds."""
    from msa_lib.evaluate.metrics import confusion

    total = np.zeros((N_CLASSES, N_CLASSES), int)
    for o in outcomes.values():
        total += confusion(y[o.split == "test"], o.test_predictions[name], N_CLASSES)
    return total


# ------------------------------------------------------------------------------ Whisper layer sweep
def whisper_layer_sweep(layer_frames: Sequence[np.ndarray], y: np.ndarray, splits: dict[int, np.ndarray],
                        layers: Sequence[int] | None = None, poolings: Sequence[str] = ("mean", "mean_std"),
                        config: BranchConfig | None = None, progress: bool = True) -> pd.DataFrame:
    """Validation accuracy of every (layer, pooling) for every seed's split: train actors -> validation
    actors only (test rows are not touched). ``layers`` index the representations (last = final norm)."""
    config = config or BranchConfig(("logreg",), {"logreg": (0.01, 0.1)})
    n_rep = layer_frames[0].shape[0]
    layers = list(range(n_rep)) if layers is None else list(layers)
    rows = []
    combos = [(layer, pooling) for layer in layers for pooling in poolings]
    for layer, pooling in tqdm(combos, desc="layer sweep", disable=not progress):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}")
        X = layer_matrix(layer_frames, layer, pooling).astype(np.float64)
        for seed, split in splits.items():
            keep = split != "test"  # the sweep never sees test rows
            r = fit_branch("whisper", X[keep], y[keep], split[keep], config, seed)
            rows.append({"layer": layer, "pooling": pooling, "seed": seed, "C": r.C,
                         "valid_acc": r.best_valid})
    return pd.DataFrame(rows)


def choose_layer(sweep: pd.DataFrame) -> tuple[int, str, pd.DataFrame]:
    """The (layer, pooling) with the best mean validation accuracy over seeds (ties -> fewer dims)."""
    table = sweep.groupby(["layer", "pooling"])["valid_acc"].agg(["mean", "std"]).reset_index()
    order = {p: i for i, p in enumerate(POOLINGS)}
    table["dims_rank"] = table["pooling"].map(order)
    best = table.sort_values(["mean", "dims_rank"], ascending=[False, True]).iloc[0]
    return int(best["layer"]), str(best["pooling"]), table.drop(columns="dims_rank")


# ---------------------------------------------------------------------------- binary BCE detection
@dataclass
class DetectionVariant:
    name: str
    hidden: int = 0
    class_weighting: bool = False


DEFAULT_DETECTION_VARIANTS = (
    DetectionVariant("linear", 0, False), DetectionVariant("linear+pos_weight", 0, True),
    DetectionVariant("mlp", 256, False), DetectionVariant("mlp+pos_weight", 256, True),
)


def run_detection_study(X: np.ndarray, y: np.ndarray, au: MultimodalDataset, seeds: Sequence[int],
                        variants: Sequence[DetectionVariant] = DEFAULT_DETECTION_VARIANTS, max_epochs: int = 400,
                        valid_fraction: float = 0.2, progress: bool = True):
    """One-vs-rest BCE heads on audio features per seed and variant. Returns ``(per-emotion rows,
    test scores {(variant, seed): (Y_test, scores)})``; thresholds are fixed at 0.5."""
    from sklearn.preprocessing import StandardScaler

    from msa_lib.studies.decision.binary import BinaryHeadConfig, detection_metrics, one_hot, predict_scores, train_one_vs_rest

    rows, scores = [], {}
    Y = one_hot(y, N_CLASSES)
    for seed in tqdm(list(seeds), desc="detection seeds", disable=not progress):
        split = seed_splits(au, seed, valid_fraction)
        tr, va, te = split == "train", split == "valid", split == "test"
        scaler = StandardScaler().fit(X[tr])
        Xs = scaler.transform(X)
        for v in variants:
            cfg = BinaryHeadConfig(hidden=v.hidden, class_weighting=v.class_weighting, max_epochs=max_epochs,
                                   seed=seed)
            model, history = train_one_vs_rest(Xs[tr], Y[tr], Xs[va], Y[va], cfg)
            s = predict_scores(model, Xs[te])
            table = detection_metrics(Y[te], s, RAVDESS_EMOTIONS)
            table.insert(0, "variant", v.name)
            table.insert(1, "class_weighting", v.class_weighting)
            table.insert(2, "seed", seed)
            table["best_epoch"] = int(history.loc[history["valid_mean_ap"].idxmax(), "epoch"]) if len(history) else 0
            rows.append(table)
            scores[(v.name, seed)] = (Y[te], s)
    return pd.concat(rows, ignore_index=True), scores


def summarize_detection(frame: pd.DataFrame) -> pd.DataFrame:
    from msa_lib.evaluate.results import summarize

    per_emotion = summarize(frame, ["variant", "emotion"], metrics=["ap", "precision", "recall", "f1"])
    macro = frame.groupby(["variant", "seed"])[["ap", "precision", "recall", "f1"]].mean().reset_index()
    macro["emotion"] = "macro"
    overall = summarize(macro, ["variant", "emotion"], metrics=["ap", "precision", "recall", "f1"])
    return pd.concat([per_emotion, overall], ignore_index=True)
