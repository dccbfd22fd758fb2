"""Face representations measured on labelled faces (notebook ``10_faces``).

Two shipped sets (:mod:`msa_lib.data.faces`): CK+ (981 posed peak frames, 48 x 48, 118 subjects,
7 expressions) and MEAD (24 silent videos, 3 speakers x 8 emotions). Every representation of
:mod:`msa_lib.extract.face_sets` is scored side by side in one run, subject-independently:

- CK+: ``GroupKFold(5)`` by subject (no subject in both the training and the test fold);
- MEAD: leave one speaker out (3 folds).

Per fold, per representation set (:data:`REPRESENTATION_SETS`) and classifier (:data:`CLASSIFIERS`):
an expression classifier (7 / 8 classes) and a valence classifier (happy vs anger, contempt, disgust,
fear, sadness; neutral and surprise left out, :data:`msa_lib.data.faces.VALENCE`), each with its
hyper-parameters chosen by grouped cross-validation *inside the training fold* (GridSearchCV over
subjects / speakers), refit on the whole training fold and scored once on the test fold. Classifiers
learn from frames (a CK+ image is one frame; a MEAD video contributes its sampled face frames, each
with the clip's label); an item's prediction is the argmax (valence: the sign) of the mean over its
frames of the classifier's decision values, which for one frame is the classifier's own prediction.

Metrics per fold: ``acc_expression`` (accuracy over all classes), ``f1_macro_expression``,
``bacc_valence`` (balanced accuracy of the valence decision on the valence items) and ``auc_valence``
(ROC AUC of the valence score); the summary is their mean ± std over folds.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from msa_lib.core.utils import get_logger
from msa_lib.data.faces import emotions_of, load_ckplus, load_mead
from msa_lib.evaluate.metrics import accuracy, binary_metrics, confusion, f1_macro, roc_auc
from msa_lib.evaluate.results import format_mean_std, summarize
from msa_lib.extract.blendshapes import BLENDSHAPE_AUS
from msa_lib.extract.face_sets import FaceSetConfig, FaceSetFeatures, face_set_features

log = get_logger("studies.faces")

# name in the results -> the representations of msa_lib.extract.face_sets joined side by side
REPRESENTATION_SETS: dict[str, tuple[str, ...]] = {
    "blendshapes": ("blendshapes",),
    "fer_probs": ("expression",),
    "hog": ("hog",),
    "landmarks": ("landmarks",),
    "geometric_aus": ("action_units",),
    "blendshapes+landmarks": ("blendshapes", "landmarks"),
    "blendshapes+hog": ("blendshapes", "hog"),
    "blendshapes+geometric_aus": ("blendshapes", "action_units"),
    "all": ("blendshapes", "landmarks", "action_units", "hog", "expression"),
}
# the comparison the issue asks for: one representation each, side by side
BASE_REPRESENTATIONS = ("blendshapes", "fer_probs", "hog", "landmarks")
CLASSIFIERS = ("logreg", "svm_rbf")
LOGREG_C = (0.01, 0.1, 1.0, 10.0)
SVM_C = (1.0, 10.0, 100.0)


@dataclass
class FaceEvalConfig:
    representations: tuple[str, ...] = tuple(REPRESENTATION_SETS)
    classifiers: tuple[str, ...] = CLASSIFIERS
    ckplus_folds: int = 5
    inner_folds: int = 4  # at most; MEAD's training folds hold 2 speakers, so 2 there
    seed: int = 0
    logreg_c: tuple[float, ...] = LOGREG_C
    svm_c: tuple[float, ...] = SVM_C


# ---------------------------------------------------------------------------------------------- data
def load_face_sets(max_ckplus_subjects: int | None = None, mead_speakers: tuple[str, ...] | None = None,
                   config: FaceSetConfig | None = None) -> dict[str, FaceSetFeatures]:
    """Both face sets with every representation (cached). ``max_ckplus_subjects`` keeps that many CK+
    subjects (every ``k``-th in sorted order, all their images: a smaller run still splits by subject)."""
    ck = load_ckplus()
    if max_ckplus_subjects is not None:
        subjects = sorted(ck["subject"].unique())
        step = max(1, len(subjects) // max_ckplus_subjects)
        keep = subjects[::step][:max_ckplus_subjects]
        ck = ck[ck["subject"].isin(keep)].reset_index(drop=True)
    mead = load_mead()
    if mead_speakers is not None:
        mead = mead[mead["speaker"].isin(mead_speakers)].reset_index(drop=True)
    return {"ckplus": face_set_features("ckplus", ck, config), "mead": face_set_features("mead", mead, config)}


def missed_faces(sets: dict[str, FaceSetFeatures]) -> pd.DataFrame:
    """Per dataset and face detector: items, items without any face found, and the share of frames with one."""
    rows = []
    for name, fs in sets.items():
        for detector, rep in (("FaceLandmarker (blendshapes)", "blendshapes"),
                              ("face detection + face mesh (landmarks, HoG, FER)", "landmarks")):
            masks = fs.mask(rep)
            rows.append({"dataset": name, "detector": detector, "items": len(fs), "missed_items": int(fs.missed(rep).sum()),
                         "frames": int(sum(len(m) for m in masks)), "frames_with_face": int(sum(m.sum() for m in masks))})
    out = pd.DataFrame(rows)
    out["face_frame_ratio"] = out["frames_with_face"] / out["frames"].clip(lower=1)
    return out


# ---------------------------------------------------------------------------------------- classifiers
def make_search(classifier: str, inner_folds: int, cfg: FaceEvalConfig, balanced: bool):
    """A GridSearchCV over the classifier's hyper-parameters, grouped folds (pass ``groups`` to fit)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, GroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    weight = "balanced" if balanced else None
    if classifier == "logreg":
        # newton-cg: a few exact steps on these small standardised problems, several times faster than lbfgs
        est = make_pipeline(StandardScaler(), LogisticRegression(solver="newton-cg", max_iter=1000,
                                                                 class_weight=weight, random_state=cfg.seed))
        grid = {"logisticregression__C": list(cfg.logreg_c)}
    elif classifier == "svm_rbf":
        est = make_pipeline(StandardScaler(), SVC(kernel="rbf", gamma="scale", class_weight=weight))
        grid = {"svc__C": list(cfg.svm_c)}
    else:
        raise ValueError(f"unknown classifier {classifier!r}; choose from {CLASSIFIERS}")
    scoring = "balanced_accuracy" if balanced else "accuracy"
    return GridSearchCV(est, grid, cv=GroupKFold(n_splits=inner_folds), scoring=scoring, n_jobs=1, refit=True)


