"""Co-training a Chinese character n-gram student on a cross-lingual teacher's pseudo-labels (notebook 12,
issue 20).

A cross-lingual teacher (a MOSI-trained model on frozen multilingual-e5 vectors) ranks Chinese reviews well
(AUC about 0.92) but sees them only through an encoder trained mostly on other languages. The unlabelled
Chinese training reviews carry a second view that the teacher cannot use: the characters themselves. Here,
as in co-training (Blum & Mitchell, 1998) and its cross-lingual use (Wan, 2009):

1. **Target prior.** The share of positive reviews is estimated from the teacher's posteriors on the
   unlabelled pool by EM (Saerens et al., 2002; :func:`~msa_lib.studies.crosslingual.em_prior`). Few-shot
   runs, which hold a labelled sample, take its positive share instead.
2. **Pseudo-labels.** The teacher's scores on the pool are cut at their ``1 - prior`` quantile (the
   prior-matched threshold), so the pseudo-labels have the estimated class mix; in each class the most
   confident ``share`` (farthest from the cut) are kept, class by class as CBST does. Labelled reviews of a
   few-shot sample replace their pseudo-labels by their gold labels and are always kept.
3. **Student.** A logistic regression on TF-IDF character n-grams of the kept reviews. Its ``C`` is chosen by
   stratified cross-validation *on the pseudo-labels* (agreement with the teacher's labels on held-out
   pool reviews), never on gold Chinese labels.
4. **Combined score** = the mean of the teacher's and the student's probabilities, cut at the
   prior-matched threshold of the combined scores on the pool.

Gold Chinese labels are read only by :func:`evaluation_rows`, on the test split. The settings (share,
n-gram range, teacher weight) are fixed in advance in :class:`CoTrainingConfig`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from msa_lib.core.selection import best_setting
from msa_lib.core.utils import get_logger
from msa_lib.evaluate.metrics import best_threshold_accuracy, binary_metrics, roc_auc
from msa_lib.predict.char_ngrams import MIN_DF, NGRAM_RANGE, char_vectorizer

log = get_logger("co_training")
# an EM prior outside this range leaves one class too few reviews to learn from (a near-constant teacher)
PRIOR_RANGE = (0.05, 0.95)


@dataclass
class CoTrainingConfig:
    share: float = 0.5  # per-class share of the pool kept as pseudo-labels (the most confident)
    ngram_range: tuple = NGRAM_RANGE  # character n-grams: Chinese needs no word segmentation this way
    min_df: int = MIN_DF  # an n-gram must occur in two pool reviews
    Cs: tuple = (0.3, 1.0, 3.0, 10.0)  # the student's C, chosen by cross-validation on the pseudo-labels
    cv_folds: int = 5
    teacher_weight: float = 0.5  # combined probability = w * teacher + (1 - w) * student

    def __post_init__(self):
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share}")
        if not 0 <= self.teacher_weight <= 1:
            raise ValueError(f"teacher_weight must be in [0, 1], got {self.teacher_weight}")
        if not self.Cs or self.cv_folds < 2:
            raise ValueError("Cs must be non-empty and cv_folds >= 2")


def prior_matched_threshold(scores: np.ndarray, prior: float) -> float:
    """The cut that labels the top ``prior`` share of ``scores`` positive (the ``1 - prior`` quantile)."""
    scores = np.asarray(scores, float)
    if len(scores) == 0:
        raise ValueError("prior_matched_threshold needs at least one score")
    if not 0 < prior < 1:
        raise ValueError(f"prior must be in (0, 1), got {prior}")
    return float(np.quantile(scores, 1 - prior))


def confident_pseudo_labels(prob: np.ndarray, prior: float, share: float) -> tuple[np.ndarray, np.ndarray]:
    """Positions (sorted) and pseudo-labels of the kept pool reviews: the top ``prior`` share by score (by
    rank, so tied scores cannot put the whole pool in one class; each class gets at least one review) is
    positive; in each class the ``share`` farthest from the prior-matched cut are kept."""
    prob = np.asarray(prob, float)
    if len(prob) < 2:
        raise ValueError(f"pseudo-labelling needs at least two pool reviews, got {len(prob)}")
    cut = prior_matched_threshold(prob, prior)
    n_positive = int(np.clip(round(prior * len(prob)), 1, len(prob) - 1))
    labels = np.zeros(len(prob), dtype=int)
    labels[np.argsort(prob, kind="stable")[len(prob) - n_positive:]] = 1
    kept = []
    for c in (0, 1):
        members = np.flatnonzero(labels == c)
        if len(members):
            order = np.argsort(-np.abs(prob[members] - cut), kind="stable")
            kept.append(members[order[:max(1, int(round(share * len(members))))]])
    index = np.sort(np.concatenate(kept)) if kept else np.array([], dtype=int)
    return index, labels[index]


class CharNgramStudent:
    """TF-IDF character n-grams -> logistic regression, ``C`` chosen by stratified cross-validation on the
    labels it is given (here pseudo-labels)."""

    def __init__(self, cfg: CoTrainingConfig | None = None, seed: int = 0):
        self.cfg, self.seed = cfg or CoTrainingConfig(), seed
        self.C: float | None = None
        self.cv_accuracy: dict = {}

    def _pipeline(self, C: float):
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        return make_pipeline(char_vectorizer(self.cfg.ngram_range, self.cfg.min_df),
                             LogisticRegression(C=C, max_iter=3000, random_state=self.seed))

    def fit(self, texts, labels) -> "CharNgramStudent":
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        texts, labels = np.asarray(texts, dtype=object), np.asarray(labels, int)
        counts = np.bincount(labels, minlength=2)
        if len(counts) > 2 or counts.min() < 2:
            raise ValueError(f"the student needs two classes with at least two texts each, got counts {counts.tolist()}")
        folds = StratifiedKFold(min(self.cfg.cv_folds, int(counts.min())), shuffle=True, random_state=self.seed)
        self.cv_accuracy = {C: float(cross_val_score(self._pipeline(C), texts, labels, cv=folds).mean())
                            for C in self.cfg.Cs}
        self.C = best_setting(self.cv_accuracy)
        self.model = self._pipeline(self.C).fit(texts, labels)
        return self

    def predict_proba(self, texts) -> np.ndarray:
        """P(positive) per text."""
        return self.model.predict_proba(np.asarray(texts, dtype=object))[:, 1]


@dataclass
class CoTrainingResult:
    prior: float  # the target prior used (EM estimate, or the labelled sample's positive share)
    teacher_cut: float  # prior-matched cut of the teacher's pool scores
    student_cut: float  # prior-matched cut of the student's pool scores
    combined_cut: float  # prior-matched cut of the combined pool scores
    n_pseudo: int  # pool reviews the student learnt from (pseudo-labelled + labelled)
    student_C: float
    test: pd.DataFrame  # per test review: id, teacher, student, combined (probabilities)
    student_labels: pd.DataFrame  # per pool review the student learnt from: id, label, origin ("teacher" / "gold")


def co_train(pool_ids, pool_texts, pool_teacher, test_ids, test_texts, test_teacher, prior: float,
             cfg: CoTrainingConfig | None = None, labelled: dict | None = None, seed: int = 0) -> CoTrainingResult:
    """Train the character n-gram student on the teacher's confident pseudo-labels of the pool (plus
    ``labelled``: pool id -> gold label, few-shot only) and score the test reviews. No gold label of the
    pool or the test set is read here beyond ``labelled``."""
    cfg = cfg or CoTrainingConfig()
    pool_ids, pool_texts = np.asarray(pool_ids, dtype=object), np.asarray(pool_texts, dtype=object)
    pool_teacher, test_teacher = np.asarray(pool_teacher, float), np.asarray(test_teacher, float)
    if not (len(pool_ids) == len(pool_texts) == len(pool_teacher)) or len(test_ids) != len(test_texts) or \
            len(test_texts) != len(test_teacher):
        raise ValueError("ids, texts and teacher probabilities must have one entry per review")
    labelled = labelled or {}
    unknown = set(labelled) - set(pool_ids)
    if unknown:
        raise ValueError(f"{len(unknown)} labelled ids are not in the pool, e.g. {sorted(unknown)[:3]}")
    index, pseudo = confident_pseudo_labels(pool_teacher, prior, cfg.share)
    targets = dict(zip(pool_ids[index], pseudo))
    targets.update({k: int(v) for k, v in labelled.items()})  # gold labels win, and are always kept
    position = {sid: i for i, sid in enumerate(pool_ids)}
    train_pos = np.array(sorted(position[sid] for sid in targets))
    student_labels = pd.DataFrame({"id": pool_ids[train_pos], "label": [int(targets[pool_ids[i]]) for i in train_pos],
                                   "origin": ["gold" if pool_ids[i] in labelled else "teacher" for i in train_pos]})
    student = CharNgramStudent(cfg, seed).fit(pool_texts[train_pos], student_labels["label"].to_numpy())
    w = cfg.teacher_weight
    pool_student = student.predict_proba(pool_texts)
    pool_combined = w * pool_teacher + (1 - w) * pool_student
    test_student = student.predict_proba(test_texts)
    test = pd.DataFrame({"id": np.asarray(test_ids, dtype=object), "teacher": test_teacher, "student": test_student,
                         "combined": w * test_teacher + (1 - w) * test_student})
    log.info("co-training: prior %.3f, %d pool reviews (%d labelled), student C %g", prior, len(train_pos),
             len(labelled), student.C)
    return CoTrainingResult(prior, *(prior_matched_threshold(s, prior) for s in (pool_teacher, pool_student, pool_combined)),
                            len(train_pos), student.C, test, student_labels)


def _scores(labels: np.ndarray, probs: np.ndarray, cut: float) -> dict:
    pred = (probs >= cut).astype(int)
    m = binary_metrics(labels, pred)
    return {"acc": m["acc2"], "f1_macro": m["f1_macro"], "auc": roc_auc(labels, probs),
            "acc_best_threshold": best_threshold_accuracy(labels, probs), "pos_rate_pred": float(pred.mean())}


def evaluation_rows(result: CoTrainingResult, test_labels: dict) -> list[dict]:
    """One test row per ``scorer``: the teacher at 0.5 (as trained) and at its prior-matched cut, the student
    alone and the combined score, each at its prior-matched cut on the *pool*. ``test_labels``: id -> gold
    label, read only here."""
    frame = result.test
    labels = np.array([test_labels[i] for i in frame["id"]], int)
    rows = [("teacher (p >= 0.5)", frame["teacher"], 0.5),
            ("teacher (prior-matched cut)", frame["teacher"], result.teacher_cut),
            ("student (prior-matched cut)", frame["student"], result.student_cut),
            ("co-trained (prior-matched cut)", frame["combined"], result.combined_cut)]
    return [{"scorer": name, **_scores(labels, probs.to_numpy(), cut), "prior": result.prior,
             "n_pseudo": result.n_pseudo, "student_C": result.student_C, "n": len(labels)}
            for name, probs, cut in rows]


def pseudo_label_accuracy(result: CoTrainingResult, pool_labels: dict) -> float:
    """Share of the teacher's kept pseudo-labels that match the gold label (``pool_labels``: id -> label): a
    diagnostic computed after training, from labels the run never saw."""
    teacher = result.student_labels[result.student_labels["origin"] == "teacher"]
    if not len(teacher):
        return float("nan")
    return float(np.mean([pool_labels[i] == label for i, label in zip(teacher["id"], teacher["label"])]))


# ---------------------------------------------------------------------------------------------- runs
def teacher_probabilities(model, ds, cfg, scheme) -> np.ndarray:
    """P(positive) of ``model`` for every review of ``ds``, in ``ds``'s order."""
    from msa_lib.studies.crosslingual import predictions

    prob = predictions(model, ds, cfg, scheme).set_index("id")["prob_pos"]
    return prob.loc[list(ds.ids)].to_numpy(float)


