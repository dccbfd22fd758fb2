"""Training loop, prediction/evaluation helpers and robustness curves."""
from msa_lib.train.robustness import DEFAULT_NOISE_LEVELS, perturb_batch, plot_robustness, robustness_curves
from msa_lib.train.trainer import (StepStats, TrainConfig, TrainingError, TrainResult, evaluate, fit, make_loader,
                      metrics_from_predictions, output_rows, predict, train_model, training_step)

__all__ = [
    "DEFAULT_NOISE_LEVELS", "perturb_batch", "plot_robustness", "robustness_curves",
    "StepStats", "TrainConfig", "TrainingError", "TrainResult", "evaluate", "fit", "make_loader",
    "metrics_from_predictions", "output_rows", "predict", "train_model", "training_step",
]