def _fit_predict(classifier, cfg, X, y, groups, item, train_items, test_items, n_classes, balanced):
    """Fit on the frames of ``train_items`` (grouped inner CV), return (per test item: the mean over its
    frames of the decision values, one per class (binary: one value, > 0 = positive), NaN without a
    face frame; the chosen hyper-parameters). On one frame the argmax / sign is the classifier's own
    prediction."""
    tr = np.isin(item, train_items)
    inner = min(cfg.inner_folds, len(np.unique(groups[tr])))
    search = make_search(classifier, inner, cfg, balanced)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs convergence notes at the largest C of the grid
        search.fit(X[tr], y[tr], groups=groups[tr])
    classes = list(search.classes_)
    binary = n_classes == 2
    if binary and classes != [0, 1]:
        raise ValueError(f"valence training data must hold both classes, got {classes}")
    if not binary and len(classes) < n_classes:  # a class absent from a small training fold: never predicted
        log.warning("training fold lacks classes %s", sorted(set(range(n_classes)) - set(classes)))
    out = np.full((len(test_items), 1 if binary else n_classes), np.nan)
    for k, i in enumerate(test_items):
        rows = item == i
        if rows.any():
            d = np.asarray(search.decision_function(X[rows]), np.float64)
            if not binary and d.ndim == 1:  # only two classes in the training fold: one signed value
                d = np.stack([-d, d], axis=1)
            if binary:
                out[k, 0] = d.mean()
            else:
                out[k] = -np.inf
                out[k, classes] = d.mean(axis=0)
    params = {k.split("__")[-1]: v for k, v in search.best_params_.items()}
    return out, params