def _run(model, source, target, cfg, prior_from, co_cfg: CoTrainingConfig, seed: int, labelled=None) -> list[dict]:
    from msa_lib.studies.crosslingual import em_prior

    pool, test = target.get_split("train"), target.get_split("test")
    scheme = source.meta.labels
    p_pool, p_test = (teacher_probabilities(model, ds, cfg, scheme) for ds in (pool, test))
    if labelled:
        prior = float(np.mean(list(labelled.values())))
    else:
        prior = em_prior(p_pool, float((source.get_split("train").labels == 1).mean()))
        if not PRIOR_RANGE[0] <= prior <= PRIOR_RANGE[1]:
            log.warning("EM prior %.3f outside %s (a near-constant teacher): clipped", prior, PRIOR_RANGE)
            prior = float(np.clip(prior, *PRIOR_RANGE))
    result = co_train(pool.ids, pool.raw_text, p_pool, test.ids, test.raw_text, p_test, prior, co_cfg, labelled, seed)
    diagnostic = pseudo_label_accuracy(result, dict(zip(pool.ids, pool.labels)))  # after the fact
    return [{**row, "prior_from": prior_from, "pseudo_label_accuracy": diagnostic}
            for row in evaluation_rows(result, dict(zip(test.ids, test.labels)))]


