"""``msa`` command line: extract features, predict sentiment from clips, train the default model,
check the environment, run the notebooks."""
from __future__ import annotations

import argparse
import sys

from msa_lib.extract.errors import MissingToolError


def _extract(args) -> int:
    from dataclasses import replace

    from msa_lib.extract.asr import ASRConfig
    from msa_lib.extract.media import MediaConfig
    from msa_lib.extract.pipeline import ExtractConfig, extract

    cfg = ExtractConfig(
        modalities=tuple(args.modalities.split(",")),
        audio_features=tuple(args.audio_features.split(",")),
        media=replace(MediaConfig(), fps=args.fps),
        asr=ASRConfig(backend=args.asr, model=args.asr_model, language=args.lang),
        workers=args.workers, executor=args.executor, scheduler_address=args.scheduler,
        use_cache=not args.no_cache, label_scale=args.label_scale,
    )
    ds = extract(args.inputs, cfg, out=args.out, progress=not args.quiet, name=args.name)
    failed = [f for f in ds.failures if f["kind"] == "failed"]
    partial = [f for f in ds.failures if f["kind"] != "failed"]
    print(f"{len(ds)} clip(s) extracted -> {args.out}")
    for f in failed:
        print(f"  skipped {f['clip']}: {f['error']}")
    for f in partial:
        print(f"  {f['clip_id']}: {f['stage']} missing ({f['error']})")
    return 0 if len(ds) else 1


def _predict(args) -> int:
    import json

    from msa_lib.predict.predictor import Predictor, format_table

    predictor = Predictor.load(args.model_dir, use_cache=args.cache, fps=args.fps)
    results = predictor.predict(args.clips, progress=False)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        print(format_table(results))
    ok = [r for r in results if r.get("status") == "ok"]
    if not ok:
        print(f"msa predict: no clip could be predicted ({len(results)} input(s) failed; see the errors above)",
              file=sys.stderr)
        return 1
    return 0


def _train_default(args) -> int:
    from msa_lib.predict.train_default import main as train_main

    argv = [] if args.out is None else ["--out", args.out]
    if args.max_text_per_language is not None:
        argv += ["--max-text-per-language", str(args.max_text_per_language)]
    if args.max_audio_clips is not None:
        argv += ["--max-audio-clips", str(args.max_audio_clips)]
    return train_main(argv + ["--seed", str(args.seed)])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="msa", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("extract", help="clips (files, folders, manifest CSV) -> feature file")
    p.add_argument("inputs", nargs="+", help="video/audio files, folders, or a manifest CSV (path,label,transcript,language)")
    p.add_argument("--out", required=True, help="feature file to write (.pkl); failures go to <out>.failures.csv")
    p.add_argument("--lang", default="auto", help="auto (detect per clip) or a forced language: zh, en")
    p.add_argument("--asr", default="faster-whisper", choices=["faster-whisper", "openai-whisper"])
    p.add_argument("--asr-model", default="base", help="model name, hub id or local path (default: bundled base)")
    p.add_argument("--fps", type=float, default=5.0, help="video frames sampled per second for face features")
    p.add_argument("--workers", type=int, default=1, help="clips processed in parallel")
    p.add_argument("--executor", default="local", choices=["local", "dask", "ray"])
    p.add_argument("--scheduler", default=None, help="address of a running dask/ray cluster (default: start a local one)")
    p.add_argument("--modalities", default="text,audio,vision")
    p.add_argument("--audio-features", default="prosody", help="comma list of prosody, whisper, egemaps")
    p.add_argument("--label-scale", default="sims", choices=["sims", "mosi"], help="scale of manifest labels")
    p.add_argument("--name", default="clips")
    p.add_argument("--no-cache", action="store_true", help="recompute every clip")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_extract)

    p = sub.add_parser("predict", help="sentiment of video/audio clips with the bilingual default model")
    p.add_argument("clips", nargs="+", help="video (or audio) files")
    p.add_argument("--json", action="store_true", help="print the per-clip results as JSON")
    p.add_argument("--model-dir", default=None, help="model folder (default: models/default)")
    p.add_argument("--fps", type=float, default=None, help="face frames per second (default: the model's setting)")
    p.add_argument("--cache", action="store_true", help="reuse/write the per-clip extraction cache")
    p.set_defaults(func=_predict)

    p = sub.add_parser("train-default", help="train the default model of `msa predict` into models/default")
    p.add_argument("--out", default=None, help="model folder (default: models/default)")
    p.add_argument("--max-text-per-language", type=int, default=None, help="subset sizes (quick tests only)")
    p.add_argument("--max-audio-clips", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_train_default)

    p = sub.add_parser("doctor", help="check the environment and bundled models")
    p.add_argument("--browser", action="store_true")
    p.set_defaults(func=lambda a: __import__("msa_lib.app.doctor", fromlist=["main"]).main(["--browser"] if a.browser else []))

    p = sub.add_parser("notebooks", help="run the numbered notebooks with papermill")
    p.add_argument("names", nargs="*")
    p.add_argument("--smoke", action="store_true")
    p.set_defaults(func=lambda a: __import__("msa_lib.app.notebook_runner", fromlist=["main"]).main(
        a.names + (["--smoke"] if a.smoke else [])))
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except MissingToolError as exc:
        print(f"msa: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:  # bad arguments or inputs: one line, no traceback
        print(f"msa: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
