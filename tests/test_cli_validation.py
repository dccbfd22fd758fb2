"""`msa extract` from a user's point of view (issue 19, items 6, 7 and 8): paths resolve against the
folder the user stands in, bad manifests and arguments fail before any work with one message naming
the file, the row and the fix, and Ctrl-C prints one line and the rerun resumes from the cache."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

import media_factory as mf
from msa_lib.app import cli
from msa_lib.core.paths import PROJECT_ROOT, user_path
from msa_lib.data.io import read_features
from msa_lib.data.sources import read_clip_manifest


def cut_clip(src, out_dir, name: str, start: float = 0.0, duration: float = 1.5):
    """A piece of a real shipped clip, re-encoded by ffmpeg."""
    out = out_dir / name
    mf._run_ffmpeg(["-ss", str(start), "-t", str(duration), "-i", str(src), "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(out)])
    return out


@pytest.fixture()
def no_extraction(monkeypatch):
    """Fail the test if the extraction itself starts: every check must come before it."""
    from msa_lib.extract import pipeline

    def started(*args, **kwargs):
        raise AssertionError("the extraction started before the inputs were checked")

    monkeypatch.setattr(pipeline, "extract", started)


# ------------------------------------------------------------------------------------------ item 6
def test_paths_resolve_against_the_current_folder(tmp_path, monkeypatch, clips_dir, capsys):
    sub = tmp_path / "sub"
    sub.mkdir()
    cut_clip(clips_dir / "mosi_0h-zjBukYpk_1.mp4", sub, "a.mp4")
    (sub / "m.csv").write_text("path,label\na.mp4,-0.5\n")  # a clip path inside a manifest: the manifest's folder
    monkeypatch.chdir(tmp_path)
    rc = cli.main(["extract", "sub/m.csv", "--out", "o.npz", "--modalities", "audio", "--no-cache", "--quiet"])
    assert rc == 0, capsys.readouterr().err
    assert (tmp_path / "o.npz").exists() and not (PROJECT_ROOT / "o.npz").exists()
    ds = read_features("o.npz")  # a path typed in Python: the current folder too
    assert list(ds.ids) == ["a"] and ds.extra[0]["path"] == str(sub / "a.mp4") and ds.scores[0] == -0.5
    assert user_path("o.npz") == tmp_path / "o.npz"
    # the project's own relative names still reach the shipped files from anywhere
    assert len(read_clip_manifest("data/clips/manifest.csv")) == 4


# ------------------------------------------------------------------------------------------ item 7
def test_bad_manifest_and_arguments_fail_before_the_work(tmp_path, clips_dir, capsys, no_extraction):
    clip = cut_clip(clips_dir / "chsims_video_0001_0001.mp4", tmp_path, "clip.mp4", duration=1.0)
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,language\nclip.mp4,99,zh\nclip.mp4,-0.5,xx\nmissing.mp4,,\n")
    out = str(tmp_path / "o.npz")

    def run(*args):
        rc = cli.main(["extract", *args])
        err = capsys.readouterr().err
        assert rc == 2 and "Traceback" not in err
        return err

    err = run(str(manifest), "--out", out)
    assert err.startswith(f"msa: error: {manifest}: 3 problems, nothing was extracted")
    assert "row 2: label '99' is outside [-1, 1] (--label-scale sims); fix the label" in err
    assert "row 3: language 'xx' is not supported; use zh, en or auto" in err
    assert f"row 4: clip {tmp_path / 'missing.mp4'} does not exist" in err
    manifest.write_text("path,label\nclip.mp4,2.5\n")  # a [-3, 3] score under the default [-1, 1] scale
    err = run(str(manifest), "--out", out)
    assert "row 2: label '2.5' is outside [-1, 1] (--label-scale sims); if the labels are scores in [-3, 3], " \
           "pass --label-scale mosi" in err
    err = run(str(clip), "--out", str(tmp_path))
    assert f"--out {tmp_path} is a folder; give a file name such as {tmp_path / 'features.npz'}" in err
    err = run(str(clip), str(tmp_path / "nope.mp4"), "--out", out)
    assert "nope.mp4: no such file or folder" in err
    assert "--lang 'xx' is not supported" in run(str(clip), "--out", out, "--lang", "xx")
    with pytest.raises(SystemExit) as exit_info:  # argparse: usage line + one error line
        cli.main(["extract", str(clip), "--out", out, "--fps", "0"])
    assert exit_info.value.code == 2
    assert "argument --fps: must be a positive number, got 0" in capsys.readouterr().err
    assert not (tmp_path / "o.npz").exists()


# ------------------------------------------------------------------------------------------ item 8
def test_ctrl_c_prints_one_line_and_the_rerun_resumes(tmp_path, clips_dir, monkeypatch, capsys):
    source = clips_dir / "mosi_0h-zjBukYpk_2.mp4"  # 12 s: twelve different 1-s pieces (enough work left to interrupt)
    clips = [str(cut_clip(source, tmp_path, f"part{i}.mp4", start=1.0 * i, duration=1.0)) for i in range(12)]
    out = tmp_path / "o.npz"
    cache = tmp_path / "cache"
    # the Whisper encoder gives every clip a few hundred ms of work, so the run is still going when Ctrl-C comes
    args = ["extract", *clips, "--out", str(out), "--modalities", "audio", "--audio-features", "prosody,whisper",
            "--whisper-window", "5", "--quiet"]
    env = {**os.environ, "MSA_CACHE_DIR": str(cache)}
    proc = subprocess.Popen([sys.executable, "-m", "msa_lib.app.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + 180
    while not list((cache / "extract").glob("*.pkl")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole process group
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    said = [line for line in lines if "interrupted" in line]
    assert len(said) == 1 and said[0] == lines[-1], err
    kept = int(re.search(r"(\d+) clip\(s\) finished in this run are kept in the cache", said[0]).group(1))
    assert kept >= 1 and f"({cache / 'extract'})" in said[0] and "run the same command again to resume" in said[0]
    assert not out.exists() and f"{out} was not written" in said[0]
    # the same command again: the kept clips come from the cache, the rest are computed
    monkeypatch.setenv("MSA_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    assert cli.main(args) == 0, capsys.readouterr().err
    ds = read_features(out)
    assert len(ds) == len(clips) and sum(bool(e.get("cached")) for e in ds.extra) == kept