# ---------------------------------------------------------------------------------------- evaluation
def folds_for(fs: FaceSetFeatures, cfg: FaceEvalConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train items, test items) per fold: GroupKFold by subject on CK+, leave one speaker out on MEAD."""
    from sklearn.model_selection import GroupKFold, LeaveOneGroupOut

    groups = fs.table["group"].to_numpy()
    idx = np.arange(len(fs))
    if fs.dataset == "mead":
        splitter = LeaveOneGroupOut()
    else:
        splitter = GroupKFold(n_splits=min(cfg.ckplus_folds, len(np.unique(groups))))
    return [(tr, te) for tr, te in splitter.split(idx, groups=groups)]


def evaluate_set(fs: FaceSetFeatures, cfg: FaceEvalConfig | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per representation, classifier and fold; one row per test item and run with its predictions)."""
    cfg = cfg or FaceEvalConfig()
    emotions = emotions_of(fs.dataset)
    labels = fs.table["label"].to_numpy()
    valence = fs.table["valence"].to_numpy()
    groups_item = fs.table["group"].to_numpy()
    folds = folds_for(fs, cfg)
    rows, preds = [], []
    for rep_name in cfg.representations:
        reps = REPRESENTATION_SETS[rep_name]
        X, item = fs.frame_rows(reps)
        y, v, g = labels[item], valence[item], groups_item[item]
        has_face = np.isin(np.arange(len(fs)), item)
        for classifier in cfg.classifiers:
            for fold, (tr, te) in enumerate(folds):
                started = time.perf_counter()
                tr_face = tr[has_face[tr]]
                p_expr, params_expr = _fit_predict(classifier, cfg, X, y, g, item, tr_face, te, len(emotions), False)
                tr_val = tr_face[valence[tr_face] >= 0]
                te_val = te[valence[te] >= 0]
                keep_v = v >= 0
                p_val, params_val = _fit_predict(classifier, cfg, X[keep_v], v[keep_v], g[keep_v], item[keep_v],
                                                 tr_val, te_val, 2, True)
                found = ~np.isnan(p_expr).any(axis=1)
                pred = np.where(found, np.argmax(np.nan_to_num(p_expr, nan=-np.inf), axis=1), -1)
                pos = p_val[:, 0]  # mean decision value of the positive class
                vfound = np.isfinite(pos)
                yv = valence[te_val][vfound]
                row = {"dataset": fs.dataset, "representation": rep_name, "classifier": classifier, "fold": fold,
                       "test_groups": " ".join(sorted(set(groups_item[te]))), "n_train": int(len(tr_face)),
                       "n_test": int(len(te)), "n_missed": int((~found).sum()),
                       "acc_expression": accuracy(labels[te][found], pred[found]) if found.any() else float("nan"),
                       "f1_macro_expression": f1_macro(labels[te][found], pred[found], list(range(len(emotions))))
                       if found.any() else float("nan"),
                       "n_valence_test": int(vfound.sum()),
                       "bacc_valence": binary_metrics(yv, (pos[vfound] > 0).astype(int))["balanced_acc"]
                       if vfound.any() else float("nan"),
                       "auc_valence": roc_auc(yv, pos[vfound]) if vfound.any() else float("nan"),
                       "params_expression": str(params_expr), "params_valence": str(params_val),
                       "seconds": round(time.perf_counter() - started, 2)}
                rows.append(row)
                vmap = dict(zip(te_val, pos))
                for k, i in enumerate(te):
                    preds.append({"dataset": fs.dataset, "representation": rep_name, "classifier": classifier,
                                  "fold": fold, "id": fs.table["id"].iloc[i], "group": groups_item[i],
                                  "true": int(labels[i]), "pred": int(pred[k]), "valence": int(valence[i]),
                                  "valence_score": float(vmap.get(i, np.nan))})
                log.debug("%s %s %s fold %d: acc %.3f bacc_valence %.3f (%.1f s)", fs.dataset, rep_name, classifier,
                         fold, row["acc_expression"], row["bacc_valence"], row["seconds"])
    return pd.DataFrame(rows), pd.DataFrame(preds)


