"""The main job: regenerate every report on the default data, in order, stopping at the first failing
step and naming it (``bash run_all.sh`` sets up the environment and calls this).

Steps: the numbered notebooks (papermill; executed copies in ``reports/notebooks/``), the default
prediction model (``models/default/``), the benchmarks (``reports/benchmarks/*.json``) and the summary
(``reports/SUMMARY.md`` and the results block of README.md).

    python -m msa_lib.app.run_all                      # everything
    python -m msa_lib.app.run_all --steps notebooks    # one or more steps
    python -m msa_lib.app.run_all --smoke              # small parameters; writes under .cache/ only

Output stays readable in a log: the notebooks' kernels write their chatter to ``.cache/kernel_logs/``
(:mod:`msa_lib.app.notebook_runner`), and progress bars are drawn only when stderr is a terminal
(:func:`step_env` turns tqdm and Hugging Face bars off for the steps' subprocesses otherwise).
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time

from msa_lib.app.notebook_runner import NOTEBOOKS, SMOKE_REPORTS_DIR, NotebookFailed, run_notebooks
from msa_lib.core.paths import PROJECT_ROOT

STEPS = ("notebooks", "default_model", "benchmarks", "summary")
SMOKE_MODEL_DIR = ".cache/smoke_models/default"


def step_env(on_terminal: bool | None = None) -> dict[str, str]:
    """The environment of a step's subprocess: progress bars off unless stderr is a terminal (a bar
    redrawn into a log file leaves one line per update)."""
    env = dict(os.environ)
    if not (sys.stderr.isatty() if on_terminal is None else on_terminal):
        env.setdefault("TQDM_DISABLE", "1")
        env.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    return env


def _python(*args: str) -> None:
    cmd = [sys.executable, *args]
    print(f"[run] {' '.join(args)}", flush=True)
    subprocess.run(cmd, cwd=PROJECT_ROOT, check=True, env=step_env())


def step_notebooks(smoke: bool, notebooks=None) -> None:
    run_notebooks(notebooks or NOTEBOOKS, smoke=smoke)


def step_default_model(smoke: bool) -> None:
    if smoke:
        _python("-m", "msa_lib.predict.train_default", "--out", SMOKE_MODEL_DIR, "--max-text-per-language", "300",
                "--max-audio-clips", "240")
    else:
        _python("-m", "msa_lib.predict.train_default")


def step_benchmarks(smoke: bool) -> None:
    if smoke:  # exercise the scripts, write next to the smoke reports
        out = PROJECT_ROOT / SMOKE_REPORTS_DIR / "benchmarks"
        out.mkdir(parents=True, exist_ok=True)
        _python("benchmarks/bench_train.py", "--quick", "--out", str(out / "train.json"))
        return
    _python("benchmarks/bench_extract.py")
    _python("benchmarks/bench_length.py")
    _python("benchmarks/bench_train.py")
    _python("benchmarks/bench_predict.py")


DEMO_CLIPS = ("data/clips/chsims_video_0001_0001.mp4", "data/clips/chsims_video_0001_0008.mp4",
              "data/clips/mosi_0h-zjBukYpk_1.mp4", "data/clips/mosi_0h-zjBukYpk_2.mp4")


# real sentences: ChnSentiCorp row 1 (label positive), MOSI 03bSnISJMiM_11 (negative), and French
DEMO_SENTENCES = ("商务大床房，房间很大，床有2M宽，整体感觉经济实惠不错!", "A LOT OF SAD PARTS",
                  "Ce film est vraiment magnifique.")


def predict_demo(model_dir: str) -> str:
    """``msa predict`` on the shipped clips and on a few sentences, as a user would type it; returns the
    commands + outputs."""
    out = []
    for inputs in (list(DEMO_CLIPS), [a for t in DEMO_SENTENCES for a in ("--text", t)]):
        args = ["predict", *inputs, "--model-dir", model_dir]
        done = subprocess.run([sys.executable, "-m", "msa_lib.app.cli", *args], cwd=PROJECT_ROOT, check=True,
                              capture_output=True, text=True, env=step_env(on_terminal=False))
        shown = ["predict", *inputs] if model_dir == "models/default" else args
        out.append(f"$ msa {' '.join(shlex.quote(a) for a in shown)}\n{done.stdout.rstrip()}\n")
    return "\n".join(out)


def step_summary(smoke: bool) -> None:
    from msa_lib.app import summary

    if smoke:
        print(summary.write(SMOKE_REPORTS_DIR, readme=None))
        print(predict_demo(SMOKE_MODEL_DIR))
        return
    print(summary.write("reports", readme="README.md"))
    demo = predict_demo("models/default")
    (PROJECT_ROOT / "reports" / "predict_demo.txt").write_text(demo)
    summary.replace_block(PROJECT_ROOT / "README.md", "predict", f"```text\n{demo}```\n")
    print(demo)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="small parameters; outputs under .cache/")
    parser.add_argument("--steps", nargs="+", choices=STEPS, default=list(STEPS))
    parser.add_argument("--notebooks", nargs="+", choices=NOTEBOOKS, default=None,
                        help="only these notebooks in the notebooks step")
    args = parser.parse_args(argv)
    actions = {"notebooks": lambda: step_notebooks(args.smoke, args.notebooks),
               "default_model": lambda: step_default_model(args.smoke),
               "benchmarks": lambda: step_benchmarks(args.smoke),
               "summary": lambda: step_summary(args.smoke)}
    started = time.time()
    for step in (s for s in STEPS if s in args.steps):
        t0 = time.time()
        print(f"== step {step} ==", flush=True)
        try:
            actions[step]()
        except (NotebookFailed, subprocess.CalledProcessError) as exc:
            print(f"ERROR: step '{step}' failed: {exc}", file=sys.stderr)
            print(f"Resume from it with: python -m msa_lib.app.run_all --steps "
                  f"{' '.join(STEPS[STEPS.index(step):])}{' --smoke' if args.smoke else ''}", file=sys.stderr)
            return 1
        print(f"== step {step} done in {time.time() - t0:.0f} s ==", flush=True)
    where = SMOKE_REPORTS_DIR if args.smoke else "reports"
    print(f"run_all finished in {(time.time() - started) / 60:.1f} min; reports in {PROJECT_ROOT / where}/ "
          f"(SUMMARY.md, results/, figures/, notebooks/, benchmarks/)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
