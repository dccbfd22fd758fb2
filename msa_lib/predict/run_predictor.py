"""``msa predict --model RUN_DIR``: a model trained with ``msa train`` on new clips.

Each clip is extracted with the settings recorded in the run (the extraction settings of the feature
file it was trained on), standardised with the run's train statistics and passed through the model.
A run trained on features the extractor cannot produce (an MMSA COVAREP pickle, the seed system's
folders, ...) is refused when it is loaded, before any clip is decoded.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from msa_lib.core.utils import get_logger
from msa_lib.data.labels import CLASS_NAMES, scores_to_classes
from msa_lib.predict.predictor import Predictor

if TYPE_CHECKING:
    from msa_lib.train.runs import TrainedRun

log = get_logger("predict.run")


class RunPredictor(Predictor):
    """Predicts clips with a :class:`~msa_lib.train.runs.TrainedRun` (see the module docstring)."""

    def __init__(self, run: TrainedRun, extract_config):
        self.run = run
        self.extract_config = extract_config
        self._loaded = False

    @classmethod
    def load(cls, run_dir: str | os.PathLike, use_cache: bool = False, fps: float | None = None) -> "RunPredictor":
        from dataclasses import replace

        from msa_lib.extract.pipeline import ExtractConfig, modality_specs
        # here, not at module level: msa_lib.train pulls in torch (seconds of start-up)
        from msa_lib.train.runs import RunError, TrainedRun

        run = TrainedRun.load(run_dir)
        features = run.config["features"]
        settings = features.get("extraction")
        if not settings:
            raise RunError(f"{run_dir}: this model was trained on features that msa extract does not produce "
                           f"({features.get('dataset')}, from {features.get('source_file') or features.get('source') or 'an external file'}); "
                           f"it can score feature files of the same kind with msa evaluate, not raw clips")
        cfg = ExtractConfig.from_settings(settings, use_cache=use_cache)
        if fps is not None:
            cfg = replace(cfg, media=replace(cfg.media, fps=fps))
        producible = modality_specs(cfg)
        missing = [m for m in run.config["modalities"] if m not in producible]
        if missing:
            raise RunError(f"{run_dir}: the model needs {', '.join(missing)}, which the recorded extraction settings "
                           f"do not produce ({', '.join(producible) or 'nothing'})")
        for m in run.config["modalities"]:
            want, have = run.spec[m]["dim"], producible[m].dim
            if int(want) != int(have):
                raise RunError(f"{run_dir}: modality {m!r} would be extracted with {have} dimensions, the model "
                               f"expects {want}; the installed extractor differs from the one the run used")
        return cls(run, cfg)

    def _begin(self, ds) -> None:
        self._frame = self.run.predict_dataset(ds)  # one forward pass over the batch
        self._missing = {}
        for f in ds.failures:
            if f["kind"] != "failed":
                self._missing.setdefault(f["clip_id"], []).append(f["stage"])

    def _predict_row(self, ds, k: int, name: str) -> dict:
        return {**self._outputs(self._frame.iloc[k]), "missing": self._missing.get(ds.ids[k], [])}

    def _outputs(self, row) -> dict:
        scheme = self.run.scheme
        if scheme.kind == "regression":
            score = float(row["score_pred"])
            return {"score": round(score, 4),
                    "label": CLASS_NAMES[5][int(scores_to_classes([score], 5, scheme.scale)[0])]}
        names = scheme.class_names
        if scheme.kind == "binary":
            probs = {names[0]: 1 - float(row["prob_pos"]), names[1]: float(row["prob_pos"])}
        else:
            probs = {n: float(row[f"prob_{n}"]) for n in names}
        label = max(probs, key=probs.get)
        return {"label": label, "confidence": round(probs[label], 4),
                "probabilities": {k: round(v, 4) for k, v in probs.items()}}

    @staticmethod
    def table(results: Sequence[dict]) -> str:
        """A plain-text table of :meth:`predict` results."""
        lines = [f"{'clip':<40} {'status':<7} {'label':<10} {'score/conf':>10}  missing"]
        for r in results:
            name = Path(r["clip"]).name[:40]
            if r.get("status") != "ok":
                lines.append(f"{name:<40} {'error':<7} {r.get('error', '')}")
                continue
            value = r.get("score", r.get("confidence"))
            lines.append(f"{name:<40} {'ok':<7} {r['label']:<10} {value:>10.3f}  {','.join(r.get('missing', [])) or '-'}")
        return "\n".join(lines)


__all__ = ["RunPredictor"]
