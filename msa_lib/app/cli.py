"""``msa`` command line: extract features, train and evaluate your own model, predict sentiment from clips
(with the default model or a run folder), train the default model, check the environment, run the notebooks."""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
from pathlib import Path

from msa_lib.app.cli_runs import add_commands as add_run_commands
from msa_lib.core.paths import user_path
from msa_lib.extract.errors import MissingToolError


def _extract(args) -> int:
    import time
    from dataclasses import replace

    from msa_lib.data.io import output_lock
    from msa_lib.extract.asr import ASRConfig
    from msa_lib.extract.whisper_features import WhisperEncoderConfig
    from msa_lib.extract.media import MediaConfig
    from msa_lib.extract.pipeline import ExtractConfig, extract

    # every check before any model loads or clip is decoded
    out, inputs = check_extract_arguments(args, ExtractConfig.supported_languages)
    cfg = ExtractConfig(
        modalities=tuple(args.modalities.split(",")),
        audio_features=tuple(args.audio_features.split(",")),
        face_features=tuple(args.face_features.split(",")),
        media=replace(MediaConfig(), fps=args.fps),
        whisper_encoder=replace(WhisperEncoderConfig(), layer=args.whisper_layer,
                                **({"window_seconds": args.whisper_window} if args.whisper_window else {})),
        asr=ASRConfig(backend=args.asr, model=args.asr_model, language=args.lang),
        workers=args.workers, executor=args.executor, scheduler_address=args.scheduler,
        use_cache=not args.no_cache, label_scale=args.label_scale,
    )
    started = time.time()
    from msa_lib.extract.pipeline import STOP_REQUESTED

    def on_ctrl_c(signum, frame):
        STOP_REQUESTED.set()
        raise KeyboardInterrupt

    STOP_REQUESTED.clear()
    previous = signal.signal(signal.SIGINT, on_ctrl_c) if threading.current_thread() is threading.main_thread() else None
    try:
        with output_lock(out):  # held for the whole run: a second `msa extract --out` same file is refused
            ds = extract(inputs, cfg, out=out, progress=not args.quiet and sys.stderr.isatty(), name=args.name)
    except KeyboardInterrupt:
        print(interrupted_message(cfg, out, started), file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    failed = [f for f in ds.failures if f["kind"] == "failed"]
    partial = [f for f in ds.failures if f["kind"] != "failed"]
    print(f"{len(ds)} clip(s) extracted -> {out}")
    for f in failed:
        print(f"  skipped {f['clip']}: {f['error']}")
    for f in partial:
        print(f"  {f['clip_id']}: {f['stage']} missing ({f['error']})")
    return 0 if len(ds) else 1


def check_extract_arguments(args, supported_languages) -> tuple[Path, list[str]]:
    """The output path and the inputs, resolved against the current folder and checked, so that a bad
    argument or manifest row ends in one message before any model loads or clip is decoded."""
    from msa_lib.core.utils import normalize_language
    from msa_lib.data.io import FEATURE_SUFFIX
    from msa_lib.data.manifest_checks import AUTO_LANGUAGE, InputError, check_clip_manifest
    from msa_lib.data.sources import read_clip_manifest

    if args.lang.strip().lower() not in AUTO_LANGUAGE and normalize_language(args.lang) not in supported_languages:
        raise InputError(f"--lang {args.lang!r} is not supported; use auto (detect per clip) or one of "
                         f"{', '.join(supported_languages)}")
    out = user_path(args.out)
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a file name such as {out / ('features' + FEATURE_SUFFIX)}")
    if out.suffix.lower() != FEATURE_SUFFIX:
        raise InputError(f"--out {out}: feature files are {FEATURE_SUFFIX} archives; use --out "
                         f"{out.with_suffix(FEATURE_SUFFIX)}")
    parent = next(p for p in [out.parent, *out.parent.parents] if p.exists())
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise InputError(f"--out {out}: cannot write into {parent}; choose a folder you can write to")
    missing = [item for item in args.inputs if not user_path(item).exists()]
    if missing:
        raise InputError(f"{', '.join(missing)}: no such file or folder (relative paths are read from the "
                         f"current folder, {Path.cwd()}); check the spelling")
    inputs = [user_path(item) for item in args.inputs]
    for path in inputs:
        if path.is_file() and path.suffix.lower() == ".csv":
            check_clip_manifest(read_clip_manifest(path), path, args.label_scale, supported_languages)
    return out, [str(p) for p in inputs]


def interrupted_message(cfg, out: Path, started: float) -> str:
    """One line after Ctrl-C: what the per-clip cache kept and how to resume."""
    written = out.exists() and out.stat().st_mtime >= started
    result = f"{out} was written" if written else f"{out} was not written"
    if not cfg.use_cache:
        return (f"msa extract: interrupted; {result} and nothing was cached (--no-cache): "
                f"run without --no-cache to keep finished clips across runs")
    folder = cfg.cache_path()
    kept = sum(1 for p in folder.glob("*.pkl") if p.stat().st_mtime >= started)
    return (f"msa extract: interrupted; {result}; {kept} clip(s) finished in this run are kept in the cache "
            f"({folder}): run the same command again to resume (finished clips are not recomputed)")


def _predict(args) -> int:
    import json

    from msa_lib.predict.predictor import Predictor, text_table

    if args.text and args.clips:
        # the usual slip: `--text "a" "b"` makes "b" a clip path; --text takes one sentence per flag
        raise ValueError(f"msa predict: got --text and clip path(s) {args.clips}; give clips or sentences, "
                         f"not both (several sentences: repeat the flag, --text \"...\" --text \"...\")")
    if not args.text and not args.clips:
        raise ValueError("msa predict: give clips or --text SENTENCE (repeatable)")
    model_dir = None if args.model_dir is None else user_path(args.model_dir)
    predictor = Predictor.load(model_dir, use_cache=args.cache, fps=args.fps)
    if args.text:
        results = predictor.score_texts(args.text, language=args.lang)
        table = text_table(results)
    else:
        results = predictor.predict(args.clips, progress=False)
        table = predictor.table(results)
    print(json.dumps(results, ensure_ascii=False, indent=2) if args.json else table)
    if not any(r.get("status") == "ok" for r in results):
        what = "no sentence could be scored" if args.text else "no clip could be predicted"
        print(f"msa predict: {what} ({len(results)} input(s) failed; see the errors above)",
              file=sys.stderr)
        return 1
    return 0


def _train_default(args) -> int:
    from msa_lib.predict.train_default import main as train_main

    argv = [] if args.out is None else ["--out", str(user_path(args.out))]
    if args.max_text_per_language is not None:
        argv += ["--max-text-per-language", str(args.max_text_per_language)]
    if args.max_audio_clips is not None:
        argv += ["--max-audio-clips", str(args.max_audio_clips)]
    return train_main(argv + ["--seed", str(args.seed)])


def _positive_float(option: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a number, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive number, got {text} (e.g. {option} 5)")
        return value
    return parse


def _positive_int(option: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, got {text!r}") from None
        if value < 1:
            raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
        return value
    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="clips (files, folders, manifest CSV) -> feature file")
    p.add_argument("inputs", nargs="+", help="video/audio files, folders, or a manifest CSV (path,label,transcript,language)")
    p.add_argument("--out", required=True, help="feature file to write (.npz, relative to the current folder); "
                                                 "failures go to <out>.failures.csv")
    p.add_argument("--lang", default="auto", help="auto (detect per clip) or a forced language: zh, en")
    p.add_argument("--asr", default="faster-whisper", choices=["faster-whisper", "openai-whisper"])
    p.add_argument("--asr-model", default="base", help="model name, hub id or local path (default: bundled base)")
    p.add_argument("--fps", type=_positive_float("--fps"), default=5.0,
                   help="video frames sampled per second for face features (> 0)")
    p.add_argument("--workers", type=_positive_int("--workers"), default=1, help="clips processed in parallel")
    p.add_argument("--executor", default="local", choices=["local", "dask", "ray"])
    p.add_argument("--scheduler", default=None, help="address of a running dask/ray cluster (default: start a local one)")
    p.add_argument("--modalities", default="text,audio,vision")
    p.add_argument("--audio-features", default="prosody", help="comma list of prosody, whisper, egemaps")
    p.add_argument("--face-features", default="face",
                   help="comma list of face (MediaPipe landmarks, head pose, geometric AUs, HoG, FER expressions), "
                        "blendshapes (MediaPipe FaceLandmarker's 52 named expression scores + clip functionals)")
    p.add_argument("--whisper-layer", type=int, default=None,
                   help="audio feature whisper: the output of encoder block k (0-based; default: the final output)")
    p.add_argument("--whisper-window", type=_positive_float("--whisper-window"), default=None,
                   help="audio feature whisper: encoder input window in seconds (default 30, Whisper's own; "
                        "shorter is faster for short clips)")
    p.add_argument("--label-scale", default="sims", choices=["sims", "mosi"], help="scale of manifest labels")
    p.add_argument("--name", default="clips")
    p.add_argument("--no-cache", action="store_true", help="recompute every clip")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_extract)

    p = sub.add_parser("predict", help="sentiment of video/audio clips with the bilingual default model")
    p.add_argument("clips", nargs="*", help="video (or audio) files")
    p.add_argument("--text", action="append", default=None, metavar="SENTENCE",
                   help="score a sentence with the default model's text branch instead of clips (repeatable)")
    p.add_argument("--lang", default="auto", help="language of --text: auto (detected per sentence), zh or en")
    p.add_argument("--json", action="store_true", help="print the per-clip results as JSON")
    p.add_argument("--model", "--model-dir", dest="model_dir", default=None,
                   help="run folder from msa train, or the default model folder (default: models/default)")
    p.add_argument("--fps", type=_positive_float("--fps"), default=None,
                   help="face frames per second (default: the model's setting)")
    p.add_argument("--cache", action="store_true", help="reuse/write the per-clip extraction cache")
    p.set_defaults(func=_predict)

    p = sub.add_parser("train-default", help="train the default model of `msa predict` into models/default")
    p.add_argument("--out", default=None, help="model folder (default: models/default)")
    p.add_argument("--max-text-per-language", type=int, default=None, help="subset sizes (quick tests only)")
    p.add_argument("--max-audio-clips", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train_default)

    add_run_commands(sub)  # msa train, msa evaluate

    p = sub.add_parser("doctor", help="check the environment and bundled models")
    p.add_argument("--browser", action="store_true")
    p.set_defaults(func=lambda a: __import__("msa_lib.app.doctor", fromlist=["main"]).main(["--browser"] if a.browser else []))

    p = sub.add_parser("notebooks", help="run the numbered notebooks with papermill")
    p.add_argument("names", nargs="*")
    p.add_argument("--smoke", action="store_true")
    p.set_defaults(func=lambda a: __import__("msa_lib.app.notebook_runner", fromlist=["main"]).main(
        a.names + (["--smoke"] if a.smoke else [])))
    return parser


def _exit_without_teardown(rc: int) -> None:
    """End the process once the prediction is printed. A normal exit first tears the loaded models down
    (ctranslate2, onnxruntime, MediaPipe graphs) and then the interpreter: about 1.5 s of a cold
    10-s-clip prediction (measured), for memory the OS takes back anyway. `msa predict` holds nothing
    that needs a clean exit: its output is printed and cache entries are written atomically."""
    import logging

    from msa_lib.core.quiet import restore_stderr

    logging.shutdown()
    sys.stdout.flush()
    restore_stderr()  # the native-chatter filter's pipe still holds the last lines of stderr
    sys.stderr.flush()
    os._exit(rc)


def main(argv=None) -> int:
    from msa_lib.core.quiet import quiet_command_line
    from msa_lib.data.io import OutputInUseError

    if argv is None:  # the real command line (not a test calling main): no native chatter, no hub calls
        quiet_command_line()
    args = build_parser().parse_args(argv)
    try:
        rc = int(args.func(args) or 0)
        if argv is None and args.command == "predict":
            _exit_without_teardown(rc)
        return rc
    except MissingToolError as exc:
        print(f"msa: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError, OutputInUseError) as exc:  # bad arguments or inputs: one message, no traceback
        print(f"msa: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # `msa extract` says what it kept itself; elsewhere there is nothing to resume
        print(f"msa {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
