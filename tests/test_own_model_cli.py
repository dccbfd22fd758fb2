"""The own-model workflow through the command line on real RAVDESS recordings:
msa extract (manifest with label / split / group) -> msa train -> msa evaluate -> msa predict --model."""
import contextlib
import io
import json
import os
from types import SimpleNamespace

import numpy as np
import pytest

from msa_lib.app.cli import main
from msa_lib.studies.own_model import ravdess_manifest


def msa(*args, cwd):
    """``msa ARGS`` in this process (as a user in folder ``cwd``): its exit code, stdout and stderr."""
    out, err, before = io.StringIO(), io.StringIO(), os.getcwd()
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([str(a) for a in args])
    finally:
        os.chdir(before)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    work = tmp_path_factory.mktemp("own_model")
    manifest = ravdess_manifest(work / "manifest.csv", per_actor=1)  # 24 recordings, every emotion 3 times
    done = msa("extract", "manifest.csv", "--out", "feats.npz", "--modalities", "audio", "--audio-features", "prosody",
               "--name", "ravdess_tiny", "--quiet", cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    return work, manifest


def test_manifest_labels_splits_and_groups_reach_the_feature_file(workdir):
    from msa_lib.data.io import read_features

    work, manifest = workdir
    ds = read_features(work / "feats.npz")
    assert ds.meta.labels.kind == "multiclass" and len(ds.meta.labels.class_names) == 8
    assert set(ds.split) == {"train", "test"} and (ds.split == "test").sum() == (manifest["split"] == "test").sum()
    assert set(ds.group) == set(manifest["group"])
    names = np.asarray(ds.meta.labels.class_names)[ds.labels]
    by_id = dict(zip(manifest["path"].map(lambda p: p.rsplit("/", 1)[-1].rsplit(".", 1)[0]), manifest["label"]))
    assert all(by_id[i] == n for i, n in zip(ds.ids, names))


def test_cli_round_trip(workdir):
    work, manifest = workdir
    done = msa("train", "feats.npz", "--model", "audio_only", "--task", "classes", "--seeds", "0", "--epochs", "3",
               "--out", "run", cwd=work)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = json.loads((work / "run" / "metrics.json").read_text())
    assert metrics["counts"]["test"] == (manifest["split"] == "test").sum()
    ev = msa("evaluate", "run", "feats.npz", "--split", "test", "--json", cwd=work)
    assert ev.returncode == 0, ev.stderr[-2000:]
    evaluated = json.loads(ev.stdout)
    assert evaluated["acc"] == pytest.approx(metrics["per_seed"][0]["test"]["acc"])
    clips = manifest[manifest["split"] == "test"]["path"].tolist()[:2]
    pr = msa("predict", "--model", "run", *clips, "no_such.wav", "--json", cwd=work)
    assert pr.returncode == 0, pr.stderr[-2000:]
    results = json.loads(pr.stdout)
    assert [r["status"] for r in results] == ["ok", "ok", "error"]
    assert results[0]["label"] in json.loads((work / "run" / "config.json").read_text())["class_names"]
    assert abs(sum(results[0]["probabilities"].values()) - 1) < 1e-3


def test_bad_inputs_are_one_clear_error(workdir, tmp_path):
    work, _ = workdir
    cases = [
        (("train", "feats.npz", "--task", "regression", "--out", tmp_path / "r1"), "needs sentiment scores"),
        (("train", "missing.npz", "--out", tmp_path / "r2"), "no such feature file"),
        (("evaluate", tmp_path / "nowhere", "feats.npz"), "no such model folder"),
    ]
    for args, message in cases:
        done = msa(*args, cwd=work)
        assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr, done.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("path,label,split\nx.wav,happy,holdout\n")
    done = msa("extract", bad, "--out", tmp_path / "x.npz", cwd=work)
    assert done.returncode == 2 and "split" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_run_on_features_the_extractor_cannot_make_is_refused_before_work(tmp_path):
    from dataset_factory import make_dataset

    from msa_lib.data.io import write_features
    from msa_lib.models import ModelConfig
    from msa_lib.predict.predictor import Predictor
    from msa_lib.train.runs import RunConfig, RunError, train_run
    from msa_lib.train.trainer import TrainConfig

    path = write_features(make_dataset(n=40, max_len=3, n_groups=10), tmp_path / "external.npz")
    cfg = RunConfig(model="early_concat", task="binary", model_config=ModelConfig(encoder_overrides={"hidden": 8, "layers": 1, "heads": 2}, fusion={"dim": 8, "heads": 2}),
                    train=TrainConfig(max_epochs=1, batch_size=8, progress=False))
    train_run(path, tmp_path / "run", cfg, progress=False)
    with pytest.raises(RunError, match="does not produce"):
        Predictor.load(tmp_path / "run")


def test_interrupted_training_resumes_to_the_same_model(tmp_path, monkeypatch):
    import torch
    from dataset_factory import make_dataset

    from msa_lib.data.io import write_features
    from msa_lib.models import ModelConfig
    from msa_lib.train import runs
    from msa_lib.train.trainer import TrainConfig

    path = write_features(make_dataset(n=40, max_len=3, n_groups=10), tmp_path / "f.npz")
    cfg = runs.RunConfig(model="early_concat", task="regression",
                         model_config=ModelConfig(encoder_overrides={"hidden": 8, "layers": 1, "heads": 2}, fusion={"dim": 8, "heads": 2}),
                         train=TrainConfig(max_epochs=4, batch_size=8, lr=3e-3, progress=False))
    reference = runs.train_run(path, tmp_path / "ref", cfg, progress=False)
    real = runs.train_model

    def interrupted(*args, **kwargs):
        def stop(epoch, model, row):
            if epoch == 1:
                raise KeyboardInterrupt
        return real(*args, **kwargs, callbacks=[stop])

    monkeypatch.setattr(runs, "train_model", interrupted)
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        runs.train_run(path, tmp_path / "run", cfg, progress=False)
    assert (tmp_path / "run" / "checkpoints" / "seed0.pt").is_file()
    monkeypatch.setattr(runs, "train_model", real)
    resumed = runs.train_run(path, tmp_path / "run", cfg, resume=True, progress=False)
    a = torch.load(reference.run_dir / "model.pt", weights_only=True)
    b = torch.load(resumed.run_dir / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_notebook_07_reference_is_read_from_its_summary(tmp_path):
    from msa_lib.studies.own_model import decision_fusion_reference

    assert decision_fusion_reference(tmp_path) is None  # notebook 07 has not run
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "ravdess_decision_fusion_summary.csv").write_text(
        "branch_or_rule,scenario,acc\naudio_whisper,noisy,10.0 ± 1.0\naudio_whisper,clean,70.6 ± 1.1\n", encoding="utf-8")
    assert decision_fusion_reference(tmp_path) == "70.6 ± 1.1 %"
    assert decision_fusion_reference(tmp_path, "visual_au") is None
