"""``msa train`` and ``msa evaluate``: train a zoo model on a feature file into a run folder, and score
a run folder on any feature file whose spec matches (see :mod:`msa_lib.train.runs`)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from msa_lib.core.paths import user_path


def _seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.replace(" ", "").split(",") if s]
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds are whole numbers separated by commas, got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("give at least one seed, e.g. --seeds 0,1,2")
    return seeds


def _train(args) -> int:
    from msa_lib.train.runs import RunConfig, read_run_config, train_run

    cfg = read_run_config(user_path(args.config)) if args.config else RunConfig()
    changes = {}
    if args.model:
        changes["model"] = args.model
    if args.task:
        changes["task"] = args.task
    if args.seeds:
        changes["seeds"] = args.seeds
    if args.modalities:
        changes["modalities"] = args.modalities.split(",")
    if args.epochs:
        cfg.train = dataclasses.replace(cfg.train, max_epochs=args.epochs)
    if args.device:
        cfg.train = dataclasses.replace(cfg.train, device=args.device)
    cfg = RunConfig.from_dict({**cfg.to_dict(), **changes})
    out = user_path(args.out)
    try:
        result = train_run(user_path(args.features), out, cfg, resume=args.resume, progress=sys.stderr.isatty())
    except KeyboardInterrupt as exc:
        print(f"msa train: {exc or 'interrupted'}", file=sys.stderr)
        return 130
    summary = result.metrics["summary"]["test"]
    shown = {k: v for k, v in summary.items() if not k.startswith("confusion")}
    print(f"run folder: {result.run_dir} (model {cfg.model}, task {cfg.task}, seeds {cfg.seeds}, "
          f"saved seed {result.metrics['chosen_seed']})")
    for key in list(shown)[:8]:
        print(f"  test {key}: {shown[key]['mean']:.4f} ± {shown[key]['std']:.4f}")
    return 0


def _evaluate(args) -> int:
    from msa_lib.train.runs import evaluate_run

    metrics = evaluate_run(user_path(args.run_dir), user_path(args.features), split=args.split)
    if args.json:
        print(json.dumps(metrics, indent=2))
        return 0
    print(f"{metrics['dataset']} ({metrics['split']}, n = {metrics['n']})")
    for key, value in metrics.items():
        if isinstance(value, float):
            print(f"  {key}: {value:.4f}")
    names = metrics["class_names"]
    matrix = metrics.get("confusion") or metrics.get("confusion_5class")
    print("  confusion (rows: true, columns: predicted): " + " ".join(names))
    for name, row in zip(names, matrix):
        print(f"    {name:>8} " + " ".join(f"{v:5d}" for v in row))
    return 0


def _one_of(option: str, module: str, names: str):
    """An argparse ``type`` checking a value against ``module.names`` when the option is given: the model
    zoo and the trainer import torch, which every other ``msa`` command (predict, extract) must not pay
    for just to build the parser."""
    def parse(text: str) -> str:
        import importlib

        allowed = getattr(importlib.import_module(module), names)
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"{option} {text!r}: choose one of {', '.join(allowed)}")
        return text
    return parse


def add_commands(sub) -> None:
    p = sub.add_parser("train", help="train a zoo model on a feature file into a run folder")
    p.add_argument("features", help="feature file (.npz from msa extract), an MMSA .pkl, or a seed-format folder")
    p.add_argument("--model", type=_one_of("--model", "msa_lib.models.multimodal", "MODEL_NAMES"), default=None,
                   help="model of the zoo, e.g. early_concat (the default), late_avg, mult, adamml")
    p.add_argument("--task", type=_one_of("--task", "msa_lib.train.runs", "TASKS"), default=None,
                   help="regression (scores), binary, 5class (SNEG..SPOS) or classes (names from the labels)")
    p.add_argument("--out", required=True, help="run folder to write")
    p.add_argument("--seeds", type=_seeds, default=None, help="comma list, e.g. 0,1,2 (default 0)")
    p.add_argument("--epochs", type=int, default=None, help="maximum epochs (early stopping on the validation split)")
    p.add_argument("--modalities", default=None, help="comma list (default: every modality of the file)")
    p.add_argument("--config", default=None, help="run.json with RunConfig fields (msa train writes one in full)")
    p.add_argument("--device", default=None, help="auto (GPU when present), cpu or cuda")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a run folder on a feature file")
    p.add_argument("run_dir")
    p.add_argument("features")
    p.add_argument("--split", default=None, choices=["train", "valid", "test"], help="one split only (default: all)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_evaluate)
