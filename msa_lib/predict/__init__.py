"""Direct prediction from clips with the bilingual default model (``msa predict``).

``train_default`` trains and writes ``models/default/``; ``predictor.Predictor`` loads it and predicts."""
from __future__ import annotations


def __getattr__(name):  # lazy: importing the package must not pull in torch & co.
    if name in ("Predictor", "fuse", "score_to_label", "format_table"):
        from msa_lib.predict import predictor

        return getattr(predictor, name)
    raise AttributeError(name)