def zero_shot_co_training(fit, source, target, cfg, seed: int, co_cfg: CoTrainingConfig | None = None) -> list[dict]:
    """Co-training from a zero-shot source fit (:func:`~msa_lib.studies.crosslingual.run_zero_shot`): the
    target prior is the EM estimate from the teacher's posteriors on the unlabelled Chinese train reviews."""
    return [{"k_percent": 0, "seed": seed, **row}
            for row in _run(fit.model, source, target, cfg, "em", co_cfg or CoTrainingConfig(), seed)]


def few_shot_co_training(fit, source, target, k_percent: float, seed: int, base, epochs: int,
                         co_cfg: CoTrainingConfig | None = None, lr_scale: float = 0.1) -> list[dict]:
    """Rehearsal at ``k_percent`` (:func:`~msa_lib.studies.crosslingual.continue_training`, as notebook 05)
    as the teacher; the student learns from the labelled sample's gold labels and the teacher's
    pseudo-labels of the rest of the pool, and the prior is the sample's positive share."""
    from msa_lib.studies.crosslingual import continue_training
    from msa_lib.studies.fewshot import target_sample

    model, cfg, _ = continue_training(fit, source, target, k_percent, seed, "rehearsal", base, epochs, lr_scale=lr_scale)
    sample = target_sample(target, k_percent, seed)
    labelled = dict(zip(sample.ids, sample.labels.astype(int)))
    return [{"k_percent": k_percent, "seed": seed, **row}
            for row in _run(model, source, target, cfg, "labelled sample", co_cfg or CoTrainingConfig(), seed, labelled)]