def evaluate_faces(sets: dict[str, FaceSetFeatures], cfg: FaceEvalConfig | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    results = [evaluate_set(fs, cfg) for fs in sets.values()]
    return (pd.concat([r[0] for r in results], ignore_index=True),
            pd.concat([r[1] for r in results], ignore_index=True))


METRICS = ("acc_expression", "f1_macro_expression", "bacc_valence", "auc_valence")


def summarize_face_eval(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over folds per dataset, representation and classifier (sorted best first per dataset)."""
    out = summarize(frame, ["dataset", "representation", "classifier"], metrics=list(METRICS), seed_col="fold")
    out = out.rename(columns={"n_seeds": "n_folds"})
    for metric in METRICS:  # every metric here is a fraction: show them all as percentages
        out[metric] = [format_mean_std(m, s, percent=True) for m, s in zip(out[f"{metric}_mean"], out[f"{metric}_std"])]
    return out.sort_values(["dataset", "acc_expression_mean"], ascending=[True, False]).reset_index(drop=True)


def quality_bar(summary: pd.DataFrame) -> pd.DataFrame:
    """The issue's bar against the best row (mean over folds): CK+ 7-class accuracy >= 88 %, CK+ valence
    balanced accuracy >= 97 %, MEAD 8-class leave-one-speaker-out accuracy reported."""
    checks = [("ckplus", "acc_expression", 0.88), ("ckplus", "bacc_valence", 0.97), ("mead", "acc_expression", None)]
    rows = []
    for dataset, metric, bound in checks:
        part = summary[summary["dataset"] == dataset]
        if part.empty:
            continue
        best = part.loc[part[f"{metric}_mean"].idxmax()]
        value = float(best[f"{metric}_mean"])
        rows.append({"dataset": dataset, "metric": metric, "best": f"{best['representation']} · {best['classifier']}",
                     "mean_over_folds": value, "std": float(best[f"{metric}_std"]), "bar": bound,
                     "met": (value >= bound) if bound is not None else "reported"})
    return pd.DataFrame(rows)


def confusions(predictions: pd.DataFrame, dataset: str, runs: list[tuple[str, str]] | None = None) -> dict[str, np.ndarray]:
    """Confusion matrix (rows true, columns predicted, summed over folds) per ``(representation, classifier)``."""
    part = predictions[(predictions["dataset"] == dataset) & (predictions["pred"] >= 0)]
    n = len(emotions_of(dataset))
    runs = runs or list(dict.fromkeys(zip(part["representation"], part["classifier"])))
    return {f"{rep} · {clf}": confusion(sub["true"], sub["pred"], n)
            for rep, clf in runs
            for sub in [part[(part["representation"] == rep) & (part["classifier"] == clf)]]}


# ------------------------------------------------------------------------------------ interpretation
def mean_scores_by_emotion(fs: FaceSetFeatures, top: int = 16) -> pd.DataFrame:
    """Mean blendshape score per expression (items' face-frame means), for the ``top`` blendshapes whose
    means differ most between expressions; columns are the blendshapes with their nearest AU."""
    X = fs.clip_vectors(["blendshapes"])
    frame = pd.DataFrame(X, columns=fs.names["blendshapes"])
    frame["emotion"] = fs.table["emotion"].to_numpy()
    means = frame.groupby("emotion", sort=False).mean()
    means = means.loc[[e for e in emotions_of(fs.dataset) if e in means.index]]
    chosen = means.std(axis=0).sort_values(ascending=False).index[:top]
    return means[chosen]


def au_label(name: str) -> str:
    """``mouthSmileLeft (AU12)``: a blendshape with the number of its nearest FACS unit."""
    au = BLENDSHAPE_AUS.get(name, "")
    code = au.split(" ")[0] if au and au[:2] in ("AU", "AD") else ""
    return f"{name} ({code})" if code else name


def plot_blendshape_timeline(fs: FaceSetFeatures, item: int | str, top_k: int = 6):
    """The ``top_k`` blendshapes that move most in one video (named, with their nearest AU) over time,
    and a thin band marking frames without a face."""
    import matplotlib.pyplot as plt

    i = item if isinstance(item, (int, np.integer)) else int(np.flatnonzero(fs.table["id"].to_numpy() == item)[0])
    seq, t = fs.sequences["blendshapes"][i], fs.timestamps[i]
    mask = np.isfinite(seq).all(axis=1)
    names = fs.names["blendshapes"]
    spread = np.nanpercentile(seq[mask], 95, axis=0) - np.nanpercentile(seq[mask], 5, axis=0)
    top = np.argsort(-spread, kind="stable")[:top_k]
    fig, ax = plt.subplots(figsize=(7.5, 3.4))
    for j in top:
        ax.plot(t, seq[:, j], lw=1.6, label=au_label(names[j]))
    if (~mask).any():
        ax.scatter(t[~mask], np.full((~mask).sum(), -0.04), marker="|", color="red", label="no face")
    ax.set_ylim(-0.08, 1.02)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("blendshape score")
    row = fs.table.iloc[i]
    ax.set_title(f"{row['id']} ({row['emotion']}): the {top_k} blendshapes that move most", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def plot_scores_by_emotion(means: pd.DataFrame, title: str = ""):
    """Heatmap of :func:`mean_scores_by_emotion` (expressions x blendshapes)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(0.5 * means.shape[1] + 2.5, 0.42 * means.shape[0] + 2.2))
    im = ax.imshow(means.to_numpy(), cmap="viridis", vmin=0, vmax=max(0.05, float(np.nanmax(means.to_numpy()))),
                   aspect="auto")
    ax.set_xticks(range(means.shape[1]), [au_label(c) for c in means.columns], rotation=70, ha="right", fontsize=7)
    ax.set_yticks(range(means.shape[0]), means.index, fontsize=8)
    fig.colorbar(im, ax=ax, shrink=0.8, label="mean score")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_accuracy_bars(summary: pd.DataFrame, metric: str = "acc_expression", classifier: str | None = None,
                       reference: dict[str, float] | None = None):
    """Grouped bars of ``metric`` (mean ± std over folds) per representation, one group per dataset."""
    import matplotlib.pyplot as plt

    part = summary if classifier is None else summary[summary["classifier"] == classifier]
    datasets = list(dict.fromkeys(part["dataset"]))
    reps = list(dict.fromkeys(part["representation"]))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(reps) * len(datasets) / 1.5), 3.6))
    width = 0.8 / max(1, len(datasets))
    for k, ds in enumerate(datasets):
        rows = part[part["dataset"] == ds]
        best = rows.loc[rows.groupby("representation")[f"{metric}_mean"].idxmax()]  # the best classifier's row
        sub = best.set_index("representation")[[f"{metric}_mean", f"{metric}_std"]].reindex(reps)
        ax.bar(np.arange(len(reps)) + k * width, 100 * sub[f"{metric}_mean"], width, yerr=100 * sub[f"{metric}_std"],
               capsize=2, label=ds)
    for name, value in (reference or {}).items():
        ax.axhline(100 * value, ls="--", lw=1, color="grey")
        ax.text(len(reps) - 0.5, 100 * value, f" {name}", va="bottom", ha="right", fontsize=7, color="grey")
    ax.set_xticks(np.arange(len(reps)) + width * (len(datasets) - 1) / 2, reps, rotation=35, ha="right", fontsize=8)
    ax.set_ylabel(f"{metric} (%)")
    ax.legend(fontsize=8)
    ax.set_title(f"{metric}, mean ± std over subject-independent folds"
                 + (f" ({classifier})" if classifier else " (best classifier per representation)"), fontsize=9)
    fig.tight_layout()
    return fig


__all__ = ["REPRESENTATION_SETS", "BASE_REPRESENTATIONS", "CLASSIFIERS", "FaceEvalConfig", "load_face_sets",
           "missed_faces", "evaluate_set", "evaluate_faces", "summarize_face_eval", "quality_bar", "confusions",
           "mean_scores_by_emotion", "plot_blendshape_timeline", "plot_scores_by_emotion", "plot_accuracy_bars",
           "folds_for", "au_label", "METRICS"]
