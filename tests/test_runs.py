"""Own-model workflow in Python: train_run -> run folder -> TrainedRun / evaluate_run, and its bad inputs."""
import json

import numpy as np
import pytest
import torch

from dataset_factory import make_dataset
from msa_lib.data.io import write_features
from msa_lib.data.labels import LabelScheme
from msa_lib.models import ModelConfig
from msa_lib.train.runs import RunConfig, RunError, TrainedRun, evaluate_run, read_run_config, train_run
from msa_lib.train.trainer import TrainConfig

TINY = ModelConfig(encoder_overrides={"hidden": 8, "layers": 1, "heads": 2}, fusion={"dim": 8, "heads": 2})


def quick(model="early_concat", task="regression", seeds=(0,), epochs=3):
    return RunConfig(model=model, task=task, seeds=list(seeds), model_config=TINY,
                     train=TrainConfig(lr=3e-3, batch_size=8, max_epochs=epochs, patience=10, progress=False))


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    ds = make_dataset(n=60, max_len=4, n_groups=12)
    ds.split = np.array(["train"] * len(ds), dtype=object)  # no valid / test in the file: drawn by group
    return write_features(ds, tmp_path_factory.mktemp("feats") / "synthetic.npz")


@pytest.fixture(scope="module")
def run(features, tmp_path_factory):
    return train_run(features, tmp_path_factory.mktemp("runs") / "run", quick(seeds=(0, 1)), progress=False)


def test_run_folder_holds_what_is_needed(run):
    for name in ("model.pt", "config.json", "metrics.json", "curves.png", "confusion.png", "MODEL_CARD.md"):
        assert (run.run_dir / name).is_file(), name
    config = json.loads((run.run_dir / "config.json").read_text())
    assert config["model"] == "early_concat" and config["task"] == "regression"
    spec = config["features"]["spec"]
    assert set(spec) == {"text", "audio", "vision"} and len(spec["audio"]["mean"]) == spec["audio"]["dim"] == 4
    assert config["run_config"]["train"]["max_epochs"] == 3  # every training setting written back
    metrics = json.loads((run.run_dir / "metrics.json").read_text())
    assert [r["seed"] for r in metrics["per_seed"]] == [0, 1] and metrics["chosen_seed"] in (0, 1)
    assert {"mae", "pearson_r", "acc2_has0", "acc2_non0", "acc7"} <= set(metrics["per_seed"][0]["test"])
    assert sum(metrics["counts"].values()) == 60


def test_splits_are_group_aware_when_the_file_has_none(features):
    from msa_lib.data.io import read_features
    from msa_lib.train.runs import ensure_splits, task_dataset

    ds = ensure_splits(task_dataset(read_features(features), "regression"), quick())
    assert set(ds.split) == {"train", "valid", "test"}
    for g in set(ds.group):
        assert len(set(ds.split[ds.group == g])) == 1


def test_save_load_predict_is_bit_identical_and_training_is_reproducible(run, features, tmp_path):
    from msa_lib.data.io import read_features

    ds = read_features(features)
    a = TrainedRun.load(run.run_dir).predict_dataset(ds)
    b = TrainedRun.load(run.run_dir).predict_dataset(ds)
    assert np.array_equal(a["score_pred"].to_numpy(), b["score_pred"].to_numpy())
    again = train_run(features, tmp_path / "again", quick(seeds=(0, 1)), progress=False)
    w1 = torch.load(run.run_dir / "model.pt", weights_only=True)
    w2 = torch.load(again.run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    evaluated = evaluate_run(run.run_dir, features, split="test")
    chosen = next(r for r in run.metrics["per_seed"] if r["seed"] == run.metrics["chosen_seed"])["test"]
    assert evaluated["mae"] == pytest.approx(chosen["mae"], abs=1e-9)


@pytest.mark.parametrize("task, key", [("binary", "acc2"), ("5class", "acc")])
def test_class_tasks(features, tmp_path, task, key):
    result = train_run(features, tmp_path / task, quick(task=task, epochs=2), progress=False)
    test = result.metrics["per_seed"][0]["test"]
    assert 0 <= test[key] <= 1 and len(test["confusion"]) == (2 if task == "binary" else 5)


def test_bad_run_folders_and_feature_files_are_one_clear_error(run, features, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run.run_dir, broken)
    (broken / "model.pt").write_bytes(b"garbage")
    with pytest.raises(RunError, match="model.pt"):
        TrainedRun.load(broken)
    (broken / "model.pt").unlink()
    with pytest.raises(RunError, match="missing model.pt"):
        TrainedRun.load(broken)
    newer = tmp_path / "newer"
    shutil.copytree(run.run_dir, newer)
    cfg = json.loads((newer / "config.json").read_text())
    cfg["format_version"] = 99
    (newer / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RunError, match="newer"):
        TrainedRun.load(newer)
    (newer / "config.json").write_text("{not json")
    with pytest.raises(RunError, match="corrupt"):
        TrainedRun.load(newer)
    other = make_dataset(n=20, dims={"text": 6, "audio": 7, "vision": 5})
    other_path = write_features(other, tmp_path / "other.npz")
    with pytest.raises(RunError, match="'audio' has 7 dimensions"):
        evaluate_run(run.run_dir, other_path)
    missing = write_features(make_dataset(n=20, dims={"text": 6, "audio": 4}), tmp_path / "missing.npz")
    with pytest.raises(RunError, match="needs modality 'vision'"):
        evaluate_run(run.run_dir, missing)
    with pytest.raises(RunError, match="no such feature file"):
        evaluate_run(run.run_dir, tmp_path / "nope.npz")


def test_config_files_and_wrong_tasks(features, tmp_path):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"model": "late_avg", "task": "binary", "train": {"max_epochs": 2, "lr": 0.01}}))
    cfg = read_run_config(path)
    assert cfg.model == "late_avg" and cfg.train.max_epochs == 2 and cfg.train.patience == 8
    path.write_text(json.dumps({"model": "late_avg", "train": {"epochz": 2}}))
    with pytest.raises(RunError, match="epochz"):
        read_run_config(path)
    with pytest.raises(RunError, match="unknown model"):
        RunConfig(model="resnet")
    with pytest.raises(RunError, match="--task classes needs class-name labels"):
        train_run(features, tmp_path / "x", quick(task="classes"), progress=False)
    with pytest.raises(RunError, match="already holds a run"):
        (tmp_path / "y").mkdir()
        (tmp_path / "y" / "config.json").write_text("{}")
        train_run(features, tmp_path / "y", quick(), progress=False)


def test_classes_task_takes_its_class_names_from_the_labels(tmp_path):
    ds = make_dataset(n=48, max_len=3, n_groups=12)
    ds.meta.labels = LabelScheme("multiclass", None, ("calm", "happy", "sad"), "emotions")
    ds.labels = np.arange(len(ds)) % 3
    ds.scores = np.full(len(ds), np.nan)
    ds.split = np.array(["train"] * len(ds), dtype=object)
    path = write_features(ds, tmp_path / "emotions.npz")
    result = train_run(path, tmp_path / "run", quick(model="audio_only", task="classes", epochs=2), progress=False)
    assert result.config["class_names"] == ["calm", "happy", "sad"]
    assert "calm" in (result.run_dir / "MODEL_CARD.md").read_text()