def supervised_reference(target, k_percents, seeds, cfg: CoTrainingConfig | None = None) -> pd.DataFrame:
    """The character n-gram student trained on k % of the *labelled* Chinese train reviews alone (gold
    labels, C by cross-validation on them), scored on the test split at p >= 0.5: what this view reaches
    with supervision (k = 100 is its supervised ceiling on this split)."""
    from msa_lib.data.sampling import stratified_sample

    pool, test = target.get_split("train"), target.get_split("test")
    rows = []
    for k in k_percents:
        for seed in (seeds if k < 100 else seeds[:1]):  # all of train is the same sample for every seed
            idx = stratified_sample(pool.labels, k, seed) if k < 100 else np.arange(len(pool))
            student = CharNgramStudent(cfg, seed).fit(pool.raw_text[idx], pool.labels[idx])
            rows.append({"k_percent": k, "seed": seed, "n_train": len(idx), "student_C": student.C,
                         **_scores(test.labels.astype(int), student.predict_proba(test.raw_text), 0.5)})
    return pd.DataFrame(rows)


def plot_scorers(summary: pd.DataFrame, reference: pd.DataFrame | None = None, metric: str = "acc"):
    """Chinese test ``metric`` (mean ± std over seeds) per scorer, one panel per teacher setting, bars
    grouped by k; dashed lines: the supervised character n-gram reference at each k."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    settings = list(dict.fromkeys(summary["setting"]))
    fig, axes = plt.subplots(1, len(settings), figsize=(6.5 * len(settings), 4.2), sharey=True, squeeze=False)
    scorers = list(dict.fromkeys(summary["scorer"]))
    colours = dict(zip(scorers, sns.color_palette("deep", len(scorers))))
    for ax, setting in zip(axes[0], settings):
        part = summary[summary["setting"] == setting]
        ks = sorted(part["k_percent"].unique())
        width = 0.8 / len(scorers)
        for j, scorer in enumerate(scorers):
            rows = part[part["scorer"] == scorer].set_index("k_percent").reindex(ks)
            ax.bar(np.arange(len(ks)) + (j - (len(scorers) - 1) / 2) * width, 100 * rows[f"{metric}_mean"], width,
                   yerr=100 * rows[f"{metric}_std"], color=colours[scorer], label=scorer, capsize=2)
        if reference is not None and len(reference):
            label = "char n-grams, the k % gold labels alone"
            for i, k in enumerate(ks):
                ref = reference[reference["k_percent"] == k][metric]
                if len(ref):
                    ax.hlines(100 * ref.mean(), i - 0.45, i + 0.45, colors="black", linestyles="dashed", label=label)
                    label = None  # one legend entry
            full = reference[reference["k_percent"] == 100][metric]
            if len(full):
                ax.axhline(100 * full.mean(), color="grey", linestyle="dotted", label="char n-grams, all gold labels")
        ax.set_xticks(np.arange(len(ks)), [f"k = {k:g} %" for k in ks])
        ax.set_title(f"teacher: {setting}")
        ax.set_ylabel(f"Chinese test {metric} (%)")
    lows = 100 * summary[f"{metric}_mean"].min()
    axes[0][0].set_ylim(max(0, lows - 10), 100)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig
