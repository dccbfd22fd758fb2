# %% [markdown]
# # 05 · Few-shot transfer: rehearsal vs fine-tuning on the target alone
#
# The seed paper transfers few-shot by **rehearsal**: keep training on *all* the source data mixed with a
# small share of labelled target data. The alternative, **fine-tuning on the target sample alone**, adapts as
# well but forgets the source. Here, for each seed:
#
# 1. a source model is trained as in notebook 04 (`base_setting`, selected on MOSI validation, text-only);
# 2. copies of it continue training for `fewshot_epochs` epochs at `fewshot_lr_scale` × the source learning
#    rate (no early stopping: a k-shot budget has no target validation data) on
#    - `rehearsal`: MOSI train + k % of the Chinese training reviews (stratified, seeded, nested over k; the
#      sample is repeated so that it is about as large as MOSI train),
#    - `target_only`: the k % sample alone;
# 3. both are scored on the Chinese test split (text only) and on MOSI test (all modalities, and text only).
#
# k = 0 is the zero-shot model (`target_only`) and the source model trained a little longer (`rehearsal`).

# %% tags=["parameters"]
smoke = False
reports_dir = "reports"  # project-relative
seeds = [0, 1, 2, 3, 4]
max_epochs = 30  # source model
fewshot_epochs = 5
fewshot_lr_scale = 0.1  # continued training at this share of the source learning rate
k_percents = [0, 1, 5, 13, 50, 100]
methods = ["rehearsal", "target_only"]
base_setting = "source_only"  # the best zero-shot setting of notebook 04 (centred)
zh_eval_max = None  # cap on Chinese test reviews (smoke runs)
zh_train_max = None  # cap on Chinese training reviews (smoke runs)
torch_threads = 1
mosi_max = None  # stratified MOSI subsets per split (smoke runs)
adapted_seeds = [0, 1, 2, 3, 4]  # rehearsal on the self-trained encoder of notebook 04 ([] skips the section)
adapted_k_percents = [1, 5]
adapted_epochs = 1
self_training_layers = 2  # as notebook 04, so its self-trained models are reused from the cache
self_training_shares = [0.25, 0.5, 0.75, 1.0]
self_training_pool = 2000  # unlabelled Chinese train reviews drawn at random (None: all 5,436; CPU time)
student_epochs = 4
self_training_threads = 2

# %%
import time
import warnings

import pandas as pd
import torch

from msa_lib.studies import crosslingual as xl
from msa_lib.evaluate.results import ResultsTable
from msa_lib.core.plots import results_dir, save_figure

torch.set_num_threads(torch_threads)
warnings.filterwarnings("ignore", "Mean of empty slice")  # metrics that only some rows have (estimated prior)
started = time.time()
caps = {k: v for k, v in {"train": zh_train_max, "valid": zh_eval_max, "test": zh_eval_max}.items() if v}
data_cfg = xl.DataConfig(zh_max=caps, source_max=mosi_max or {})
source_raw, target_raw = xl.load_source(data_cfg), xl.load_target(data_cfg)
source, target, _ = xl.prepare(source_raw, target_raw, data_cfg)
print("Chinese training reviews:", int((target.split == "train").sum()),
      {k: len(xl.few_shot_training_set(source, target, k, 0, "target_only")) for k in k_percents if k > 0})

# %% [markdown]
# ## Runs

# %%
base = xl.ExperimentConfig().with_training(max_epochs=max_epochs)
nce = xl.nce_settings()[base_setting]
table = ResultsTable("few_shot", key=("method", "k_percent", "seed", "eval_set"), folder=results_dir(reports_dir))
for seed in seeds:
    _, source_fit = xl.run_zero_shot(base_setting, nce, source, target, seed, base)
    for method in methods:
        for k in k_percents:
            for row in xl.run_few_shot(source_fit, source, target, k, seed, method, base, fewshot_epochs,
                                          lr_scale=fewshot_lr_scale):
                table.add(**{key: v for key, v in row.items() if key != "prior"})
    print(f"seed {seed} done ({time.time() - started:.0f} s)")
table.save()

# %% [markdown]
# ## Results (mean ± std over seeds)

# %%
summary = pd.read_csv(results_dir(reports_dir) / "few_shot_summary.csv")
wide = summary.pivot_table(index=["method", "k_percent"], columns="eval_set", values="acc", aggfunc="first")
display(wide)
save_figure(xl.plot_few_shot_curves(summary), "few_shot_curves", reports_dir)

# %% [markdown]
# ## Reference: a linear probe on the same frozen vectors
# Logistic regression on the (centred) e5 sentence vectors, trained on MOSI (k = 0, zero-shot) or on the k %
# target sample alone. Its k = 100 score is the supervised ceiling of the frozen representation on this test
# split, which bounds what any head on these vectors (and so every model above) can reach.

# %%
probe = xl.linear_reference(source, target, k_percents, seeds)
probe.to_csv(results_dir(reports_dir) / "few_shot_linear_probe.csv", index=False)
display(probe.groupby("k_percent")["acc"].agg(["mean", "std"]).mul(100).round(2))

# %% [markdown]
# ## Forgetting
# MOSI test accuracy of each few-shot model minus that of the source model it started from (same seed);
# rehearsal should stay near 0, fine-tuning on the target alone drops.

# %%
frame = table.frame()
reference = frame[(frame.method == "target_only") & (frame.k_percent == 0)].set_index(["seed", "eval_set"])["acc"]
frame["delta_vs_source_model"] = frame["acc"] - frame.set_index(["seed", "eval_set"]).index.map(reference).to_numpy()
forgetting = (frame[frame.eval_set.str.startswith("mosi")]
              .groupby(["method", "k_percent", "eval_set"])["delta_vs_source_model"].agg(["mean", "std"]).mul(100).round(2))
display(forgetting)

# %% [markdown]
# ## Rehearsal on the self-trained encoder
# Notebook 04's self-training adapts e5's top layers to Chinese reviews without a Chinese label. Here a copy of
# each seed's self-trained student (reused from the cache notebook 04 filled, or trained now with the same
# settings) continues for `adapted_epochs` epochs on the English data (+ translations) and k % of the labelled
# Chinese train reviews (repeated to about the English data's size): rehearsal, as above, but on an adapted
# encoder. Forgetting is read against the same seed's English-only student (round 0): MOSI test, text only.

# %%
from msa_lib.studies import self_training as st

torch.set_num_threads(self_training_threads)
st_cfg = st.SelfTrainingConfig(fine_tuned_layers=self_training_layers, shares=tuple(self_training_shares),
                               pool_max=self_training_pool, train=st.replace(st.STUDENT_TRAINING, max_epochs=student_epochs))
token_cfg = st.replace(data_cfg, text_input="tokens")
st_source, st_target = st.student_inputs(xl.load_source(token_cfg), xl.load_target(token_cfg), st_cfg.input_layer)
adapted_rows = st.rehearsal_runs(st_source, st_target, adapted_seeds, adapted_k_percents, st_cfg, adapted_epochs)
torch.set_num_threads(torch_threads)
if adapted_seeds:
    adapted = ResultsTable("few_shot_self_trained", key=("method", "k_percent", "seed", "eval_set"), folder=results_dir(reports_dir))
    for row in adapted_rows.to_dict("records"):
        adapted.add(**row)
    adapted.save()
    adapted_summary = pd.read_csv(results_dir(reports_dir) / "few_shot_self_trained_summary.csv")
    display(adapted_summary.pivot_table(index="k_percent", columns="eval_set",
                                        values=["acc", "mosi_delta_vs_english_only"], aggfunc="first"))
print(f"total time {time.time() - started:.0f} s")
