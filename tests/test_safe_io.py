"""Safe files (issue 19, items 4 and 5): feature files cannot run code when read, third-party pickles go
through a restricted unpickler, wrong internals give a FeatureFormatError, writes are atomic and a
second writer of the same output is refused."""
from __future__ import annotations

import io
import os
import pickle
import shlex
import subprocess
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import pytest
from dataset_factory import make_dataset

import media_factory as mf
from msa_lib.app import cli
from msa_lib.data.io import OutputInUseError, load_pickle, read_features, write_features
from msa_lib.data.mmsa import read_mmsa, write_mmsa
from msa_lib.data.schema import FeatureFormatError
from msa_lib.data.seed_format import read_seed, write_seed
from msa_lib.data.splits import group_validation_split


def cut_clip(src, out_dir, name: str, start: float = 0.0, duration: float = 1.5):
    """A piece of a real shipped clip, re-encoded by ffmpeg."""
    out = out_dir / name
    mf._run_ffmpeg(["-ss", str(start), "-t", str(duration), "-i", str(src), "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(out)])
    return out


class RunsACommand:
    """Pickles as a call to ``os.system``: opening the pickle with the standard loader creates ``marker``."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def _dump(obj, path):
    with open(path, "wb") as fh:
        pickle.dump(obj, fh)
    return path


# ------------------------------------------------------------------------------------------ item 5
def test_crafted_pickles_are_refused_and_never_run(tmp_path):
    marker = tmp_path / "created_by_the_pickle"
    payload = RunsACommand(marker)
    feature_pickle = _dump({"format": "msa_lib.data", "version": 1, "meta": payload}, tmp_path / "features.pkl")
    with pytest.raises(FeatureFormatError, match=r"trust=True"):
        read_features(feature_pickle)
    mmsa_pickle = _dump({"train": {"id": np.array(["v$_$1"], dtype=object), "text": payload}}, tmp_path / "aligned_50.pkl")
    with pytest.raises(FeatureFormatError, match=r"system, which is not allowed"):
        read_mmsa(mmsa_pickle)
    seed = tmp_path / "seed"
    seed.mkdir()
    _dump({"name": "x", "label_range": payload}, seed / "metadata.pkl")
    with pytest.raises(FeatureFormatError, match=r"metadata\.pkl: '<file>' — expected a pickle of numpy arrays"):
        read_seed(seed)
    # an .npz whose array member is a pickled object array: numpy refuses it with allow_pickle=False
    disguised = tmp_path / "disguised.npz"
    with zipfile.ZipFile(disguised, "w") as zf:
        zf.writestr("metadata.json", '{"format": "msa_lib.data", "version": 2, "n_samples": 1, "meta": {}, '
                                     '"samples": {"id": ["a"], "split": ["test"], "language": ["en"], '
                                     '"raw_text": [""], "group": ["a"], "extra": [{}]}, '
                                     '"arrays": {"scores": "scores", "labels": "labels", "features": {}}}')
        with zf.open("scores.npy", "w") as member:
            np.lib.format.write_array(member, np.array([payload], dtype=object), allow_pickle=True)
    with pytest.raises(FeatureFormatError, match="no pickled objects"):
        read_features(disguised)
    assert not marker.exists()
    # control: the same file does run its command under the standard loader, so the checks above mattered
    with open(mmsa_pickle, "rb") as fh:
        pickle.load(fh)
    assert marker.exists()


def test_restricted_unpickler_reads_numpy_arrays_and_plain_containers(tmp_path):
    value = {"matrix": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": np.array(["v$_$1", "v$_$2"], dtype=object),
             "scalar": np.float64(0.25), "pairs": [(1, 2.5, "z")], "set": {1, 2}, "complex": 1 + 2j,
             "ordered": OrderedDict(a=1), "raw": b"\x00\x01", "none": None}
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        back = load_pickle(_write_bytes(pickle.dumps(value, protocol=protocol), tmp_path / f"p{protocol}.pkl"))
        np.testing.assert_array_equal(back["matrix"], value["matrix"])
        assert back["ids"].tolist() == ["v$_$1", "v$_$2"] and back["scalar"] == 0.25 and back["set"] == {1, 2}
        assert back["pairs"] == [(1, 2.5, "z")] and back["ordered"] == OrderedDict(a=1) and back["raw"] == b"\x00\x01"
    # numpy 2.x names its internals numpy._core.*: a pickle written that way loads here too (protocols 2 and 3
    # name globals as text lines, so the module can be renamed in place; 4 and 5 resolve names the same way)
    for protocol in (2, 3):
        raw = pickle.dumps(np.arange(4.0), protocol=protocol).replace(b"numpy.core.", b"numpy._core.")
        assert b"numpy._core." in raw
        np.testing.assert_array_equal(load_pickle(_write_bytes(raw, tmp_path / "np2.pkl")), np.arange(4.0))
    # the shipped RAVDESS vectors are such a pickle
    from msa_lib.data.sources import load_ravdess_au_mfcc

    assert len(load_ravdess_au_mfcc()) == 1440


def _write_bytes(data: bytes, path):
    path.write_bytes(data)
    return path


def test_wrong_internals_give_feature_format_errors(tmp_path):
    ds = group_validation_split(make_dataset(nan_rows=False), 0.25)
    path = write_mmsa(ds, tmp_path / "x.pkl")
    clean = pickle.loads(path.read_bytes())

    def broken(change):
        raw = pickle.loads(pickle.dumps(clean))
        change(raw)
        return _dump(raw, tmp_path / "broken.pkl")

    cases = [
        (lambda r: r.__setitem__("train", [1, 2, 3]), r"'train' — expected a dict of arrays"),
        (lambda r: r["valid"].__setitem__("id", 5), r"'<structure>' — expected the MMSA layout"),
        (lambda r: r["test"].__setitem__("text_bert", np.ones((1, 3, 2))), r"test\.text_bert' — expected an array N x 3"),
        (lambda r: r["train"].__setitem__("audio_lengths", [1]), r"train\.audio_lengths"),
    ]
    for change, message in cases:
        with pytest.raises(FeatureFormatError, match=message):
            read_mmsa(broken(change))
    folder = write_seed(ds, tmp_path / "seed")
    part = pickle.loads((folder / "train_data.pkl").read_bytes())
    part["audio_lengths"] = part["audio_lengths"][:2]
    _dump(part, folder / "train_data.pkl")
    with pytest.raises(FeatureFormatError, match="audio_lengths"):
        read_seed(folder)
    npz = write_features(ds, tmp_path / "f.npz")
    members = {}
    with zipfile.ZipFile(npz) as zf:
        for name in zf.namelist():
            members[name] = zf.read(name)
    with zipfile.ZipFile(npz, "w") as zf:  # lengths of one modality no longer match its rows
        for name, data in members.items():
            if name == "lengths_000.npy":
                buf = io.BytesIO()
                np.lib.format.write_array(buf, np.zeros(len(ds), np.int64))
                data = buf.getvalue()
            zf.writestr(name, data)
    with pytest.raises(FeatureFormatError, match=r"lengths"):
        read_features(npz)


# ------------------------------------------------------------------------------------------ item 4
HOLD_LOCK = ("import sys, time\nfrom msa_lib.data.io import output_lock\n"
             "lock = output_lock(sys.argv[1]); lock.__enter__()\nprint('locked', flush=True); time.sleep(120)\n")


def test_second_writer_of_the_same_output_is_refused(tmp_path, clips_dir, capsys):
    clip = cut_clip(clips_dir / "mosi_0h-zjBukYpk_1.mp4", tmp_path, "part.mp4")
    out = tmp_path / "corpus.npz"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        rc = cli.main(["extract", str(clip), "--out", str(out), "--modalities", "audio", "--no-cache", "--quiet"])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err
        assert f"{out}: another process is writing this file (pid {holder.pid}" in err and len(err.strip().splitlines()) == 1
        with pytest.raises(OutputInUseError, match=f"pid {holder.pid}"):
            write_features(make_dataset(n=4), out)
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    write_features(make_dataset(n=4), out)  # the lock died with its process: no stale lock to clear by hand
    assert len(read_features(out)) == 4


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    out = write_features(make_dataset(n=6), tmp_path / "f.npz")
    before = out.read_bytes()
    real_write_array, calls = np.lib.format.write_array, []

    def disk_full_on_third_array(fh, arr, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("No space left on device")
        return real_write_array(fh, arr, **kwargs)

    monkeypatch.setattr(np.lib.format, "write_array", disk_full_on_third_array)
    with pytest.raises(OSError, match="No space"):
        write_features(make_dataset(n=8, seed=1), out)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npz"]  # no temporary file, no lock file left
